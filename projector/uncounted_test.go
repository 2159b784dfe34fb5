package projector

import (
	"slices"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/kafka"
	"github.com/ordergateway/gateway/view"
)

// history decides cmds on a new order and returns its events.
func history(t *testing.T, cmds ...domain.Command) []domain.Event {
	t.Helper()
	at := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	var state domain.Order
	var events []domain.Event
	for _, cmd := range cmds {
		evs, err := domain.Decide(state, cmd, at)
		if err != nil {
			t.Fatalf("%T: %v", cmd, err)
		}
		for _, e := range evs {
			state = domain.Evolve(state, e)
			events = append(events, e)
		}
	}
	return events
}

// batchOf is the batch of one order's events, event i at offset first+i.
func batchOf(first int64, evs ...domain.Event) ([]string, map[string][]domain.Event, map[string][]*sarama.ConsumerMessage) {
	msgs := make([]*sarama.ConsumerMessage, len(evs))
	for i := range msgs {
		msgs[i] = &sarama.ConsumerMessage{Topic: "projtest.events", Offset: first + int64(i)}
	}
	id := evs[0].OrderID
	return []string{id}, map[string][]domain.Event{id: evs}, map[string][]*sarama.ConsumerMessage{id: msgs}
}

// Order views are written before their events are counted in the
// summaries. A crash between the two (the offsets are not committed)
// replays events that are already in the view: the replay must count them
// from what the view carries, once, and a view must stop carrying what the
// summaries count.
func TestReplayCountsWhatTheViewCarries(t *testing.T) {
	store, ctx := embeddedStore(t)
	p := &Projector{cfg: Config{Topics: kafka.NewTopics("projtest")}, store: store, closing: make(chan struct{})}
	events := history(t,
		domain.PlaceOrder{OrderID: "o1", CustomerID: "c1", Currency: "EUR", Items: []domain.ItemInput{{SKU: "A", Name: "a", Quantity: 1, UnitPrice: "1.00"}}},
		domain.ConfirmOrder{OrderID: "o1"})
	count := func(transitions map[string][]view.Transition) {
		t.Helper()
		if err := p.putCustomers(ctx, transitions); err != nil {
			t.Fatal(err)
		}
	}
	summary := func(wantStatus string) {
		t.Helper()
		c, err := store.Customer(ctx, "c1")
		want := []view.StatusCount{{Status: wantStatus, Count: 1}}
		if err != nil || c == nil || c.OrderCount != 1 || !slices.Equal(c.CountsByStatus, want) {
			t.Fatalf("summary: %+v %v; want one order, %v", c, err, want)
		}
	}

	// Placed (offset 0): the view is written and carries the transition;
	// then the instance dies before counting it.
	ids, byOrder, source := batchOf(0, events[0])
	final, _, _, flushed, _, err := p.write(ctx, 0, ids, byOrder, source, nil, -1)
	if err != nil || flushed != nil || len(final["o1"].Uncounted) != 1 {
		t.Fatalf("v1: %+v flushed %v %v", final["o1"], flushed, err)
	}
	if c, _ := store.Customer(ctx, "c1"); c != nil {
		t.Fatalf("the summary counts the placement before anyone counted it: %+v", c)
	}
	// The replay finds v1 in the view and counts it from there.
	_, _, transitions, _, _, err := p.write(ctx, 0, ids, byOrder, source, nil, -1)
	if err != nil || len(transitions["c1"]) != 1 || transitions["c1"][0].Offset != 0 {
		t.Fatalf("replay of v1: transitions %+v %v", transitions, err)
	}
	count(transitions)
	count(transitions) // a second instance, or a retry: counted once
	summary("PENDING")

	// Confirmed (offset 1), with offset 0 counted: the view carries only
	// the confirmation.
	ids, byOrder, source = batchOf(1, events[1])
	final, _, transitions, _, _, err = p.write(ctx, 0, ids, byOrder, source, nil, 0)
	if err != nil || len(final["o1"].Uncounted) != 1 || final["o1"].Uncounted[0].Offset != 1 {
		t.Fatalf("v2: %+v %v", final["o1"].Uncounted, err)
	}
	stored, err := store.Order(ctx, "o1")
	if err != nil || len(stored.Uncounted) != 1 || stored.Uncounted[0] != final["o1"].Uncounted[0] {
		t.Fatalf("stored view: %+v %v", stored, err)
	}
	count(transitions)
	summary("CONFIRMED")
	// A replay of the whole history counts nothing twice.
	ids, byOrder, source = batchOf(0, events...)
	_, _, transitions, _, _, err = p.write(ctx, 0, ids, byOrder, source, nil, -1)
	if err != nil {
		t.Fatal(err)
	}
	count(transitions)
	summary("CONFIRMED")
}

// An order that would carry more than view.MaxUncounted transitions has
// its batch counted first, and its view carries none.
func TestAViewCarriesAtMostMaxUncounted(t *testing.T) {
	store, ctx := embeddedStore(t)
	p := &Projector{cfg: Config{Topics: kafka.NewTopics("projtest")}, store: store, closing: make(chan struct{})}
	cmds := []domain.Command{domain.PlaceOrder{OrderID: "o1", CustomerID: "c1", Currency: "EUR", Items: []domain.ItemInput{{SKU: "A", Name: "a", Quantity: 1, UnitPrice: "1.00"}}}}
	for len(cmds) <= view.MaxUncounted+1 {
		cmds = append(cmds, domain.AddOrderItem{OrderID: "o1", Item: domain.ItemInput{SKU: "B", Name: "b", Quantity: 1, UnitPrice: "2.00"}},
			domain.RemoveOrderItem{OrderID: "o1", SKU: "B"})
	}
	events := history(t, cmds...)
	ids, byOrder, source := batchOf(0, events...)
	final, _, _, flushed, _, err := p.write(ctx, 0, ids, byOrder, source, nil, -1)
	if err != nil || flushed == nil || len(final["o1"].Uncounted) != 0 {
		t.Fatalf("%d events in one batch: uncounted %d, flushed %v, %v; want none carried, counted first", len(events), len(final["o1"].Uncounted), flushed, err)
	}
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	c, err := store.Customer(ctx, "c1")
	if err != nil || c == nil || c.OrderCount != 1 || c.Applied["0"] != int64(len(events)-1) {
		t.Fatalf("summary: %+v %v; want the order counted through offset %d", c, err, len(events)-1)
	}
}
