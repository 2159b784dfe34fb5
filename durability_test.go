package main

import (
	"github.com/ordergateway/gateway/app"

	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/embedded"
	"github.com/ordergateway/gateway/kafka"
	"github.com/ordergateway/gateway/kafka/kafkatest"
	"github.com/ordergateway/gateway/view"
)

// readTopic returns every committed record of topic, partition by partition.
// It stops once no record has arrived for idle: with read_committed a
// consumer cannot see where the transaction markers end, so quiet is the
// only honest end.
func readTopic(t testing.TB, topic string, idle time.Duration) []*sarama.ConsumerMessage {
	t.Helper()
	sc := kafka.Config("test-reader", 20*time.Millisecond)
	c, err := sarama.NewConsumer(testBrokers, sc)
	if err != nil {
		t.Fatalf("consumer: %v", err)
	}
	defer c.Close()
	parts, err := c.Partitions(topic)
	if err != nil {
		t.Fatalf("partitions of %s: %v", topic, err)
	}
	var (
		mu  sync.Mutex
		out []*sarama.ConsumerMessage
		wg  sync.WaitGroup
	)
	for _, p := range parts {
		pc, err := c.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			t.Fatalf("consume %s/%d: %v", topic, p, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer pc.Close()
			for {
				select {
				case m := <-pc.Messages():
					mu.Lock()
					out = append(out, m)
					mu.Unlock()
				case <-time.After(idle):
					return
				}
			}
		}()
	}
	wg.Wait()
	return out
}

// eventsByOrder decodes the events topic and groups it by order.
func eventsByOrder(t testing.TB, topics kafka.Topics) map[string][]domain.Event {
	t.Helper()
	out := map[string][]domain.Event{}
	for _, m := range readTopic(t, topics.Events, time.Second) {
		if kafka.IsMarker(m.Key) {
			continue
		}
		e, err := domain.UnmarshalEvent(m.Value)
		if err != nil {
			t.Fatalf("events topic holds an undecodable record at %d/%d: %v", m.Partition, m.Offset, err)
		}
		out[e.OrderID] = append(out[e.OrderID], e)
	}
	return out
}

// checkExactlyOnce asserts that each order's events are versions 1..n, each
// once, and that n is the version the caller last saw.
func checkExactlyOnce(t testing.TB, events map[string][]domain.Event, want map[string]int) {
	t.Helper()
	for id, v := range want {
		es := events[id]
		if len(es) != v {
			t.Errorf("order %s: %d events in the log, want %d", id, len(es), v)
			continue
		}
		for i, e := range es {
			if e.Version != i+1 {
				t.Errorf("order %s: event %d has version %d", id, i, e.Version)
			}
		}
	}
}

// TestRestartKeepsOrders stops a gateway and starts another on the same
// topics and database: orders are all there, the handler's state is restored
// (versions continue) and a retried pre-restart mutation is still recognised.
func TestRestartKeepsOrders(t *testing.T) {
	cfg := testConfig(t)
	g := startGateway(t, cfg)
	versions := map[string]int{}
	var ids []string
	for i := range 6 {
		in := placeInput(fmt.Sprintf("cust-restart-%d", i%2), item("A", 1, "1"))
		in["idempotencyKey"] = "place-" + strconv.Itoa(i)
		o := g.mustMutate(t, "placeOrder", in)
		ids = append(ids, o.ID)
		versions[o.ID] = 1
		if i%2 == 0 {
			versions[o.ID] = g.mustMutate(t, "confirmOrder", map[string]any{"orderId": o.ID}).Version
		}
	}
	g.stop()

	g2 := startGateway(t, cfg)
	for i, id := range ids {
		if v := g2.orderAt(t, id, consistencyTokenFor(id, versions[id])); v == nil || v.Version != versions[id] {
			t.Fatalf("order %s after restart: %+v", id, v)
		}
		// A retry of the first placeOrder returns the recorded outcome.
		in := placeInput(fmt.Sprintf("cust-restart-%d", i%2), item("A", 1, "1"))
		in["idempotencyKey"] = "place-" + strconv.Itoa(i)
		if p := g2.mutate(t, "placeOrder", in); len(p.UserErrors) != 0 || p.Order.ID != id || *p.Version != 1 {
			t.Fatalf("retried placeOrder after restart: %+v", p)
		}
		// New commands continue from the restored version.
		name, input := "confirmOrder", map[string]any{"orderId": id, "expectedVersion": versions[id]}
		if versions[id] == 2 {
			name, input = "shipOrder", map[string]any{"orderId": id, "trackingNumber": "T", "expectedVersion": 2}
		}
		o := g2.mustMutate(t, name, input)
		if o.Version != versions[id]+1 {
			t.Fatalf("%s after restart: version %d, want %d", name, o.Version, versions[id]+1)
		}
		versions[id]++
	}
	checkExactlyOnce(t, eventsByOrder(t, kafka.NewTopics(cfg.TopicPrefix)), versions)
	t.Logf("checked %d orders across a restart, and their events in the log", len(ids))
}

