package domain

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// Shared fixtures for the domain tests.

var (
	// testNow is the fixed clock Decide is called with.
	testNow = time.Date(2025, time.March, 4, 12, 30, 0, 0, time.UTC)
	// testStart is when the first given event occurred; later given events
	// follow one minute apart.
	testStart = time.Date(2025, time.March, 1, 9, 0, 0, 0, time.UTC)
)

const oid = "order-1"

// history turns event payloads into the events of order oid, with versions
// 1..n and times one minute apart from testStart.
func history(data ...EventData) []Event {
	evs := make([]Event, len(data))
	for i, d := range data {
		evs[i] = Event{OrderID: oid, Version: i + 1, OccurredAt: at(i), Data: d}
	}
	return evs
}

// at is the time of the i-th (0-based) event made by history.
func at(i int) time.Time { return testStart.Add(time.Duration(i) * time.Minute) }

func ver(n int) *int { return &n }

// inp is an item as a client sends it.
func inp(sku string, qty int, price string) ItemInput {
	return ItemInput{SKU: sku, Name: "Item " + sku, Quantity: qty, UnitPrice: price}
}

// line is the parsed item inp(sku, qty, ...) becomes.
func line(sku string, qty int, minor int64) Item {
	return Item{SKU: sku, Name: "Item " + sku, Quantity: qty, UnitPrice: minor}
}

// inps returns n distinct items priced "1.00" (USD); lines is what they parse to.
func inps(n int) []ItemInput {
	out := make([]ItemInput, n)
	for i := range out {
		out[i] = inp(fmt.Sprintf("sku-%03d", i), 1, "1.00")
	}
	return out
}

func lines(n int) []Item {
	out := make([]Item, n)
	for i := range out {
		out[i] = line(fmt.Sprintf("sku-%03d", i), 1, 100)
	}
	return out
}

func placeCmd(currency string, items ...ItemInput) PlaceOrder {
	return PlaceOrder{OrderID: oid, CustomerID: "cust-1", Currency: currency, Items: items}
}

func placedEvt(currency string, items ...Item) OrderPlaced {
	return OrderPlaced{CustomerID: "cust-1", Currency: currency, Items: items}
}

func withItems(c PlaceOrder, items []ItemInput) PlaceOrder { c.Items = items; return c }

// usdPlaced is the usual first event: a USD order holding two of sku-1 at 19.99.
var usdPlaced = placedEvt("USD", line("sku-1", 2, 1999))

func validAddress() *Address {
	return &Address{Name: "Ada Lovelace", Line1: "1 Main St", City: "London", PostalCode: "N1 9GU", Country: "GB"}
}

// decideCase is one given/when/then case: given events (versions 1..n), when
// a command is decided at testNow, then these events, or this error.
type decideCase struct {
	name      string
	given     []EventData
	when      Command
	then      []EventData
	wantErr   Code
	wantField []string // checked when wantErr is set; required for INVALID_INPUT
	wantMsg   string   // substring of the error message, when it matters
}

func runDecideCases(t *testing.T, cases []decideCase) {
	t.Helper()
	names := map[string]bool{}
	for _, tc := range cases {
		if names[tc.name] {
			t.Fatalf("duplicate case name %q", tc.name)
		}
		names[tc.name] = true
		if tc.wantErr == CodeInvalidInput && tc.wantField == nil {
			t.Fatalf("case %q: INVALID_INPUT cases must name wantField", tc.name)
		}
		if tc.wantErr == "" && tc.then == nil {
			t.Fatalf("case %q: neither then nor wantErr", tc.name)
		}
		t.Run(tc.name, func(t *testing.T) {
			given := history(tc.given...)
			state := Fold(given)
			pristine := Fold(given)
			got, err := Decide(state, tc.when, testNow)
			if !reflect.DeepEqual(state, pristine) {
				t.Errorf("Decide modified the state it was given:\n got  %+v\n want %+v", state, pristine)
			}
			if tc.wantErr != "" {
				if got != nil {
					t.Errorf("events = %+v, want none with an error", got)
				}
				checkError(t, err, tc.wantErr, tc.wantField, tc.wantMsg)
				return
			}
			if err != nil {
				t.Fatalf("Decide: unexpected error %v", err)
			}
			checkEvents(t, state, tc.when, got, tc.then)
			// The events must apply cleanly on top of the given ones.
			after := Fold(append(given, got...))
			if after.Version != state.Version+len(got) {
				t.Errorf("version after applying = %d, want %d", after.Version, state.Version+len(got))
			}
		})
	}
}

func checkError(t *testing.T, err error, code Code, field []string, msg string) {
	t.Helper()
	var de *Error
	if !errors.As(err, &de) {
		t.Fatalf("error = %v (%T), want *Error with code %s", err, err, code)
	}
	if de.Code != code {
		t.Errorf("code = %s, want %s (message %q, field %v)", de.Code, code, de.Message, de.Field)
	}
	if field != nil && !reflect.DeepEqual(de.Field, field) {
		t.Errorf("field = %q, want %q (message %q)", de.Field, field, de.Message)
	}
	if de.Message == "" {
		t.Errorf("error has an empty message")
	}
	if msg != "" && !strings.Contains(de.Message, msg) {
		t.Errorf("message = %q, want it to contain %q", de.Message, msg)
	}
}

