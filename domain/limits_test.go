package domain_test

import (
	. "github.com/ordergateway/gateway/domain"
	"strings"
	"testing"
	"time"
)

func TestCheckIdempotencyKey(t *testing.T) {
	for _, tc := range []struct {
		key string
		ok  bool
	}{
		{"", true},
		{"checkout-7f3a", true},
		{strings.Repeat("k", MaxIdempotencyKeyLength), true},
		{strings.Repeat("é", MaxIdempotencyKeyLength/2), true}, // 128 bytes
		{strings.Repeat("k", MaxIdempotencyKeyLength+1), false},
		{strings.Repeat("é", MaxIdempotencyKeyLength/2) + "k", false},
		{"tab\tkey", false},
		{"bad\xffutf8", false},
	} {
		err := CheckIdempotencyKey(tc.key)
		if (err == nil) != tc.ok {
			t.Errorf("CheckIdempotencyKey(%.20q…, %d bytes) = %v, want ok %v", tc.key, len(tc.key), err, tc.ok)
		}
		if err != nil && (ErrorCode(err) != CodeInvalidInput || strings.Join(err.(*Error).Field, ".") != "input.idempotencyKey") {
			t.Errorf("CheckIdempotencyKey: %v, want INVALID_INPUT on input.idempotencyKey", err)
		}
	}
}

// TestRefusalsDoNotEchoUnboundedInput: every field of a command, 100 KB
// long, is refused with a message of at most 300 bytes.
func TestRefusalsDoNotEchoUnboundedInput(t *testing.T) {
	huge := strings.Repeat("ü", 50_000)
	item := ItemInput{SKU: "A", Name: "A", Quantity: 1, UnitPrice: "1"}
	place := func(f func(*PlaceOrder)) PlaceOrder {
		c := PlaceOrder{OrderID: "o", CustomerID: "c", Currency: "EUR", Items: []ItemInput{item},
			ShippingAddress: &Address{Name: "N", Line1: "L", City: "C", PostalCode: "P", Country: "DE"}}
		f(&c)
		return c
	}
	cmds := map[string]Command{
		"orderId":         place(func(c *PlaceOrder) { c.OrderID = huge }),
		"customerId":      place(func(c *PlaceOrder) { c.CustomerID = huge }),
		"currencyCode":    place(func(c *PlaceOrder) { c.Currency = huge }),
		"sku":             place(func(c *PlaceOrder) { c.Items[0].SKU = huge }),
		"name":            place(func(c *PlaceOrder) { c.Items[0].Name = huge }),
		"unitPrice":       place(func(c *PlaceOrder) { c.Items[0].UnitPrice = huge }),
		"zero-padded":     place(func(c *PlaceOrder) { c.Items[0].UnitPrice = strings.Repeat("0", 100_000) + "1" }),
		"country":         place(func(c *PlaceOrder) { c.ShippingAddress.Country = huge }),
		"line1":           place(func(c *PlaceOrder) { c.ShippingAddress.Line1 = huge }),
		"addOrderItem":    AddOrderItem{OrderID: "o", Item: ItemInput{SKU: "B", Name: "B", Quantity: 1, UnitPrice: huge}},
		"removeOrderItem": RemoveOrderItem{OrderID: "o", SKU: huge},
		"trackingNumber":  ShipOrder{OrderID: "o", TrackingNumber: huge},
		"reason":          CancelOrder{OrderID: "o", Reason: huge},
	}
	order := Fold([]Event{{OrderID: "o", Version: 1, OccurredAt: time.Now(), Data: OrderPlaced{CustomerID: "c", Currency: "EUR", Items: []Item{{SKU: "A", Name: "A", Quantity: 1, UnitPrice: 100}}}}})
	for name, cmd := range cmds {
		state := order
		if _, ok := cmd.(PlaceOrder); ok {
			state = Order{}
		}
		_, err := Decide(state, cmd, time.Now())
		if ErrorCode(err) != CodeInvalidInput {
			t.Errorf("%s: %v, want INVALID_INPUT", name, err)
			continue
		}
		if msg := err.(*Error).Message; len(msg) > 300 {
			t.Errorf("%s: message of %d bytes: %.80s…", name, len(msg), msg)
		}
	}
}