// TestEmbeddedDataSurvivesRestart runs the gateway with its own embedded
// broker and store on a data folder, stops it, and starts it again.
func TestEmbeddedDataSurvivesRestart(t *testing.T) {
	cfg := testConfig(t)
	cfg.KafkaBrokers, cfg.MongoURI = nil, "" // embedded, under cfg.DataDir
	g := startGateway(t, cfg)
	o := g.mustMutate(t, "placeOrder", placeInput("cust-embedded", item("A", 2, "3.50")))
	p := g.mutate(t, "confirmOrder", map[string]any{"orderId": o.ID})
	g.orderAt(t, o.ID, *p.ConsistencyToken)
	g.stop()

	g2 := startGateway(t, cfg)
	if v := g2.orderAt(t, o.ID, ""); v == nil || v.Status != "CONFIRMED" || v.Version != 2 {
		t.Fatalf("order after restart of the embedded stack: %+v", v)
	}
	if s := g2.mustMutate(t, "shipOrder", map[string]any{"orderId": o.ID, "trackingNumber": "T"}); s.Version != 3 {
		t.Fatalf("ship after restart: version %d, want 3", s.Version)
	}
}

// TestEmbeddedDataFolderIsLocked: a second gateway on the data folder of a
// running embedded stack refuses to start, saying why, and the first one
// keeps working.
func TestEmbeddedDataFolderIsLocked(t *testing.T) {
	cfg := testConfig(t)
	cfg.KafkaBrokers, cfg.MongoURI = nil, "" // embedded, under cfg.DataDir
	g := startGateway(t, cfg)

	second := &app.Main{Config: cfg, Logger: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := second.Run(ctx)
	second.Close()
	if !errors.Is(err, embedded.ErrDataDirInUse) || !strings.Contains(err.Error(), cfg.DataDir) {
		t.Fatalf("second gateway on %s: err = %v, want ErrDataDirInUse naming the folder", cfg.DataDir, err)
	}
	if o := g.mustMutate(t, "placeOrder", placeInput("cust-locked", item("A", 1, "1.00"))); o.Version != 1 {
		t.Fatalf("first gateway after the refused start: version %d", o.Version)
	}
}

// TestTwoInstances runs two gateways on one broker and store, one in this
// process and one as a separate process: commands sent to either are each
// handled exactly once, and each outcome reaches the instance that waits
// for it.
func TestTwoInstances(t *testing.T) {
	cfg := testConfig(t)
	a := startGateway(t, cfg)
	b := startGatewayProcess(t, cfg)
	gws := []*gateway{a, b}
	const orders = 24
	ids := make([]string, orders)
	var wg sync.WaitGroup
	errs := make(chan error, orders)
	for i := range orders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := gws[i%2]
			p := g.mutate(t, "placeOrder", placeInput("cust-two", item("A", 1, "1")))
			if len(p.UserErrors) > 0 || p.Order == nil {
				errs <- fmt.Errorf("place via %d: %+v", i%2, p.UserErrors)
				return
			}
			ids[i] = p.Order.ID
			// Confirm through the other instance.
			c := gws[(i+1)%2].mutate(t, "confirmOrder", map[string]any{"orderId": p.Order.ID, "expectedVersion": 1})
			if len(c.UserErrors) > 0 || *c.Version != 2 {
				errs <- fmt.Errorf("confirm via %d: %+v", (i+1)%2, c)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	want := map[string]int{}
	for _, id := range ids {
		want[id] = 2
	}
	checkExactlyOnce(t, eventsByOrder(t, kafka.NewTopics(cfg.TopicPrefix)), want)
	var list struct{ Orders struct{ TotalCount int } }
	for _, id := range ids {
		b.orderAt(t, id, consistencyTokenFor(id, 2))
	}
	a.data(t, `{ orders(filter: {customerId: "cust-two", status: [CONFIRMED]}) { totalCount } }`, nil, &list)
	if list.Orders.TotalCount != orders {
		t.Fatalf("views hold %d confirmed orders, want %d", list.Orders.TotalCount, orders)
	}
	t.Logf("checked %d orders placed and confirmed across two instances, %d events", orders, 2*orders)
}

// TestDeadLetters writes malformed commands and events straight to the
// topics: each lands in the dead-letter topic with its error and origin, and
// the partitions keep flowing.
func TestDeadLetters(t *testing.T) {
	cfg := testConfig(t)
	g := startGateway(t, cfg)
	// The handler restores its partitions first: a restore that met the
	// poison event (no snapshots yet, so it rebuilds from the events) would
	// refuse its newer schema version rather than skip it.
	waitReady(t, g)
	topics := kafka.NewTopics(cfg.TopicPrefix)
	sc := kafka.Config("test-poison", 20*time.Millisecond)
	sc.Producer.Return.Successes = true
	prod, err := sarama.NewSyncProducer(testBrokers, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	future, _ := json.Marshal(map[string]any{"orderId": "o-future", "version": 1, "type": "OrderPlaced", "schemaVersion": 99, "data": map[string]any{}})
	poison := []*sarama.ProducerMessage{
		{Topic: topics.Commands, Key: sarama.StringEncoder("o-junk"), Value: sarama.StringEncoder("not json")},
		{Topic: topics.Commands, Key: sarama.StringEncoder("o-moon"), Value: sarama.StringEncoder(`{"commandId":"c1","type":"FlyToMoon","orderId":"o-moon","data":{}}`)},
		{Topic: topics.Events, Key: sarama.StringEncoder("o-junk"), Value: sarama.StringEncoder("{garbage")},
		{Topic: topics.Events, Key: sarama.StringEncoder("o-future"), Value: sarama.ByteEncoder(future)},
	}
	if err := prod.SendMessages(poison); err != nil {
		t.Fatal(err)
	}
	// The pipeline keeps flowing on every partition.
	for i := range 6 {
		o := g.mustMutate(t, "placeOrder", placeInput("cust-dlq", item(strconv.Itoa(i), 1, "1")))
		c := g.mutate(t, "confirmOrder", map[string]any{"orderId": o.ID})
		g.orderAt(t, o.ID, *c.ConsistencyToken)
	}
	dead := readTopic(t, topics.DeadLetter, time.Second)
	if len(dead) != len(poison) {
		t.Fatalf("dead-letter topic holds %d records, want %d", len(dead), len(poison))
	}
	sources := map[string]int{}
	for _, m := range dead {
		reason, src := kafka.Header(m, kafka.HeaderDLError), kafka.Header(m, kafka.HeaderDLTopic)
		if reason == "" || kafka.Header(m, kafka.HeaderDLPartition) == "" || kafka.Header(m, kafka.HeaderDLOffset) == "" || kafka.Header(m, kafka.HeaderDLReason) == "" {
			t.Errorf("dead letter %s lacks its headers: %v", m.Key, m.Headers)
		}
		sources[src]++
		t.Logf("dead letter from %s: key %s: %s", src, m.Key, reason)
	}
	if sources[topics.Commands] != 2 || sources[topics.Events] != 2 {
		t.Fatalf("dead letters by source: %v", sources)
	}
	resp, err := http.Get(g.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`order_gateway_dead_letters_total{source="commands"} 2`, `order_gateway_dead_letters_total{source="events"} 2`} {
		if !strings.Contains(string(metrics), want) {
			t.Fatalf("/metrics lacks %q:\n%s", want, metrics)
		}
	}
}

// TestIdempotentMutations: a retried mutation returns the first outcome and
// appends nothing; the same key with another request is rejected.
func TestIdempotentMutations(t *testing.T) {
	cfg := testConfig(t)
	g := startGateway(t, cfg)
	in := placeInput("cust-idem", item("A", 1, "1"))
	in["idempotencyKey"] = "order-1"
	first := g.mutate(t, "placeOrder", in)
	again := g.mutate(t, "placeOrder", in)
	if first.Order == nil || again.Order == nil || first.Order.ID != again.Order.ID || *again.Version != 1 || len(again.UserErrors) != 0 {
		t.Fatalf("retried placeOrder: first %+v, again %+v", first, again)
	}
	id := first.Order.ID
	confirm := map[string]any{"orderId": id, "idempotencyKey": "confirm-1"}
	c1 := g.mutate(t, "confirmOrder", confirm)
	c2 := g.mutate(t, "confirmOrder", confirm)
	if *c1.Version != 2 || *c2.Version != 2 || len(c2.UserErrors) != 0 {
		t.Fatalf("retried confirm: %+v then %+v", c1, c2)
	}
	// A rejected command is recorded too: its retry gets the same rejection.
	ship := map[string]any{"orderId": id, "trackingNumber": "T", "expectedVersion": 1, "idempotencyKey": "ship-1"}
	s1, s2 := g.mutate(t, "shipOrder", ship), g.mutate(t, "shipOrder", ship)
	if len(s1.UserErrors) != 1 || s1.UserErrors[0].Code != "VERSION_CONFLICT" || !equalJSON(t, s1.UserErrors, s2.UserErrors) {
		t.Fatalf("retried rejected ship: %+v then %+v", s1.UserErrors, s2.UserErrors)
	}
	in["items"] = []map[string]any{item("B", 5, "2")}
	reused := g.mutate(t, "placeOrder", in)
	if len(reused.UserErrors) != 1 || reused.UserErrors[0].Code != "IDEMPOTENCY_KEY_REUSED" {
		t.Fatalf("placeOrder with a reused key and another payload: %+v", reused.UserErrors)
	}
	confirm["expectedVersion"] = 2
	if r := g.mutate(t, "confirmOrder", confirm); len(r.UserErrors) != 1 || r.UserErrors[0].Code != "IDEMPOTENCY_KEY_REUSED" {
		t.Fatalf("confirm with a reused key and another payload: %+v", r.UserErrors)
	}
	checkExactlyOnce(t, eventsByOrder(t, kafka.NewTopics(cfg.TopicPrefix)), map[string]int{id: 2})
}

// TestRetriedBatchStillReportsTheStatusLeft: when the projector writes a
// batch again that it had already written in part (the view written, then
// the publish or the offset commit failed, or the process died), the change
// it publishes still carries the status the order had before the batch, so
// a subscriber filtering on that status learns that the order left it.
// The partial write is made by writing the view ahead of the projector.
func TestRetriedBatchStillReportsTheStatusLeft(t *testing.T) {
	cfg := testConfig(t)
	first := startGateway(t, cfg)
	id := fmt.Sprintf("left-%d", time.Now().UnixNano())
	placed := first.mutate(t, "placeOrder", map[string]any{"orderId": id, "customerId": "cust-left", "currencyCode": "USD", "items": []any{item("X", 1, "2")}})
	if first.orderAt(t, id, *placed.ConsistencyToken) == nil {
		t.Fatal("placed order not in the views")
	}
	first.stop()

	// No projector runs: the confirmation's event waits in the events topic.
	handling := startMain(t, &app.Main{Config: cfg, WithoutProjector: true})
	f := dialWS(t, handling, wsDial{})
	f.subscribe(t, "f", `subscription { ordersUpdated(customerId: "cust-left", status: [PENDING]) { id status version } }`, nil)
	waitForSubs(t, handling, 1)
	handling.mustMutate(t, "confirmOrder", map[string]any{"orderId": id})

	// The first attempt's write of the view, whose publish never happened.
	store, err := view.Open(testMongoURI, cfg.MongoDatabase)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close(context.Background())
	ctx := context.Background()
	docs, err := store.OrdersByID(ctx, []string{id})
	if err != nil || docs[id].Version != 1 {
		t.Fatalf("stored view: %+v %v", docs[id], err)
	}
	confirmed := domain.Evolve(docs[id].ToOrder(), domain.Event{OrderID: id, Version: 2, OccurredAt: time.Now(), Data: domain.OrderConfirmed{}})
	if err := store.PutOrders(ctx, []view.OrderWrite{{Doc: view.FromOrder(confirmed), Prev: 1}}); err != nil {
		t.Fatal(err)
	}

	startGateway(t, cfg) // its projector takes the batch up where the first left it
	o, err := f.tryNextOrder("f", "ordersUpdated", eventWait)
	if err != nil {
		t.Fatalf("the PENDING subscriber was not told that the order left PENDING: %v", err)
	}
	if o.ID != id || o.Status != "CONFIRMED" || o.Version != 2 {
		t.Fatalf("want %s v2 CONFIRMED, got %+v", id, o)
	}
}

// TestLostSnapshotsAreRebuiltFromEvents: when the snapshots topic loses
// records (here: an order's snapshot falls back to an older one, another's
// is deleted, as a broken compaction or a retention set on the topic would
// do), the next owner of the partitions notices (their tallies disagree)
// and rebuilds the orders from the events topic, the source of truth: the
// deleted order cannot be placed again and the other goes on from its real
// version, so nothing is written that the views would drop.
func TestLostSnapshotsAreRebuiltFromEvents(t *testing.T) {
	cfg := testConfig(t)
	g := startGateway(t, cfg)
	suffix := fmt.Sprint(time.Now().UnixNano())
	x, y := "lost-x-"+suffix, "lost-y-"+suffix
	place := func(g *gateway, id string) Payload {
		return g.mutate(t, "placeOrder", map[string]any{"orderId": id, "customerId": "cust-lost", "currencyCode": "USD", "items": []any{item("X", 1, "2")}})
	}
	if p := place(g, x); p.Order == nil {
		t.Fatalf("place x: %+v", p.UserErrors)
	}
	g.mustMutate(t, "confirmOrder", map[string]any{"orderId": x})
	if p := place(g, y); p.Order == nil {
		t.Fatalf("place y: %+v", p.UserErrors)
	}
	g.stop()

	topics := kafka.NewTopics(cfg.TopicPrefix)
	var firstOfX, ofY *sarama.ConsumerMessage
	for _, m := range readTopic(t, topics.Snapshots, time.Second) {
		switch {
		case string(m.Key) == x && firstOfX == nil:
			firstOfX = m
		case string(m.Key) == y:
			ofY = m
		}
	}
	if firstOfX == nil || ofY == nil {
		t.Fatalf("snapshots of %s and %s not found", x, y)
	}
	kafkatest.SendToPartitions(t, testBrokers, []*sarama.ProducerMessage{
		{Topic: topics.Snapshots, Partition: firstOfX.Partition, Key: sarama.StringEncoder(x), Value: sarama.ByteEncoder(firstOfX.Value)}, // back to version 1
		{Topic: topics.Snapshots, Partition: ofY.Partition, Key: sarama.StringEncoder(y)},                                                 // gone
	}...)

	g2 := startGateway(t, cfg)
	if p := place(g2, y); len(p.UserErrors) != 1 || p.Version == nil || *p.Version != 1 {
		t.Fatalf("%s was placed again after its snapshot was lost: %+v", y, p)
	} else {
		t.Logf("placing %s again: %s %s", y, p.UserErrors[0].Code, p.UserErrors[0].Message)
	}
	shipped := g2.mutate(t, "shipOrder", map[string]any{"orderId": x, "trackingNumber": "T1"})
	if shipped.Order == nil || shipped.Order.Version != 3 || shipped.Order.Status != "SHIPPED" {
		t.Fatalf("ship %s after its snapshot fell back to version 1: %+v, want SHIPPED at version 3", x, shipped)
	}
	if o := g2.orderAt(t, x, *shipped.ConsistencyToken); o == nil || o.Version != 3 || o.Status != "SHIPPED" {
		t.Fatalf("view of %s: %+v", x, o)
	}
	checkExactlyOnce(t, eventsByOrder(t, topics), map[string]int{x: 3, y: 1})
}
