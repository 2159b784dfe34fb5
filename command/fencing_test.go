package command

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/kafka"
)

// TestZombieHandlerIsFenced: two handler instances that both believe they own
// a partition. The zombie began its transaction first; the owner then
// created its transactional producer (same transactional id, so its
// InitProducerID bumps the epoch) and committed. The zombie cannot commit,
// neither by finishing its open transaction nor by the retries commitBatch
// makes; its records are invisible to read_committed readers, the group's
// committed offset is the owner's, and the owner keeps committing after the
// zombie's retries (the zombie did not fence it back).
func TestZombieHandlerIsFenced(t *testing.T) {
	topics := fenceTestTopics(t, "zombie")
	group := topics.Commands + ".group"
	const replyTo = "gw_fencetest"
	start := time.Now()

	// Three commands on the commands topic (partition 0): A is the zombie's
	// batch, B and C are the owner's first and second batch.
	idA, idB, idC := newID("ord_zombieA_"), newID("ord_ownerB_"), newID("ord_ownerC_")
	cmds := fenceProduceCommands(t, topics,
		placeOrderMsg(t, topics, idA, replyTo), placeOrderMsg(t, topics, idB, replyTo), placeOrderMsg(t, topics, idC, replyTo))
	cmdA, cmdB, cmdC := cmds[0], cmds[1], cmds[2]

	h1 := fenceTestHandler(t, topics, group) // the zombie's instance
	h2 := fenceTestHandler(t, topics, group) // the new owner's instance
	meta := sarama.NewConsumerGroupMetadata(group)

	// 1. The zombie begins its transaction and writes the events of its batch.
	zombie, err := h1.newTxnProducer(0)
	if err != nil {
		t.Fatalf("zombie producer: %v", err)
	}
	defer func() { _ = zombie.Close() }() // fails for a fenced producer; that is fine
	zombieMsgs, _, dead, _ := h1.decideBatch(0, map[string]*orderState{}, []*sarama.ConsumerMessage{cmdA})
	if dead != 0 {
		t.Fatalf("zombie batch: %d commands dead-lettered", dead)
	}
	var zombieEvents, zombieRest []*sarama.ProducerMessage
	for _, m := range zombieMsgs {
		if m.Topic == topics.Events {
			zombieEvents = append(zombieEvents, m)
		} else {
			zombieRest = append(zombieRest, m)
		}
	}
	if len(zombieEvents) != 1 || len(zombieRest) != 2 {
		t.Fatalf("zombie batch: %d events and %d other messages, want 1 event, a snapshot and a reply", len(zombieEvents), len(zombieRest))
	}
	if err := zombie.BeginTxn(); err != nil {
		t.Fatalf("zombie BeginTxn: %v", err)
	}
	// The zombie writes its event now and the rest of its batch (snapshot,
	// reply) after it was fenced, like a handler fenced in mid-batch. Under
	// the race detector it writes the whole batch now: a produce failing
	// with PRODUCER_FENCED trips a data race inside sarama (v1.61.1,
	// transactionManager.publishTxnPartitions reads lastError without
	// statusLock while maybeTransitionToErrorState writes it).
	sendAfterFence := zombieRest
	if raceEnabled() {
		zombieEvents, sendAfterFence = zombieMsgs, nil
		t.Logf("race detector on: the zombie writes its whole batch before it is fenced")
	}
	for _, m := range zombieEvents {
		zombie.Input() <- m
	}
	// Wait until the zombie's event is physically in the log, so that what
	// follows fences a transaction that really has written records.
	zombieWritten := waitForKey(t, topics.Events, sarama.ReadUncommitted, idA, 5*time.Second)
	if sendAfterFence == nil {
		zombieWritten = waitForKey(t, topics.Snapshots, sarama.ReadUncommitted, idA, 5*time.Second) &&
			waitForKey(t, topics.Replies, sarama.ReadUncommitted, replyTo, 5*time.Second) && zombieWritten
	}
	t.Logf("zombie: transaction open, %d records written to the log (visible to read_uncommitted): %v", len(zombieEvents), zombieWritten)

	// 2. The owner creates its producer for the same partition (this fences
	// the zombie) and commits its batch with the consumer offset.
	t0 := time.Now()
	owner, err := h2.newTxnProducer(0)
	if err != nil {
		t.Fatalf("owner producer: %v", err)
	}
	defer func() { _ = owner.Close() }()
	t.Logf("owner: transactional producer initialised in %v", time.Since(t0).Round(time.Millisecond))
	ownerMsgs, _, _, _ := h2.decideBatch(0, map[string]*orderState{}, []*sarama.ConsumerMessage{cmdB})
	if err := owner.runTxn(ownerMsgs, cmdB, meta); err != nil {
		t.Fatalf("owner's transaction (order %s, offset %d): %v", idB, cmdB.Offset, err)
	}
	t.Logf("owner: committed order %s and offset %d", idB, cmdB.Offset+1)

	// 3. The zombie finishes its batch as runTxn would: the rest of its
	// messages, its consumer offset, commit. The commit must fail.
	for _, m := range sendAfterFence {
		zombie.Input() <- m
	}
	addErr := zombie.AddMessageToTxnWithGroupMetadata(cmdA, meta, nil)
	commitErr := zombie.CommitTxn()
	status := zombie.TxnStatus()
	zombie.mu.Lock()
	produceErr := zombie.lastErr
	zombie.mu.Unlock()
	t.Logf("zombie: AddMessageToTxn error: %v", addErr)
	t.Logf("zombie: CommitTxn error: %v", commitErr)
	t.Logf("zombie: last produce error: %v; transaction status: %s", produceErr, status)
	if commitErr == nil {
		t.Fatalf("the zombie committed its transaction after the owner fenced it")
	}
	fenced := func(err error) bool {
		return errors.Is(err, sarama.ErrProducerFenced) || errors.Is(err, sarama.ErrInvalidProducerEpoch)
	}
	t.Logf("zombie: commit error is ErrProducerFenced: %v, ErrInvalidProducerEpoch: %v (sarama prints code 90, PRODUCER_FENCED, as \"Unknown error\")",
		errors.Is(commitErr, sarama.ErrProducerFenced), errors.Is(commitErr, sarama.ErrInvalidProducerEpoch))
	if status&sarama.ProducerTxnFlagFatalError == 0 && !fenced(commitErr) && !fenced(addErr) && !fenced(produceErr) {
		t.Errorf("the zombie's commit failed, but not for being fenced: commit %v, add offsets %v, produce %v, status %s",
			commitErr, addErr, produceErr, status)
	}

	// The handler's own recovery path: runTxn aborts an abortable failure and
	// commitBatch retries. None of that may let the zombie commit, nor fence
	// the owner back (a producer that re-initialises its epoch would).
	if status&sarama.ProducerTxnFlagAbortableError != 0 {
		t.Logf("zombie: the failure is abortable; AbortTxn: %v; status now %s", zombie.AbortTxn(), zombie.TxnStatus())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	zombieStates := map[string]*orderState{}
	retryErr := h1.commitBatch(ctx, zombie, 0, meta, zombieStates, []*sarama.ConsumerMessage{cmdA})
	t.Logf("zombie: commitBatch (with its retries): %v; status %s", retryErr, zombie.TxnStatus())
	if retryErr == nil {
		t.Fatalf("the zombie committed order %s through commitBatch's retries", idA)
	}
	if len(zombieStates) != 0 {
		t.Errorf("a failed commitBatch changed the zombie's states: %v", zombieStates)
	}
	if zombie.TxnStatus()&sarama.ProducerTxnFlagFatalError == 0 {
		t.Errorf("after being fenced the zombie's producer is not in a fatal state (%s): commitBatch would keep retrying and ConsumeClaim would not stop", zombie.TxnStatus())
	}

	// The owner is still the owner: its next batch commits.
	ownerMsgs, _, _, _ = h2.decideBatch(0, map[string]*orderState{}, []*sarama.ConsumerMessage{cmdC})
	if err := owner.runTxn(ownerMsgs, cmdC, meta); err != nil {
		t.Fatalf("owner's second transaction, after the zombie's attempts: %v", err)
	}

	// 4. read_committed readers see the owner's records and none of the zombie's.
	// The topics are read concurrently: each read ends only after a second
	// of quiet.
	read := map[string][]*sarama.ConsumerMessage{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, topic := range []string{topics.Events, topics.Snapshots, topics.Replies, "uncommitted"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ms []*sarama.ConsumerMessage
			if topic == "uncommitted" {
				ms = readPartition0(t, topics.Events, sarama.ReadUncommitted, time.Second)
			} else {
				ms = readPartition0(t, topic, sarama.ReadCommitted, time.Second)
			}
			mu.Lock()
			read[topic] = ms
			mu.Unlock()
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for _, topic := range []string{topics.Events, topics.Snapshots, topics.Replies} {
		committed := read[topic]
		byOrder := ordersOf(t, topics, topic, committed)
		t.Logf("%s, read_committed: %d records, by order %v", topic, len(committed), byOrder)
		if byOrder[idA] != 0 {
			t.Errorf("%s: read_committed reader sees %d records of the zombie's order %s", topic, byOrder[idA], idA)
		}
		if byOrder[idB] != 1 || byOrder[idC] != 1 {
			t.Errorf("%s: read_committed reader sees %d records of order %s and %d of %s, want 1 each", topic, byOrder[idB], idB, byOrder[idC], idC)
		}
	}
	uncommitted := read["uncommitted"]
	raw := ordersOf(t, topics, topics.Events, uncommitted)
	t.Logf("%s, read_uncommitted: %d records, by order %v (the zombie's aborted event is physically in the log: %v)",
		topics.Events, len(uncommitted), raw, raw[idA] > 0)

	// 5. The group's committed offset is the owner's.
	admin, err := sarama.NewClusterAdmin(testBrokers, kafka.Config("test-admin", 20*time.Millisecond))
	if err != nil {
		t.Fatalf("admin: %v", err)
	}
	defer admin.Close()
	offs, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topics.Commands: {0}})
	if err != nil {
		t.Fatalf("list offsets of group %s: %v", group, err)
	}
	blk := offs.GetBlock(topics.Commands, 0)
	if blk == nil || blk.Err != sarama.ErrNoError {
		t.Fatalf("committed offset of %s/0: %+v", topics.Commands, blk)
	}
	t.Logf("group %s: committed offset of %s/0 is %d (zombie would have committed %d, owner %d)",
		group, topics.Commands, blk.Offset, cmdA.Offset+1, cmdC.Offset+1)
	if blk.Offset != cmdC.Offset+1 {
		t.Errorf("committed offset of %s/0 is %d, want the owner's %d", topics.Commands, blk.Offset, cmdC.Offset+1)
	}

	// A later owner restores the owner's orders and not the zombie's.
	h3 := fenceTestHandler(t, topics, group)
	next, err := h3.newTxnProducer(0)
	if err != nil {
		t.Fatalf("next owner producer: %v", err)
	}
	defer func() { _ = next.Close() }()
	states, err := h3.restore(ctx, next, 0)
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	if states[idA] != nil || states[idB] == nil || states[idC] == nil {
		t.Errorf("restored orders: %v; want %s and %s, not %s", keys(states), idB, idC, idA)
	}
	t.Logf("checked on the %s broker in %v: zombie's commit failed (%v); committed topics hold only the owner's orders; restore returned %v",
		testKafka, time.Since(start).Round(time.Millisecond), commitErr, keys(states))
}

// TestRestoreReadsCommittedSnapshots: restore returns the snapshots of
// committed transactions, and neither those of an aborted transaction nor
// those of a transaction left open by a producer the restorer fences.
func TestRestoreReadsCommittedSnapshots(t *testing.T) {
	topics := fenceTestTopics(t, "restore")
	group := topics.Commands + ".group"
	h1 := fenceTestHandler(t, topics, group)
	p1, err := h1.newTxnProducer(0)
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

	// Committed: X placed (version 1).
	msgs, states, _, _ := h1.decideBatch(0, map[string]*orderState{}, []*sarama.ConsumerMessage{msg(0, placeOrder(idX))})
	if err := p1.runTxn(msgs, nil, nil); err != nil {
		t.Fatalf("commit X: %v", err)
	}
	// Aborted: X confirmed (version 2) and Y placed.
	msgs, _, _, _ = h1.decideBatch(0, states, []*sarama.ConsumerMessage{msg(1, domain.ConfirmOrder{OrderID: idX}), msg(2, placeOrder(idY))})
	if err := p1.BeginTxn(); err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		p1.Input() <- m
	}
	inLog := waitForKey(t, topics.Snapshots, sarama.ReadUncommitted, idY, 5*time.Second)
	if err := p1.AbortTxn(); err != nil {
		t.Fatalf("abort: %v", err)
	}
	t.Logf("aborted transaction (X at version 2, Y placed) was physically in the log: %v", inLog)
	// Left open, then fenced: Z placed.
	msgs, _, _, _ = h1.decideBatch(0, states, []*sarama.ConsumerMessage{msg(3, placeOrder(idZ))})
	if err := p1.BeginTxn(); err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		p1.Input() <- m
	}
	inLog = waitForKey(t, topics.Snapshots, sarama.ReadUncommitted, idZ, 5*time.Second)
	t.Logf("open transaction (Z placed) is physically in the log: %v", inLog)

	// A second handler takes the partition over and restores it.
	h2 := fenceTestHandler(t, topics, group)
	p2, err := h2.newTxnProducer(0)
	if err != nil {
		t.Fatalf("second producer: %v", err)
	}
	defer func() { _ = p2.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	t0 := time.Now()
	restored, err := h2.restore(ctx, p2, 0)
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	t.Logf("restore took %v and returned %v", time.Since(t0).Round(time.Millisecond), keys(restored))
	x := restored[idX]
	if x == nil || x.Order.Version != 1 || x.Order.Status != domain.StatusPending || len(x.Outcomes) != 1 {
		t.Errorf("restored X: %+v; want version 1, pending, one outcome", x)
	}
	if restored[idY] != nil {
		t.Errorf("restore returned Y, written only in an aborted transaction: %+v", restored[idY])
	}
	if restored[idZ] != nil {
		t.Errorf("restore returned Z, written only in a fenced open transaction: %+v", restored[idZ])
	}
	if len(restored) != 1 {
		t.Errorf("restore returned %d orders, want 1", len(restored))
	}
	// The fenced producer cannot commit Z any more.
	if err := p1.CommitTxn(); err == nil {
		t.Errorf("the fenced producer committed its open transaction")
	} else {
		t.Logf("fenced producer's CommitTxn: %v (status %s)", err, p1.TxnStatus())
	}
	t.Logf("checked on the %s broker", testKafka)
}

