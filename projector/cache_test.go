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

// A claim's cache of the views it wrote is trusted on a batch's first
// attempt. If another instance took the partition meanwhile (this claim is
// a zombie) the cached view is stale: the write's version guard must refuse
// it, and the retry, which reads the store, must not move the view back.
// Runs against the embedded store (FerretDB, where the guard is a read then
// a replace by _id).
func TestStaleCacheIsRefusedAndTheRetryReadsTheStore(t *testing.T) {
	m, err := embedded.StartMongo(t.TempDir(), "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	store, err := view.Open(m.URI(), fmt.Sprintf("projtest_%d", time.Now().UnixNano()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	t.Cleanup(func() { _ = store.Close(context.Background()) })
	if err := store.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
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
