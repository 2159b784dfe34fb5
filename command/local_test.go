package command

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/kafka"
	"github.com/ordergateway/gateway/kafka/kafkatest"
	"github.com/ordergateway/gateway/metrics"
	"github.com/ordergateway/gateway/statestore"
)

// runHandler runs a handler on topics with a local state folder dir and a
// working set of cacheOrders orders until the test ends or stop is called.
func runHandler(t *testing.T, topics kafka.Topics, dir string, cacheOrders int) (h *Handler, m *metrics.Handler, stop func()) {
	t.Helper()
	m = metrics.NewHandler(prometheus.NewRegistry())
	h = fenceTestHandlerConfig(t, topics, topics.Commands+".handler", func(c *HandlerConfig) {
		c.AuthDisabled, c.StateDir, c.CacheOrders, c.Metrics = true, dir, cacheOrders, m
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			_ = h.Close()
			<-done
		}
	}
	t.Cleanup(stop)
	return h, m, stop
}

func testBus(t *testing.T, topics kafka.Topics) *Bus {
	t.Helper()
	bus, err := NewBus(BusConfig{Brokers: testBrokers, Topics: topics, Timeout: 30 * time.Second, FetchWait: 20 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bus.Close() })
	return bus
}

func mustSend(t *testing.T, bus *Bus, cmd domain.Command, wantVersion int) {
	t.Helper()
	r, err := bus.Send(context.Background(), cmd, "")
	if err != nil {
		t.Fatalf("%T: %v", cmd, err)
	}
	if r.Error != nil || r.Version != wantVersion {
		t.Fatalf("%T on %s: version %d, error %v; want version %d", cmd, cmd.TargetOrderID(), r.Version, r.Error, wantVersion)
	}
}

// The handler keeps at most CacheOrders orders in memory and reads the
// others from its local store; a restart on the same state folder reads
// no snapshot again (the checkpoint moved with each commit); a handler on
// a new folder (a partition moved to another instance) reads them all.
func TestWorkingSetAndIncrementalRestore(t *testing.T) {
	topics := fenceTestTopics(t, "workset")
	bus := testBus(t, topics)
	dir := t.TempDir()
	h, m, stop := runHandler(t, topics, dir, 2)
	const n = 6
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("ord_ws_%d", i)
		mustSend(t, bus, placeOrder(ids[i]), 1)
	}
	if s := h.sess.Load(); s == nil || s.orders.cache.len() > 2 {
		t.Fatalf("working set: %d orders in memory, want at most 2", s.orders.cache.len())
	}
	mustSend(t, bus, domain.ConfirmOrder{OrderID: ids[0]}, 2) // evicted: read from the store
	if got := testutil.ToFloat64(m.OrdersRestored); got != 0 {
		t.Errorf("first start read %v snapshots, want 0", got)
	}
	stop()

	_, m2, stop2 := runHandler(t, topics, dir, 2)
	mustSend(t, bus, domain.ConfirmOrder{OrderID: ids[1]}, 2)
	mustSend(t, bus, domain.CancelOrder{OrderID: ids[0], Reason: "test"}, 3)
	if got := testutil.ToFloat64(m2.OrdersRestored); got != 0 {
		t.Errorf("restart on the same state folder read %v snapshots, want 0: it should resume from its checkpoint", got)
	}
	stop2()

	_, m3, _ := runHandler(t, topics, t.TempDir(), 2)
	mustSend(t, bus, domain.ConfirmOrder{OrderID: ids[2]}, 2)
	if got := testutil.ToFloat64(m3.OrdersRestored); got < n {
		t.Errorf("a handler with a new state folder read %v snapshots, want at least %d (all of them)", got, n)
	}
}

