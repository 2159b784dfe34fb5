package command

import (
	"container/list"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/ordergateway/gateway/kafka"
	"github.com/ordergateway/gateway/statestore"
)

// DefaultCacheOrders is the default of HandlerConfig.CacheOrders
// (HANDLER_CACHE_ORDERS).
const DefaultCacheOrders = 10_000

// MaxCacheBytes bounds the working set in bytes as well: the snapshots of
// the orders kept in memory add up to at most this (a snapshot is at most
// MaxSnapshotBytes, so a full working set of the largest orders holds
// fewer than CacheOrders).
const MaxCacheBytes = 64 << 20

// blockCacheBytes is the block cache the local stores of a handler share.
const blockCacheBytes = 16 << 20

// localStores are the handler's local state stores, one per partition it
// owns, under its state folder (HandlerConfig.StateDir): each materialises
// its snapshots partition, the changelog, up to a checkpoint (see
// docs/design.md, "The handler's local state"). Stores of partitions the
// handler no longer owns stay on disk, closed, in case the partitions come
// back; their checkpoint tells from where to catch up.
type localStores struct {
	dir   string
	temp  bool // dir is a temporary folder, removed by close
	group string
	topic string // the snapshots topic
	log   *slog.Logger
	cache *statestore.Cache

	mu   sync.Mutex
	open map[int32]*partStore
	bad  map[int32]string // partitions whose store failed: discarded at their next open, with why
}

func newLocalStores(dir, group, topic string, log *slog.Logger) (*localStores, error) {
	temp := dir == ""
	if temp {
		var err error
		if dir, err = os.MkdirTemp("", "order-gateway-handler-state-"); err != nil {
			return nil, fmt.Errorf("handler state folder: %w", err)
		}
	}
	return &localStores{dir: dir, temp: temp, group: group, topic: topic, log: log, cache: statestore.NewCache(blockCacheBytes),
		open: map[int32]*partStore{}, bad: map[int32]string{}}, nil
}

// partitionDir is the folder of partition p's store.
func (ls *localStores) partitionDir(p int32) string {
	return filepath.Join(ls.dir, ls.group, fmt.Sprintf("%s-%d", ls.topic, p))
}

// get opens partition p's store for identity id (or returns it if open).
// A store marked bad, or that statestore.Open finds corrupt or foreign, is
// discarded first.
func (ls *localStores) get(p int32, cluster, topicID string) (*partStore, error) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ps := ls.open[p]; ps != nil {
		if why := ls.bad[p]; why == "" {
			return ps, nil
		}
		_ = ps.db.Close()
		delete(ls.open, p)
	}
	dir := ls.partitionDir(p)
	if why := ls.bad[p]; why != "" {
		ls.log.Warn("handler state store: discarding the local store and restoring it from the changelog", "partition", p, "dir", dir, "why", why)
		if err := os.RemoveAll(dir); err != nil {
			return nil, fmt.Errorf("remove the handler state store %s: %w", dir, err)
		}
		delete(ls.bad, p)
	}
	id := statestore.Identity{Cluster: cluster, Topic: ls.topic, TopicID: topicID, Partition: p, Group: ls.group}
	db, _, err := statestore.Open(dir, id, ls.cache, ls.log.With("partition", p))
	if err != nil {
		return nil, err
	}
	ps := &partStore{p: p, db: db}
	if err := ps.load(); err != nil {
		_ = db.Close()
		ls.bad[p] = err.Error()
		return nil, err
	}
	ls.open[p] = ps
	return ps, nil
}

// discard marks partition p's store bad: it is emptied at its next open.
func (ls *localStores) discard(p int32, why string) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.bad[p] == "" {
		ls.bad[p] = why
	}
}

// keepOnly closes the stores of partitions other than parts.
func (ls *localStores) keepOnly(parts []int32) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	keep := map[int32]bool{}
	for _, p := range parts {
		keep[p] = true
	}
	for p, ps := range ls.open {
		if !keep[p] {
			_ = ps.db.Close()
			delete(ls.open, p)
		}
	}
}

// close closes every store (and removes a temporary folder).
func (ls *localStores) close() {
	ls.keepOnly(nil)
	ls.cache.Close()
	if ls.temp {
		_ = os.RemoveAll(ls.dir)
	}
}

// partStore is one partition's local store and what it reflects.
type partStore struct {
	p     int32
	db    *statestore.Store
	state statestore.State // its checkpoint
	meta  localMeta
}

// localMeta is what a partition's store keeps with its checkpoint, written
// with each batch of values.
type localMeta struct {
	// Local is the tally of the orders in the store, kept as values
	// change.
	Local tally `json:"local"`
	// Stored is the partition's tally as last read from or committed to
	// the changelog (nil: none yet); restore compares it with Local.
	Stored *tally `json:"stored,omitempty"`
	// Damaged is set when an undecodable snapshot or tally was read: the
	// partition is rebuilt from its events at the next restore.
	Damaged bool `json:"damaged,omitempty"`
}

