// Package embedded starts the zero-setup dependencies: a Kafka-protocol broker
// (kfake) and a MongoDB-wire store (FerretDB on SQLite), both on loopback and
// both persisted under a data folder. They serve `go run .` and the tests;
// production points the gateway at real Kafka and MongoDB instead.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/FerretDB/FerretDB/ferretdb"
	"github.com/twmb/franz-go/pkg/kfake"
)

// Kafka is an embedded single-node Kafka-protocol broker.
type Kafka struct {
	cluster *kfake.Cluster
}

// StartKafka starts a broker on 127.0.0.1:port (0 picks a free port) that
// keeps its logs, offsets and transactions under dir. A dir holding an
// earlier broker's state resumes it.
func StartKafka(dir string, port int) (*Kafka, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("embedded kafka: %w", err)
	}
	c, err := kfake.NewCluster(
		kfake.Ports(port),
		kfake.DataDir(dir),
		kfake.ClusterID("order-gateway-embedded"),
		kfake.GroupMinSessionTimeout(1000),
	)
	if err != nil {
		return nil, fmt.Errorf("embedded kafka in %s: %w", dir, err)
	}
	return &Kafka{cluster: c}, nil
}

// Addr is the broker's host:port.
func (k *Kafka) Addr() string { return k.cluster.ListenAddrs()[0] }

// Close stops the broker and flushes its state to disk.
func (k *Kafka) Close() { k.cluster.Close() }

// Mongo is an embedded MongoDB-wire store: FerretDB on SQLite.
type Mongo struct {
	db     *ferretdb.FerretDB
	cancel context.CancelFunc
	done   chan struct{}
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
	db, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: addr},
		Handler:   "sqlite",
		SQLiteURL: "file:" + abs + "/",
		Logger:    logger,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded mongodb in %s: %w", dir, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Mongo{db: db, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(m.done)
		_ = db.Run(ctx)
	}()
	return m, nil
}

// URI is the mongodb:// connection string of the store.
func (m *Mongo) URI() string { return m.db.MongoDBURI() }

// Close stops the store and waits until its files are closed.
func (m *Mongo) Close() {
	m.cancel()
	<-m.done
}

// ErrNotStarted is returned by helpers asked for a dependency that was not
// started.
var ErrNotStarted = errors.New("embedded dependency not started")