func checkEvents(t *testing.T, state Order, cmd Command, got []Event, want []EventData) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d events %+v, want %d %+v", len(got), got, len(want), want)
	}
	for i, e := range got {
		if e.Data == nil {
			t.Fatalf("event %d has nil Data", i)
		}
		if e.Data.EventType() != want[i].EventType() {
			t.Errorf("event %d type = %s, want %s", i, e.Data.EventType(), want[i].EventType())
		}
		if !reflect.DeepEqual(e.Data, want[i]) {
			t.Errorf("event %d data = %#v, want %#v", i, e.Data, want[i])
		}
		if e.Version != state.Version+1+i {
			t.Errorf("event %d version = %d, want %d", i, e.Version, state.Version+1+i)
		}
		if e.OrderID != cmd.TargetOrderID() {
			t.Errorf("event %d order id = %q, want %q", i, e.OrderID, cmd.TargetOrderID())
		}
		if !e.OccurredAt.Equal(testNow) {
			t.Errorf("event %d occurredAt = %v, want %v", i, e.OccurredAt, testNow)
		}
		if e.CommandID != "" {
			t.Errorf("event %d command id = %q; Decide leaves it to the handler", i, e.CommandID)
		}
	}
}

func TestDecideLifecycle(t *testing.T) {
	runDecideCases(t, []decideCase{
		{
			name: "place order",
			when: placeCmd("USD", inp("sku-1", 2, "19.99"), inp("sku-2", 1, "5")),
			then: []EventData{placedEvt("USD", line("sku-1", 2, 1999), line("sku-2", 1, 500))},
		},
		{
			name: "place order with shipping address",
			when: func() Command {
				c := placeCmd("EUR", inp("sku-1", 1, "0.5"))
				c.ShippingAddress = validAddress()
				return c
			}(),
			then: []EventData{OrderPlaced{CustomerID: "cust-1", Currency: "EUR", Items: []Item{line("sku-1", 1, 50)}, ShippingAddress: validAddress()}},
		},
		{
			name:    "place order that already exists",
			given:   []EventData{usdPlaced},
			when:    placeCmd("USD", inp("sku-1", 1, "1.00")),
			wantErr: CodeInvalidTransition, wantMsg: "already exists",
		},
		{
			name:  "add item while pending",
			given: []EventData{usdPlaced},
			when:  AddOrderItem{OrderID: oid, Item: inp("sku-2", 3, "0.99")},
			then:  []EventData{OrderItemAdded{Item: line("sku-2", 3, 99)}},
		},
		{
			name:  "remove item while pending",
			given: []EventData{usdPlaced, OrderItemAdded{Item: line("sku-2", 1, 100)}},
			when:  RemoveOrderItem{OrderID: oid, SKU: "sku-1"},
			then:  []EventData{OrderItemRemoved{SKU: "sku-1"}},
		},
		{
			name:  "remove the only item",
			given: []EventData{usdPlaced},
			when:  RemoveOrderItem{OrderID: oid, SKU: "sku-1"},
			then:  []EventData{OrderItemRemoved{SKU: "sku-1"}},
		},
		{
			name:    "remove unknown sku",
			given:   []EventData{usdPlaced},
			when:    RemoveOrderItem{OrderID: oid, SKU: "sku-404"},
			wantErr: CodeNotFound, wantField: []string{"input", "sku"}, wantMsg: "sku-404",
		},
		{
			name:    "remove sku already removed",
			given:   []EventData{usdPlaced, OrderItemAdded{Item: line("sku-2", 1, 100)}, OrderItemRemoved{SKU: "sku-2"}},
			when:    RemoveOrderItem{OrderID: oid, SKU: "sku-2"},
			wantErr: CodeNotFound, wantField: []string{"input", "sku"},
		},
		{
			name:  "re-add a removed sku",
			given: []EventData{usdPlaced, OrderItemRemoved{SKU: "sku-1"}},
			when:  AddOrderItem{OrderID: oid, Item: inp("sku-1", 1, "2.00")},
			then:  []EventData{OrderItemAdded{Item: line("sku-1", 1, 200)}},
		},
		{
			name:  "confirm with items",
			given: []EventData{usdPlaced},
			when:  ConfirmOrder{OrderID: oid},
			then:  []EventData{OrderConfirmed{}},
		},
		{
			name:    "confirm after removing the only item",
			given:   []EventData{usdPlaced, OrderItemRemoved{SKU: "sku-1"}},
			when:    ConfirmOrder{OrderID: oid},
			wantErr: CodeInvalidTransition, wantMsg: "no items",
		},
		{
			name:  "confirm after removing one of two items",
			given: []EventData{usdPlaced, OrderItemAdded{Item: line("sku-2", 1, 100)}, OrderItemRemoved{SKU: "sku-1"}},
			when:  ConfirmOrder{OrderID: oid},
			then:  []EventData{OrderConfirmed{}},
		},
		{
			name:  "ship confirmed order",
			given: []EventData{usdPlaced, OrderConfirmed{}},
			when:  ShipOrder{OrderID: oid, TrackingNumber: "1Z999AA10123456784"},
			then:  []EventData{OrderShipped{TrackingNumber: "1Z999AA10123456784"}},
		},
		{
			name:    "ship pending order",
			given:   []EventData{usdPlaced},
			when:    ShipOrder{OrderID: oid, TrackingNumber: "T1"},
			wantErr: CodeInvalidTransition, wantMsg: "cannot ship an order that is PENDING",
		},
		{
			name:    "ship without tracking number",
			given:   []EventData{usdPlaced, OrderConfirmed{}},
			when:    ShipOrder{OrderID: oid},
			wantErr: CodeInvalidInput, wantField: []string{"input", "trackingNumber"},
		},
		{
			name:    "ship with blank tracking number",
			given:   []EventData{usdPlaced, OrderConfirmed{}},
			when:    ShipOrder{OrderID: oid, TrackingNumber: "   "},
			wantErr: CodeInvalidInput, wantField: []string{"input", "trackingNumber"},
		},
		{
			name:  "deliver shipped order",
			given: []EventData{usdPlaced, OrderConfirmed{}, OrderShipped{TrackingNumber: "T1"}},
			when:  DeliverOrder{OrderID: oid},
			then:  []EventData{OrderDelivered{}},
		},
		{
			name:    "deliver confirmed order",
			given:   []EventData{usdPlaced, OrderConfirmed{}},
			when:    DeliverOrder{OrderID: oid},
			wantErr: CodeInvalidTransition, wantMsg: "cannot deliver an order that is CONFIRMED",
		},
		{
			name:  "cancel pending order",
			given: []EventData{usdPlaced},
			when:  CancelOrder{OrderID: oid, Reason: "customer changed their mind"},
			then:  []EventData{OrderCancelled{Reason: "customer changed their mind"}},
		},
		{
			name:  "cancel confirmed order",
			given: []EventData{usdPlaced, OrderConfirmed{}},
			when:  CancelOrder{OrderID: oid, Reason: "out of stock"},
			then:  []EventData{OrderCancelled{Reason: "out of stock"}},
		},
		{
			name:    "cancel shipped order",
			given:   []EventData{usdPlaced, OrderConfirmed{}, OrderShipped{TrackingNumber: "T1"}},
			when:    CancelOrder{OrderID: oid, Reason: "too late"},
			wantErr: CodeInvalidTransition, wantMsg: "cannot cancel an order that is SHIPPED",
		},
		{
			name:    "cancel cancelled order",
			given:   []EventData{usdPlaced, OrderCancelled{Reason: "first"}},
			when:    CancelOrder{OrderID: oid, Reason: "second"},
			wantErr: CodeInvalidTransition, wantMsg: "cannot cancel an order that is CANCELLED",
		},
		{
			name:    "cancel without reason",
			given:   []EventData{usdPlaced},
			when:    CancelOrder{OrderID: oid},
			wantErr: CodeInvalidInput, wantField: []string{"input", "reason"},
		},
		{
			name:    "cancel with blank reason",
			given:   []EventData{usdPlaced},
			when:    CancelOrder{OrderID: oid, Reason: " \t "},
			wantErr: CodeInvalidInput, wantField: []string{"input", "reason"},
		},
		{
			name:    "add item to confirmed order",
			given:   []EventData{usdPlaced, OrderConfirmed{}},
			when:    AddOrderItem{OrderID: oid, Item: inp("sku-2", 1, "1.00")},
			wantErr: CodeInvalidTransition, wantMsg: "cannot add items to an order that is CONFIRMED",
		},
		{
			name:    "remove item from confirmed order",
			given:   []EventData{usdPlaced, OrderConfirmed{}},
			when:    RemoveOrderItem{OrderID: oid, SKU: "sku-1"},
			wantErr: CodeInvalidTransition, wantMsg: "cannot remove items from an order that is CONFIRMED",
		},
	})
}

