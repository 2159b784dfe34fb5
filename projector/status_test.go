package projector

import (
	"testing"
	"time"

	"github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/view"
)

func TestStatusBefore(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ev := func(v int, d domain.EventData) domain.Event {
		return domain.Event{OrderID: "o", Version: v, OccurredAt: at, Data: d}
	}
	placed := ev(1, domain.OrderPlaced{CustomerID: "c", Currency: "USD"})
	added := ev(2, domain.OrderItemAdded{Item: domain.Item{SKU: "A", Quantity: 1}})
	confirmed := ev(3, domain.OrderConfirmed{})
	shipped := ev(4, domain.OrderShipped{TrackingNumber: "T"})
	all := []domain.Event{placed, added, confirmed, shipped}
	viewAt := func(v int) view.OrderDoc { return view.FromOrder(domain.Fold(all[:v])) }

	for _, c := range []struct {
		name   string
		stored view.OrderDoc
		batch  []domain.Event
		want   string
	}{
		{"view behind the batch", viewAt(2), all[2:], "PENDING"},
		{"view holds all of the batch", viewAt(4), all[2:], "PENDING"},
		{"view holds part of the batch", viewAt(3), all[2:], "PENDING"},
		{"view holds the batch's item change only", viewAt(2), all[1:3], "PENDING"},
		{"batch after a status change", viewAt(4), all[3:], "CONFIRMED"},
		{"view holds the placing batch", viewAt(3), all[:3], ""},
		{"view past the whole batch", viewAt(4), all[1:3], "SHIPPED"},
		{"no events", viewAt(3), nil, "CONFIRMED"},
	} {
		if got := statusBefore(c.stored, c.batch); got != c.want {
			t.Errorf("%s: status before = %q, want %q", c.name, got, c.want)
		}
	}
}
