// Package embedded starts the zero-setup dependencies: a Kafka-protocol broker
// (kfake) and a MongoDB-wire store (FerretDB on SQLite), both on loopback and
// both persisted under a data folder. They serve `go run .` and the tests;
// production points the gateway at real Kafka and MongoDB instead, or runs
// the same store in process over a PostgreSQL database
// (StartMongoPostgreSQL).
package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Kafka is an embedded single-node Kafka-protocol broker.
type Kafka struct {
	cluster *kfake.Cluster
	running string         // marker file present while the broker runs
	commits *commitJournal // see commits.go
	// finished counts the partitions on which a commit that an unclean
	// stop cut short was finished at start.
	finished int
}

// StartKafka starts a broker on 127.0.0.1:port (0 picks a free port) that
// keeps its logs, offsets and transactions under dir. A dir holding an
// earlier broker's state resumes it. If that broker did not close cleanly
// (the process was killed), its files are repaired first (see commits.go:
// index entries a kill kept kfake from writing, commits it cut short), and
// the transactions it left open are then aborted.
func StartKafka(dir string, port int) (*Kafka, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("embedded kafka: %w", err)
	}
	running := filepath.Join(dir, runningFile)
	_, err := os.Stat(running)
	unclean := err == nil
	journal := filepath.Join(dir, commitJournalName)
	finished := 0
	if unclean {
		pending, err := readCommitJournal(journal)
		if err == nil {
			finished, err = recoverUncleanStop(dir, pending)
		}
		if err != nil {
			return nil, fmt.Errorf("embedded kafka in %s: recovering from an unclean stop: %w", dir, err)
		}
	}
	c, err := kfake.NewCluster(
		kfake.Ports(port),
		kfake.DataDir(dir),
		kfake.ClusterID("order-gateway-embedded"),
		// Consumer group session timeouts from 1 s (Apache Kafka's
		// group.min.session.timeout.ms is 6 s by default; tests and
		// development want killed members gone sooner) up to Apache
		// Kafka's default group.max.session.timeout.ms, 30 min (kfake's
		// own is 5 min). Outside them a JoinGroup is refused with
		// INVALID_SESSION_TIMEOUT, as by Apache Kafka.
		kfake.GroupMinSessionTimeout(time.Second),
		kfake.GroupMaxSessionTimeout(30*time.Minute),
	)
	if err != nil {
		return nil, fmt.Errorf("embedded kafka in %s: %w", dir, err)
	}
	k := &Kafka{cluster: c, running: running, finished: finished}
	if unclean {
		if err := abortDanglingTransactions(c.ListenAddrs()); err != nil {
			c.Close()
			return nil, fmt.Errorf("embedded kafka in %s: recovering from an unclean stop: %w", dir, err)
		}
	}
	if k.commits, err = openCommitJournal(journal); err != nil {
		c.Close()
		return nil, fmt.Errorf("embedded kafka in %s: %w", dir, err)
	}
	k.commits.watch(c)
	// The marker holds the broker's address, for the tools (`deadletters`)
	// that reach the broker of a gateway that holds the data folder.
	if err := os.WriteFile(k.running, []byte(k.Addr()+"\n"), 0o644); err != nil {
		k.Close()
		return nil, fmt.Errorf("embedded kafka: %w", err)
	}
	return k, nil
}

// abortDanglingTransactions writes an abort marker for every transactional
// producer on every partition. kfake, reloading after a crash, treats a
// transaction that has no end marker as aborted in memory only; clients then
// keep skipping that producer id's later transactional records (they wait
// for an abort marker that never comes), so a restored handler's own new
// records would be invisible to read_committed readers. An abort marker for
// a producer with nothing open is harmless.
func abortDanglingTransactions(addrs []string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	list, err := kmsg.NewPtrListTransactionsRequest().RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("list transactions: %w", err)
	}
	describe := kmsg.NewPtrDescribeTransactionsRequest()
	for _, s := range list.TransactionStates {
		if s.TransactionState != "Ongoing" {
			describe.TransactionalIDs = append(describe.TransactionalIDs, s.TransactionalID)
		}
	}
	if len(describe.TransactionalIDs) == 0 {
		return nil
	}
	states, err := describe.RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("describe transactions: %w", err)
	}
	meta, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	markers := kmsg.NewPtrWriteTxnMarkersRequest()
	for _, s := range states.TransactionStates {
		if s.ErrorCode != 0 || s.State == "Ongoing" {
			continue
		}
		m := kmsg.NewWriteTxnMarkersRequestMarker()
		m.ProducerID, m.ProducerEpoch, m.Committed = s.ProducerID, s.ProducerEpoch, false
		for _, t := range meta.Topics {
			if t.Topic == nil || strings.HasPrefix(*t.Topic, "__") {
				continue
			}
			mt := kmsg.NewWriteTxnMarkersRequestMarkerTopic()
			mt.Topic = *t.Topic
			for _, p := range t.Partitions {
				mt.Partitions = append(mt.Partitions, p.Partition)
			}
			m.Topics = append(m.Topics, mt)
		}
		markers.Markers = append(markers.Markers, m)
	}
	resp, err := markers.RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("write abort markers: %w", err)
	}
	for _, m := range resp.Markers {
		for _, t := range m.Topics {
			for _, p := range t.Partitions {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
					return fmt.Errorf("abort marker for producer %d on %s/%d: %w", m.ProducerID, t.Topic, p.Partition, err)
				}
			}
		}
	}
	return nil
}

