package main

import (
	"encoding/json"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/ordergateway/gateway/app"
	"github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/kafka"
)

// The handler's state does not grow with history (issue 17): a history
// written straight to the snapshots topic (20,000 orders with -short,
// 50,000 without) is restored once into the handler's local store; a
// restart on the same DATA_DIR then answers mutations on an old order and
// a new one after reading only what changed, and the process's Go heap
// stays far below the history's size. Times are logged, not asserted (the
// scale scenario of cmd/bench measures them); the heap is checked loosely.
func TestScaleRestart(t *testing.T) {
	n := 50_000
	if testing.Short() {
		n = 20_000
	}
	cfg := testConfig(t)
	cfg.HandlerCacheOrders = 1000
	topics := kafka.NewTopics(cfg.TopicPrefix)
	admin, err := sarama.NewClusterAdmin(testBrokers, kafka.Config("test-admin", 20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	err = kafka.EnsureTopics(admin, topics, kafka.TopicSettings{Partitions: int32(cfg.Partitions), ReplicationFactor: 1})
	admin.Close()
	if err != nil {
		t.Fatal(err)
	}
	ids := writeSnapshotHistory(t, topics, n, int32(cfg.Partitions))

	const confirm = `mutation($id: ID!) { confirmOrder(input: {orderId: $id}) { order { version status } userErrors { code message } } }`
	const place = `mutation { placeOrder(input: {customerId: "c-new", currencyCode: "EUR", items: [{sku: "A", name: "A", quantity: 1, unitPrice: "1.00"}]}) { order { id version } userErrors { code message } } }`
	confirmOld := func(g *gateway, id string) {
		t.Helper()
		var out struct {
			ConfirmOrder struct {
				Order      *struct{ Version int }
				UserErrors []gqlError
			}
		}
		g.data(t, confirm, map[string]any{"id": id}, &out)
		if out.ConfirmOrder.Order == nil || out.ConfirmOrder.Order.Version != 2 {
			t.Fatalf("confirmOrder of restored order %s: %+v", id, out)
		}
	}
	placeNew := func(g *gateway) {
		t.Helper()
		var out struct {
			PlaceOrder struct {
				Order      *struct{ Version int }
				UserErrors []gqlError
			}
		}
		g.data(t, place, nil, &out)
		if out.PlaceOrder.Order == nil || out.PlaceOrder.Order.Version != 1 {
			t.Fatalf("placeOrder: %+v", out)
		}
	}

	t0 := time.Now()
	g := startMain(t, &app.Main{Config: cfg, WithoutProjector: true})
	for deadline := time.Now().Add(5 * time.Minute); !g.Ready(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the first start did not restore within 5 minutes")
		}
	}
	confirmOld(g, ids[0])
	first := time.Since(t0)
	g.stop()

	t1 := time.Now()
	g = startMain(t, &app.Main{Config: cfg, WithoutProjector: true})
	confirmOld(g, ids[1])
	old := time.Since(t1)
	placeNew(g)
	both := time.Since(t1)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	t.Logf("%d orders on %s Kafka: first start to an answered mutation %s (restores all); restart to a mutation on an old order %s, and on a new one %s; Go heap in use %d MiB (the test binary's broker included)",
		n, testKafka, first.Round(time.Millisecond), old.Round(time.Millisecond), both.Round(time.Millisecond), ms.HeapInuse>>20)
	// Loose: the snapshots written weigh about n KiB; today's handler kept
	// them all in memory as decoded states, several times that.
	if limit := uint64(512 << 20); ms.HeapInuse > limit {
		t.Errorf("Go heap in use %d MiB after the restart, over %d MiB", ms.HeapInuse>>20, limit>>20)
	}
}

// writeSnapshotHistory writes n orders' snapshots (one PENDING order each,
// with one recorded outcome, as a placeOrder leaves it) and each
// partition's tally straight to the snapshots topic, and returns the ids.
func writeSnapshotHistory(t *testing.T, topics kafka.Topics, n int, partitions int32) []string {
	t.Helper()
	sc := kafka.Config("test-history", 20*time.Millisecond)
	sc.Producer.Partitioner = sarama.NewHashPartitioner
	sc.Producer.Return.Successes = true
	sc.Producer.Flush.Frequency = 5 * time.Millisecond
	prod, err := sarama.NewSyncProducer(testBrokers, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	part := sarama.NewHashPartitioner(topics.Snapshots)
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	counts := map[int32]int64{}
	ids := make([]string, 0, n)
	var batch []*sarama.ProducerMessage
	flush := func() {
		if err := prod.SendMessages(batch); err != nil {
			t.Fatal(err)
		}
		batch = batch[:0]
	}
	for i := range n {
		id := fmt.Sprintf("ord_s%07d", i)
		o := domain.Order{ID: id, CustomerID: fmt.Sprintf("c-%03d", i%100), Status: domain.StatusPending, Currency: "EUR",
			Items:   []domain.Item{{SKU: "TEA-1", Name: "Green tea", Quantity: 2, UnitPrice: 450}},
			History: []domain.StatusChange{{Status: domain.StatusPending, At: at}}, Version: 1, CreatedAt: at, UpdatedAt: at}
		v, _ := json.Marshal(map[string]any{"order": o, "outcomes": []map[string]any{{"key": "key-" + id, "hash": "0123456789abcdef", "commandId": "cmd_" + id, "version": 1}}})
		msg := &sarama.ProducerMessage{Topic: topics.Snapshots, Key: sarama.StringEncoder(id), Value: sarama.ByteEncoder(v)}
		p, _ := part.Partition(msg, partitions)
		counts[p]++
		ids = append(ids, id)
		if batch = append(batch, msg); len(batch) == 2000 {
			flush()
		}
	}
	flush()
	for p, c := range counts {
		v, _ := json.Marshal(map[string]int64{"orders": c, "versions": c})
		batch = append(batch, &sarama.ProducerMessage{Topic: topics.Snapshots, Partition: p, Key: sarama.StringEncoder(kafka.MarkerPrefix + "tally"), Value: sarama.ByteEncoder(v)})
	}
	sc2 := kafka.Config("test-history-tally", 20*time.Millisecond)
	sc2.Producer.Partitioner = sarama.NewManualPartitioner
	sc2.Producer.Return.Successes = true
	tallies, err := sarama.NewSyncProducer(testBrokers, sc2)
	if err != nil {
		t.Fatal(err)
	}
	defer tallies.Close()
	if err := tallies.SendMessages(batch); err != nil {
		t.Fatal(err)
	}
	return ids
}