func TestDecideNotFound(t *testing.T) {
	cmds := []Command{
		AddOrderItem{OrderID: oid, Item: inp("sku-1", 1, "1.00")},
		RemoveOrderItem{OrderID: oid, SKU: "sku-1"},
		ConfirmOrder{OrderID: oid},
		ShipOrder{OrderID: oid, TrackingNumber: "T1"},
		DeliverOrder{OrderID: oid},
		CancelOrder{OrderID: oid, Reason: "r"},
		// An expected version does not turn NOT_FOUND into VERSION_CONFLICT.
		ConfirmOrder{OrderID: oid, ExpectedVersion: ver(0)},
		ConfirmOrder{OrderID: oid, ExpectedVersion: ver(3)},
	}
	var cases []decideCase
	for i, c := range cmds {
		cases = append(cases, decideCase{
			name:    fmt.Sprintf("%d %s on unplaced order", i, c.CommandType()),
			when:    c,
			wantErr: CodeNotFound, wantMsg: oid,
		})
	}
	runDecideCases(t, cases)
}

// TestDecideTransitionMatrix decides every command in every status and checks
// the outcome against an explicit table of what the lifecycle allows.
func TestDecideTransitionMatrix(t *testing.T) {
	const (
		place   = "PlaceOrder"
		add     = "AddOrderItem"
		remove  = "RemoveOrderItem"
		confirm = "ConfirmOrder"
		ship    = "ShipOrder"
		deliver = "DeliverOrder"
		cancel  = "CancelOrder"
	)
	cmds := []Command{
		placeCmd("USD", inp("sku-9", 1, "1.00")),
		AddOrderItem{OrderID: oid, Item: inp("sku-2", 1, "5.00")},
		RemoveOrderItem{OrderID: oid, SKU: "sku-1"},
		ConfirmOrder{OrderID: oid},
		ShipOrder{OrderID: oid, TrackingNumber: "1Z999"},
		DeliverOrder{OrderID: oid},
		CancelOrder{OrderID: oid, Reason: "customer request"},
	}
	// The event each allowed command yields, per status; absent = not allowed.
	allowed := map[Status]map[string]EventData{
		StatusPending: {
			add:     OrderItemAdded{Item: line("sku-2", 1, 500)},
			remove:  OrderItemRemoved{SKU: "sku-1"},
			confirm: OrderConfirmed{},
			cancel:  OrderCancelled{Reason: "customer request"},
		},
		StatusConfirmed: {
			ship:   OrderShipped{TrackingNumber: "1Z999"},
			cancel: OrderCancelled{Reason: "customer request"},
		},
		StatusShipped:   {deliver: OrderDelivered{}},
		StatusDelivered: {},
		StatusCancelled: {},
	}
	// The status an allowed command leads to; absent = unchanged.
	next := map[string]Status{
		confirm: StatusConfirmed, ship: StatusShipped, deliver: StatusDelivered, cancel: StatusCancelled,
	}
	verbs := map[string]string{
		add: "add items to", remove: "remove items from", confirm: "confirm",
		ship: "ship", deliver: "deliver", cancel: "cancel",
	}
	states := []struct {
		label  string
		status Status
		given  []EventData
	}{
		{"PENDING", StatusPending, []EventData{usdPlaced}},
		{"CONFIRMED", StatusConfirmed, []EventData{usdPlaced, OrderConfirmed{}}},
		{"SHIPPED", StatusShipped, []EventData{usdPlaced, OrderConfirmed{}, OrderShipped{TrackingNumber: "T0"}}},
		{"DELIVERED", StatusDelivered, []EventData{usdPlaced, OrderConfirmed{}, OrderShipped{TrackingNumber: "T0"}, OrderDelivered{}}},
		{"CANCELLED from PENDING", StatusCancelled, []EventData{usdPlaced, OrderCancelled{Reason: "r"}}},
		{"CANCELLED from CONFIRMED", StatusCancelled, []EventData{usdPlaced, OrderConfirmed{}, OrderCancelled{Reason: "r"}}},
	}

	// The table must cover every status there is.
	covered := map[Status]bool{}
	for _, s := range states {
		covered[s.status] = true
	}
	for _, s := range AllStatuses {
		if _, ok := allowed[s]; !ok || !covered[s] {
			t.Fatalf("status %s is missing from the transition table", s)
		}
	}

	for _, st := range states {
		for _, cmd := range cmds {
			name := cmd.CommandType()
			t.Run(st.label+"/"+name, func(t *testing.T) {
				state := Fold(history(st.given...))
				if state.Status != st.status {
					t.Fatalf("fixture: status = %s, want %s", state.Status, st.status)
				}
				got, err := Decide(state, cmd, testNow)
				want, ok := allowed[st.status][name]
				if !ok {
					var de *Error
					if !errors.As(err, &de) || de.Code != CodeInvalidTransition {
						t.Fatalf("Decide = %+v, %v; want INVALID_TRANSITION", got, err)
					}
					wantMsg := fmt.Sprintf("cannot %s an order that is %s", verbs[name], st.status)
					if name == place {
						wantMsg = "already exists"
					}
					if !strings.Contains(de.Message, wantMsg) {
						t.Errorf("message = %q, want it to contain %q", de.Message, wantMsg)
					}
					return
				}
				if err != nil {
					t.Fatalf("Decide: %v; want allowed", err)
				}
				checkEvents(t, state, cmd, got, []EventData{want})
				after := Evolve(state, got[0])
				wantStatus, changes := next[name]
				if !changes {
					wantStatus = st.status
				}
				if after.Status != wantStatus {
					t.Errorf("status after %s = %s, want %s", name, after.Status, wantStatus)
				}
			})
		}
	}

	// An order that does not exist accepts only PlaceOrder.
	for _, cmd := range cmds {
		t.Run("unplaced/"+cmd.CommandType(), func(t *testing.T) {
			got, err := Decide(Order{}, cmd, testNow)
			if cmd.CommandType() == place {
				if err != nil {
					t.Fatalf("Decide: %v", err)
				}
				checkEvents(t, Order{}, cmd, got, []EventData{placedEvt("USD", line("sku-9", 1, 100))})
				if s := Evolve(Order{}, got[0]).Status; s != StatusPending {
					t.Errorf("status after place = %s, want PENDING", s)
				}
				return
			}
			checkError(t, err, CodeNotFound, nil, "")
		})
	}
}

