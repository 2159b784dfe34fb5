package command

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/kafka"
)

// TestZombieHandlerIsFenced: an instance that lost its group membership
// without knowing it (a zombie: paused past its session timeout, say) is
// still committing a batch for partition 0, which another member now owns.
// Its transaction carries its old generation and member id in the offset
// commit; the group coordinator refuses them (KIP-447), so the zombie's
// transaction aborts and its records stay invisible. The owner handles
// every command exactly once, the group's committed offset is the owner's,
// and the zombie's session code gives up without retrying.
func TestZombieHandlerIsFenced(t *testing.T) {
	topics := fenceTestTopics(t, "zombie")
	group := topics.Commands + ".group"
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// 1. The zombie-to-be joins the group alone (generation 1), owns
	// partition 0, and leaves: its membership ends, as a zombie's expires.
	h1 := fenceTestHandler(t, topics, group)
	zombieMeta := joinGroup(t, ctx, h1)
	t.Logf("zombie: joined as %s in generation %d, then left", zombieMeta.MemberID, zombieMeta.GenerationID)

	// 2. Commands A, B, C arrive. The zombie begins its transaction for A
	// and writes A's event.
	idA, idB, idC := newID("ord_zombieA_"), newID("ord_ownerB_"), newID("ord_ownerC_")
	cmds := fenceProduceCommands(t, topics,
		placeOrderMsg(t, topics, idA, ""), placeOrderMsg(t, topics, idB, ""), placeOrderMsg(t, topics, idC, ""))
	cmdA, cmdC := cmds[0], cmds[2]
	zombie, err := h1.newTxnProducer()
	if err != nil {
		t.Fatalf("zombie producer: %v", err)
	}
	defer func() { _ = zombie.Close() }()
	zd, err := h1.decideBatch(partitionStates{}, []*sarama.ConsumerMessage{cmdA})
	if err != nil || zd.dead != 0 || len(zd.records) != 2 {
		t.Fatalf("zombie batch: %d records, %d dead, %v; want an event and a snapshot", len(zd.records), zd.dead, err)
	}
	if err := zombie.Begin(); err != nil {
		t.Fatalf("zombie Begin: %v", err)
	}
	var events, rest []*sarama.ProducerMessage
	for _, m := range zd.records {
		if m.Topic == topics.Events {
			events = append(events, m)
		} else {
			rest = append(rest, m)
		}
	}
	if err := zombie.Send(events); err != nil {
		t.Fatalf("zombie Send: %v", err)
	}
	t.Logf("zombie: transaction open, A's event in the log: %v", waitForKey(t, topics.Events, sarama.ReadUncommitted, idA, 5*time.Second))

	// 3. The owner joins (generation 2) and handles A, B and C.
	h2 := fenceTestHandler(t, topics, group)
	runCtx, stopOwner := context.WithCancel(ctx)
	ownerDone := make(chan struct{})
	go func() { defer close(ownerDone); _ = h2.Run(runCtx) }()
	defer func() { stopOwner(); <-ownerDone }()
	waitForCommitted(t, ctx, group, topics.Commands, cmdC.Offset+1)
	t.Logf("owner: committed A, B and C (offset %d)", cmdC.Offset+1)

	// 4. The zombie finishes its batch as a session would: the rest of its
	// records, its offset with its old group metadata, commit. It must fail.
	sendErr := zombie.Send(rest)
	addErr := zombie.SendOffsets([]*sarama.ConsumerMessage{cmdA}, zombieMeta, nil)
	commitErr := zombie.Commit()
	t.Logf("zombie: Send: %v; SendOffsets: %v; Commit: %v", sendErr, addErr, commitErr)
	if commitErr == nil {
		t.Fatalf("the zombie committed its transaction with generation %d", zombieMeta.GenerationID)
	}
	if !kafka.IsFencedByGroup(addErr) || !kafka.IsFencedByGroup(commitErr) {
		t.Errorf("the zombie's commit failed, but not for its group generation: offsets %v, commit %v", addErr, commitErr)
	}
	// The session's own path gives up at once instead of retrying.
	zs := &session{h: h1, ctx: ctx, log: h1.cfg.Logger, prod: zombie, meta: zombieMeta,
		orders: &workingSet{stores: map[int32]*partStore{}, cache: newOrderCache(10, 1<<20), local: h1.local}}
	t0 := time.Now()
	retryErr := zs.commit([]*sarama.ConsumerMessage{cmdA})
	t.Logf("zombie: session commit: %v after %v", retryErr, time.Since(t0).Round(time.Millisecond))
	if retryErr == nil || !kafka.IsFencedByGroup(retryErr) {
		t.Errorf("the zombie's session commit: %v, want a refusal for its generation", retryErr)
	}
	if n := zs.orders.cache.len(); n != 0 {
		t.Errorf("a failed commit changed the zombie's states: %d cached", n)
	}

	// 5. The owner keeps committing: D.
	idD := newID("ord_ownerD_")
	cmdD := fenceProduceCommands(t, topics, placeOrderMsg(t, topics, idD, ""))[0]
	waitForCommitted(t, ctx, group, topics.Commands, cmdD.Offset+1)

	// 6. read_committed readers see each order's records once, none of the
	// zombie's.
	for _, topic := range []string{topics.Events, topics.Snapshots} {
		byOrder := ordersOf(t, topics, topic, readPartition0(t, topic, sarama.ReadCommitted, time.Second))
		t.Logf("%s, read_committed: by order %v", topic, byOrder)
		for _, id := range []string{idA, idB, idC, idD} {
			if byOrder[id] != 1 {
				t.Errorf("%s: read_committed reader sees %d records of order %s, want 1", topic, byOrder[id], id)
			}
		}
	}
	raw := ordersOf(t, topics, topics.Events, readPartition0(t, topics.Events, sarama.ReadUncommitted, time.Second))
	t.Logf("%s, read_uncommitted: by order %v (the zombie's aborted event of A is in the log: %v)", topics.Events, raw, raw[idA] > 1)
	t.Logf("checked on the %s broker in %v", testKafka, time.Since(start).Round(time.Millisecond))
}

