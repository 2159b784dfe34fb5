package domaintest

import (
	"fmt"
	"time"

	"github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/view"
)

// GoldenT0 is when the golden history starts (command/golden_test.go
// decides its commands at GoldenAt(minutes)).
var GoldenT0 = time.Date(2026, time.March, 2, 10, 0, 0, 0, time.UTC)

// GoldenAt is GoldenT0 plus minutes.
func GoldenAt(minutes int) time.Time { return GoldenT0.Add(time.Duration(minutes) * time.Minute) }

// Golden is the golden history (domain/testdata/golden/v*/) as rules, one
// per order: given its events in today's shape, then its view. The records
// of every golden folder, decoded and upcast, must be these events and
// project to these views; an order a folder's records lack (one added to
// the history later) is skipped for that folder.
var Golden = []ViewCase{
	{
		Name: "ord_golden_a",
		Given: []domain.Event{
			goldenEvent("ord_golden_a", 1, 0, 1, domain.OrderPlaced{CustomerID: "cust-golden-1", Currency: "EUR",
				Items:           []domain.Item{{SKU: "MUG-01", Name: "Mug", Quantity: 2, UnitPrice: 1250}, {SKU: "TEA-07", Name: "Tea, green", Quantity: 1, UnitPrice: 499}},
				ShippingAddress: &domain.Address{Name: "Ada Lovelace", Line1: "12 St James's Square", City: "London", PostalCode: "SW1Y 4JH", Country: "GB"}}),
			goldenEvent("ord_golden_a", 2, 1, 2, domain.OrderItemAdded{Item: domain.Item{SKU: "SPOON-3", Name: "Spoon", Quantity: 3, UnitPrice: 120}}),
			goldenEvent("ord_golden_a", 3, 2, 3, domain.OrderItemRemoved{SKU: "TEA-07"}),
			goldenEvent("ord_golden_a", 4, 3, 4, domain.OrderConfirmed{}),
			goldenEvent("ord_golden_a", 5, 4, 5, domain.OrderShipped{TrackingNumber: "1Z999AA10123456784"}),
			goldenEvent("ord_golden_a", 6, 5, 6, domain.OrderDelivered{}),
		},
		Then: view.OrderDoc{ID: "ord_golden_a", CustomerID: "cust-golden-1", Status: "DELIVERED", Currency: "EUR",
			Items:     []view.ItemDoc{{SKU: "MUG-01", Name: "Mug", Quantity: 2, UnitPrice: 1250, LineTotal: 2500}, {SKU: "SPOON-3", Name: "Spoon", Quantity: 3, UnitPrice: 120, LineTotal: 360}},
			ItemCount: 5, Total: 2860,
			ShippingAddress: &view.AddressDoc{Name: "Ada Lovelace", Line1: "12 St James's Square", City: "London", PostalCode: "SW1Y 4JH", Country: "GB"},
			TrackingNumber:  "1Z999AA10123456784",
			History: []view.ChangeDoc{{Status: "PENDING", At: GoldenAt(0)}, {Status: "CONFIRMED", At: GoldenAt(3)},
				{Status: "SHIPPED", At: GoldenAt(4)}, {Status: "DELIVERED", At: GoldenAt(5)}},
			Version: 6, CreatedAt: GoldenAt(0), UpdatedAt: GoldenAt(5)},
	},
	{
		Name: "ord_golden_b",
		Given: []domain.Event{
			goldenEvent("ord_golden_b", 1, 10, 8, domain.OrderPlaced{CustomerID: "cust-golden-2", Currency: "USD",
				Items: []domain.Item{{SKU: "BOOK-9", Name: "Book", Quantity: 1, UnitPrice: 3000}}}),
			goldenEvent("ord_golden_b", 2, 11, 9, domain.OrderCancelled{Reason: "customer changed their mind", ReasonCode: domain.ReasonOther}),
		},
		Then: view.OrderDoc{ID: "ord_golden_b", CustomerID: "cust-golden-2", Status: "CANCELLED", Currency: "USD",
			Items:     []view.ItemDoc{{SKU: "BOOK-9", Name: "Book", Quantity: 1, UnitPrice: 3000, LineTotal: 3000}},
			ItemCount: 1, Total: 3000, CancellationReason: "customer changed their mind", CancellationReasonCode: "OTHER",
			History: []view.ChangeDoc{{Status: "PENDING", At: GoldenAt(10)}, {Status: "CANCELLED", At: GoldenAt(11), Reason: "customer changed their mind"}},
			Version: 2, CreatedAt: GoldenAt(10), UpdatedAt: GoldenAt(11)},
	},
	{
		Name: "ord_golden_c",
		Given: []domain.Event{
			goldenEvent("ord_golden_c", 1, 20, 10, domain.OrderPlaced{CustomerID: "cust-golden-1", Currency: "JPY",
				Items: []domain.Item{{SKU: "KETTLE", Name: "Kettle", Quantity: 1, UnitPrice: 4500}}}),
			goldenEvent("ord_golden_c", 2, 21, 11, domain.OrderConfirmed{}),
			goldenEvent("ord_golden_c", 3, 22, 12, domain.OrderCancelled{Reason: "out of stock", ReasonCode: domain.ReasonOther}),
		},
		Then: view.OrderDoc{ID: "ord_golden_c", CustomerID: "cust-golden-1", Status: "CANCELLED", Currency: "JPY",
			Items:     []view.ItemDoc{{SKU: "KETTLE", Name: "Kettle", Quantity: 1, UnitPrice: 4500, LineTotal: 4500}},
			ItemCount: 1, Total: 4500, CancellationReason: "out of stock", CancellationReasonCode: "OTHER",
			History: []view.ChangeDoc{{Status: "PENDING", At: GoldenAt(20)}, {Status: "CONFIRMED", At: GoldenAt(21)},
				{Status: "CANCELLED", At: GoldenAt(22), Reason: "out of stock"}},
			Version: 3, CreatedAt: GoldenAt(20), UpdatedAt: GoldenAt(22)},
	},
	{
		// From golden folder v2 (OrderCancelled version 2): a cancellation
		// with a reason code.
		Name: "ord_golden_d",
		Given: []domain.Event{
			goldenEvent("ord_golden_d", 1, 30, 13, domain.OrderPlaced{CustomerID: "cust-golden-2", Currency: "GBP",
				Items: []domain.Item{{SKU: "LAMP", Name: "Lamp", Quantity: 1, UnitPrice: 2500}}}),
			goldenEvent("ord_golden_d", 2, 31, 14, domain.OrderCancelled{Reason: "card reported stolen", ReasonCode: domain.ReasonFraudSuspected}),
		},
		Then: view.OrderDoc{ID: "ord_golden_d", CustomerID: "cust-golden-2", Status: "CANCELLED", Currency: "GBP",
			Items:     []view.ItemDoc{{SKU: "LAMP", Name: "Lamp", Quantity: 1, UnitPrice: 2500, LineTotal: 2500}},
			ItemCount: 1, Total: 2500, CancellationReason: "card reported stolen", CancellationReasonCode: "FRAUD_SUSPECTED",
			History: []view.ChangeDoc{{Status: "PENDING", At: GoldenAt(30)}, {Status: "CANCELLED", At: GoldenAt(31), Reason: "card reported stolen"}},
			Version: 2, CreatedAt: GoldenAt(30), UpdatedAt: GoldenAt(31)},
	},
}

// goldenEvent is event version of order id at GoldenAt(minute), caused by
// the golden history's command number cmd.
func goldenEvent(id string, version, minute, cmd int, data domain.EventData) domain.Event {
	return domain.Event{OrderID: id, Version: version, OccurredAt: GoldenAt(minute), CommandID: fmt.Sprintf("cmd_golden_%02d", cmd), Data: data}
}
