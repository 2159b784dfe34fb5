package domain_test

import (
	"errors"
	. "github.com/ordergateway/gateway/domain"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzDecide feeds commands built from arbitrary field values (what a
// GraphQL request can carry) through Decide, on no order and on a placed
// one: it never panics, a refusal is an *Error whose message stays short
// (it quotes at most maxEchoed bytes of a value), and what it accepts
// yields events that encode, decode and evolve.
func FuzzDecide(f *testing.F) {
	f.Add("ord-1", "cust-1", "USD", "SKU-1", "Item", 1, "19.99", "reason", "TRACK-1")
	f.Add("", "", "", "", "", 0, "", "", "")
	f.Add("o", "c", "JPY", "S", "N", MaxQuantity+1, "0000000000000000000000001", "\x00", "\xff")
	f.Add("ord\u2028", "c", "usd", "S", "N", -1, "1e9", "r", "t")
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, orderID, customerID, currency, sku, name string, qty int, price, reason, tracking string) {
		item := ItemInput{SKU: sku, Name: name, Quantity: qty, UnitPrice: price}
		placed := Fold([]Event{{OrderID: orderID, Version: 1, OccurredAt: now, Data: OrderPlaced{CustomerID: "c", Currency: "USD", Items: []Item{{SKU: "A", Name: "A", Quantity: 1, UnitPrice: 100}}}}})
		cmds := []Command{
			PlaceOrder{OrderID: orderID, CustomerID: customerID, Currency: currency, Items: []ItemInput{item}},
			AddOrderItem{OrderID: orderID, Item: item},
			RemoveOrderItem{OrderID: orderID, SKU: sku},
			ConfirmOrder{OrderID: orderID},
			ShipOrder{OrderID: orderID, TrackingNumber: tracking},
			DeliverOrder{OrderID: orderID},
			CancelOrder{OrderID: orderID, Reason: reason},
		}
		for _, state := range []Order{{}, placed} {
			for _, cmd := range cmds {
				events, err := Decide(state, cmd, now)
				if err != nil {
					var de *Error
					if !errors.As(err, &de) {
						t.Fatalf("%T: error %v is not an *Error", cmd, err)
					}
					if len(de.Message) > 300 || !utf8.ValidString(de.Message) {
						t.Fatalf("%T: message of %d bytes (or not UTF-8): %q", cmd, len(de.Message), de.Message)
					}
					continue
				}
				o := state
				for _, e := range events {
					b, err := MarshalEvent(e)
					if err != nil {
						t.Fatalf("%T: event %+v does not encode: %v", cmd, e, err)
					}
					back, err := UnmarshalEvent(b)
					if err != nil {
						t.Fatalf("%T: event %s does not decode: %v", cmd, b, err)
					}
					o = Evolve(o, back)
				}
				if len(events) > 0 && o.Version != state.Version+len(events) {
					t.Fatalf("%T: version %d after %d events on version %d", cmd, o.Version, len(events), state.Version)
				}
			}
		}
	})
}

// FuzzUnmarshalCommand: any payload of any command type decodes to a
// command or an error, never a panic, and a decoded command survives
// Validate and Decide.
func FuzzUnmarshalCommand(f *testing.F) {
	for _, s := range []string{`{"orderId":"o","customerId":"c","currency":"USD","items":[{"sku":"A","name":"A","quantity":1,"unitPrice":"1"}]}`,
		`{}`, `null`, `[]`, `{"orderId":1}`, `{"items":[null]}`, `{"shippingAddress":{}}`} {
		for _, typ := range []string{"PlaceOrder", "AddOrderItem", "CancelOrder", "Nope"} {
			f.Add(typ, []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, typ string, b []byte) {
		cmd, err := UnmarshalCommand(typ, b)
		if err != nil {
			return
		}
		if Validate(cmd) == nil {
			_, _ = Decide(Order{}, cmd, time.Now())
		}
	})
}
