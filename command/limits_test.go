package command

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/ordergateway/gateway/domain"
)

// largestOrder is an order at every input limit, with names of characters
// that JSON escapes to six bytes each ("<" becomes \u003c).
func largestOrder(t *testing.T) (domain.PlaceOrder, domain.Order) {
	t.Helper()
	text := func(n int) string { return strings.Repeat("<", n) }
	cmd := domain.PlaceOrder{OrderID: strings.Repeat("o", domain.MaxIDLength), CustomerID: strings.Repeat("c", domain.MaxIDLength), Currency: "CLF",
		ShippingAddress: &domain.Address{Name: text(domain.MaxTextLength), Line1: text(domain.MaxTextLength), Line2: text(domain.MaxTextLength),
			City: text(domain.MaxTextLength), PostalCode: text(domain.MaxTextLength), Country: "DE"}}
	for i := range domain.MaxItems {
		sku := strings.Repeat("<", domain.MaxSKULength-3) + string(rune('A'+i/26)) + string(rune('A'+i%26)) + "x"
		cmd.Items = append(cmd.Items, domain.ItemInput{SKU: sku, Name: text(domain.MaxTextLength), Quantity: domain.MaxQuantity, UnitPrice: "99999999.9999"})
	}
	now := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	events, err := domain.Decide(domain.Order{}, cmd, now)
	if err != nil {
		t.Fatalf("the largest order is refused: %v", err)
	}
	o := domain.Evolve(domain.Order{}, events[0])
	for _, next := range []domain.Command{domain.ConfirmOrder{OrderID: o.ID}, domain.ShipOrder{OrderID: o.ID, TrackingNumber: text(domain.MaxTrackingLength)}} {
		es, err := domain.Decide(o, next, now)
		if err != nil {
			t.Fatal(err)
		}
		o = domain.Evolve(o, es[0])
	}
	return cmd, o
}

// TestSnapshotsStayUnderTheLimit: an order at every input limit with the
// most outcomes, each with the longest key and a long message, is encoded
// within MaxSnapshotBytes by forgetting its oldest outcomes; the newest
// are kept, and memory agrees with the snapshot. An order with few outcomes
// keeps them all.
func TestSnapshotsStayUnderTheLimit(t *testing.T) {
	_, o := largestOrder(t)
	orderOnly, _ := json.Marshal(orderState{Order: o})
	t.Logf("the largest order's snapshot without outcomes: %d bytes", len(orderOnly))
	if len(orderOnly) > MaxSnapshotBytes/2 {
		t.Fatalf("the largest order alone takes %d bytes, over half of MaxSnapshotBytes (%d)", len(orderOnly), MaxSnapshotBytes)
	}
	s := &orderState{Order: o}
	for i := range MaxRecordedOutcomes {
		key := strings.Repeat("<", domain.MaxIdempotencyKeyLength-4) + string(rune('A'+i%26)) + string(rune('A'+i/26%26)) + string(rune('A'+i/676))
		_, err := domain.Decide(o, domain.AddOrderItem{OrderID: o.ID, Item: domain.ItemInput{SKU: o.Items[0].SKU, Name: "n", Quantity: 1, UnitPrice: "1"}}, time.Now())
		s.Outcomes = append(s.Outcomes, outcome{Key: key, Hash: strings.Repeat("h", 32), CommandID: newID("cmd_"), Version: o.Version, Error: err.(*domain.Error)})
	}
	newest := s.Outcomes[len(s.Outcomes)-1].Key
	v, err := encodeSnapshot(s)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("with %d outcomes of %d-byte keys: snapshot of %d bytes keeps the newest %d", MaxRecordedOutcomes, domain.MaxIdempotencyKeyLength, len(v), len(s.Outcomes))
	if len(v) > MaxSnapshotBytes || len(s.Outcomes) == MaxRecordedOutcomes || len(s.Outcomes) < 100 {
		t.Errorf("snapshot of %d bytes with %d outcomes; want at most %d bytes and between 100 and %d outcomes", len(v), len(s.Outcomes), MaxSnapshotBytes, MaxRecordedOutcomes)
	}
	var back orderState
	if err := json.Unmarshal(v, &back); err != nil || len(back.Outcomes) != len(s.Outcomes) || back.Outcomes[len(back.Outcomes)-1].Key != newest {
		t.Errorf("the snapshot does not hold what memory holds: %d outcomes, err %v", len(back.Outcomes), err)
	}
	few := &orderState{Order: o, Outcomes: s.Outcomes[:10]}
	if v, err := encodeSnapshot(few); err != nil || len(few.Outcomes) != 10 || len(v) > MaxSnapshotBytes {
		t.Errorf("an order with 10 outcomes: %d kept, %d bytes, %v", len(few.Outcomes), len(v), err)
	}
}

// TestLargestCommandFitsTheBroker: the largest command, its event, its
// reply and its snapshot each fit sarama's default message size, with room.
func TestLargestCommandFitsTheBroker(t *testing.T) {
	cmd, o := largestOrder(t)
	_, data, _ := domain.MarshalCommand(cmd)
	env, _ := json.Marshal(envelope{CommandID: newID("cmd_"), Type: "PlaceOrder", OrderID: cmd.OrderID, IdempotencyKey: strings.Repeat("<", domain.MaxIdempotencyKeyLength), Data: data})
	events, _ := domain.Decide(domain.Order{}, cmd, time.Now())
	event, _ := domain.MarshalEvent(events[0])
	reply, _ := json.Marshal(Reply{CommandID: newID("cmd_"), OrderID: o.ID, Version: o.Version, Order: &o})
	limit := sarama.NewConfig().Producer.MaxMessageBytes
	for name, n := range map[string]int{"command": len(env), "event": len(event), "reply": len(reply)} {
		t.Logf("largest %s: %d bytes", name, n)
		if n > limit/2 {
			t.Errorf("the largest %s takes %d bytes, over half of the %d a message may have", name, n, limit)
		}
	}
	if MaxSnapshotBytes > limit/2 {
		t.Errorf("MaxSnapshotBytes %d is over half of the %d a message may have", MaxSnapshotBytes, limit)
	}
}

// TestOverlongKeyIsRefusedByTheHandler: a command that reaches the handler
// with an idempotency key over the limit (not sent by the gateway, which
// refuses it) is answered INVALID_INPUT without being applied or recorded.
func TestOverlongKeyIsRefusedByTheHandler(t *testing.T) {
	h := &Handler{cfg: HandlerConfig{Now: time.Now}}
	_, o := largestOrder(t)
	state := &orderState{Order: o}
	data, _ := json.Marshal(domain.ConfirmOrder{OrderID: o.ID})
	for _, key := range []string{strings.Repeat("k", domain.MaxIdempotencyKeyLength+1), "bad\x00key", "bad\xffkey"} {
		r, events, err := h.handle(state, envelope{CommandID: "c", Type: "ConfirmOrder", OrderID: o.ID, IdempotencyKey: key, Data: data}, domain.ConfirmOrder{OrderID: o.ID})
		if err != nil || len(events) != 0 || r.Error == nil || r.Error.Code != domain.CodeInvalidInput || strings.Join(r.Error.Field, ".") != "input.idempotencyKey" {
			t.Errorf("key of %d bytes: reply %+v, %d events, err %v; want INVALID_INPUT on input.idempotencyKey", len(key), r.Error, len(events), err)
		}
		if len(state.Outcomes) != 0 {
			t.Errorf("key of %d bytes: an outcome was recorded", len(key))
		}
	}
}
