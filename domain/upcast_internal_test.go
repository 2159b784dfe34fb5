package domain

import (
	"encoding/json"
	"testing"
)

// TestUpcasterChain: upcasters only for known event types, none nil; one
// order upcaster per order version before OrderVersion; the versions this
// code writes follow from them.
func TestUpcasterChain(t *testing.T) {
	for typ, us := range eventUpcasters {
		if _, ok := eventFactories[typ]; !ok {
			t.Errorf("upcasters for unknown event type %q", typ)
		}
		for i, u := range us {
			if u == nil {
				t.Errorf("%s upcaster from version %d is nil", typ, i+1)
			}
		}
	}
	if len(orderUpcasters) != OrderVersion-1 {
		t.Errorf("%d order upcasters for order version %d", len(orderUpcasters), OrderVersion)
	}
	if EventVersion("OrderCancelled") != 2 || EventVersion("OrderPlaced") != 1 {
		t.Errorf("event versions: OrderCancelled %d, OrderPlaced %d; want 2 and 1", EventVersion("OrderCancelled"), EventVersion("OrderPlaced"))
	}
}

// TestCancellationReasonCodeUpcaster (v1 -> v2).
func TestCancellationReasonCodeUpcaster(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"cancellation gets OTHER", `{"reason":"too late"}`, `{"reason":"too late","reasonCode":"OTHER"}`},
		{"a code already there is kept", `{"reason":"r","reasonCode":"OUT_OF_STOCK"}`, `{"reason":"r","reasonCode":"OUT_OF_STOCK"}`},
		{"null data", `null`, `{"reasonCode":"OTHER"}`},
		{"absent data", ``, `{"reasonCode":"OTHER"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := cancellationReasonCodeEvent(json.RawMessage(tc.in))
			if err != nil || !jsonEqual(t, got, tc.want) {
				t.Errorf("got %s, %v; want %s", got, err, tc.want)
			}
		})
	}
	if _, err := cancellationReasonCodeEvent(json.RawMessage(`5`)); err == nil {
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