// fenceTestTopics creates a fresh set of one-partition topics.
func fenceTestTopics(t *testing.T, prefix string) kafka.Topics {
	t.Helper()
	topics := kafka.NewTopics(prefix + strconv.FormatInt(time.Now().UnixNano(), 36))
	admin, err := sarama.NewClusterAdmin(testBrokers, kafka.Config("test-admin", 20*time.Millisecond))
	if err != nil {
		t.Fatalf("admin: %v", err)
	}
	defer admin.Close()
	if err := kafka.EnsureTopics(admin, topics, kafka.TopicSettings{Partitions: 1, ReplicationFactor: 1}); err != nil {
		t.Fatalf("topics: %v", err)
	}
	return topics
}

// fenceTestHandler is a handler that is never Run: the tests drive its
// producer, restore and batches directly.
func fenceTestHandler(t *testing.T, topics kafka.Topics, group string) *Handler {
	t.Helper()
	h, err := NewHandler(HandlerConfig{
		Brokers: testBrokers, Topics: topics, Group: group, FetchWait: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
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

// commandMsg is cmd as the Bus writes it to the commands topic (partition 0).
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
	c, err := sarama.NewConsumer(testBrokers, readerConfig(iso))
	if err != nil {
		t.Errorf("consumer: %v", err)
		return nil
	}
	defer c.Close()
	pc, err := c.ConsumePartition(topic, 0, sarama.OffsetOldest)
	if err != nil {
		t.Errorf("consume %s/0: %v", topic, err)
		return nil
	}
	defer pc.Close()
	var out []*sarama.ConsumerMessage
	for {
		select {
		case m := <-pc.Messages():
			out = append(out, m)
		case err := <-pc.Errors():
			t.Errorf("read %s/0: %v", topic, err)
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
