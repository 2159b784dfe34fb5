package projector

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/embedded"
	"github.com/ordergateway/gateway/kafka"
	"github.com/ordergateway/gateway/metrics"
	"github.com/ordergateway/gateway/view"
)

// embeddedStore opens the views in a fresh embedded store; the context ends
// with the test or after 30 s.
func embeddedStore(t *testing.T) (*view.Store, context.Context) {
	t.Helper()
	m, err := embedded.StartMongo(t.TempDir(), "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	store, err := view.Open(m.URI(), fmt.Sprintf("projtest_%d", time.Now().UnixNano()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	if err := store.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	return store, ctx
}

// A claim's cache of the views it wrote is trusted on a batch's first
// attempt. If another instance took the partition meanwhile (this claim is
// a zombie) the cached view is stale: the write's version guard must refuse
// it, and the retry, which reads the store, must not move the view back.
// Runs against the embedded store (FerretDB, where the guard is a read then
// a replace by _id).
func TestStaleCacheIsRefusedAndTheRetryReadsTheStore(t *testing.T) {
	store, ctx := embeddedStore(t)
	p := &Projector{cfg: Config{Topics: kafka.NewTopics("projtest")}, store: store}

	// The order's history: placed (v1), an item added (v2), confirmed (v3).
	events := history(t,
		domain.PlaceOrder{OrderID: "o1", CustomerID: "c1", Currency: "EUR", Items: []domain.ItemInput{{SKU: "A", Name: "a", Quantity: 1, UnitPrice: "1.00"}}},
		domain.AddOrderItem{OrderID: "o1", Item: domain.ItemInput{SKU: "B", Name: "b", Quantity: 1, UnitPrice: "2.00"}},
		domain.ConfirmOrder{OrderID: "o1"})
	state := domain.Order{}
	for _, e := range events {
		state = domain.Evolve(state, e)
	}
	if state.Version != 3 {
		t.Fatalf("the history ends at version %d, want 3", state.Version)
	}
	batch := func(evs ...domain.Event) ([]string, map[string][]domain.Event, map[string][]*sarama.ConsumerMessage) {
		msgs := make([]*sarama.ConsumerMessage, len(evs))
		for i := range msgs {
			msgs[i] = &sarama.ConsumerMessage{Topic: "projtest.events", Offset: int64(evs[i].Version - 1)}
		}
		return []string{"o1"}, map[string][]domain.Event{"o1": evs}, map[string][]*sarama.ConsumerMessage{"o1": msgs}
	}

	// The claim projects v1 and caches the view it wrote.
	cache := &docCache{max: 10}
	ids, byOrder, source := batch(events[0])
	final, _, _, _, _, err := p.write(ctx, 0, ids, byOrder, source, cache, -1)
	if err != nil || final["o1"].Version != 1 {
		t.Fatalf("v1: %+v %v", final["o1"], err)
	}
	cache.put(final)
	// Another instance (the partition's new owner) projects v2 and v3.
	ids, byOrder, source = batch(events[1], events[2])
	if _, _, _, _, _, err := p.write(ctx, 0, ids, byOrder, source, nil, -1); err != nil {
		t.Fatalf("v2, v3 by the new owner: %v", err)
	}
	// The zombie claim's next batch (v2) trusts its stale cache (v1): the
	// guard refuses the write.
	ids, byOrder, source = batch(events[1])
	if _, _, _, _, _, err := p.write(ctx, 0, ids, byOrder, source, cache, -1); !errors.Is(err, view.ErrConflict) {
		t.Fatalf("a write from a stale cache: %v, want view.ErrConflict", err)
	}
	// The retry reads the store: v2 is already there, nothing moves back.
	final, previous, _, _, gaps, err := p.write(ctx, 0, ids, byOrder, source, nil, -1)
	if err != nil || len(gaps) != 0 || final["o1"].Version != 3 || previous["o1"] != string(domain.StatusConfirmed) {
		t.Fatalf("retry: %+v previous %q gaps %d %v", final["o1"], previous["o1"], len(gaps), err)
	}
	stored, err := store.Order(ctx, "o1")
	if err != nil || stored == nil || stored.Version != 3 || stored.Status != string(domain.StatusConfirmed) || len(stored.Items) != 2 {
		t.Fatalf("stored view after the zombie's batch: %+v %v", stored, err)
	}
}

// The customer summaries an instance wrote are trusted on the next write.
// If another instance changed one meanwhile, the guard must refuse the
// write from the stale summary, and the retry must read the store, so that
// the summary ends with every order of both instances, each counted once.
func TestStaleSummaryIsRefusedAndTheRetryReadsTheStore(t *testing.T) {
	store, ctx := embeddedStore(t)
	am, bm := metrics.NewProjections(nil).Generation(1), metrics.NewProjections(nil).Generation(1)
	a := &Projector{cfg: Config{Topics: kafka.NewTopics("projtest"), Metrics: am}, store: store}
	b := &Projector{cfg: Config{Topics: kafka.NewTopics("projtest"), Metrics: bm}, store: store}
	pending := view.Contribution{Status: string(domain.StatusPending), Total: 100, Currency: "EUR"}
	confirmed := view.Contribution{Status: string(domain.StatusConfirmed), Total: 100, Currency: "EUR"}
	put := func(p *Projector, partition int32, offset int64, from, to view.Contribution) error {
		return p.putCustomers(ctx, map[string][]view.Transition{"c1": {{Partition: partition, Offset: offset, From: from, To: to}}})
	}

	if err := put(a, 0, 10, view.Contribution{}, pending); err != nil { // o1 placed, partition 0
		t.Fatalf("a, o1: %v", err)
	}
	if _, ok := a.summaries.get("c1"); !ok {
		t.Fatal("a did not keep the summary it wrote")
	}
	// Another instance adds o2 (partition 1): a's cached summary is now stale.
	if err := put(b, 1, 20, view.Contribution{}, pending); err != nil {
		t.Fatalf("b, o2: %v", err)
	}
	// a confirms o1 starting from its stale summary: refused, then retried
	// from the store.
	if err := put(a, 0, 11, pending, confirmed); err != nil {
		t.Fatalf("a, o1 confirmed: %v", err)
	}
	if n := testutil.ToFloat64(am.CustomersConflicts); n != 1 {
		t.Errorf("a's summary conflicts retried: %v, want 1", n)
	}
	// A replay of o1's confirmation changes nothing.
	if err := put(a, 0, 11, pending, confirmed); err != nil {
		t.Fatalf("a, o1 confirmed again: %v", err)
	}
	c, err := store.Customer(ctx, "c1")
	if err != nil || c == nil {
		t.Fatalf("summary: %+v %v", c, err)
	}
	want := []view.StatusCount{{Status: "PENDING", Count: 1}, {Status: "CONFIRMED", Count: 1}}
	if c.OrderCount != 2 || c.OpenOrderCount != 2 || !slices.Equal(c.CountsByStatus, want) || c.Applied["0"] != 11 || c.Applied["1"] != 20 {
		t.Fatalf("summary after the stale write: %+v; want 2 orders, %v, applied 0:11 1:20", c, want)
	}
	// a's cache now holds what it wrote on the retry, which the store has.
	cached, ok := a.summaries.get("c1")
	if !ok || cached.Rev != c.Rev {
		t.Fatalf("a's cached summary after the retry: %+v %v, stored rev %d", cached, ok, c.Rev)
	}
}

// The summary cache holds at most max summaries; past that it starts over.
func TestSummaryCacheBound(t *testing.T) {
	c := summaryCache{max: 3}
	c.put([]view.CustomerDoc{{ID: "c1"}, {ID: "c2"}})
	c.put([]view.CustomerDoc{{ID: "c3"}, {ID: "c4"}})
	if _, ok := c.get("c1"); ok || len(c.docs) != 2 {
		t.Fatalf("over max: c1 kept (%v) or %d summaries, want it dropped and 2", ok, len(c.docs))
	}
	c.put([]view.CustomerDoc{{ID: "c4", Rev: 7}})
	if d, ok := c.get("c4"); !ok || d.Rev != 7 || len(c.docs) != 2 {
		t.Fatalf("replacing c4: %+v %v, %d summaries", d, ok, len(c.docs))
	}
}