func TestDecideExpectedVersion(t *testing.T) {
	// Each command with a state in which it is allowed.
	type target struct {
		given []EventData
		cmd   func(v *int) Command
		then  EventData
	}
	targets := []target{
		{[]EventData{usdPlaced}, func(v *int) Command {
			return AddOrderItem{OrderID: oid, Item: inp("sku-2", 1, "1.00"), ExpectedVersion: v}
		}, OrderItemAdded{Item: line("sku-2", 1, 100)}},
		{[]EventData{usdPlaced}, func(v *int) Command {
			return RemoveOrderItem{OrderID: oid, SKU: "sku-1", ExpectedVersion: v}
		}, OrderItemRemoved{SKU: "sku-1"}},
		{[]EventData{usdPlaced}, func(v *int) Command {
			return ConfirmOrder{OrderID: oid, ExpectedVersion: v}
		}, OrderConfirmed{}},
		{[]EventData{usdPlaced, OrderConfirmed{}}, func(v *int) Command {
			return ShipOrder{OrderID: oid, TrackingNumber: "T1", ExpectedVersion: v}
		}, OrderShipped{TrackingNumber: "T1"}},
		{[]EventData{usdPlaced, OrderConfirmed{}, OrderShipped{TrackingNumber: "T1"}}, func(v *int) Command {
			return DeliverOrder{OrderID: oid, ExpectedVersion: v}
		}, OrderDelivered{}},
		{[]EventData{usdPlaced, OrderItemAdded{Item: line("sku-2", 1, 1)}, OrderConfirmed{}}, func(v *int) Command {
			return CancelOrder{OrderID: oid, Reason: "r", ExpectedVersion: v}
		}, OrderCancelled{Reason: "r"}},
	}
	var cases []decideCase
	for _, tg := range targets {
		current := len(tg.given)
		typ := tg.cmd(nil).CommandType()
		cases = append(cases,
			decideCase{name: typ + " without expected version", given: tg.given, when: tg.cmd(nil), then: []EventData{tg.then}},
			decideCase{name: typ + " expected version matches", given: tg.given, when: tg.cmd(ver(current)), then: []EventData{tg.then}},
		)
		seen := map[int]bool{current: true}
		for _, v := range []int{0, current - 1, current + 1, -1} {
			if seen[v] {
				continue
			}
			seen[v] = true
			cases = append(cases, decideCase{
				name:  fmt.Sprintf("%s expected version %d at %d", typ, v, current),
				given: tg.given, when: tg.cmd(ver(v)),
				wantErr: CodeVersionConflict, wantMsg: fmt.Sprintf("version %d", current),
			})
		}
	}
	runDecideCases(t, cases)
}

