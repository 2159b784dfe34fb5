package domain_test

import (
	"encoding/json"
	. "github.com/ordergateway/gateway/domain"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// sampleEvents has one event of every type, with every field set.
func sampleEvents() []Event {
	zone := time.FixedZone("UTC+9", 9*3600)
	base := time.Date(2025, 3, 4, 21, 30, 0, 123456789, zone) // not UTC on purpose
	data := []EventData{
		OrderPlaced{CustomerID: "cust-1", Currency: "USD", Items: []Item{line("a", 2, 1999), line("b", 1, 0)}, ShippingAddress: &Address{
			Name: "Ada", Line1: "1 Main St", Line2: "Flat 2", City: "London", PostalCode: "N1", Country: "GB"}},
		OrderItemAdded{Item: Item{SKU: "ç-ü", Name: "Ünïcode \"quoted\" <b>", Quantity: 10000, UnitPrice: MaxUnitPriceMinor}},
		OrderItemRemoved{SKU: "a"},
		OrderConfirmed{},
		OrderShipped{TrackingNumber: "1Z999AA10123456784"},
		OrderDelivered{},
		OrderCancelled{Reason: "customer changed their mind", ReasonCode: ReasonCustomerRequest},
	}
	evs := make([]Event, len(data))
	for i, d := range data {
		evs[i] = Event{OrderID: "order-é-1", Version: i + 1, OccurredAt: base.Add(time.Duration(i) * time.Hour), CommandID: "cmd-" + d.EventType(), Data: d}
	}
	return evs
}

func TestEventRoundTrip(t *testing.T) {
	evs := sampleEvents()
	evs = append(evs,
		// No command id, no address, nil items.
		Event{OrderID: "o", Version: 1, OccurredAt: testNow, Data: OrderPlaced{CustomerID: "c", Currency: "JPY"}},
		Event{OrderID: "o", Version: 9, OccurredAt: testNow, Data: OrderPlaced{CustomerID: "c", Currency: "JPY", Items: []Item{}}},
	)
	types := map[string]bool{}
	for _, e := range evs {
		types[e.Data.EventType()] = true
		t.Run(e.Data.EventType(), func(t *testing.T) {
			b, err := MarshalEvent(e)
			if err != nil {
				t.Fatalf("MarshalEvent: %v", err)
			}
			got, err := UnmarshalEvent(b)
			if err != nil {
				t.Fatalf("UnmarshalEvent(%s): %v", b, err)
			}
			want := e
			want.OccurredAt = e.OccurredAt.UTC()
			if !reflect.DeepEqual(got, want) {
				t.Errorf("round trip:\n got  %#v\n want %#v\n wire %s", got, want, b)
			}
			if got.OccurredAt.Location() != time.UTC {
				t.Errorf("occurredAt location = %v, want UTC", got.OccurredAt.Location())
			}

			var env map[string]json.RawMessage
			if err := json.Unmarshal(b, &env); err != nil {
				t.Fatalf("wire form is not a JSON object: %v", err)
			}
			if string(env["type"]) != `"`+e.Data.EventType()+`"` || string(env["schemaVersion"]) != strconv.Itoa(EventVersion(e.Data.EventType())) {
				t.Errorf("envelope type/schemaVersion = %s/%s", env["type"], env["schemaVersion"])
			}
			if _, has := env["commandId"]; has != (e.CommandID != "") {
				t.Errorf("commandId present = %v with command id %q", has, e.CommandID)
			}
			if !strings.HasSuffix(strings.Trim(string(env["occurredAt"]), `"`), "Z") {
				t.Errorf("occurredAt on the wire = %s, want UTC", env["occurredAt"])
			}
		})
	}
	for _, typ := range EventTypes() {
		if !types[typ] {
			t.Errorf("event type %s has no round-trip case", typ)
		}
	}
}

func TestEventRoundTripThroughEvolve(t *testing.T) {
	// Folding decoded events gives the same state as folding the originals.
	evs := history(usdPlaced, OrderItemAdded{Item: line("b", 1, 5)}, OrderItemRemoved{SKU: "sku-1"}, OrderConfirmed{},
		OrderShipped{TrackingNumber: "T"}, OrderDelivered{})
	decoded := make([]Event, len(evs))
	for i, e := range evs {
		b, err := MarshalEvent(e)
		if err != nil {
			t.Fatal(err)
		}
		if decoded[i], err = UnmarshalEvent(b); err != nil {
			t.Fatal(err)
		}
	}
	if a, b := Fold(evs), Fold(decoded); !reflect.DeepEqual(a, b) {
		t.Errorf("fold differs after decoding:\n got  %+v\n want %+v", b, a)
	}
}

func TestUnmarshalEventErrors(t *testing.T) {
	const ok = `"orderId":"o","version":1,"type":"OrderConfirmed","schemaVersion":1,"occurredAt":"2025-01-01T00:00:00Z","data":{}`
	if _, err := UnmarshalEvent([]byte("{" + ok + "}")); err != nil {
		t.Fatalf("control case fails: %v", err)
	}
	env := func(fields string) []byte { return []byte("{" + fields + "}") }
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"empty input", nil, "not valid JSON"},
		{"truncated", []byte(`{"orderId":"o"`), "not valid JSON"},
		{"not an object", []byte(`[1,2]`), "not valid JSON"},
		{"garbage", []byte(`hello`), "not valid JSON"},
		{"version is a string", env(`"orderId":"o","version":"1","type":"OrderConfirmed","schemaVersion":1`), "not valid JSON"},
		{"bad time", env(`"orderId":"o","version":1,"type":"OrderConfirmed","schemaVersion":1,"occurredAt":"yesterday"`), "not valid JSON"},
		{"unknown type", env(`"orderId":"o","version":1,"type":"OrderExploded","schemaVersion":1`), `unknown event type "OrderExploded"`},
		{"missing type", env(`"orderId":"o","version":1,"schemaVersion":1`), "unknown event type"},
		{"type in wrong case", env(`"orderId":"o","version":1,"type":"orderconfirmed","schemaVersion":1`), "unknown event type"},
		{"schema version 99", env(`"orderId":"o","version":1,"type":"OrderConfirmed","schemaVersion":99`), "schema version 99"},
		{"schema version -1", env(`"orderId":"o","version":1,"type":"OrderConfirmed","schemaVersion":-1`), "schema version -1"},
		{"missing order id", env(`"version":1,"type":"OrderConfirmed","schemaVersion":1`), "no orderId"},
		{"empty order id", env(`"orderId":"","version":1,"type":"OrderConfirmed","schemaVersion":1`), "no orderId"},
		{"version 0", env(`"orderId":"o","version":0,"type":"OrderConfirmed","schemaVersion":1`), "version 0"},
		{"version missing", env(`"orderId":"o","type":"OrderConfirmed","schemaVersion":1`), "version 0"},
		{"version -3", env(`"orderId":"o","version":-3,"type":"OrderConfirmed","schemaVersion":1`), "version -3"},
		{"data of wrong shape", env(`"orderId":"o","version":1,"type":"OrderPlaced","schemaVersion":1,"data":5`), "OrderPlaced data"},
		{"data field of wrong type", env(`"orderId":"o","version":1,"type":"OrderItemAdded","schemaVersion":1,"data":{"item":{"quantity":"two"}}`), "OrderItemAdded data"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := UnmarshalEvent(tc.in)
			if err == nil {
				t.Fatalf("UnmarshalEvent(%s) = %+v, want an error", tc.in, got)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %q, want it to contain %q", err, tc.want)
			}
			if !reflect.DeepEqual(got, Event{}) {
				t.Errorf("event = %+v with an error, want zero", got)
			}
		})
	}
}

