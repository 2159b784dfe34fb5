// Package statestore is the command handler's local state store: one Pebble
// database per partition, materialised from a Kafka topic used as its
// changelog (as Kafka Streams does with RocksDB). A store holds the latest
// value of each key it was given, and a State (the changelog offset it
// reflects, the checkpoint, plus what its user keeps with it) written
// atomically with the values in each Batch.
//
// The store is a cache of the changelog, never the truth: a store that
// cannot be opened, or that names another cluster, topic, partition or
// consumer group (Identity), is discarded and reopened empty, and its user
// restores it from the changelog.
package statestore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/bloom"
)

// Identity names what a store materialises. A store opened with another
// identity than the one it was created with is discarded.
type Identity struct {
	Cluster   string `json:"cluster"`           // the Kafka cluster id ("" if the broker names none)
	Topic     string `json:"topic"`             // the changelog topic
	TopicID   string `json:"topicId,omitempty"` // its id: a topic deleted and created again has another
	Partition int32  `json:"partition"`
	Group     string `json:"group"` // the consumer group whose partition it is
}

// State is what a store reflects: every committed record of the changelog
// partition below Checkpoint is in it (records above may be too: see the
// command handler's design notes), and App is what its user keeps with it.
type State struct {
	Checkpoint int64           `json:"checkpoint"`
	App        json.RawMessage `json:"app,omitempty"`
}

var (
	identityKey = []byte("m/identity")
	stateKey    = []byte("m/state")
	valuePrefix = []byte("v/")
)

// Memory bounds of one store: Pebble keeps up to two memtables of
// memTableSize before it stalls writes; the block cache is shared (Cache).
const memTableSize = 4 << 20

// Cache is the block cache the stores of a process share.
type Cache struct{ c *pebble.Cache }

// NewCache makes a block cache of size bytes. Release it with Close once
// every store that uses it is closed.
func NewCache(size int64) *Cache { return &Cache{c: pebble.NewCache(size)} }

// Close releases the cache.
func (c *Cache) Close() { c.c.Unref() }

// Store is one partition's local state.
type Store struct {
	db  *pebble.DB
	dir string
}

// Open opens the store in dir for id, creating it if need be. A store that
// Pebble cannot open (a corrupt or foreign folder) or that was made for
// another Identity is removed and created empty, with a log line: its user
// then restores it from the changelog. reset reports that.
func Open(dir string, id Identity, cache *Cache, log *slog.Logger) (s *Store, reset bool, err error) {
	s, why, err := open(dir, id, cache, log)
	if err != nil {
		return nil, false, err
	}
	if why == "" {
		return s, false, nil
	}
	if s != nil {
		_ = s.db.Close()
	}
	log.Warn("handler state store: discarding the local store and restoring it from the changelog", "dir", dir, "why", why)
	if err := os.RemoveAll(dir); err != nil {
		return nil, false, fmt.Errorf("remove the handler state store %s: %w", dir, err)
	}
	s, why, err = open(dir, id, cache, log)
	if err != nil {
		return nil, false, err
	}
	if why != "" {
		_ = s.db.Close()
		return nil, false, fmt.Errorf("handler state store %s: %s after it was emptied", dir, why)
	}
	return s, true, nil
}

// open opens dir; why is not empty when the store must be discarded (s may
// then be open and must be closed). err is for failures that emptying the
// folder cannot cure.
func open(dir string, id Identity, cache *Cache, log *slog.Logger) (s *Store, why string, err error) {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, "", fmt.Errorf("handler state folder: %w", err)
	}
	opts := &pebble.Options{MemTableSize: memTableSize, Logger: pebbleLogger{log}, Levels: make([]pebble.LevelOptions, 7)}
	for i := range opts.Levels {
		// A command for a new order looks up an id that is in no store:
		// bloom filters answer that without reading blocks.
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
		opts.Levels[i].EnsureDefaults()
	}
	if cache != nil {
		opts.Cache = cache.c
	}
	db, err := pebble.Open(dir, opts)
	if err != nil {
		if _, serr := os.Stat(dir); serr != nil {
			return nil, "", fmt.Errorf("open the handler state store %s: %w", dir, err)
		}
		return nil, fmt.Sprintf("it cannot be opened: %v", err), nil
	}
	s = &Store{db: db, dir: dir}
	want, _ := json.Marshal(id)
	got, ok, err := s.get(identityKey)
	switch {
	case err != nil:
		return s, fmt.Sprintf("its identity cannot be read: %v", err), nil
	case !ok:
		// A new store; one with values but no identity is not ours.
		it, err := db.NewIter(nil)
		if err != nil {
			return s, fmt.Sprintf("it cannot be read: %v", err), nil
		}
		empty := !it.First()
		_ = it.Close()
		if !empty {
			return s, "it has no identity", nil
		}
		if err := db.Set(identityKey, want, pebble.Sync); err != nil {
			_ = db.Close()
			return nil, "", fmt.Errorf("handler state store %s: %w", dir, err)
		}
	case !bytes.Equal(got, want):
		return s, fmt.Sprintf("it was made for %s, not %s", got, want), nil
	}
	return s, "", nil
}