// TestDecidePrecedence pins which rejection wins when several apply.
func TestDecidePrecedence(t *testing.T) {
	runDecideCases(t, []decideCase{
		{
			name:    "invalid input beats not found",
			when:    ShipOrder{OrderID: oid},
			wantErr: CodeInvalidInput, wantField: []string{"input", "trackingNumber"},
		},
		{
			name:    "not found beats version conflict",
			when:    CancelOrder{OrderID: oid, Reason: "r", ExpectedVersion: ver(5)},
			wantErr: CodeNotFound,
		},
		{
			name:    "version conflict beats invalid transition",
			given:   []EventData{usdPlaced},
			when:    ShipOrder{OrderID: oid, TrackingNumber: "T1", ExpectedVersion: ver(7)},
			wantErr: CodeVersionConflict, wantMsg: "version 1",
		},
		{
			name:    "invalid transition beats price not fitting the order currency",
			given:   []EventData{usdPlaced, OrderConfirmed{}},
			when:    AddOrderItem{OrderID: oid, Item: inp("sku-2", 1, "1.999")},
			wantErr: CodeInvalidTransition,
		},
	})
}

func TestDecideValidation(t *testing.T) {
	long := func(n int) string { return strings.Repeat("x", n) }
	place1 := func(it ItemInput) PlaceOrder { return placeCmd("USD", it) }
	items0 := func(f string) []string { return []string{"input", "items", "0", f} }
	addr := func(mod func(a *Address)) PlaceOrder {
		c := placeCmd("USD", inp("sku-1", 1, "1.00"))
		c.ShippingAddress = validAddress()
		mod(c.ShippingAddress)
		return c
	}
	okPlaced := func(items ...Item) []EventData { return []EventData{placedEvt("USD", items...)} }

	cases := []decideCase{
		// Order id.
		{name: "empty order id", when: PlaceOrder{CustomerID: "c", Currency: "USD", Items: inps(1)},
			wantErr: CodeInvalidInput, wantField: []string{"input", "orderId"}},
		{name: "order id with a space", when: PlaceOrder{OrderID: "a b", CustomerID: "c", Currency: "USD", Items: inps(1)},
			wantErr: CodeInvalidInput, wantField: []string{"input", "orderId"}},
		{name: "order id of 100 bytes", when: PlaceOrder{OrderID: long(100), CustomerID: "c", Currency: "USD", Items: inps(1)},
			then: []EventData{OrderPlaced{CustomerID: "c", Currency: "USD", Items: lines(1)}}},
		{name: "order id of 101 bytes", when: PlaceOrder{OrderID: long(101), CustomerID: "c", Currency: "USD", Items: inps(1)},
			wantErr: CodeInvalidInput, wantField: []string{"input", "orderId"}},
		{name: "order id of 51 two-byte runes", when: PlaceOrder{OrderID: strings.Repeat("é", 51), CustomerID: "c", Currency: "USD", Items: inps(1)},
			wantErr: CodeInvalidInput, wantField: []string{"input", "orderId"}},
		{name: "empty order id on confirm", when: ConfirmOrder{},
			wantErr: CodeInvalidInput, wantField: []string{"input", "orderId"}},
		{name: "empty order id on add", when: AddOrderItem{Item: inp("s", 1, "1")},
			wantErr: CodeInvalidInput, wantField: []string{"input", "orderId"}},
		{name: "empty order id on remove", when: RemoveOrderItem{SKU: "s"},
			wantErr: CodeInvalidInput, wantField: []string{"input", "orderId"}},
		{name: "empty order id on ship", when: ShipOrder{TrackingNumber: "T"},
			wantErr: CodeInvalidInput, wantField: []string{"input", "orderId"}},
		{name: "empty order id on deliver", when: DeliverOrder{},
			wantErr: CodeInvalidInput, wantField: []string{"input", "orderId"}},
		{name: "empty order id on cancel", when: CancelOrder{Reason: "r"},
			wantErr: CodeInvalidInput, wantField: []string{"input", "orderId"}},
		{name: "order id of 101 bytes on cancel", when: CancelOrder{OrderID: long(101), Reason: "r"},
			wantErr: CodeInvalidInput, wantField: []string{"input", "orderId"}},

		// Customer id.
		{name: "empty customer id", when: PlaceOrder{OrderID: oid, Currency: "USD", Items: inps(1)},
			wantErr: CodeInvalidInput, wantField: []string{"input", "customerId"}, wantMsg: "customer id"},
		{name: "blank customer id", when: PlaceOrder{OrderID: oid, CustomerID: "   ", Currency: "USD", Items: inps(1)},
			wantErr: CodeInvalidInput, wantField: []string{"input", "customerId"}},
		{name: "customer id of 100 bytes", when: PlaceOrder{OrderID: oid, CustomerID: long(100), Currency: "USD", Items: inps(1)},
			then: []EventData{OrderPlaced{CustomerID: long(100), Currency: "USD", Items: lines(1)}}},
		{name: "customer id of 101 bytes", when: PlaceOrder{OrderID: oid, CustomerID: long(101), Currency: "USD", Items: inps(1)},
			wantErr: CodeInvalidInput, wantField: []string{"input", "customerId"}},

		// Currency.
		{name: "unknown currency XYZ", when: placeCmd("XYZ", inps(1)...),
			wantErr: CodeInvalidInput, wantField: []string{"input", "currencyCode"}, wantMsg: "XYZ"},
		{name: "lowercase currency usd", when: placeCmd("usd", inps(1)...),
			wantErr: CodeInvalidInput, wantField: []string{"input", "currencyCode"}},
		{name: "empty currency", when: placeCmd("", inps(1)...),
			wantErr: CodeInvalidInput, wantField: []string{"input", "currencyCode"}},
		{name: "currency with spaces", when: placeCmd(" USD", inps(1)...),
			wantErr: CodeInvalidInput, wantField: []string{"input", "currencyCode"}},

		// Item count.
		{name: "no items", when: placeCmd("USD"),
			wantErr: CodeInvalidInput, wantField: []string{"input", "items"}},
		{name: "empty items slice", when: withItems(placeCmd("USD"), []ItemInput{}),
			wantErr: CodeInvalidInput, wantField: []string{"input", "items"}},
		{name: "1 item", when: placeCmd("USD", inps(1)...), then: okPlaced(lines(1)...)},
		{name: "100 items", when: placeCmd("USD", inps(100)...), then: okPlaced(lines(100)...)},
		{name: "101 items", when: placeCmd("USD", inps(101)...),
			wantErr: CodeInvalidInput, wantField: []string{"input", "items"}, wantMsg: "100"},

		// Quantity.
		{name: "quantity -1", when: place1(inp("s", -1, "1")),
			wantErr: CodeInvalidInput, wantField: items0("quantity")},
		{name: "quantity 0", when: place1(inp("s", 0, "1")),
			wantErr: CodeInvalidInput, wantField: items0("quantity"), wantMsg: "quantity"},
		{name: "quantity 1", when: place1(inp("s", 1, "1")), then: okPlaced(line("s", 1, 100))},
		{name: "quantity 10000", when: place1(inp("s", 10000, "1")), then: okPlaced(line("s", 10000, 100))},
		{name: "quantity 10001", when: place1(inp("s", 10001, "1")),
			wantErr: CodeInvalidInput, wantField: items0("quantity")},
		{name: "bad quantity in second item names index 1",
			when:    placeCmd("USD", inp("a", 1, "1"), inp("b", 0, "1")),
			wantErr: CodeInvalidInput, wantField: []string{"input", "items", "1", "quantity"}},

		// SKU.
		{name: "empty sku", when: place1(inp("", 1, "1")),
			wantErr: CodeInvalidInput, wantField: items0("sku")},
		{name: "blank sku", when: place1(inp("  ", 1, "1")),
			wantErr: CodeInvalidInput, wantField: items0("sku")},
		{name: "sku of 64 chars", when: place1(inp(long(64), 1, "1")), then: okPlaced(line(long(64), 1, 100))},
		{name: "sku of 64 two-byte runes", when: place1(inp(strings.Repeat("é", 64), 1, "1")),
			then: okPlaced(line(strings.Repeat("é", 64), 1, 100))},
		{name: "sku of 65 chars", when: place1(inp(long(65), 1, "1")),
			wantErr: CodeInvalidInput, wantField: items0("sku")},
		{name: "sku with control character", when: place1(inp("a\nb", 1, "1")),
			wantErr: CodeInvalidInput, wantField: items0("sku")},
		{name: "sku with invalid UTF-8", when: place1(inp("a\xffb", 1, "1")),
			wantErr: CodeInvalidInput, wantField: items0("sku")},
		{name: "duplicate sku", when: placeCmd("USD", inp("a", 1, "1"), inp("a", 2, "2")),
			wantErr: CodeInvalidInput, wantField: []string{"input", "items", "1", "sku"}, wantMsg: "more than once"},
		{name: "duplicate sku further apart", when: placeCmd("USD", inp("a", 1, "1"), inp("b", 1, "1"), inp("a", 1, "1")),
			wantErr: CodeInvalidInput, wantField: []string{"input", "items", "2", "sku"}},
		{name: "skus differing in case are distinct", when: placeCmd("USD", inp("a", 1, "1"), inp("A", 1, "1")),
			then: okPlaced(line("a", 1, 100), line("A", 1, 100))},

		// Name.
		{name: "empty name", when: place1(ItemInput{SKU: "s", Quantity: 1, UnitPrice: "1"}),
			wantErr: CodeInvalidInput, wantField: items0("name")},
		{name: "name of 200 chars", when: place1(ItemInput{SKU: "s", Name: long(200), Quantity: 1, UnitPrice: "1"}),
			then: okPlaced(Item{SKU: "s", Name: long(200), Quantity: 1, UnitPrice: 100})},
		{name: "name of 201 chars", when: place1(ItemInput{SKU: "s", Name: long(201), Quantity: 1, UnitPrice: "1"}),
			wantErr: CodeInvalidInput, wantField: items0("name")},
		{name: "name with control character", when: place1(ItemInput{SKU: "s", Name: "a\x00", Quantity: 1, UnitPrice: "1"}),
			wantErr: CodeInvalidInput, wantField: items0("name")},

		// Shipping address.
		{name: "address missing city", when: addr(func(a *Address) { a.City = "" }),
			wantErr: CodeInvalidInput, wantField: []string{"input", "shippingAddress", "city"}},
		{name: "address line1 of 201 chars", when: addr(func(a *Address) { a.Line1 = long(201) }),
			wantErr: CodeInvalidInput, wantField: []string{"input", "shippingAddress", "line1"}},
		{name: "address lowercase country", when: addr(func(a *Address) { a.Country = "gb" }),
			wantErr: CodeInvalidInput, wantField: []string{"input", "shippingAddress", "country"}},
		{name: "address three-letter country", when: addr(func(a *Address) { a.Country = "GBR" }),
			wantErr: CodeInvalidInput, wantField: []string{"input", "shippingAddress", "country"}},
		{name: "address without optional line2", when: addr(func(a *Address) { a.Line2 = "" }),
			then: []EventData{OrderPlaced{CustomerID: "cust-1", Currency: "USD", Items: []Item{line("sku-1", 1, 100)}, ShippingAddress: validAddress()}}},

		// Tracking number and reason lengths.
		{name: "tracking number of 100 chars", given: []EventData{usdPlaced, OrderConfirmed{}},
			when: ShipOrder{OrderID: oid, TrackingNumber: long(100)}, then: []EventData{OrderShipped{TrackingNumber: long(100)}}},
		{name: "tracking number of 101 chars", given: []EventData{usdPlaced, OrderConfirmed{}},
			when:    ShipOrder{OrderID: oid, TrackingNumber: long(101)},
			wantErr: CodeInvalidInput, wantField: []string{"input", "trackingNumber"}},
		{name: "reason of 500 chars", given: []EventData{usdPlaced},
			when: CancelOrder{OrderID: oid, Reason: long(500)}, then: []EventData{OrderCancelled{Reason: long(500)}}},
		{name: "reason of 501 chars", given: []EventData{usdPlaced},
			when:    CancelOrder{OrderID: oid, Reason: long(501)},
			wantErr: CodeInvalidInput, wantField: []string{"input", "reason"}},
		{name: "reason with newline", given: []EventData{usdPlaced},
			when:    CancelOrder{OrderID: oid, Reason: "line one\nline two"},
			wantErr: CodeInvalidInput, wantField: []string{"input", "reason"}},

		// RemoveOrderItem input.
		{name: "remove empty sku", given: []EventData{usdPlaced}, when: RemoveOrderItem{OrderID: oid},
			wantErr: CodeInvalidInput, wantField: []string{"input", "sku"}},
		{name: "remove sku of 65 chars", given: []EventData{usdPlaced}, when: RemoveOrderItem{OrderID: oid, SKU: long(65)},
			wantErr: CodeInvalidInput, wantField: []string{"input", "sku"}},

		// AddOrderItem input, checked against the order's currency.
		{name: "add existing sku", given: []EventData{usdPlaced},
			when:    AddOrderItem{OrderID: oid, Item: inp("sku-1", 1, "1.00")},
			wantErr: CodeInvalidInput, wantField: []string{"input", "item", "sku"}, wantMsg: "sku-1"},
		{name: "add empty sku", given: []EventData{usdPlaced},
			when:    AddOrderItem{OrderID: oid, Item: inp("", 1, "1.00")},
			wantErr: CodeInvalidInput, wantField: []string{"input", "item", "sku"}},
		{name: "add sku of 65 chars", given: []EventData{usdPlaced},
			when:    AddOrderItem{OrderID: oid, Item: inp(long(65), 1, "1.00")},
			wantErr: CodeInvalidInput, wantField: []string{"input", "item", "sku"}},
		{name: "add empty name", given: []EventData{usdPlaced},
			when:    AddOrderItem{OrderID: oid, Item: ItemInput{SKU: "s", Quantity: 1, UnitPrice: "1"}},
			wantErr: CodeInvalidInput, wantField: []string{"input", "item", "name"}},
		{name: "add quantity 0", given: []EventData{usdPlaced},
			when:    AddOrderItem{OrderID: oid, Item: inp("sku-2", 0, "1.00")},
			wantErr: CodeInvalidInput, wantField: []string{"input", "item", "quantity"}},
		{name: "add quantity 10000", given: []EventData{usdPlaced},
			when: AddOrderItem{OrderID: oid, Item: inp("sku-2", 10000, "1.00")},
			then: []EventData{OrderItemAdded{Item: line("sku-2", 10000, 100)}}},
		{name: "add quantity 10001", given: []EventData{usdPlaced},
			when:    AddOrderItem{OrderID: oid, Item: inp("sku-2", 10001, "1.00")},
			wantErr: CodeInvalidInput, wantField: []string{"input", "item", "quantity"}},
		{name: "add 3-decimal price to USD order", given: []EventData{usdPlaced},
			when:    AddOrderItem{OrderID: oid, Item: inp("sku-2", 1, "19.999")},
			wantErr: CodeInvalidInput, wantField: []string{"input", "item", "unitPrice"}},
		{name: "add 5-decimal price to USD order", given: []EventData{usdPlaced},
			when:    AddOrderItem{OrderID: oid, Item: inp("sku-2", 1, "1.23456")},
			wantErr: CodeInvalidInput, wantField: []string{"input", "item", "unitPrice"}},
		{name: "add negative price", given: []EventData{usdPlaced},
			when:    AddOrderItem{OrderID: oid, Item: inp("sku-2", 1, "-1")},
			wantErr: CodeInvalidInput, wantField: []string{"input", "item", "unitPrice"}},
		{name: "add decimal price to JPY order", given: []EventData{placedEvt("JPY", line("a", 1, 100))},
			when:    AddOrderItem{OrderID: oid, Item: inp("sku-2", 1, "100.5")},
			wantErr: CodeInvalidInput, wantField: []string{"input", "item", "unitPrice"}, wantMsg: "JPY"},
		{name: "add whole price to JPY order", given: []EventData{placedEvt("JPY", line("a", 1, 100))},
			when: AddOrderItem{OrderID: oid, Item: inp("sku-2", 1, "100")},
			then: []EventData{OrderItemAdded{Item: line("sku-2", 1, 100)}}},
		{name: "add 3-decimal price to KWD order", given: []EventData{placedEvt("KWD", line("a", 1, 100))},
			when: AddOrderItem{OrderID: oid, Item: inp("sku-2", 1, "1.234")},
			then: []EventData{OrderItemAdded{Item: line("sku-2", 1, 1234)}}},
		{name: "add 4-decimal price to KWD order", given: []EventData{placedEvt("KWD", line("a", 1, 100))},
			when:    AddOrderItem{OrderID: oid, Item: inp("sku-2", 1, "1.2345")},
			wantErr: CodeInvalidInput, wantField: []string{"input", "item", "unitPrice"}},
		{name: "add 100th item", given: []EventData{placedEvt("USD", lines(99)...)},
			when: AddOrderItem{OrderID: oid, Item: inp("new", 1, "1")},
			then: []EventData{OrderItemAdded{Item: line("new", 1, 100)}}},
		{name: "add 101st item", given: []EventData{placedEvt("USD", lines(100)...)},
			when:    AddOrderItem{OrderID: oid, Item: inp("new", 1, "1")},
			wantErr: CodeInvalidInput, wantField: []string{"input", "item"}, wantMsg: "100"},
		{name: "add 101st item after an add", given: []EventData{placedEvt("USD", lines(99)...), OrderItemAdded{Item: line("x", 1, 1)}},
			when:    AddOrderItem{OrderID: oid, Item: inp("new", 1, "1")},
			wantErr: CodeInvalidInput, wantField: []string{"input", "item"}},
		{name: "add 100th item after a remove", given: []EventData{placedEvt("USD", lines(100)...), OrderItemRemoved{SKU: "sku-000"}},
			when: AddOrderItem{OrderID: oid, Item: inp("new", 1, "1")},
			then: []EventData{OrderItemAdded{Item: line("new", 1, 100)}}},
	}

	// Unit prices per currency, on PlaceOrder. ok=false means INVALID_INPUT on unitPrice.
	prices := []struct {
		currency, price string
		want            int64
		ok              bool
	}{
		{"USD", "19.99", 1999, true},
		{"USD", "19.9", 1990, true},
		{"USD", "19", 1900, true},
		{"USD", "0", 0, true},
		{"USD", "0.00", 0, true},
		{"USD", "0.01", 1, true},
		{"USD", "007.50", 750, true},
		{"USD", "10000000000.00", MaxUnitPriceMinor, true},
		{"USD", "10000000000.01", 0, false},
		{"USD", "19.999", 0, false},
		{"USD", "-1", 0, false},
		{"USD", "-0.01", 0, false},
		{"USD", "+1", 0, false},
		{"USD", "abc", 0, false},
		{"USD", "1e3", 0, false},
		{"USD", "", 0, false},
		{"USD", " 1", 0, false},
		{"USD", "1,00", 0, false},
		{"USD", "1.", 0, false},
		{"USD", ".5", 0, false},
		{"USD", "1.2.3", 0, false},
		{"USD", "0x10", 0, false},
		{"USD", "NaN", 0, false},
		{"JPY", "100", 100, true},
		{"JPY", "100.5", 0, false},
		{"JPY", "100.0", 0, false},
		{"KWD", "1.234", 1234, true},
		{"KWD", "1.2345", 0, false},
		{"CLF", "1.2345", 12345, true},
		{"CLF", "1.23456", 0, false},
		{"CLF", "999999999999999", 0, false},
	}
	for _, p := range prices {
		tc := decideCase{
			name: fmt.Sprintf("price %q %s", p.price, p.currency),
			when: placeCmd(p.currency, inp("s", 1, p.price)),
		}
		if p.ok {
			tc.then = []EventData{placedEvt(p.currency, line("s", 1, p.want))}
		} else {
			tc.wantErr, tc.wantField = CodeInvalidInput, items0("unitPrice")
		}
		cases = append(cases, tc)
	}
	runDecideCases(t, cases)
}

