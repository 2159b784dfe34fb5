package domain_test

import (
	. "github.com/ordergateway/gateway/domain"
	"reflect"
	"testing"
	"time"
)

func TestEvolveLifecycle(t *testing.T) {
	addr := validAddress()
	evs := history(
		OrderPlaced{CustomerID: "cust-1", Currency: "USD", Items: []Item{line("a", 2, 1999)}, ShippingAddress: addr},
		OrderItemAdded{Item: line("b", 3, 500)},
		OrderItemAdded{Item: line("c", 1, 1)},
		OrderItemRemoved{SKU: "a"},
		OrderConfirmed{},
		OrderShipped{TrackingNumber: "1Z999"},
		OrderDelivered{},
	)
	type want struct {
		status    Status
		skus      []string
		total     int64
		count     int
		tracking  string
		histories int
	}
	wants := []want{
		{StatusPending, []string{"a"}, 3998, 2, "", 1},
		{StatusPending, []string{"a", "b"}, 3998 + 1500, 5, "", 1},
		{StatusPending, []string{"a", "b", "c"}, 3998 + 1500 + 1, 6, "", 1},
		{StatusPending, []string{"b", "c"}, 1501, 4, "", 1},
		{StatusConfirmed, []string{"b", "c"}, 1501, 4, "", 2},
		{StatusShipped, []string{"b", "c"}, 1501, 4, "1Z999", 3},
		{StatusDelivered, []string{"b", "c"}, 1501, 4, "1Z999", 4},
	}
	var o Order
	for i, e := range evs {
		o = Evolve(o, e)
		w := wants[i]
		if o.ID != oid || o.CustomerID != "cust-1" || o.Currency != "USD" {
			t.Errorf("after %s: id/customer/currency = %q/%q/%q", e.Data.EventType(), o.ID, o.CustomerID, o.Currency)
		}
		if o.Status != w.status {
			t.Errorf("after %s: status = %s, want %s", e.Data.EventType(), o.Status, w.status)
		}
		var skus []string
		for _, it := range o.Items {
			skus = append(skus, it.SKU)
		}
		if !reflect.DeepEqual(skus, w.skus) {
			t.Errorf("after %s: skus = %v, want %v", e.Data.EventType(), skus, w.skus)
		}
		if o.Total() != w.total || o.ItemCount() != w.count {
			t.Errorf("after %s: total/count = %d/%d, want %d/%d", e.Data.EventType(), o.Total(), o.ItemCount(), w.total, w.count)
		}
		if o.TrackingNumber != w.tracking {
			t.Errorf("after %s: tracking = %q, want %q", e.Data.EventType(), o.TrackingNumber, w.tracking)
		}
		if len(o.History) != w.histories {
			t.Errorf("after %s: %d history entries, want %d", e.Data.EventType(), len(o.History), w.histories)
		}
		if o.Version != i+1 {
			t.Errorf("after %s: version = %d, want %d", e.Data.EventType(), o.Version, i+1)
		}
		if !o.CreatedAt.Equal(at(0)) || !o.UpdatedAt.Equal(at(i)) {
			t.Errorf("after %s: created/updated = %v/%v, want %v/%v", e.Data.EventType(), o.CreatedAt, o.UpdatedAt, at(0), at(i))
		}
		if !o.Exists() {
			t.Errorf("after %s: Exists() = false", e.Data.EventType())
		}
		if !reflect.DeepEqual(o.ShippingAddress, addr) {
			t.Errorf("after %s: address = %+v, want %+v", e.Data.EventType(), o.ShippingAddress, addr)
		}
	}
	wantHistory := []StatusChange{
		{Status: StatusPending, At: at(0)},
		{Status: StatusConfirmed, At: at(4)},
		{Status: StatusShipped, At: at(5)},
		{Status: StatusDelivered, At: at(6)},
	}
	if !reflect.DeepEqual(o.History, wantHistory) {
		t.Errorf("history = %+v, want %+v", o.History, wantHistory)
	}
	if o.CancellationReason != "" {
		t.Errorf("cancellation reason = %q on a delivered order", o.CancellationReason)
	}
	if !reflect.DeepEqual(Fold(evs), o) {
		t.Errorf("Fold differs from evolving one by one")
	}
}