// A transaction committed but not applied to the local store (the process
// died between the two, or the write failed) is in the changelog after the
// store's checkpoint: the next restore reads it.
func TestRestoreCatchesUpACommitTheStoreMissed(t *testing.T) {
	topics := fenceTestTopics(t, "missed")
	dir := t.TempDir()
	group := topics.Commands + ".group"
	h := fenceTestHandlerConfig(t, topics, group, func(c *HandlerConfig) { c.StateDir = dir })
	tp, err := h.newTxnProducer()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ws, err := h.restore(ctx, tp, []int32{0})
	if err != nil {
		t.Fatal(err)
	}
	// A command's transaction: its snapshot and the partition's tally,
	// committed, never applied to the store.
	d, err := h.decideBatch(ws, fenceProduceCommands(t, topics, placeOrderMsg(t, topics, "ord_missed", "")))
	if err != nil {
		t.Fatal(err)
	}
	after := tallies(map[int32]tally{0: ws.stores[0].meta.Local}, d.before, d.changed)
	if err := tp.runTxn(append(d.records, after[0].record(topics.Snapshots, 0)), nil, nil); err != nil {
		t.Fatal(err)
	}
	if s, _ := ws.order(0, "ord_missed"); s != nil {
		t.Fatal("the store has the order before any restore read it")
	}
	_ = tp.Close()
	_ = h.Close()

	h2 := fenceTestHandlerConfig(t, topics, group, func(c *HandlerConfig) { c.StateDir = dir })
	tp2, err := h2.newTxnProducer()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tp2.Close() }()
	ws2, err := h2.restore(ctx, tp2, []int32{0})
	if err != nil {
		t.Fatal(err)
	}
	s, err := ws2.order(0, "ord_missed")
	if err != nil || s == nil || s.Order.Version != 1 || len(s.Outcomes) != 1 {
		t.Fatalf("after the restore: %+v, %v; want the committed order at version 1 with its outcome", s, err)
	}
	if ps := ws2.stores[0]; ps.meta.Stored == nil || *ps.meta.Stored != ps.meta.Local || ps.meta.Local.Orders != 1 {
		t.Errorf("store's tallies: %+v", ps.meta)
	}
}

// A restore cut short keeps what it read: the checkpoint moves with each
// batch it writes to the store, and the next restore starts there, so a
// partition of any size is restored in as many tries as it takes.
func TestRestoreKeepsItsProgress(t *testing.T) {
	topics := fenceTestTopics(t, "progress")
	var msgs []*sarama.ProducerMessage
	const n = 50
	for i := range n {
		s := &orderState{Order: domain.Order{ID: fmt.Sprintf("ord_%d", i), Version: 1}}
		v, _ := json.Marshal(s)
		msgs = append(msgs, &sarama.ProducerMessage{Topic: topics.Snapshots, Key: sarama.StringEncoder(s.Order.ID), Value: sarama.ByteEncoder(v)})
	}
	msgs = append(msgs, tally{Orders: n, Versions: n}.record(topics.Snapshots, 0))
	kafkatest.SendToPartitions(t, testBrokers, msgs...)
	defer func(b int) { restoreBatchBytes = b }(restoreBatchBytes)
	restoreBatchBytes = 1

	dir := t.TempDir()
	h := fenceTestHandlerConfig(t, topics, topics.Commands+".group", func(c *HandlerConfig) { c.StateDir = dir })
	cluster, topicID, err := h.identity()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := h.restorePartition(ctx, 0, markerPrefix+"never-written", cluster, topicID); err == nil {
		t.Fatal("a restore to a marker never written ended without an error")
	}
	ps, err := h.local.get(0, cluster, topicID)
	if err != nil {
		t.Fatal(err)
	}
	if ps.state.Checkpoint != n+1 || ps.meta.Local != (tally{Orders: n, Versions: n}) {
		t.Fatalf("after the restore gave up: checkpoint %d, tally %+v; want %d and %d orders", ps.state.Checkpoint, ps.meta.Local, n+1, n)
	}
	tp, err := h.newTxnProducer()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tp.Close() }()
	before := testutil.ToFloat64(h.cfg.Metrics.OrdersRestored)
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Minute)
	defer cancel2()
	ws, err := h.restore(ctx2, tp, []int32{0})
	if err != nil {
		t.Fatal(err)
	}
	if read := testutil.ToFloat64(h.cfg.Metrics.OrdersRestored) - before; read != 0 {
		t.Errorf("the second restore read %v snapshots again, want 0", read)
	}
	if len(restoredOrders(t, ws, 0)) != n {
		t.Errorf("restored %d orders, want %d", len(restoredOrders(t, ws, 0)), n)
	}
}