// FinishedCommits is the number of partitions on which StartKafka finished a
// commit that an unclean stop had cut short (0 after a clean stop).
func (k *Kafka) FinishedCommits() int { return k.finished }

// Addr is the broker's host:port.
func (k *Kafka) Addr() string { return k.cluster.ListenAddrs()[0] }

// runningFile is the broker's marker in its folder while it runs: left
// behind, it tells the next start that the broker did not stop cleanly. It
// holds the broker's host:port.
const runningFile = "gateway-running"

// RunningKafkaAddr is the address the embedded broker whose folder is dir
// recorded when it started, and false if none is recorded. It is only
// meaningful while that broker runs: the data folder's lock (LockDir) is
// held then; a broker killed leaves a stale address behind.
func RunningKafkaAddr(dir string) (string, bool) {
	b, err := os.ReadFile(filepath.Join(dir, runningFile))
	addr := strings.TrimSpace(string(b))
	if err != nil || addr == "" || len(addr) > 256 {
		return "", false
	}
	return addr, true
}

// Close stops the broker and flushes its state to disk.
func (k *Kafka) Close() {
	k.cluster.Close()
	_ = k.commits.Close()
	_ = os.Remove(k.running)
}

// Mongo is an embedded MongoDB-wire store: FerretDB on SQLite (StartMongo)
// or on PostgreSQL (StartMongoPostgreSQL), with an index added to every
// collection so that lookups by _id do not scan it (see idindex.go and
// pgcatalog.go).
type Mongo struct {
	uri     string
	cancel  context.CancelFunc
	done    chan struct{}
	indexer idIndexing
	// closeExtra, if set, is called after FerretDB and the indexer stopped.
	closeExtra func()
	// flush, if set, is Flush's work (the store on PostgreSQL).
	flush func(ctx context.Context) error
	// direct, if set, makes ReplaceGuarded's and InsertNew's writes
	// (pgwrite.go, sqlitewrite.go).
	direct directWriter
	// reloads counts a store on PostgreSQL's restarts of FerretDB (see
	// pgcatalog.go).
	reloads atomic.Int64
}

// idIndexing adds the _id lookup index to the store's collections: run in
// the background until its context ends, indexAll at once.
type idIndexing interface {
	run(ctx context.Context)
	indexAll(ctx context.Context) error
}

// StartMongo starts FerretDB on addr (e.g. "127.0.0.1:0") storing one SQLite
// file per database under dir.
func StartMongo(dir, addr string, logger *slog.Logger) (*Mongo, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("embedded mongodb: %w", err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("embedded mongodb: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = slog.New(&lazyAttrs{next: logger.Handler()})
	// synchronous(normal): in WAL mode a commit no longer waits for an
	// fsync of the log (checkpoints still sync), which made a replace of an
	// order view 1.8x faster here (0.95 to 0.54 ms; cmd/bench's projection
	// rows). A killed process loses nothing. An OS crash or power cut may
	// lose the last commits, as it may lose the embedded broker's last
	// records and committed offsets (it does not fsync either); the views and
	// the projector's offsets can then reach disk in either order, and views
	// left behind their offsets have to be rebuilt (docs/embedded.md, Durability).
	//
	// busy_timeout comes first because the pragmas run in order and
	// synchronous may already touch the database: FerretDB's own
	// busy_timeout, added after ours, would come too late for it. Once, after
	// a kill, opening the store failed with SQLITE_BUSY (1 restart in about
	// 100, before this order), so a start that meets it is also retried.
	cfg := &ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: addr},
		Handler:   "sqlite",
		SQLiteURL: "file:" + abs + "/?_pragma=busy_timeout(10000)&_pragma=synchronous(normal)",
		Logger:    logger,
	}
	db, err := ferretdb.New(cfg)
	for attempt := 1; err != nil && strings.Contains(err.Error(), "SQLITE_BUSY") && attempt < 10; attempt++ {
		logger.Warn("embedded mongodb: the store is busy; retrying", "attempt", attempt, "err", err)
		time.Sleep(500 * time.Millisecond)
		db, err = ferretdb.New(cfg)
	}
	if err != nil {
		return nil, fmt.Errorf("embedded mongodb in %s: %w", dir, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Mongo{uri: db.MongoDBURI(), cancel: cancel, done: make(chan struct{}), indexer: &idIndexer{dir: abs, logger: logger, seen: map[string]string{}}}
	if ferretDBLayoutKnown() {
		sqw := &sqliteWriter{dir: abs, dbs: map[string]*sqliteFile{}}
		m.direct, m.closeExtra = sqw, sqw.close
	}
	indexed := make(chan struct{})
	go func() {
		defer close(indexed)
		m.indexer.run(ctx)
	}()
	go func() {
		defer close(m.done)
		_ = db.Run(ctx)
		<-indexed
	}()
	return m, nil
}

// IndexIDs adds the _id lookup index (see idindex.go) to every collection
// that lacks it now, instead of within the half second the background pass
// takes. Benchmarks call it after creating collections, so that what they
// time does not include scans of a collection not yet indexed.
func (m *Mongo) IndexIDs(ctx context.Context) error { return m.indexer.indexAll(ctx) }

// URI is the mongodb:// connection string of the store.
func (m *Mongo) URI() string { return m.uri }

// Close stops the store and waits until its files (or its connections to
// PostgreSQL) are closed.
func (m *Mongo) Close() {
	m.cancel()
	<-m.done
	if m.closeExtra != nil {
		m.closeExtra()
	}
}

// ErrNotStarted is returned by helpers asked for a dependency that was not
// started.
var ErrNotStarted = errors.New("embedded dependency not started")