func (ps *partStore) load() error {
	st, err := ps.db.State()
	if err != nil {
		return err
	}
	ps.state, ps.meta = st, localMeta{}
	if len(st.App) > 0 {
		if err := json.Unmarshal(st.App, &ps.meta); err != nil {
			return fmt.Errorf("handler state store %s: its metadata is not valid: %w", ps.db.Dir(), err)
		}
	}
	return nil
}

// order is the state of order id in the store (nil: none).
func (ps *partStore) order(id string) (*orderState, int, error) {
	b, ok, err := ps.db.Get(id)
	if err != nil || !ok {
		return nil, 0, err
	}
	_, snap, err := splitStored(b)
	if err != nil {
		return nil, 0, err
	}
	s, err := decodeSnapshot(snap)
	if err != nil {
		return nil, 0, fmt.Errorf("order %q in the handler state store: %w", id, err)
	}
	return s, len(snap), nil
}

// all is every order in the store: only for rebuilding a partition from
// its events, which holds the whole partition in memory.
func (ps *partStore) all() (map[string]*orderState, error) {
	orders := map[string]*orderState{}
	err := ps.db.Scan(func(id string, b []byte) error {
		_, snap, err := splitStored(b)
		if err != nil {
			return err
		}
		s, err := decodeSnapshot(snap)
		if err != nil {
			return fmt.Errorf("order %q in the handler state store: %w", id, err)
		}
		orders[id] = s
		return nil
	})
	return orders, err
}

// storedValue is how a snapshot is kept in a store: its order's version
// first (a uvarint), so that comparing versions decodes no JSON.
func storedValue(version int, snap []byte) []byte {
	b := binary.AppendUvarint(make([]byte, 0, binary.MaxVarintLen64+len(snap)), uint64(version))
	return append(b, snap...)
}

var errBadStoredValue = errors.New("a value in the handler state store is not valid")

func splitStored(b []byte) (version int, snap []byte, err error) {
	v, n := binary.Uvarint(b)
	if n <= 0 || v > 1<<31 {
		return 0, nil, errBadStoredValue
	}
	return int(v), b[n:], nil
}

// writer changes a partition's store in one batch, keeping its tally.
type writer struct {
	ps   *partStore
	b    *statestore.Batch
	meta localMeta
	n    int // values written
}

func (ps *partStore) writer() *writer {
	return &writer{ps: ps, b: ps.db.NewBatch(), meta: ps.metaCopy()}
}

// knownWriter is a writer for replace only: its batch keeps no index.
func (ps *partStore) knownWriter() *writer {
	return &writer{ps: ps, b: ps.db.NewWriteBatch(), meta: ps.metaCopy()}
}

func (ps *partStore) metaCopy() localMeta {
	m := ps.meta
	if m.Stored != nil {
		t := *m.Stored
		m.Stored = &t
	}
	return m
}

// replace stores snap, order id's snapshot at version, where the store is
// known to hold before (nil: nothing), without reading it: the committer
// decided on before, read from the store or from what it last wrote there
// (it is the store's only writer while its session lasts).
func (w *writer) replace(id string, before *orderState, version int, snap []byte) error {
	old, had := 0, before != nil
	if had {
		old = before.Order.Version
	}
	if checkReplaces {
		if err := w.checkReplace(id, old, had); err != nil {
			return err
		}
	}
	return w.set(id, old, had, version, snap)
}

// checkReplaces makes replace read the store and panic on a before that is
// not what it holds (this package's tests set it; a panic, since the
// committer would take an error for a failed store and recover from the
// changelog, hiding the bug): a cache that drifted from the store would
// otherwise show only at a restore, as a tally that disagrees and a
// partition rebuilt from its events.
var checkReplaces = false

// checkReplace panics unless the store holds order id at version old
// (had), or nothing (!had); it returns the store's errors.
func (w *writer) checkReplace(id string, old int, had bool) error {
	stored, ok, err := w.ps.db.Get(id)
	if err != nil {
		return err
	}
	v := 0
	if ok {
		if v, _, err = splitStored(stored); err != nil {
			return err
		}
	}
	if ok != had || v != old {
		panic(fmt.Sprintf("handler state store of partition %d: order %q is at version %d (stored: %v), the batch was decided on %d (stored: %v)", w.ps.p, id, v, ok, old, had))
	}
	return nil
}

// put stores snap, order id's snapshot at version, unless the store has a
// newer version of it: a snapshot older than the stored one changes
// nothing. An equal version replaces it (a refused command records an
// outcome without a new version; the changelog's later record is newer).
func (w *writer) put(id string, version int, snap []byte) error {
	old, ok, err := w.b.Get(id)
	if err != nil {
		return err
	}
	ov := 0
	if ok {
		if ov, _, err = splitStored(old); err != nil {
			return err
		}
		if version < ov {
			return nil
		}
	}
	return w.set(id, ov, ok, version, snap)
}

// set writes snap at version over the stored version old (had: the store
// holds one), keeping the tally.
func (w *writer) set(id string, old int, had bool, version int, snap []byte) error {
	if had {
		w.meta.Local.Orders--
		w.meta.Local.Versions -= int64(old)
	}
	w.meta.Local.Orders++
	w.meta.Local.Versions += int64(version)
	w.n++
	return w.b.Set(id, storedValue(version, snap))
}

