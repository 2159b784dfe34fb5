package view

import (
	"slices"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ordergateway/gateway/domain"
)

// TestSummaryCountsEachEventOnce: transitions are counted by their offset
// per partition: a replay (the same offsets again, in other batches) changes
// nothing, partitions are independent, the lifetime value counts delivered
// orders per currency, and the counts equal what the orders imply.
func TestSummaryCountsEachEventOnce(t *testing.T) {
	none := Contribution{}
	at := func(s domain.Status, total int64, cur string) Contribution {
		return Contribution{Status: string(s), Total: total, Currency: cur}
	}
	// Order A (partition 0): placed, confirmed, shipped, delivered (EUR 12.00).
	// Order B (partition 1): placed, cancelled. Order C (partition 0): placed in USD.
	history := []Transition{
		{0, 3, none, at(domain.StatusPending, 1200, "EUR")},
		{1, 8, none, at(domain.StatusPending, 500, "EUR")},
		{0, 4, at(domain.StatusPending, 1200, "EUR"), at(domain.StatusConfirmed, 1200, "EUR")},
		{0, 5, none, at(domain.StatusPending, 700, "USD")},
		{1, 9, at(domain.StatusPending, 500, "EUR"), at(domain.StatusCancelled, 500, "EUR")},
		{0, 6, at(domain.StatusConfirmed, 1200, "EUR"), at(domain.StatusShipped, 1200, "EUR")},
		{0, 7, at(domain.StatusShipped, 1200, "EUR"), at(domain.StatusDelivered, 1200, "EUR")},
	}
	var c CustomerDoc
	for _, tr := range history {
		if !c.Count(tr) {
			t.Fatalf("transition %+v not counted", tr)
		}
	}
	// Replays: the whole history again, and a part of it.
	for _, tr := range append(slices.Clone(history), history[2:5]...) {
		if c.Count(tr) {
			t.Fatalf("replayed transition %+v counted again", tr)
		}
	}
	want := CustomerDoc{ID: "", OrderCount: 3, OpenOrderCount: 1,
		CountsByStatus: []StatusCount{{"PENDING", 1}, {"DELIVERED", 1}, {"CANCELLED", 1}},
		LifetimeValue:  []Money{{1200, "EUR"}},
		Applied:        map[string]int64{"0": 7, "1": 9}, Rev: 8 + 10}
	if c.OrderCount != want.OrderCount || c.OpenOrderCount != want.OpenOrderCount || !slices.Equal(c.CountsByStatus, want.CountsByStatus) ||
		!slices.Equal(c.LifetimeValue, want.LifetimeValue) || c.Applied["0"] != 7 || c.Applied["1"] != 9 || c.Rev != want.Rev {
		t.Fatalf("summary %+v, want %+v", c, want)
	}
	implied := SummaryOf("", []OrderDoc{
		{ID: "A", Status: "DELIVERED", Currency: "EUR", Version: 4, Items: []ItemDoc{{SKU: "x", Quantity: 1, UnitPrice: 1200}}},
		{ID: "B", Status: "CANCELLED", Currency: "EUR", Version: 2, Items: []ItemDoc{{SKU: "y", Quantity: 1, UnitPrice: 500}}},
		{ID: "C", Status: "PENDING", Currency: "USD", Version: 1, Items: []ItemDoc{{SKU: "z", Quantity: 1, UnitPrice: 700}}},
	})
	if implied.OrderCount != c.OrderCount || implied.OpenOrderCount != c.OpenOrderCount ||
		!slices.Equal(implied.CountsByStatus, c.CountsByStatus) || !slices.Equal(implied.LifetimeValue, c.LifetimeValue) {
		t.Fatalf("the orders imply %+v, the summary counted %+v", implied, c)
	}
}

// TestSummaryStaysSmall: the summary of a customer with 100,000 orders in
// every status and ten currencies, over 48 partitions, encodes in well under
// 16 KB.
func TestSummaryStaysSmall(t *testing.T) {
	var c CustomerDoc
	c.ID = "guest"
	currencies := []string{"EUR", "USD", "GBP", "JPY", "CHF", "SEK", "NOK", "DKK", "PLN", "CZK"}
	statuses := domain.AllStatuses
	for i := range 100_000 {
		cur := currencies[i%len(currencies)]
		to := Contribution{Status: string(statuses[i%len(statuses)]), Total: int64(i), Currency: cur}
		c.Count(Transition{Partition: int32(i % 48), Offset: int64(i), To: to})
	}
	b, err := bsonMarshal(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("summary of %d orders: %d bytes", c.OrderCount, len(b))
	if c.OrderCount != 100_000 || len(b) > 4<<10 {
		t.Fatalf("summary of %d orders takes %d bytes", c.OrderCount, len(b))
	}
}

func bsonMarshal(v any) ([]byte, error) { return bson.Marshal(v) }
