package projector

import (
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/embedded"
	"github.com/ordergateway/gateway/kafka"
	"github.com/ordergateway/gateway/metrics"
)

// A batch replayed by a new claim (a crash before the offset commit, a
// partition moved) trusts that an order whose batch starts at version 1
// has no view yet: the insert conflicts with the view the first claim
// wrote, and apply retries from the store. The retry is counted in
// order_gateway_projection_conflicts_retried_total{view="orders"}. Runs
// against the embedded broker (the view changes are published) and store.
func TestReplayedBatchConflictIsCountedAndRetried(t *testing.T) {
	store, ctx := embeddedStore(t)
	k, err := embedded.StartKafka(filepath.Join(t.TempDir(), "kafka"), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	topics := kafka.NewTopics("projtest")
	sc := kafka.Config("projtest", 10*time.Millisecond)
	sc.Producer.Return.Successes = true
	admin, err := sarama.NewClusterAdmin([]string{k.Addr()}, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := kafka.EnsureTopics(admin, topics, kafka.TopicSettings{Partitions: 1, ReplicationFactor: -1}); err != nil {
		t.Fatal(err)
	}
	producer, err := sarama.NewSyncProducer([]string{k.Addr()}, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	reg := prometheus.NewRegistry()
	ps := metrics.NewProjections(reg)
	ps.Errors = metrics.NewErrors(reg)
	m := ps.Generation(1)
	p := &Projector{cfg: Config{Topics: topics, Metrics: m, Logger: slog.Default()}, store: store, producer: producer,
		summaries: summaryCache{max: 10}, closing: make(chan struct{})}
	defer close(p.closing)

	events := history(t, domain.PlaceOrder{OrderID: "o1", CustomerID: "c1", Currency: "EUR",
		Items: []domain.ItemInput{{SKU: "A", Name: "a", Quantity: 1, UnitPrice: "1.00"}}})
	v, err := domain.MarshalEvent(events[0])
	if err != nil {
		t.Fatal(err)
	}
	batch := []*sarama.ConsumerMessage{{Topic: topics.Events, Key: []byte("o1"), Value: v, Offset: 0}}
	if _, flushed, err := p.apply(ctx, 0, batch, &docCache{max: 10}, -1); err != nil {
		t.Fatalf("first claim: %v", err)
	} else if err := <-flushed; err != nil {
		t.Fatalf("first claim's summaries: %v", err)
	}
	if n := testutil.ToFloat64(m.OrdersConflicts); n != 0 {
		t.Fatalf("conflicts retried after a first write: %v", n)
	}
	// The replay, by a claim with an empty cache.
	if _, flushed, err := p.apply(ctx, 0, batch, &docCache{max: 10}, -1); err != nil {
		t.Fatalf("replay: %v", err)
	} else if err := <-flushed; err != nil {
		t.Fatalf("replay's summaries: %v", err)
	}
	if n := testutil.ToFloat64(m.OrdersConflicts); n != 1 {
		t.Errorf("order view conflicts retried after the replay: %v, want 1", n)
	}
	if n := testutil.ToFloat64(m.CustomersConflicts); n != 0 {
		t.Errorf("summary conflicts retried: %v, want 0", n)
	}
	stored, err := store.Order(ctx, "o1")
	if err != nil || stored == nil || stored.Version != 1 {
		t.Fatalf("stored view after the replay: %+v %v", stored, err)
	}
}