// Close closes the store.
func (s *Store) Close() error { return s.db.Close() }

// Dir is the store's folder.
func (s *Store) Dir() string { return s.dir }

// State is the store's State; a new store's is the zero State.
func (s *Store) State() (State, error) {
	var st State
	b, ok, err := s.get(stateKey)
	if err != nil || !ok {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("handler state store %s: its state is not valid: %w", s.dir, err)
	}
	return st, nil
}

// Get is key's value (ok false: none).
func (s *Store) Get(key string) (v []byte, ok bool, err error) {
	return s.get(valueKey(key))
}

func (s *Store) get(k []byte) ([]byte, bool, error) {
	v, closer, err := s.db.Get(k)
	return copied(v, closer, err)
}

func copied(v []byte, closer io.Closer, err error) ([]byte, bool, error) {
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	out := bytes.Clone(v)
	_ = closer.Close()
	return out, true, nil
}

// Scan calls fn with every key and value, in key order, until fn fails.
func (s *Store) Scan(fn func(key string, v []byte) error) error {
	upper := append(bytes.Clone(valuePrefix[:len(valuePrefix)-1]), valuePrefix[len(valuePrefix)-1]+1)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: valuePrefix, UpperBound: upper})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		if err := fn(string(it.Key()[len(valuePrefix):]), bytes.Clone(it.Value())); err != nil {
			_ = it.Close()
			return err
		}
	}
	return it.Close()
}

// DiskUsage is the bytes the store's files take.
func (s *Store) DiskUsage() uint64 { return s.db.Metrics().DiskSpaceUsage() }

// Batch is a set of writes applied at once with a State: a crash leaves
// the store as it was before the batch or after it, never between.
type Batch struct {
	s      *Store
	b      *pebble.Batch
	closed bool
}

// NewBatch starts a batch; its Get sees the batch's own writes.
func (s *Store) NewBatch() *Batch { return &Batch{s: s, b: s.db.NewIndexedBatch()} }

// NewWriteBatch starts a batch that only writes: its Get fails. It spares
// the index of the batch's keys that Get needs.
func (s *Store) NewWriteBatch() *Batch { return &Batch{s: s, b: s.db.NewBatch()} }

// errWriteOnly is the error of Get on a batch from NewWriteBatch.
var errWriteOnly = errors.New("handler state store: Get on a write-only batch")

// Get is key's value as the batch would leave it.
func (b *Batch) Get(key string) ([]byte, bool, error) {
	if !b.b.Indexed() {
		return nil, false, errWriteOnly
	}
	v, closer, err := b.b.Get(valueKey(key))
	return copied(v, closer, err)
}

// Set sets key's value.
func (b *Batch) Set(key string, v []byte) error { return b.b.Set(valueKey(key), v, nil) }

// Delete removes key.
func (b *Batch) Delete(key string) error { return b.b.Delete(valueKey(key), nil) }

// Size is the batch's size in bytes.
func (b *Batch) Size() int { return b.b.Len() }

// Commit applies the batch and st. It does not wait for the disk (no
// fsync): a crash of the machine may lose the last batches, but never
// half of one, and the store then reflects an earlier checkpoint, from
// which its user catches up.
func (b *Batch) Commit(st State) error {
	v, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := b.b.Set(stateKey, v, nil); err != nil {
		return err
	}
	err = b.b.Commit(pebble.NoSync)
	b.Close()
	return err
}

// Close drops a batch not committed; after Commit it does nothing.
func (b *Batch) Close() {
	if !b.closed {
		b.closed = true
		_ = b.b.Close()
	}
}

func valueKey(key string) []byte {
	k := make([]byte, 0, len(valuePrefix)+len(key))
	return append(append(k, valuePrefix...), key...)
}

// pebbleLogger sends Pebble's messages to the gateway's log: its
// information at debug level, a fatal error at error level before it
// stops the process as Pebble expects.
type pebbleLogger struct{ log *slog.Logger }

func (l pebbleLogger) Infof(format string, args ...any) {
	l.log.Debug("pebble: " + fmt.Sprintf(format, args...))
}

func (l pebbleLogger) Fatalf(format string, args ...any) {
	l.log.Error("pebble: " + fmt.Sprintf(format, args...))
	os.Exit(1)
}