// del removes order id (a tombstone in the changelog).
func (w *writer) del(id string) error {
	old, ok, err := w.b.Get(id)
	if err != nil || !ok {
		return err
	}
	ov, _, err := splitStored(old)
	if err != nil {
		return err
	}
	w.meta.Local.Orders--
	w.meta.Local.Versions -= int64(ov)
	w.n++
	return w.b.Delete(id)
}

// commit applies the batch; checkpoint, if above the store's, becomes its
// checkpoint. The partStore changes only if the batch is applied.
func (w *writer) commit(checkpoint int64) error {
	st := w.ps.state
	st.Checkpoint = max(st.Checkpoint, checkpoint)
	app, err := json.Marshal(w.meta)
	if err != nil {
		w.b.Close()
		return err
	}
	st.App = app
	if err := w.b.Commit(st); err != nil {
		return fmt.Errorf("handler state store of partition %d: %w", w.ps.p, err)
	}
	w.ps.state, w.ps.meta = st, w.meta
	return nil
}

// workingSet is the orders of a session's partitions: every order in its
// partition's local store, the most recently used also in memory (an LRU
// bounded by count and bytes). It implements orderSource.
type workingSet struct {
	stores map[int32]*partStore
	cache  *orderCache
	local  *localStores
}

// order is order id of partition p: from memory, else from its store.
func (ws *workingSet) order(p int32, id string) (*orderState, error) {
	if s, ok := ws.cache.get(p, id); ok {
		return s, nil
	}
	ps := ws.stores[p]
	if ps == nil {
		return nil, nil
	}
	s, size, err := ps.order(id)
	if err != nil {
		ws.local.discard(p, err.Error())
		return nil, err
	}
	if s != nil {
		ws.cache.add(p, id, s, size)
	}
	return s, nil
}

// committed applies a committed transaction to the stores and the cache:
// the orders it changed (with their snapshots as written), each changed
// partition's tally, and, where known, the changelog offset after the
// transaction's last snapshot record (the new checkpoint; 0: unknown).
func (ws *workingSet) committed(d decided, after map[int32]tally, checkpoints map[int32]int64) error {
	for p, t := range after {
		ps := ws.stores[p]
		if ps == nil {
			return fmt.Errorf("no local store for partition %d", p)
		}
		w := ps.knownWriter()
		for id, s := range d.changed[p] {
			snap := d.snapshots[p][id]
			if err := w.replace(id, d.before.get(p, id), s.Order.Version, snap); err != nil {
				w.b.Close()
				ws.local.discard(p, err.Error())
				return err
			}
			ws.cache.add(p, id, s, len(snap))
		}
		w.meta.Stored = &t
		if err := w.commit(checkpoints[p]); err != nil {
			ws.local.discard(p, err.Error())
			return err
		}
	}
	return nil
}

// orderCache is an LRU of order states by partition and order id, of at
// most maxOrders orders and maxBytes bytes of their snapshots. It is the
// committer's alone.
type orderCache struct {
	maxOrders, maxBytes int
	bytes               int
	ll                  *list.List // front: most recently used
	byKey               map[cacheKey]*list.Element
	count               atomic.Int64 // ll.Len(), for readers outside the committer
}

type cacheKey struct {
	p  int32
	id string
}

type cacheEntry struct {
	key   cacheKey
	state *orderState
	size  int
}

func newOrderCache(maxOrders, maxBytes int) *orderCache {
	return &orderCache{maxOrders: maxOrders, maxBytes: maxBytes, ll: list.New(), byKey: map[cacheKey]*list.Element{}}
}

func (c *orderCache) get(p int32, id string) (*orderState, bool) {
	e, ok := c.byKey[cacheKey{p, id}]
	if !ok {
		return nil, false
	}
	c.ll.MoveToFront(e)
	return e.Value.(*cacheEntry).state, true
}

// add keeps s as order id's state, evicting the least recently used
// orders while over a bound. An order larger than maxBytes is not kept.
func (c *orderCache) add(p int32, id string, s *orderState, size int) {
	k := cacheKey{p, id}
	if e, ok := c.byKey[k]; ok {
		c.remove(e)
	}
	if c.maxOrders <= 0 || size > c.maxBytes {
		return
	}
	c.byKey[k] = c.ll.PushFront(&cacheEntry{key: k, state: s, size: size})
	c.bytes += size
	c.count.Add(1)
	for c.ll.Len() > c.maxOrders || c.bytes > c.maxBytes {
		c.remove(c.ll.Back())
	}
}

func (c *orderCache) remove(e *list.Element) {
	ce := c.ll.Remove(e).(*cacheEntry)
	delete(c.byKey, ce.key)
	c.bytes -= ce.size
	c.count.Add(-1)
}

// len is the number of orders in the cache; safe from any goroutine.
func (c *orderCache) len() int { return int(c.count.Load()) }

// identity is the cluster's id and the snapshots topic's id, which the
// stores are made for.
func (h *Handler) identity() (cluster, topicID string, err error) {
	return kafka.TopicIdentity(h.client, h.cfg.Topics.Snapshots)
}
