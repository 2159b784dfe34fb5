package live

import (
	"sync/atomic"
	"testing"

	"github.com/ordergateway/gateway/view"
)

func change(id, customer, status string, version int, previous string) view.Change {
	return view.Change{Order: view.OrderDoc{ID: id, CustomerID: customer, Status: status, Version: version}, PreviousStatus: previous}
}

func versions(docs []view.OrderDoc) []int {
	out := make([]int, len(docs))
	for i, d := range docs {
		out[i] = d.Version
	}
	return out
}

// A subscription with a notify function is told of each change and of the
// hub's end, and keeps only the newest state of each order until drained.
func TestHubNotify(t *testing.T) {
	h := NewHub()
	var one, many atomic.Int32
	byOrder := h.SubscribeOrder("o1", func() { one.Add(1) })
	matching := h.SubscribeMatching(func(d view.OrderDoc) bool { return d.CustomerID == "c1" }, func() { many.Add(1) })
	if byOrder.Ready() != nil {
		t.Fatal("a subscription with a notify function has a Ready channel")
	}

	h.Publish(change("o1", "c1", "PENDING", 1, ""))
	h.Publish(change("o1", "c1", "CONFIRMED", 3, "PENDING"))
	h.Publish(change("o1", "c1", "PENDING", 2, "")) // older than what is pending: not kept
	h.Publish(change("o2", "c1", "PENDING", 1, ""))
	h.Publish(change("o3", "c2", "PENDING", 1, "")) // neither subscription's
	if one.Load() != 3 || many.Load() != 4 {
		t.Fatalf("notified %d and %d times, want 3 (o1's changes) and 4 (c1's)", one.Load(), many.Load())
	}
	if got := byOrder.Drain(); len(got) != 1 || got[0].Version != 3 {
		t.Fatalf("one-order subscription drained %v, want only v3", versions(got))
	}
	if got := byOrder.Drain(); len(got) != 0 {
		t.Fatalf("a second drain returned %v", versions(got))
	}
	got := matching.DrainTo(make([]view.OrderDoc, 0, 1))
	if len(got) != 2 || got[0].ID != "o1" || got[0].Version != 3 || got[1].ID != "o2" {
		t.Fatalf("matching subscription drained %+v, want o1 v3 then o2 v1", got)
	}

	matching.Close()
	h.Publish(change("o2", "c1", "CONFIRMED", 2, "PENDING"))
	if many.Load() != 4 || h.Count() != 1 {
		t.Fatalf("after Close: notified %d times (want 4), hub holds %d (want 1)", many.Load(), h.Count())
	}

	h.Close()
	if !byOrder.Closed() || one.Load() != 4 {
		t.Fatalf("hub closed: subscription closed %v, notified %d times (want 4: its end)", byOrder.Closed(), one.Load())
	}
	late := h.SubscribeOrder("o1", func() { one.Add(1) })
	if !late.Closed() || one.Load() != 5 {
		t.Fatalf("subscribing to a closed hub: closed %v, notified %d times (want 5)", late.Closed(), one.Load())
	}
}

// A matching subscription that would fall more than DefaultBuffer orders
// behind is ended, TooSlow, instead of forgetting an order; one that keeps
// up gets an order leaving the filter once.
func TestHubMatchingBufferAndLeaving(t *testing.T) {
	h := NewHub()
	slow := h.SubscribeMatching(func(d view.OrderDoc) bool { return d.Status == "PENDING" }, nil)
	for i := range DefaultBuffer + 2 {
		h.Publish(change(string(rune('a'+i%26))+string(rune('0'+i/26)), "c", "PENDING", 1, ""))
	}
	if !slow.Closed() || !slow.TooSlow() {
		t.Fatalf("a subscriber %d orders behind: closed %v, too slow %v; want both", DefaultBuffer+2, slow.Closed(), slow.TooSlow())
	}
	select {
	case <-slow.Done():
	default:
		t.Fatal("Done was not closed")
	}
	slow.Close()
	sub := h.SubscribeMatching(func(d view.OrderDoc) bool { return d.Status == "PENDING" }, nil)
	for i := range DefaultBuffer {
		h.Publish(change(string(rune('a'+i%26))+string(rune('0'+i/26)), "c", "PENDING", 1, ""))
	}
	if got := sub.Drain(); len(got) != DefaultBuffer || sub.TooSlow() {
		t.Fatalf("drained %d (too slow %v), want %d", len(got), sub.TooSlow(), DefaultBuffer)
	}
	h.Publish(change("x", "c", "CONFIRMED", 2, "PENDING"))
	h.Publish(change("y", "c", "SHIPPED", 3, "CONFIRMED"))
	select {
	case <-sub.Ready():
	default:
		t.Fatal("Ready was not signalled")
	}
	if got := sub.Drain(); len(got) != 1 || got[0].ID != "x" {
		t.Fatalf("drained %+v, want only x (leaving the filter)", got)
	}
}