func TestUnmarshalEventLenient(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want EventData
	}{
		{"null data", `{"orderId":"o","version":2,"type":"OrderShipped","schemaVersion":1,"data":null}`, OrderShipped{}},
		{"missing data", `{"orderId":"o","version":2,"type":"OrderDelivered","schemaVersion":1}`, OrderDelivered{}},
		{"unknown fields ignored", `{"orderId":"o","version":2,"type":"OrderCancelled","schemaVersion":2,"extra":true,"data":{"reason":"r","reasonCode":"OUT_OF_STOCK","x":1}}`, OrderCancelled{Reason: "r", ReasonCode: ReasonOutOfStock}},
		{"schema version 1 upcast", `{"orderId":"o","version":2,"type":"OrderCancelled","schemaVersion":1,"data":{"reason":"r"}}`, OrderCancelled{Reason: "r", ReasonCode: ReasonOther}},
		{"schema version missing is 1", `{"orderId":"o","version":2,"type":"OrderCancelled","data":{"reason":"r"}}`, OrderCancelled{Reason: "r", ReasonCode: ReasonOther}},
		{"schema version 0 is 1", `{"orderId":"o","version":2,"type":"OrderCancelled","schemaVersion":0,"data":{"reason":"r"}}`, OrderCancelled{Reason: "r", ReasonCode: ReasonOther}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := UnmarshalEvent([]byte(tc.in))
			if err != nil {
				t.Fatalf("UnmarshalEvent: %v", err)
			}
			if !reflect.DeepEqual(got.Data, tc.want) || got.OrderID != "o" || got.Version != 2 {
				t.Errorf("got %#v, want data %#v", got, tc.want)
			}
		})
	}
}