// joinGroup runs h until it has joined its group, returns its session's
// group metadata and leaves the group.
func joinGroup(t *testing.T, ctx context.Context, h *Handler) *sarama.ConsumerGroupMetadata {
	t.Helper()
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = h.Run(runCtx) }()
	var meta *sarama.ConsumerGroupMetadata
	for meta == nil {
		if s := h.sess.Load(); s != nil {
			meta = s.meta
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("handler did not join its group")
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	if err := h.Close(); err != nil {
		t.Logf("leave the group: %v", err)
	}
	<-done
	return meta
}

// waitForCommitted waits until group's committed offset of partition 0 of
// topic is at least want.
func waitForCommitted(t *testing.T, ctx context.Context, group, topic string, want int64) {
	t.Helper()
	admin, err := sarama.NewClusterAdmin(testBrokers, kafka.Config("test-admin", 20*time.Millisecond))
	if err != nil {
		t.Fatalf("admin: %v", err)
	}
	defer admin.Close()
	for {
		offs, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: {0}})
		if err == nil {
			if b := offs.GetBlock(topic, 0); b != nil && b.Err == sarama.ErrNoError && b.Offset >= want {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("group %s did not commit offset %d of %s/0", group, want, topic)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestRestoreReadsCommittedSnapshots: restore returns the snapshots of
// committed transactions, and neither those of an aborted transaction nor
// those of a transaction left open by a producer that died (restore waits
// for the broker to abort it after its transaction timeout).
func TestRestoreReadsCommittedSnapshots(t *testing.T) {
	topics := fenceTestTopics(t, "restore")
	group := topics.Commands + ".group"
	h1 := fenceTestHandlerConfig(t, topics, group, func(c *HandlerConfig) { c.TransactionTimeout = 2 * time.Second })
	p1, err := h1.newTxnProducer()
	if err != nil {
		t.Fatalf("producer: %v", err)
	}
	defer func() { _ = p1.Close() }()

	idX, idY, idZ := newID("ord_X_"), newID("ord_Y_"), newID("ord_Z_")
	msg := func(offset int64, cmd domain.Command) *sarama.ConsumerMessage {
		m := commandMsg(t, topics, cmd, "")
		return &sarama.ConsumerMessage{Topic: topics.Commands, Partition: 0, Offset: offset, Key: []byte(cmd.TargetOrderID()),
			Value: encoded(t, m.Value), Headers: consumerHeaders(m.Headers)}
	}
	decide := func(states partitionStates, batch ...*sarama.ConsumerMessage) decided {
		d, err := h1.decideBatch(states, batch)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}

	// Committed: X placed (version 1).
	d := decide(partitionStates{}, msg(0, placeOrder(idX)))
	if err := p1.runTxn(d.records, nil, nil); err != nil {
		t.Fatalf("commit X: %v", err)
	}
	states := partitionStates{0: d.changed[0]}
	// Aborted: X confirmed (version 2) and Y placed.
	d = decide(states, msg(1, domain.ConfirmOrder{OrderID: idX}), msg(2, placeOrder(idY)))
	if err := p1.Begin(); err != nil {
		t.Fatal(err)
	}
	if err := p1.Send(d.records); err != nil {
		t.Fatal(err)
	}
	inLog := waitForKey(t, topics.Snapshots, sarama.ReadUncommitted, idY, 5*time.Second)
	if err := p1.Abort(); err != nil {
		t.Fatalf("abort: %v", err)
	}
	t.Logf("aborted transaction (X at version 2, Y placed) was physically in the log: %v", inLog)
	// Left open by a producer that then went silent: Z placed.
	d = decide(states, msg(3, placeOrder(idZ)))
	if err := p1.Begin(); err != nil {
		t.Fatal(err)
	}
	if err := p1.Send(d.records); err != nil {
		t.Fatal(err)
	}
	inLog = waitForKey(t, topics.Snapshots, sarama.ReadUncommitted, idZ, 5*time.Second)
	t.Logf("open transaction (Z placed) is physically in the log: %v", inLog)

	// A second handler takes the partition over and restores it.
	h2 := fenceTestHandler(t, topics, group)
	p2, err := h2.newTxnProducer()
	if err != nil {
		t.Fatalf("second producer: %v", err)
	}
	defer func() { _ = p2.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	t0 := time.Now()
	all, err := h2.restore(ctx, p2, []int32{0})
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	restored := restoredOrders(t, all, 0)
	t.Logf("restore took %v (the open transaction's timeout is 2 s) and returned %v", time.Since(t0).Round(time.Millisecond), keys(restored))
	x := restored[idX]
	if x == nil || x.Order.Version != 1 || x.Order.Status != domain.StatusPending || len(x.Outcomes) != 1 {
		t.Errorf("restored X: %+v; want version 1, pending, one outcome", x)
	}
	if restored[idY] != nil {
		t.Errorf("restore returned Y, written only in an aborted transaction: %+v", restored[idY])
	}
	if restored[idZ] != nil {
		t.Errorf("restore returned Z, written only in a transaction left open: %+v", restored[idZ])
	}
	if len(restored) != 1 {
		t.Errorf("restore returned %d orders, want 1", len(restored))
	}
	// The silent producer cannot commit Z any more.
	if err := p1.Commit(); err == nil {
		t.Errorf("the producer committed its transaction after its timeout")
	} else {
		t.Logf("the silent producer's Commit: %v (fatal: %v)", err, p1.Fatal())
	}
	t.Logf("checked on the %s broker", testKafka)
}

// fenceTestTopics creates a fresh set of one-partition topics.
func fenceTestTopics(t *testing.T, prefix string) kafka.Topics {
	t.Helper()
	return testTopics(t, prefix, 1)
}

// testTopics creates a fresh set of topics of partitions partitions.
func testTopics(t *testing.T, prefix string, partitions int32) kafka.Topics {
	t.Helper()
	topics := kafka.NewTopics(prefix + strconv.FormatInt(time.Now().UnixNano(), 36))
	admin, err := sarama.NewClusterAdmin(testBrokers, kafka.Config("test-admin", 20*time.Millisecond))
	if err != nil {
		t.Fatalf("admin: %v", err)
	}
	defer admin.Close()
	// Apache Kafka may describe a topic it has just created as unknown for
	// a moment (its metadata propagates); EnsureTopics is an error to retry
	// then, as the gateway does at start.
	for attempt := 1; ; attempt++ {
		err := kafka.EnsureTopics(admin, topics, kafka.TopicSettings{Partitions: partitions, ReplicationFactor: 1})
		if err == nil {
			return topics
		}
		if attempt == 20 {
			t.Fatalf("topics: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// fenceTestHandler is a handler for the tests to run or to drive (its
// producer, restore and batches) directly.
func fenceTestHandler(t *testing.T, topics kafka.Topics, group string) *Handler {
	return fenceTestHandlerConfig(t, topics, group, func(*HandlerConfig) {})
}

func fenceTestHandlerConfig(t *testing.T, topics kafka.Topics, group string, change func(*HandlerConfig)) *Handler {
	t.Helper()
	cfg := HandlerConfig{
		Brokers: testBrokers, Topics: topics, Group: group, FetchWait: 20 * time.Millisecond, SessionTimeout: 6 * time.Second,
		Logger: slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	change(&cfg)
	h, err := NewHandler(cfg)
	if err != nil {
		t.Fatalf("handler: %v", err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func placeOrder(id string) domain.PlaceOrder {
	return domain.PlaceOrder{OrderID: id, CustomerID: "cust-fence", Currency: "EUR",
		Items: []domain.ItemInput{{SKU: "A", Name: "Apple", Quantity: 2, UnitPrice: "1.50"}}}
}

// commandMsg is cmd as the Bus writes it to the commands topic (partition 0),
// sent by staff.
func commandMsg(t *testing.T, topics kafka.Topics, cmd domain.Command, replyTo string) *sarama.ProducerMessage {
	t.Helper()
	typ, data, err := domain.MarshalCommand(cmd)
	if err != nil {
		t.Fatal(err)
	}
	env := envelope{CommandID: newID("cmd_"), Type: typ, OrderID: cmd.TargetOrderID(), IdempotencyKey: newID("key_"), Data: data}
	value, _ := json.Marshal(env)
	headers := []sarama.RecordHeader{
		{Key: []byte(HeaderCommandID), Value: []byte(env.CommandID)},
		{Key: []byte(HeaderIdempotencyKey), Value: []byte(env.IdempotencyKey)},
		{Key: []byte(HeaderPrincipal), Value: domain.MarshalPrincipal(domain.Principal{Role: domain.RoleStaff, Subject: "fence-test"})},
	}
	if replyTo != "" {
		headers = append(headers,
			sarama.RecordHeader{Key: []byte(HeaderReplyTo), Value: []byte(replyTo)},
			sarama.RecordHeader{Key: []byte(HeaderReplyPartition), Value: []byte("0")})
	}
	return &sarama.ProducerMessage{Topic: topics.Commands, Partition: 0, Key: sarama.StringEncoder(env.OrderID), Value: sarama.ByteEncoder(value), Headers: headers}
}

func placeOrderMsg(t *testing.T, topics kafka.Topics, id, replyTo string) *sarama.ProducerMessage {
	return commandMsg(t, topics, placeOrder(id), replyTo)
}

func encoded(t *testing.T, e sarama.Encoder) []byte {
	b, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func consumerHeaders(hs []sarama.RecordHeader) []*sarama.RecordHeader {
	out := make([]*sarama.RecordHeader, len(hs))
	for i := range hs {
		out[i] = &hs[i]
	}
	return out
}

// fenceProduceCommands writes msgs to partition 0 of the commands topic and
// reads them back, so the test holds the ConsumerMessages a handler would.
func fenceProduceCommands(t *testing.T, topics kafka.Topics, msgs ...*sarama.ProducerMessage) []*sarama.ConsumerMessage {
	t.Helper()
	sc := kafka.Config("test-commands", 20*time.Millisecond)
	sc.Producer.Return.Successes = true
	sc.Producer.Partitioner = sarama.NewManualPartitioner
	prod, err := sarama.NewSyncProducer(testBrokers, sc)
	if err != nil {
		t.Fatalf("producer: %v", err)
	}
	defer prod.Close()
	if err := prod.SendMessages(msgs); err != nil {
		t.Fatalf("send commands: %v", err)
	}
	c, err := sarama.NewConsumer(testBrokers, kafka.Config("test-commands", 20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pc, err := c.ConsumePartition(topics.Commands, 0, msgs[0].Offset)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var out []*sarama.ConsumerMessage
	timeout := time.After(10 * time.Second)
	for len(out) < len(msgs) {
		select {
		case m := <-pc.Messages():
			out = append(out, m)
		case err := <-pc.Errors():
			t.Fatalf("read commands: %v", err)
		case <-timeout:
			t.Fatalf("read back %d of %d commands", len(out), len(msgs))
		}
	}
	for i, m := range out {
		if string(m.Key) != string(encoded(t, msgs[i].Key)) {
			t.Fatalf("command %d read back has key %s", i, m.Key)
		}
	}
	return out
}

func readerConfig(iso sarama.IsolationLevel) *sarama.Config {
	sc := kafka.Config("test-reader", 20*time.Millisecond)
	sc.Consumer.IsolationLevel = iso
	return sc
}

// readPartition0 returns the records of partition 0 of topic visible at the
// isolation level, stopping once none has arrived for idle. It may run on
// another goroutine than the test's, so it reports failures with Errorf.
func readPartition0(t *testing.T, topic string, iso sarama.IsolationLevel, idle time.Duration) []*sarama.ConsumerMessage {
	t.Helper()
	return readPartition(t, topic, 0, iso, idle)
}

// readPartition reads partition p of topic at the isolation level until
// no record comes for idle.
func readPartition(t *testing.T, topic string, p int32, iso sarama.IsolationLevel, idle time.Duration) []*sarama.ConsumerMessage {
	t.Helper()
	c, err := sarama.NewConsumer(testBrokers, readerConfig(iso))
	if err != nil {
		t.Errorf("consumer: %v", err)
		return nil
	}
	defer c.Close()
	pc, err := c.ConsumePartition(topic, p, sarama.OffsetOldest)
	if err != nil {
		t.Errorf("consume %s/%d: %v", topic, p, err)
		return nil
	}
	defer pc.Close()
	var out []*sarama.ConsumerMessage
	for {
		select {
		case m := <-pc.Messages():
			out = append(out, m)
		case err := <-pc.Errors():
			t.Errorf("read %s/%d: %v", topic, p, err)
			return out
		case <-time.After(idle):
			return out
		}
	}
}

// waitForKey reports whether a record keyed key shows up in partition 0 of
// topic at the isolation level within timeout.
func waitForKey(t *testing.T, topic string, iso sarama.IsolationLevel, key string, timeout time.Duration) bool {
	t.Helper()
	c, err := sarama.NewConsumer(testBrokers, readerConfig(iso))
	if err != nil {
		t.Fatalf("consumer: %v", err)
	}
	defer c.Close()
	pc, err := c.ConsumePartition(topic, 0, sarama.OffsetOldest)
	if err != nil {
		t.Fatalf("consume %s/0: %v", topic, err)
	}
	defer pc.Close()
	deadline := time.After(timeout)
	for {
		select {
		case m := <-pc.Messages():
			if string(m.Key) == key {
				return true
			}
		case err := <-pc.Errors():
			t.Logf("read %s/0: %v", topic, err)
		case <-deadline:
			return false
		}
	}
}

// ordersOf counts records by the order they are about: the key on the
// events and snapshots topics, the reply's order id on the replies topic.
func ordersOf(t *testing.T, topics kafka.Topics, topic string, ms []*sarama.ConsumerMessage) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, m := range ms {
		id := string(m.Key)
		switch topic {
		case topics.Replies:
			var r Reply
			if err := json.Unmarshal(m.Value, &r); err != nil {
				t.Fatalf("reply at %d: %v", m.Offset, err)
			}
			id = r.OrderID
		case topics.Events:
			e, err := domain.UnmarshalEvent(m.Value)
			if err != nil {
				t.Fatalf("event at %d: %v", m.Offset, err)
			}
			if e.OrderID != id {
				t.Errorf("event at %d for order %s is keyed %s", m.Offset, e.OrderID, id)
			}
		}
		if strings.HasPrefix(id, markerPrefix) {
			id = "(restore marker)"
		}
		out[id]++
	}
	return out
}

// raceEnabled reports whether the test binary was built with -race.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestRestoreFencesADeadOwnersOpenTransaction: an owner killed between its
// transactional offset commit and the end of its transaction leaves the
// partition's snapshots (and events) behind an open transaction. The next
// owner's restore finds the dead owner's transactional id with the
// committed offsets and fences it, which aborts the transaction at once,
// instead of waiting for its timeout (here a minute) and the broker's
// check. The transaction left open is that of either of the owner's two
// transactional ids (the committer takes them in turn): both are fenced.
func TestRestoreFencesADeadOwnersOpenTransaction(t *testing.T) {
	for _, openOn := range []int{0, 1} {
		t.Run(fmt.Sprintf("open on producer %d", openOn), func(t *testing.T) { testRestoreFencesAnOpenTransaction(t, openOn) })
	}
}

// testRestoreFencesAnOpenTransaction: the dead owner commits with its
// producer 0, then leaves a transaction open on producer openOn.
func testRestoreFencesAnOpenTransaction(t *testing.T, openOn int) {
	topics := fenceTestTopics(t, fmt.Sprintf("fence%d", openOn))
	group := topics.Commands + ".group"
	dead := fenceTestHandlerConfig(t, topics, group, func(c *HandlerConfig) { c.TransactionTimeout = time.Minute })
	p0, err := dead.newTxnProducer()
	if err != nil {
		t.Fatalf("producer: %v", err)
	}
	defer func() { _ = p0.Close() }()
	p1 := p0
	if openOn == 1 {
		if p1, err = dead.newTxnProducerAt(1); err != nil {
			t.Fatalf("producer 1: %v", err)
		}
		defer func() { _ = p1.Close() }()
	}

	idX, idZ := newID("ord_X_"), newID("ord_Z_")
	msg := func(offset int64, cmd domain.Command) *sarama.ConsumerMessage {
		m := commandMsg(t, topics, cmd, "")
		return &sarama.ConsumerMessage{Topic: topics.Commands, Partition: 0, Offset: offset, Key: []byte(cmd.TargetOrderID()),
			Value: encoded(t, m.Value), Headers: consumerHeaders(m.Headers)}
	}
	// A transaction with the records of batch and the offset after last, as
	// the dead owner commits them (its group is empty by now, so without a
	// generation).
	begin := func(p *txnProducer, batch *sarama.ConsumerMessage, states partitionStates) {
		d, err := dead.decideBatch(states, []*sarama.ConsumerMessage{batch})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Begin(); err != nil {
			t.Fatal(err)
		}
		if err := p.Send(d.records); err != nil {
			t.Fatal(err)
		}
		if err := p.SendOffsets([]*sarama.ConsumerMessage{batch}, sarama.NewConsumerGroupMetadata(group), &p.id); err != nil {
			t.Fatalf("offset commit: %v", err)
		}
	}
	begin(p0, msg(0, placeOrder(idX)), partitionStates{})
	if err := p0.Commit(); err != nil {
		t.Fatalf("commit X: %v", err)
	}
	begin(p1, msg(1, placeOrder(idZ)), partitionStates{})
	inLog := waitForKey(t, topics.Snapshots, sarama.ReadUncommitted, idZ, 5*time.Second)
	t.Logf("the dead owner's open transaction (Z placed, offset committed) is physically in the log: %v", inLog)

	next := fenceTestHandler(t, topics, group)
	p2, err := next.newTxnProducer()
	if err != nil {
		t.Fatalf("second producer: %v", err)
	}
	defer func() { _ = p2.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	t0 := time.Now()
	all, err := next.restore(ctx, p2, []int32{0})
	took := time.Since(t0)
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	restored := restoredOrders(t, all, 0)
	if x := restored[idX]; x == nil || x.Order.Version != 1 {
		t.Errorf("restored X: %+v", x)
	}
	if restored[idZ] != nil {
		t.Errorf("restore returned Z, written only in the dead owner's open transaction")
	}
	if took > 30*time.Second {
		t.Errorf("restore took %s: it waited for the open transaction's timeout (1 min) instead of fencing it", took)
	}
	if err := p1.Commit(); err == nil {
		t.Errorf("the dead owner committed its transaction after it was fenced")
	}
	t.Logf("restore took %s (the open transaction's timeout: 1 min) on the %s broker", took.Round(time.Millisecond), testKafka)
}

func TestCommitterIDs(t *testing.T) {
	for _, tc := range []struct {
		id, base string
		ids      []string
	}{
		{"c.handler.abc-0", "c.handler.abc", []string{"c.handler.abc-0", "c.handler.abc-1"}},
		{"c.handler.abc-1", "c.handler.abc", []string{"c.handler.abc-0", "c.handler.abc-1"}},
		{"c.handler.abc", "c.handler.abc", []string{"c.handler.abc"}}, // a committer of one id (before 2026-12-07)
		{"", "", []string{""}},
	} {
		ids, base := committerIDs(tc.id)
		if base != tc.base || !slices.Equal(ids, tc.ids) {
			t.Errorf("committerIDs(%q) = %q, %q; want %q, %q", tc.id, ids, base, tc.ids, tc.base)
		}
	}
	if ids := txnIDs("b"); ids != [2]string{"b-0", "b-1"} {
		t.Errorf("txnIDs: %q", ids)
	}
}

// TestCommitterTakesItsTransactionalIDsInTurn: consecutive transactions of
// a session commit with the instance's two transactional ids in turn (the
// ids recorded with the offsets they commit), so that a transaction never
// waits for the markers of the one just before it.
func TestCommitterTakesItsTransactionalIDsInTurn(t *testing.T) {
	topics := fenceTestTopics(t, "turns")
	bus := testBus(t, topics)
	h, _, _ := runHandler(t, topics, t.TempDir(), 100)
	committer := func(after string) string {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			id, err := h.lastCommitter(0)
			if err == nil && id != after && id != "" {
				return id
			}
			if time.Now().After(deadline) {
				t.Fatalf("the committed offset's transactional id is still %q (%v)", id, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	var ids []string
	prev := ""
	for i := range 4 {
		mustSend(t, bus, placeOrder(fmt.Sprintf("ord_turn_%d", i)), 1)
		prev = committer(prev)
		ids = append(ids, prev)
	}
	want := txnIDs(h.txnID)
	if ids[0] != ids[2] || ids[1] != ids[3] || !slices.Contains(want[:], ids[0]) || !slices.Contains(want[:], ids[1]) {
		t.Fatalf("transactional ids of four transactions in a row: %q; want %q in turn", ids, want)
	}
}