func TestEvolveCancel(t *testing.T) {
	for _, tc := range []struct {
		name  string
		given []EventData
	}{
		{"from pending", []EventData{usdPlaced, OrderCancelled{Reason: "changed my mind"}}},
		{"from confirmed", []EventData{usdPlaced, OrderConfirmed{}, OrderCancelled{Reason: "changed my mind", ReasonCode: ReasonCustomerRequest}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := Fold(history(tc.given...))
			n := len(tc.given)
			if o.Status != StatusCancelled || o.CancellationReason != "changed my mind" {
				t.Errorf("status/reason = %s/%q", o.Status, o.CancellationReason)
			}
			if code := tc.given[n-1].(OrderCancelled).ReasonCode; o.CancellationReasonCode != code {
				t.Errorf("reason code = %q, want %q", o.CancellationReasonCode, code)
			}
			last := o.History[len(o.History)-1]
			want := StatusChange{Status: StatusCancelled, At: at(n - 1), Reason: "changed my mind"}
			if !reflect.DeepEqual(last, want) {
				t.Errorf("last history entry = %+v, want %+v", last, want)
			}
			if len(o.History) != n {
				t.Errorf("history has %d entries, want %d", len(o.History), n)
			}
			for _, h := range o.History[:n-1] {
				if h.Reason != "" {
					t.Errorf("non-cancel history entry %+v has a reason", h)
				}
			}
			if o.Version != n || !o.UpdatedAt.Equal(at(n-1)) || !o.CreatedAt.Equal(at(0)) {
				t.Errorf("version/updated/created = %d/%v/%v", o.Version, o.UpdatedAt, o.CreatedAt)
			}
			if o.Total() != 3998 || o.ItemCount() != 2 {
				t.Errorf("total/count = %d/%d; cancelling keeps the items", o.Total(), o.ItemCount())
			}
		})
	}
}

func TestEvolveEdgeCases(t *testing.T) {
	t.Run("zero order does not exist", func(t *testing.T) {
		o := Fold(nil)
		if o.Exists() || o.Version != 0 || o.Total() != 0 || o.ItemCount() != 0 {
			t.Errorf("Fold(nil) = %+v", o)
		}
	})
	t.Run("placed with nil items has empty non-nil items", func(t *testing.T) {
		o := Fold(history(OrderPlaced{CustomerID: "c", Currency: "JPY"}))
		if o.Items == nil || len(o.Items) != 0 || o.Total() != 0 {
			t.Errorf("items = %#v", o.Items)
		}
		if o.ShippingAddress != nil {
			t.Errorf("address = %+v, want nil", o.ShippingAddress)
		}
	})
	t.Run("removing the last item leaves empty non-nil items", func(t *testing.T) {
		o := Fold(history(usdPlaced, OrderItemRemoved{SKU: "sku-1"}))
		if o.Items == nil || len(o.Items) != 0 || o.Total() != 0 || o.ItemCount() != 0 {
			t.Errorf("items = %#v", o.Items)
		}
	})
	t.Run("removing an unknown sku only bumps the version", func(t *testing.T) {
		before := Fold(history(usdPlaced))
		after := Evolve(before, Event{OrderID: oid, Version: 2, OccurredAt: at(1), Data: OrderItemRemoved{SKU: "nope"}})
		if !reflect.DeepEqual(after.Items, before.Items) || after.Version != 2 || !after.UpdatedAt.Equal(at(1)) {
			t.Errorf("after = %+v", after)
		}
	})
	t.Run("removal keeps the order of the other items", func(t *testing.T) {
		o := Fold(history(placedEvt("USD", line("a", 1, 1), line("b", 1, 2), line("c", 1, 3), line("d", 1, 4)), OrderItemRemoved{SKU: "b"}))
		want := []Item{line("a", 1, 1), line("c", 1, 3), line("d", 1, 4)}
		if !reflect.DeepEqual(o.Items, want) {
			t.Errorf("items = %+v, want %+v", o.Items, want)
		}
	})
	t.Run("totals in minor units", func(t *testing.T) {
		o := Fold(history(placedEvt("KWD", line("a", 10000, MaxUnitPriceMinor), line("b", 3, 1234))))
		if want := int64(10000)*MaxUnitPriceMinor + 3*1234; o.Total() != want {
			t.Errorf("total = %d, want %d", o.Total(), want)
		}
		if o.ItemCount() != 10003 {
			t.Errorf("count = %d", o.ItemCount())
		}
		if got := o.Items[1].LineTotal(); got != 3702 {
			t.Errorf("line total = %d", got)
		}
	})
	t.Run("largest order total does not overflow", func(t *testing.T) {
		big := make([]Item, MaxItems)
		for i := range big {
			big[i] = Item{SKU: string(rune('A' + i%26)), Quantity: MaxQuantity, UnitPrice: MaxUnitPriceMinor}
		}
		o := Fold(history(placedEvt("USD", big...)))
		if want := int64(MaxItems) * MaxQuantity * MaxUnitPriceMinor; o.Total() != want || o.Total() <= 0 {
			t.Errorf("total = %d, want %d", o.Total(), want)
		}
	})
	t.Run("occurredAt in another zone", func(t *testing.T) {
		zoned := time.Date(2025, 1, 1, 10, 0, 0, 0, time.FixedZone("CET", 3600))
		o := Evolve(Order{}, Event{OrderID: oid, Version: 1, OccurredAt: zoned, Data: usdPlaced})
		if !o.CreatedAt.Equal(zoned) || !o.History[0].At.Equal(zoned) {
			t.Errorf("created = %v, history at = %v", o.CreatedAt, o.History[0].At)
		}
	})
}