func TestCommandRoundTrip(t *testing.T) {
	cmds := []Command{
		PlaceOrder{OrderID: "o-1", CustomerID: "c-1", Currency: "USD", Items: []ItemInput{inp("a", 2, "19.99"), inp("b", 1, "0")}},
		PlaceOrder{OrderID: "o-1", CustomerID: "c-1", Currency: "KWD", Items: []ItemInput{inp("a", 1, "1.234")}, ShippingAddress: validAddress()},
		AddOrderItem{OrderID: "o-1", Item: inp("c", 3, "5.00")},
		AddOrderItem{OrderID: "o-1", Item: inp("c", 3, "5.00"), ExpectedVersion: ver(4)},
		RemoveOrderItem{OrderID: "o-1", SKU: "a"},
		RemoveOrderItem{OrderID: "o-1", SKU: "a", ExpectedVersion: ver(0)},
		ConfirmOrder{OrderID: "o-1"},
		ConfirmOrder{OrderID: "o-1", ExpectedVersion: ver(2)},
		ShipOrder{OrderID: "o-1", TrackingNumber: "T1"},
		ShipOrder{OrderID: "o-1", TrackingNumber: "T1", ExpectedVersion: ver(3)},
		DeliverOrder{OrderID: "o-1"},
		DeliverOrder{OrderID: "o-1", ExpectedVersion: ver(4)},
		CancelOrder{OrderID: "o-1", Reason: "no longer needed"},
		CancelOrder{OrderID: "o-1", Reason: "no longer needed", ExpectedVersion: ver(5)},
	}
	types := map[string]bool{}
	for _, c := range cmds {
		typ, b, err := MarshalCommand(c)
		if err != nil {
			t.Fatalf("MarshalCommand(%#v): %v", c, err)
		}
		if typ != c.CommandType() {
			t.Errorf("type = %q, want %q", typ, c.CommandType())
		}
		types[typ] = true
		got, err := UnmarshalCommand(typ, b)
		if err != nil {
			t.Fatalf("UnmarshalCommand(%s, %s): %v", typ, b, err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Errorf("round trip:\n got  %#v\n want %#v\n wire %s", got, c, b)
		}
		if got.TargetOrderID() != c.TargetOrderID() || !reflect.DeepEqual(got.Expected(), c.Expected()) {
			t.Errorf("%s: target/expected changed in round trip", typ)
		}
	}
	for _, want := range []string{"PlaceOrder", "AddOrderItem", "RemoveOrderItem", "ConfirmOrder", "ShipOrder", "DeliverOrder", "CancelOrder"} {
		if !types[want] {
			t.Errorf("command type %s has no round-trip case", want)
		}
	}
}

func TestCommandWireNames(t *testing.T) {
	// The JSON field names are the API's; pin a few.
	_, b, _ := MarshalCommand(PlaceOrder{OrderID: "o", CustomerID: "c", Currency: "USD", Items: []ItemInput{inp("a", 1, "1")}})
	for _, key := range []string{`"orderId"`, `"customerId"`, `"currencyCode"`, `"items"`, `"sku"`, `"quantity"`, `"unitPrice":"1"`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("PlaceOrder wire %s lacks %s", b, key)
		}
	}
	if strings.Contains(string(b), "shippingAddress") {
		t.Errorf("nil shipping address is on the wire: %s", b)
	}
	_, b, _ = MarshalCommand(ConfirmOrder{OrderID: "o"})
	if strings.Contains(string(b), "expectedVersion") {
		t.Errorf("nil expected version is on the wire: %s", b)
	}
	_, b, _ = MarshalCommand(ConfirmOrder{OrderID: "o", ExpectedVersion: ver(0)})
	if !strings.Contains(string(b), `"expectedVersion":0`) {
		t.Errorf("expected version 0 is lost: %s", b)
	}
}

