package projector

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/embedded"
	"github.com/ordergateway/gateway/kafka"
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
	at := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	var state domain.Order
	var events []domain.Event
	for _, cmd := range []domain.Command{
		domain.PlaceOrder{OrderID: "o1", CustomerID: "c1", Currency: "EUR", Items: []domain.ItemInput{{SKU: "A", Name: "a", Quantity: 1, UnitPrice: "1.00"}}},
		domain.AddOrderItem{OrderID: "o1", Item: domain.ItemInput{SKU: "B", Name: "b", Quantity: 1, UnitPrice: "2.00"}},
		domain.ConfirmOrder{OrderID: "o1"},
	} {
		evs, err := domain.Decide(state, cmd, at)
		if err != nil {
			t.Fatalf("%T: %v", cmd, err)
		}
		for _, e := range evs {
			state = domain.Evolve(state, e)
			events = append(events, e)
		}
	}
	if state.Version != 3 {
		t.Fatalf("the history ends at version %d, want 3", state.Version)
	}
	batch := func(evs ...domain.Event) ([]string, map[string][]domain.Event, map[string][]*sarama.ConsumerMessage) {
		msgs := make([]*sarama.ConsumerMessage, len(evs))
		for i := range msgs {
			msgs[i] = &sarama.ConsumerMessage{Topic: "projtest.events", Offset: int64(i)}
		}
		return []string{"o1"}, map[string][]domain.Event{"o1": evs}, map[string][]*sarama.ConsumerMessage{"o1": msgs}
	}

	// The claim projects v1 and caches the view it wrote.
	cache := &docCache{max: 10}
	ids, byOrder, source := batch(events[0])
	final, _, _, err := p.write(ctx, ids, byOrder, source, cache)
	if err != nil || final["o1"].Version != 1 {
		t.Fatalf("v1: %+v %v", final["o1"], err)
	}
	cache.put(final)
	// Another instance (the partition's new owner) projects v2 and v3.
	ids, byOrder, source = batch(events[1], events[2])
	if _, _, _, err := p.write(ctx, ids, byOrder, source, nil); err != nil {
		t.Fatalf("v2, v3 by the new owner: %v", err)
	}
	// The zombie claim's next batch (v2) trusts its stale cache (v1): the
	// guard refuses the write.
	ids, byOrder, source = batch(events[1])
	if _, _, _, err := p.write(ctx, ids, byOrder, source, cache); !errors.Is(err, view.ErrConflict) {
		t.Fatalf("a write from a stale cache: %v, want view.ErrConflict", err)
	}
	// The retry reads the store: v2 is already there, nothing moves back.
	final, previous, gaps, err := p.write(ctx, ids, byOrder, source, nil)
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
// the summary ends with every order of both instances.
func TestStaleSummaryIsRefusedAndTheRetryReadsTheStore(t *testing.T) {
	store, ctx := embeddedStore(t)
	a := &Projector{cfg: Config{Topics: kafka.NewTopics("projtest")}, store: store}
	b := &Projector{cfg: Config{Topics: kafka.NewTopics("projtest")}, store: store}
	order := func(id string, version int, status domain.Status) view.OrderDoc {
		return view.OrderDoc{ID: id, CustomerID: "c1", Status: string(status), Version: version, Currency: "EUR", Total: 100}
	}

	if err := a.putCustomers(ctx, []view.OrderDoc{order("o1", 1, domain.StatusPending)}); err != nil {
		t.Fatalf("a, o1: %v", err)
	}
	if _, ok := a.summaries.get("c1"); !ok {
		t.Fatal("a did not keep the summary it wrote")
	}
	// Another instance adds o2: a's cached summary is now stale.
	if err := b.putCustomers(ctx, []view.OrderDoc{order("o2", 1, domain.StatusPending)}); err != nil {
		t.Fatalf("b, o2: %v", err)
	}
	// a confirms o1 starting from its stale summary: refused, then retried
	// from the store.
	if err := a.putCustomers(ctx, []view.OrderDoc{order("o1", 2, domain.StatusConfirmed)}); err != nil {
		t.Fatalf("a, o1 confirmed: %v", err)
	}
	c, err := store.Customer(ctx, "c1")
	if err != nil || c == nil {
		t.Fatalf("summary: %+v %v", c, err)
	}
	if !c.Includes("o1", 2) || !c.Includes("o2", 1) || c.OrderCount != 2 || c.Rev != 3 {
		t.Fatalf("summary after the stale write: %d orders, rev %d, %+v; want o1 v2 and o2 v1", c.OrderCount, c.Rev, c.Orders)
	}
	// a's cache now holds what it wrote on the retry, which the store has.
	cached, ok := a.summaries.get("c1")
	if !ok || cached.Rev != 3 {
		t.Fatalf("a's cached summary after the retry: %+v %v", cached, ok)
	}
}

// The summary cache holds at most max order entries; past that it starts
// over.
func TestSummaryCacheBound(t *testing.T) {
	c := summaryCache{max: 3}
	c.put([]view.CustomerDoc{{ID: "c1", Orders: make(view.CustomerOrders, 2)}, {ID: "c2", Orders: make(view.CustomerOrders, 2)}})
	if _, ok := c.get("c1"); ok || c.entries != 2 {
		t.Fatalf("over max: c1 kept (%v) or %d entries, want it dropped and 2", ok, c.entries)
	}
	c.put([]view.CustomerDoc{{ID: "c2", Orders: make(view.CustomerOrders, 3)}})
	if d, ok := c.get("c2"); !ok || len(d.Orders) != 3 || c.entries != 3 {
		t.Fatalf("replacing c2: %v, %d entries, want 3", ok, c.entries)
	}
}
