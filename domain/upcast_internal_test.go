package domain

import (
	"encoding/json"
	"testing"
)

// TestUpcasterChain: one upcaster per version before SchemaVersion, in
// order, each with both functions.
func TestUpcasterChain(t *testing.T) {
	if len(upcasters) != SchemaVersion-1 {
		t.Fatalf("%d upcasters for schema version %d, want %d", len(upcasters), SchemaVersion, SchemaVersion-1)
	}
	for i, u := range upcasters {
		if u.from != i+1 || u.event == nil || u.order == nil {
			t.Errorf("upcasters[%d] is from %d (event %v, order %v), want from %d with both", i, u.from, u.event != nil, u.order != nil, i+1)
		}
	}
}

// TestCancellationReasonCodeUpcaster (v1 -> v2).
func TestCancellationReasonCodeUpcaster(t *testing.T) {
	for _, tc := range []struct {
		name, typ, in, want string
	}{
		{"cancellation gets OTHER", "OrderCancelled", `{"reason":"too late"}`, `{"reason":"too late","reasonCode":"OTHER"}`},
		{"a code already there is kept", "OrderCancelled", `{"reason":"r","reasonCode":"OUT_OF_STOCK"}`, `{"reason":"r","reasonCode":"OUT_OF_STOCK"}`},
		{"null data", "OrderCancelled", `null`, `{"reasonCode":"OTHER"}`},
		{"absent data", "OrderCancelled", ``, `{"reasonCode":"OTHER"}`},
		{"other types unchanged", "OrderShipped", `{"trackingNumber":"T"}`, `{"trackingNumber":"T"}`},
		{"other types unchanged, even malformed", "OrderConfirmed", `5`, `5`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := cancellationReasonCodeEvent(tc.typ, json.RawMessage(tc.in))
			if err != nil || !jsonEqual(t, got, tc.want) {
				t.Errorf("got %s, %v; want %s", got, err, tc.want)
			}
		})
	}
	if _, err := cancellationReasonCodeEvent("OrderCancelled", json.RawMessage(`5`)); err == nil {
		t.Error("a cancellation whose data is not an object upcast without an error")
	}
	for _, tc := range []struct{ name, in, want string }{
		{"cancelled order gets OTHER", `{"status":"CANCELLED","cancellationReason":"r"}`, `{"status":"CANCELLED","cancellationReason":"r","cancellationReasonCode":"OTHER"}`},
		{"open order unchanged", `{"status":"CONFIRMED"}`, `{"status":"CONFIRMED"}`},
		{"code kept", `{"status":"CANCELLED","cancellationReasonCode":"PAYMENT_FAILED"}`, `{"status":"CANCELLED","cancellationReasonCode":"PAYMENT_FAILED"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := cancellationReasonCodeOrder(json.RawMessage(tc.in))
			if err != nil || !jsonEqual(t, got, tc.want) {
				t.Errorf("got %s, %v; want %s", got, err, tc.want)
			}
		})
	}
}

func jsonEqual(t *testing.T, got json.RawMessage, want string) bool {
	t.Helper()
	var a, b any
	if err := json.Unmarshal(got, &a); err != nil {
		return false
	}
	if err := json.Unmarshal([]byte(want), &b); err != nil {
		t.Fatal(err)
	}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}