func TestUnmarshalCommandErrors(t *testing.T) {
	for _, tc := range []struct {
		name, typ, in, want string
	}{
		{"unknown type", "ExplodeOrder", `{}`, `unknown command type "ExplodeOrder"`},
		{"empty type", "", `{}`, "unknown command type"},
		{"type in wrong case", "placeorder", `{}`, "unknown command type"},
		{"malformed JSON", "PlaceOrder", `{"orderId":`, "not valid JSON"},
		{"empty payload", "ConfirmOrder", ``, "not valid JSON"},
		{"not an object", "CancelOrder", `"cancel"`, "not valid JSON"},
		{"wrong field type", "AddOrderItem", `{"orderId":"o","item":{"quantity":"3"}}`, "not valid JSON"},
		{"expected version not a number", "ShipOrder", `{"orderId":"o","expectedVersion":"2"}`, "not valid JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := UnmarshalCommand(tc.typ, []byte(tc.in))
			if err == nil {
				t.Fatalf("UnmarshalCommand = %#v, want an error", got)
			}
			if got != nil {
				t.Errorf("command = %#v with an error, want nil", got)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

func FuzzUnmarshalEvent(f *testing.F) {
	for _, e := range sampleEvents() {
		b, err := MarshalEvent(e)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{"", "{}", "null", "[]", `{"type":"OrderPlaced"}`,
		`{"orderId":"o","version":1,"type":"OrderPlaced","schemaVersion":1,"data":{"items":null}}`,
		`{"orderId":"o","version":1,"type":"OrderPlaced","schemaVersion":1,"occurredAt":"9999-12-31T23:00:00-05:00"}`,
		`{"orderId":"o","version":1,"type":"OrderShipped","schemaVersion":2}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := UnmarshalEvent(b)
		if err != nil {
			if !reflect.DeepEqual(e, Event{}) {
				t.Fatalf("non-zero event %+v with error %v", e, err)
			}
			return
		}
		if e.OrderID == "" || e.Version < 1 || e.Data == nil {
			t.Fatalf("accepted an invalid event %+v", e)
		}
		if !slices.Contains(EventTypes(), e.Data.EventType()) {
			t.Fatalf("accepted unknown type %T", e.Data)
		}
		// A decoded event must survive Evolve and a re-encode.
		_ = Evolve(Fold(nil), e)
		b2, err := MarshalEvent(e)
		if err != nil {
			// Only a time that leaves the year range once moved to UTC can fail.
			if y := e.OccurredAt.UTC().Year(); y >= 0 && y <= 9999 {
				t.Fatalf("MarshalEvent of decoded %+v: %v", e, err)
			}
			return
		}
		e2, err := UnmarshalEvent(b2)
		if err != nil {
			t.Fatalf("re-decoding %s: %v", b2, err)
		}
		if !e2.OccurredAt.Equal(e.OccurredAt) {
			t.Fatalf("occurredAt changed: %v -> %v", e.OccurredAt, e2.OccurredAt)
		}
		e2.OccurredAt, e.OccurredAt = time.Time{}, time.Time{}
		if !reflect.DeepEqual(e, e2) {
			t.Fatalf("re-encoding changed the event:\n got  %#v\n want %#v", e2, e)
		}
	})
}