// TestEvolveDoesNotAlias evolves the same base twice with different events and
// checks that neither the base nor the first result changes. The base's
// slices have spare capacity, so an append without a copy would share them.
func TestEvolveDoesNotAlias(t *testing.T) {
	newBase := func() Order {
		o := Fold(history(placedEvt("USD", line("a", 1, 100), line("b", 2, 200), line("c", 3, 300))))
		items := make([]Item, len(o.Items), 16)
		copy(items, o.Items)
		o.Items = items
		hist := make([]StatusChange, len(o.History), 16)
		copy(hist, o.History)
		o.History = hist
		return o
	}
	ev := func(d EventData) Event { return Event{OrderID: oid, Version: 2, OccurredAt: at(1), Data: d} }
	pairs := []struct {
		name   string
		first  EventData
		second EventData
	}{
		{"add then add", OrderItemAdded{Item: line("x", 1, 1)}, OrderItemAdded{Item: line("y", 9, 9)}},
		{"remove then remove", OrderItemRemoved{SKU: "a"}, OrderItemRemoved{SKU: "b"}},
		{"remove then add", OrderItemRemoved{SKU: "a"}, OrderItemAdded{Item: line("z", 1, 1)}},
		{"add then remove", OrderItemAdded{Item: line("x", 1, 1)}, OrderItemRemoved{SKU: "c"}},
		{"confirm then cancel", OrderConfirmed{}, OrderCancelled{Reason: "r"}},
		{"cancel then confirm", OrderCancelled{Reason: "r"}, OrderConfirmed{}},
		{"ship then deliver", OrderShipped{TrackingNumber: "T"}, OrderDelivered{}},
	}
	for _, p := range pairs {
		t.Run(p.name, func(t *testing.T) {
			base := newBase()
			pristine := newBase()
			first := Evolve(base, ev(p.first))
			firstCopy := Evolve(newBase(), ev(p.first))
			second := Evolve(base, ev(p.second))
			if !reflect.DeepEqual(base, pristine) {
				t.Errorf("base changed:\n got  %+v\n want %+v", base, pristine)
			}
			if !reflect.DeepEqual(first, firstCopy) {
				t.Errorf("first result changed by the second Evolve:\n got  %+v\n want %+v", first, firstCopy)
			}
			if reflect.DeepEqual(first, second) {
				t.Errorf("different events gave the same state")
			}
			// The slice an event changes is a fresh copy: writing through the
			// result does not show in the base. (Slices an event leaves alone
			// are shared between input and output; Evolve never writes to them.)
			switch p.first.(type) {
			case OrderItemAdded, OrderItemRemoved:
				first.Items[0].Quantity = 9999
				if base.Items[0].Quantity == 9999 || second.Items[0].Quantity == 9999 {
					t.Errorf("changed items share an array with the base")
				}
			default:
				first.History[0].Reason = "mutated"
				if base.History[0].Reason != "" || second.History[0].Reason != "" {
					t.Errorf("changed history shares an array with the base")
				}
			}
		})
	}
}

// TestEvolveCopiesEventData: changing an event's data after applying it does
// not change the state.
func TestEvolveCopiesEventData(t *testing.T) {
	items := []Item{line("a", 1, 100)}
	addr := validAddress()
	e := Event{OrderID: oid, Version: 1, OccurredAt: at(0), Data: OrderPlaced{CustomerID: "c", Currency: "USD", Items: items, ShippingAddress: addr}}
	o := Evolve(Order{}, e)
	items[0].Quantity = 42
	addr.City = "Paris"
	if o.Items[0].Quantity != 1 {
		t.Errorf("state shares the event's items")
	}
	if o.ShippingAddress.City != "London" {
		t.Errorf("state shares the event's address")
	}
}