// A snapshot older than the stored one changes nothing (the changelog is
// read again from the checkpoint after the session's own writes); an
// equal version replaces it (a refused command records an outcome without
// a new version); a tombstone removes it; the tally follows each.
func TestLocalStoreKeepsTheNewestVersion(t *testing.T) {
	db, _, err := statestore.Open(t.TempDir(), statestore.Identity{Topic: "t"}, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ps := &partStore{db: db}
	w := ps.writer()
	for _, step := range []struct {
		version int
		snap    string
	}{{1, "a1"}, {3, "a3"}, {2, "a2"}, {3, "a3b"}} {
		if err := w.put("a", step.version, []byte(step.snap)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.put("b", 1, []byte("b1")); err != nil {
		t.Fatal(err)
	}
	if err := w.commit(7); err != nil {
		t.Fatal(err)
	}
	b, _, _ := db.Get("a")
	if v, snap, _ := splitStored(b); v != 3 || string(snap) != "a3b" {
		t.Errorf("a: version %d %q, want 3 a3b", v, snap)
	}
	if ps.meta.Local != (tally{Orders: 2, Versions: 4}) || ps.state.Checkpoint != 7 {
		t.Errorf("tally %+v checkpoint %d", ps.meta.Local, ps.state.Checkpoint)
	}
	w = ps.writer()
	if err := w.del("a"); err != nil {
		t.Fatal(err)
	}
	if err := w.commit(5); err != nil { // a checkpoint never moves back
		t.Fatal(err)
	}
	if ps.meta.Local != (tally{Orders: 1, Versions: 1}) || ps.state.Checkpoint != 7 {
		t.Errorf("after the tombstone: tally %+v checkpoint %d", ps.meta.Local, ps.state.Checkpoint)
	}
	reopened := &partStore{db: db}
	if err := reopened.load(); err != nil || reopened.meta != ps.meta || reopened.state.Checkpoint != 7 {
		t.Errorf("read back: %+v %+v %v", reopened.meta, reopened.state, err)
	}
}

// The working set holds at most maxOrders orders and maxBytes bytes of
// snapshots, dropping the least recently used.
func TestOrderCacheBounds(t *testing.T) {
	c := newOrderCache(3, 100)
	st := func(id string) *orderState { return &orderState{Order: domain.Order{ID: id}} }
	for _, id := range []string{"a", "b", "c"} {
		c.add(0, id, st(id), 10)
	}
	c.get(0, "a") // b is now the least recently used
	c.add(0, "d", st("d"), 10)
	if _, ok := c.get(0, "b"); ok || c.len() != 3 {
		t.Errorf("count bound: b kept or %d orders", c.len())
	}
	c.add(1, "big", st("big"), 75) // 10+10+10+75 > 100: the oldest, c, goes
	if _, ok := c.get(0, "c"); ok || c.len() != 3 || c.bytes != 95 {
		t.Errorf("byte bound: c kept, or %d orders, %d bytes", c.len(), c.bytes)
	}
	if _, ok := c.get(1, "big"); !ok {
		t.Error("the newest order was dropped")
	}
	c.add(0, "huge", st("huge"), 101)
	if _, ok := c.get(0, "huge"); ok || c.bytes > 100 {
		t.Error("an order larger than the byte bound was kept")
	}
	c.add(1, "big", st("big"), 5) // replaced, not counted twice
	if c.bytes != 25 || c.len() != 3 {
		t.Errorf("after replacing: %d bytes, %d orders; want 25 and 3", c.bytes, c.len())
	}
}

// After a transaction whose outcome is unknown, the session no longer
// moves the stores' checkpoints past its own records.
func TestCheckpointsStopAfterAFailedTransaction(t *testing.T) {
	s := &session{h: &Handler{cfg: HandlerConfig{Topics: kafka.Topics{Snapshots: "snap", Events: "ev"}}}}
	records := []*sarama.ProducerMessage{
		{Topic: "snap", Partition: 0, Offset: 10}, {Topic: "snap", Partition: 0, Offset: 12}, {Topic: "ev", Partition: 0, Offset: 99},
		{Topic: "snap", Partition: 1, Offset: 0}, // offset not learnt
	}
	got := s.checkpoints(records)
	if len(got) != 1 || got[0] != 13 {
		t.Errorf("checkpoints: %v, want partition 0 at 13 only", got)
	}
	s.gap = true
	if got := s.checkpoints(records); len(got) != 0 {
		t.Errorf("checkpoints after a failed transaction: %v, want none", got)
	}
}

// The committer writes a transaction's orders to the local store without
// reading what the store held (the states it decided on are that): the
// store's own tally still counts exactly the orders and versions in it,
// orders read back from the store (a working set of one) included, and
// agrees with the session's tally.
func TestCommittedKeepsTheLocalTally(t *testing.T) {
	topics := fenceTestTopics(t, "committed-tally")
	h := fenceTestHandlerConfig(t, topics, topics.Commands+".handler", func(c *HandlerConfig) { c.AuthDisabled = true })
	db, _, err := statestore.Open(t.TempDir(), statestore.Identity{Topic: topics.Snapshots}, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ps := &partStore{p: 0, db: db}
	ws := &workingSet{stores: map[int32]*partStore{0: ps}, cache: newOrderCache(1, MaxCacheBytes), local: &localStores{bad: map[int32]string{}}}
	var offset int64
	msg := func(cmd domain.Command) *sarama.ConsumerMessage {
		m := commandMsg(t, topics, cmd, "")
		offset++
		return &sarama.ConsumerMessage{Topic: topics.Commands, Partition: 0, Offset: offset, Key: []byte(cmd.TargetOrderID()),
			Value: encoded(t, m.Value), Headers: consumerHeaders(m.Headers)}
	}
	session := map[int32]tally{}
	for i, batch := range [][]domain.Command{
		{placeOrder("ord_a"), placeOrder("ord_b"), placeOrder("ord_c")},
		{domain.ConfirmOrder{OrderID: "ord_a"}, placeOrder("ord_d")},
		{domain.CancelOrder{OrderID: "ord_b", Reason: "test"}, domain.ConfirmOrder{OrderID: "ord_c"}, domain.ConfirmOrder{OrderID: "ord_d"}},
		{domain.CancelOrder{OrderID: "ord_a", Reason: "test"}, placeOrder("ord_a")}, // the second is refused: no new version
	} {
		var msgs []*sarama.ConsumerMessage
		for _, c := range batch {
			msgs = append(msgs, msg(c))
		}
		d, err := h.decideBatch(ws, msgs)
		if err != nil {
			t.Fatal(err)
		}
		session = tallies(session, d.before, d.changed)
		if err := ws.committed(d, session, nil); err != nil {
			t.Fatal(err)
		}
		all, err := ps.all()
		if err != nil {
			t.Fatal(err)
		}
		if got, want := ps.meta.Local, tallyOf(all); got != want || got != session[0] {
			t.Fatalf("after batch %d: the store's tally %+v, its orders %+v, the session's %+v", i, got, want, session[0])
		}
	}
	if all, _ := ps.all(); len(all) != 4 || all["ord_a"].Order.Version != 3 || all["ord_d"].Order.Version != 2 {
		t.Fatalf("store: %d orders, a at %d", len(all), all["ord_a"].Order.Version)
	}
}