func TestDecideErrorMessages(t *testing.T) {
	// Spot-check that messages read as sentences a person understands.
	for _, tc := range []struct {
		name  string
		given []EventData
		cmd   Command
		want  string
	}{
		{"quantity", nil, place1Qty(0), "quantity must be between 1 and 10000, got 0"},
		{"decimals", nil, placeCmd("USD", inp("s", 1, "19.999")), `has more than 2 decimals, the most USD allows`},
		{"negative", nil, placeCmd("USD", inp("s", 1, "-5")), "must not be negative"},
		{"ship pending", []EventData{usdPlaced}, ShipOrder{OrderID: oid, TrackingNumber: "T"}, "cannot ship an order that is PENDING"},
		{"conflict", []EventData{usdPlaced, OrderConfirmed{}}, ConfirmOrder{OrderID: oid, ExpectedVersion: ver(1)}, "is at version 2, not the expected 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decide(Fold(history(tc.given...)), tc.cmd, testNow)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func place1Qty(q int) PlaceOrder { return placeCmd("USD", inp("s", q, "1")) }

type bogusCommand struct{}

func (bogusCommand) TargetOrderID() string { return oid }
func (bogusCommand) Expected() *int        { return nil }
func (bogusCommand) CommandType() string   { return "Bogus" }

func TestDecideUnknownAndNilCommand(t *testing.T) {
	state := Fold(history(usdPlaced))
	for _, cmd := range []Command{bogusCommand{}, nil} {
		got, err := Decide(state, cmd, testNow)
		if got != nil || ErrorCode(err) != CodeInvalidInput {
			t.Errorf("Decide(%T) = %v, %v; want INVALID_INPUT", cmd, got, err)
		}
	}
}

// TestDecideIsDeterministic: the same state, command and time give the same events.
func TestDecideIsDeterministic(t *testing.T) {
	state := Fold(history(usdPlaced))
	cmd := AddOrderItem{OrderID: oid, Item: inp("sku-2", 2, "3.50")}
	a, errA := Decide(state, cmd, testNow)
	b, errB := Decide(state, cmd, testNow)
	if errA != nil || errB != nil || !reflect.DeepEqual(a, b) {
		t.Fatalf("Decide not deterministic: %v %v / %v %v", a, errA, b, errB)
	}
	later := testNow.Add(time.Hour)
	c, _ := Decide(state, cmd, later)
	if !c[0].OccurredAt.Equal(later) {
		t.Errorf("OccurredAt = %v, want the now passed in (%v)", c[0].OccurredAt, later)
	}
}
