package domain_test

import (
	"errors"
	"fmt"
	. "github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/domain/domaintest"
	"reflect"
	"strings"
	"testing"
	"time"
)

// Shared fixtures for the domain tests: the given/when/then form is
// domaintest's, shared with the upcaster golden tests.

var (
	// testNow is the fixed clock Decide is called with.
	testNow = domaintest.Now
	// testStart is when the first given event occurred; later given events
	// follow one minute apart.
	testStart = domaintest.Start
)

const oid = domaintest.OrderID

// history turns event payloads into the events of order oid, with versions
// 1..n and times one minute apart from testStart.
func history(data ...EventData) []Event { return domaintest.History(oid, data...) }

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
type decideCase = domaintest.Case

func runDecideCases(t *testing.T, cases []decideCase) { t.Helper(); domaintest.Run(t, cases) }

func TestDecideLifecycle(t *testing.T) {
	runDecideCases(t, []decideCase{
		{
			Name: "place order",
			When: placeCmd("USD", inp("sku-1", 2, "19.99"), inp("sku-2", 1, "5")),
			Then: []EventData{placedEvt("USD", line("sku-1", 2, 1999), line("sku-2", 1, 500))},
		},
		{
			Name: "place order with shipping address",
			When: func() Command {
				c := placeCmd("EUR", inp("sku-1", 1, "0.5"))
				c.ShippingAddress = validAddress()
				return c
			}(),
			Then: []EventData{OrderPlaced{CustomerID: "cust-1", Currency: "EUR", Items: []Item{line("sku-1", 1, 50)}, ShippingAddress: validAddress()}},
		},
		{
			Name:    "place order that already exists",
			Given:   []EventData{usdPlaced},
			When:    placeCmd("USD", inp("sku-1", 1, "1.00")),
			WantErr: CodeInvalidTransition, WantMsg: "already exists",
		},
		{
			Name:  "add item while pending",
			Given: []EventData{usdPlaced},
			When:  AddOrderItem{OrderID: oid, Item: inp("sku-2", 3, "0.99")},
			Then:  []EventData{OrderItemAdded{Item: line("sku-2", 3, 99)}},
		},
		{
			Name:  "remove item while pending",
			Given: []EventData{usdPlaced, OrderItemAdded{Item: line("sku-2", 1, 100)}},
			When:  RemoveOrderItem{OrderID: oid, SKU: "sku-1"},
			Then:  []EventData{OrderItemRemoved{SKU: "sku-1"}},
		},
		{
			Name:  "remove the only item",
			Given: []EventData{usdPlaced},
			When:  RemoveOrderItem{OrderID: oid, SKU: "sku-1"},
			Then:  []EventData{OrderItemRemoved{SKU: "sku-1"}},
		},
		{
			Name:    "remove unknown sku",
			Given:   []EventData{usdPlaced},
			When:    RemoveOrderItem{OrderID: oid, SKU: "sku-404"},
			WantErr: CodeNotFound, WantField: []string{"input", "sku"}, WantMsg: "sku-404",
		},
		{
			Name:    "remove sku already removed",
			Given:   []EventData{usdPlaced, OrderItemAdded{Item: line("sku-2", 1, 100)}, OrderItemRemoved{SKU: "sku-2"}},
			When:    RemoveOrderItem{OrderID: oid, SKU: "sku-2"},
			WantErr: CodeNotFound, WantField: []string{"input", "sku"},
		},
		{
			Name:  "re-add a removed sku",
			Given: []EventData{usdPlaced, OrderItemRemoved{SKU: "sku-1"}},
			When:  AddOrderItem{OrderID: oid, Item: inp("sku-1", 1, "2.00")},
			Then:  []EventData{OrderItemAdded{Item: line("sku-1", 1, 200)}},
		},
		{
			Name:  "confirm with items",
			Given: []EventData{usdPlaced},
			When:  ConfirmOrder{OrderID: oid},
			Then:  []EventData{OrderConfirmed{}},
		},
		{
			Name:    "confirm after removing the only item",
			Given:   []EventData{usdPlaced, OrderItemRemoved{SKU: "sku-1"}},
			When:    ConfirmOrder{OrderID: oid},
			WantErr: CodeInvalidTransition, WantMsg: "no items",
		},
		{
			Name:  "confirm after removing one of two items",
			Given: []EventData{usdPlaced, OrderItemAdded{Item: line("sku-2", 1, 100)}, OrderItemRemoved{SKU: "sku-1"}},
			When:  ConfirmOrder{OrderID: oid},
			Then:  []EventData{OrderConfirmed{}},
		},
		{
			Name:  "ship confirmed order",
			Given: []EventData{usdPlaced, OrderConfirmed{}},
			When:  ShipOrder{OrderID: oid, TrackingNumber: "1Z999AA10123456784"},
			Then:  []EventData{OrderShipped{TrackingNumber: "1Z999AA10123456784"}},
		},
		{
			Name:    "ship pending order",
			Given:   []EventData{usdPlaced},
			When:    ShipOrder{OrderID: oid, TrackingNumber: "T1"},
			WantErr: CodeInvalidTransition, WantMsg: "cannot ship an order that is PENDING",
		},
		{
			Name:    "ship without tracking number",
			Given:   []EventData{usdPlaced, OrderConfirmed{}},
			When:    ShipOrder{OrderID: oid},
			WantErr: CodeInvalidInput, WantField: []string{"input", "trackingNumber"},
		},
		{
			Name:    "ship with blank tracking number",
			Given:   []EventData{usdPlaced, OrderConfirmed{}},
			When:    ShipOrder{OrderID: oid, TrackingNumber: "   "},
			WantErr: CodeInvalidInput, WantField: []string{"input", "trackingNumber"},
		},
		{
			Name:  "deliver shipped order",
			Given: []EventData{usdPlaced, OrderConfirmed{}, OrderShipped{TrackingNumber: "T1"}},
			When:  DeliverOrder{OrderID: oid},
			Then:  []EventData{OrderDelivered{}},
		},
		{
			Name:    "deliver confirmed order",
			Given:   []EventData{usdPlaced, OrderConfirmed{}},
			When:    DeliverOrder{OrderID: oid},
			WantErr: CodeInvalidTransition, WantMsg: "cannot deliver an order that is CONFIRMED",
		},
		{
			Name:  "cancel pending order",
			Given: []EventData{usdPlaced},
			When:  CancelOrder{OrderID: oid, Reason: "customer changed their mind"},
			Then:  []EventData{OrderCancelled{Reason: "customer changed their mind", ReasonCode: ReasonOther}},
		},
		{
			Name:  "cancel confirmed order",
			Given: []EventData{usdPlaced, OrderConfirmed{}},
			When:  CancelOrder{OrderID: oid, Reason: "out of stock"},
			Then:  []EventData{OrderCancelled{Reason: "out of stock", ReasonCode: ReasonOther}},
		},
		{
			Name:  "cancel with a reason code",
			Given: []EventData{usdPlaced, OrderConfirmed{}},
			When:  CancelOrder{OrderID: oid, Reason: "card declined twice", ReasonCode: ReasonPaymentFailed},
			Then:  []EventData{OrderCancelled{Reason: "card declined twice", ReasonCode: ReasonPaymentFailed}},
		},
		{
			Name:    "cancel with an unknown reason code",
			Given:   []EventData{usdPlaced},
			When:    CancelOrder{OrderID: oid, Reason: "r", ReasonCode: "BORED"},
			WantErr: CodeInvalidInput, WantField: []string{"input", "reasonCode"}, WantMsg: "BORED",
		},
		{
			Name:    "cancel shipped order",
			Given:   []EventData{usdPlaced, OrderConfirmed{}, OrderShipped{TrackingNumber: "T1"}},
			When:    CancelOrder{OrderID: oid, Reason: "too late"},
			WantErr: CodeInvalidTransition, WantMsg: "cannot cancel an order that is SHIPPED",
		},
		{
			Name:    "cancel cancelled order",
			Given:   []EventData{usdPlaced, OrderCancelled{Reason: "first"}},
			When:    CancelOrder{OrderID: oid, Reason: "second"},
			WantErr: CodeInvalidTransition, WantMsg: "cannot cancel an order that is CANCELLED",
		},
		{
			Name:    "cancel without reason",
			Given:   []EventData{usdPlaced},
			When:    CancelOrder{OrderID: oid},
			WantErr: CodeInvalidInput, WantField: []string{"input", "reason"},
		},
		{
			Name:    "cancel with blank reason",
			Given:   []EventData{usdPlaced},
			When:    CancelOrder{OrderID: oid, Reason: " \t "},
			WantErr: CodeInvalidInput, WantField: []string{"input", "reason"},
		},
		{
			Name:    "add item to confirmed order",
			Given:   []EventData{usdPlaced, OrderConfirmed{}},
			When:    AddOrderItem{OrderID: oid, Item: inp("sku-2", 1, "1.00")},
			WantErr: CodeInvalidTransition, WantMsg: "cannot add items to an order that is CONFIRMED",
		},
		{
			Name:    "remove item from confirmed order",
			Given:   []EventData{usdPlaced, OrderConfirmed{}},
			When:    RemoveOrderItem{OrderID: oid, SKU: "sku-1"},
			WantErr: CodeInvalidTransition, WantMsg: "cannot remove items from an order that is CONFIRMED",
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
			Name:    fmt.Sprintf("%d %s on unplaced order", i, c.CommandType()),
			When:    c,
			WantErr: CodeNotFound, WantMsg: oid,
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
			cancel:  OrderCancelled{Reason: "customer request", ReasonCode: ReasonOther},
		},
		StatusConfirmed: {
			ship:   OrderShipped{TrackingNumber: "1Z999"},
			cancel: OrderCancelled{Reason: "customer request", ReasonCode: ReasonOther},
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
				domaintest.CheckEvents(t, state, cmd, got, []EventData{want})
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
				domaintest.CheckEvents(t, Order{}, cmd, got, []EventData{placedEvt("USD", line("sku-9", 1, 100))})
				if s := Evolve(Order{}, got[0]).Status; s != StatusPending {
					t.Errorf("status after place = %s, want PENDING", s)
				}
				return
			}
			domaintest.CheckError(t, err, CodeNotFound, nil, "")
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
		}, OrderCancelled{Reason: "r", ReasonCode: ReasonOther}},
	}
	var cases []decideCase
	for _, tg := range targets {
		current := len(tg.given)
		typ := tg.cmd(nil).CommandType()
		cases = append(cases,
			decideCase{Name: typ + " without expected version", Given: tg.given, When: tg.cmd(nil), Then: []EventData{tg.then}},
			decideCase{Name: typ + " expected version matches", Given: tg.given, When: tg.cmd(ver(current)), Then: []EventData{tg.then}},
		)
		seen := map[int]bool{current: true}
		for _, v := range []int{0, current - 1, current + 1, -1} {
			if seen[v] {
				continue
			}
			seen[v] = true
			cases = append(cases, decideCase{
				Name:  fmt.Sprintf("%s expected version %d at %d", typ, v, current),
				Given: tg.given, When: tg.cmd(ver(v)),
				WantErr: CodeVersionConflict, WantMsg: fmt.Sprintf("version %d", current),
			})
		}
	}
	runDecideCases(t, cases)
}

// TestDecidePrecedence pins which rejection wins when several apply.
func TestDecidePrecedence(t *testing.T) {
	runDecideCases(t, []decideCase{
		{
			Name:    "invalid input beats not found",
			When:    ShipOrder{OrderID: oid},
			WantErr: CodeInvalidInput, WantField: []string{"input", "trackingNumber"},
		},
		{
			Name:    "not found beats version conflict",
			When:    CancelOrder{OrderID: oid, Reason: "r", ExpectedVersion: ver(5)},
			WantErr: CodeNotFound,
		},
		{
			Name:    "version conflict beats invalid transition",
			Given:   []EventData{usdPlaced},
			When:    ShipOrder{OrderID: oid, TrackingNumber: "T1", ExpectedVersion: ver(7)},
			WantErr: CodeVersionConflict, WantMsg: "version 1",
		},
		{
			Name:    "invalid transition beats price not fitting the order currency",
			Given:   []EventData{usdPlaced, OrderConfirmed{}},
			When:    AddOrderItem{OrderID: oid, Item: inp("sku-2", 1, "1.999")},
			WantErr: CodeInvalidTransition,
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
		{Name: "empty order id", When: PlaceOrder{CustomerID: "c", Currency: "USD", Items: inps(1)},
			WantErr: CodeInvalidInput, WantField: []string{"input", "orderId"}},
		{Name: "order id with a space", When: PlaceOrder{OrderID: "a b", CustomerID: "c", Currency: "USD", Items: inps(1)},
			WantErr: CodeInvalidInput, WantField: []string{"input", "orderId"}},
		{Name: "order id of 100 bytes", When: PlaceOrder{OrderID: long(100), CustomerID: "c", Currency: "USD", Items: inps(1)},
			Then: []EventData{OrderPlaced{CustomerID: "c", Currency: "USD", Items: lines(1)}}},
		{Name: "order id of 101 bytes", When: PlaceOrder{OrderID: long(101), CustomerID: "c", Currency: "USD", Items: inps(1)},
			WantErr: CodeInvalidInput, WantField: []string{"input", "orderId"}},
		{Name: "order id of 51 two-byte runes", When: PlaceOrder{OrderID: strings.Repeat("é", 51), CustomerID: "c", Currency: "USD", Items: inps(1)},
			WantErr: CodeInvalidInput, WantField: []string{"input", "orderId"}},
		{Name: "empty order id on confirm", When: ConfirmOrder{},
			WantErr: CodeInvalidInput, WantField: []string{"input", "orderId"}},
		{Name: "empty order id on add", When: AddOrderItem{Item: inp("s", 1, "1")},
			WantErr: CodeInvalidInput, WantField: []string{"input", "orderId"}},
		{Name: "empty order id on remove", When: RemoveOrderItem{SKU: "s"},
			WantErr: CodeInvalidInput, WantField: []string{"input", "orderId"}},
		{Name: "empty order id on ship", When: ShipOrder{TrackingNumber: "T"},
			WantErr: CodeInvalidInput, WantField: []string{"input", "orderId"}},
		{Name: "empty order id on deliver", When: DeliverOrder{},
			WantErr: CodeInvalidInput, WantField: []string{"input", "orderId"}},
		{Name: "empty order id on cancel", When: CancelOrder{Reason: "r"},
			WantErr: CodeInvalidInput, WantField: []string{"input", "orderId"}},
		{Name: "order id of 101 bytes on cancel", When: CancelOrder{OrderID: long(101), Reason: "r"},
			WantErr: CodeInvalidInput, WantField: []string{"input", "orderId"}},

		// Customer id.
		{Name: "empty customer id", When: PlaceOrder{OrderID: oid, Currency: "USD", Items: inps(1)},
			WantErr: CodeInvalidInput, WantField: []string{"input", "customerId"}, WantMsg: "customer id"},
		{Name: "blank customer id", When: PlaceOrder{OrderID: oid, CustomerID: "   ", Currency: "USD", Items: inps(1)},
			WantErr: CodeInvalidInput, WantField: []string{"input", "customerId"}},
		{Name: "customer id of 100 bytes", When: PlaceOrder{OrderID: oid, CustomerID: long(100), Currency: "USD", Items: inps(1)},
			Then: []EventData{OrderPlaced{CustomerID: long(100), Currency: "USD", Items: lines(1)}}},
		{Name: "customer id of 101 bytes", When: PlaceOrder{OrderID: oid, CustomerID: long(101), Currency: "USD", Items: inps(1)},
			WantErr: CodeInvalidInput, WantField: []string{"input", "customerId"}},

		// Currency.
		{Name: "unknown currency XYZ", When: placeCmd("XYZ", inps(1)...),
			WantErr: CodeInvalidInput, WantField: []string{"input", "currencyCode"}, WantMsg: "XYZ"},
		{Name: "lowercase currency usd", When: placeCmd("usd", inps(1)...),
			WantErr: CodeInvalidInput, WantField: []string{"input", "currencyCode"}},
		{Name: "empty currency", When: placeCmd("", inps(1)...),
			WantErr: CodeInvalidInput, WantField: []string{"input", "currencyCode"}},
		{Name: "currency with spaces", When: placeCmd(" USD", inps(1)...),
			WantErr: CodeInvalidInput, WantField: []string{"input", "currencyCode"}},

		// Item count.
		{Name: "no items", When: placeCmd("USD"),
			WantErr: CodeInvalidInput, WantField: []string{"input", "items"}},
		{Name: "empty items slice", When: withItems(placeCmd("USD"), []ItemInput{}),
			WantErr: CodeInvalidInput, WantField: []string{"input", "items"}},
		{Name: "1 item", When: placeCmd("USD", inps(1)...), Then: okPlaced(lines(1)...)},
		{Name: "100 items", When: placeCmd("USD", inps(100)...), Then: okPlaced(lines(100)...)},
		{Name: "101 items", When: placeCmd("USD", inps(101)...),
			WantErr: CodeInvalidInput, WantField: []string{"input", "items"}, WantMsg: "100"},

		// Quantity.
		{Name: "quantity -1", When: place1(inp("s", -1, "1")),
			WantErr: CodeInvalidInput, WantField: items0("quantity")},
		{Name: "quantity 0", When: place1(inp("s", 0, "1")),
			WantErr: CodeInvalidInput, WantField: items0("quantity"), WantMsg: "quantity"},
		{Name: "quantity 1", When: place1(inp("s", 1, "1")), Then: okPlaced(line("s", 1, 100))},
		{Name: "quantity 10000", When: place1(inp("s", 10000, "1")), Then: okPlaced(line("s", 10000, 100))},
		{Name: "quantity 10001", When: place1(inp("s", 10001, "1")),
			WantErr: CodeInvalidInput, WantField: items0("quantity")},
		{Name: "bad quantity in second item names index 1",
			When:    placeCmd("USD", inp("a", 1, "1"), inp("b", 0, "1")),
			WantErr: CodeInvalidInput, WantField: []string{"input", "items", "1", "quantity"}},

		// SKU.
		{Name: "empty sku", When: place1(inp("", 1, "1")),
			WantErr: CodeInvalidInput, WantField: items0("sku")},
		{Name: "blank sku", When: place1(inp("  ", 1, "1")),
			WantErr: CodeInvalidInput, WantField: items0("sku")},
		{Name: "sku of 64 chars", When: place1(inp(long(64), 1, "1")), Then: okPlaced(line(long(64), 1, 100))},
		{Name: "sku of 64 two-byte runes", When: place1(inp(strings.Repeat("é", 64), 1, "1")),
			Then: okPlaced(line(strings.Repeat("é", 64), 1, 100))},
		{Name: "sku of 65 chars", When: place1(inp(long(65), 1, "1")),
			WantErr: CodeInvalidInput, WantField: items0("sku")},
		{Name: "sku with control character", When: place1(inp("a\nb", 1, "1")),
			WantErr: CodeInvalidInput, WantField: items0("sku")},
		{Name: "sku with invalid UTF-8", When: place1(inp("a\xffb", 1, "1")),
			WantErr: CodeInvalidInput, WantField: items0("sku")},
		{Name: "duplicate sku", When: placeCmd("USD", inp("a", 1, "1"), inp("a", 2, "2")),
			WantErr: CodeInvalidInput, WantField: []string{"input", "items", "1", "sku"}, WantMsg: "more than once"},
		{Name: "duplicate sku further apart", When: placeCmd("USD", inp("a", 1, "1"), inp("b", 1, "1"), inp("a", 1, "1")),
			WantErr: CodeInvalidInput, WantField: []string{"input", "items", "2", "sku"}},
		{Name: "skus differing in case are distinct", When: placeCmd("USD", inp("a", 1, "1"), inp("A", 1, "1")),
			Then: okPlaced(line("a", 1, 100), line("A", 1, 100))},

		// Name.
		{Name: "empty name", When: place1(ItemInput{SKU: "s", Quantity: 1, UnitPrice: "1"}),
			WantErr: CodeInvalidInput, WantField: items0("name")},
		{Name: "name of 200 chars", When: place1(ItemInput{SKU: "s", Name: long(200), Quantity: 1, UnitPrice: "1"}),
			Then: okPlaced(Item{SKU: "s", Name: long(200), Quantity: 1, UnitPrice: 100})},
		{Name: "name of 201 chars", When: place1(ItemInput{SKU: "s", Name: long(201), Quantity: 1, UnitPrice: "1"}),
			WantErr: CodeInvalidInput, WantField: items0("name")},
		{Name: "name with control character", When: place1(ItemInput{SKU: "s", Name: "a\x00", Quantity: 1, UnitPrice: "1"}),
			WantErr: CodeInvalidInput, WantField: items0("name")},

		// Shipping address.
		{Name: "address missing city", When: addr(func(a *Address) { a.City = "" }),
			WantErr: CodeInvalidInput, WantField: []string{"input", "shippingAddress", "city"}},
		{Name: "address line1 of 201 chars", When: addr(func(a *Address) { a.Line1 = long(201) }),
			WantErr: CodeInvalidInput, WantField: []string{"input", "shippingAddress", "line1"}},
		{Name: "address lowercase country", When: addr(func(a *Address) { a.Country = "gb" }),
			WantErr: CodeInvalidInput, WantField: []string{"input", "shippingAddress", "country"}},
		{Name: "address three-letter country", When: addr(func(a *Address) { a.Country = "GBR" }),
			WantErr: CodeInvalidInput, WantField: []string{"input", "shippingAddress", "country"}},
		{Name: "address without optional line2", When: addr(func(a *Address) { a.Line2 = "" }),
			Then: []EventData{OrderPlaced{CustomerID: "cust-1", Currency: "USD", Items: []Item{line("sku-1", 1, 100)}, ShippingAddress: validAddress()}}},

		// Tracking number and reason lengths.
		{Name: "tracking number of 100 chars", Given: []EventData{usdPlaced, OrderConfirmed{}},
			When: ShipOrder{OrderID: oid, TrackingNumber: long(100)}, Then: []EventData{OrderShipped{TrackingNumber: long(100)}}},
		{Name: "tracking number of 101 chars", Given: []EventData{usdPlaced, OrderConfirmed{}},
			When:    ShipOrder{OrderID: oid, TrackingNumber: long(101)},
			WantErr: CodeInvalidInput, WantField: []string{"input", "trackingNumber"}},
		{Name: "reason of 500 chars", Given: []EventData{usdPlaced},
			When: CancelOrder{OrderID: oid, Reason: long(500)}, Then: []EventData{OrderCancelled{Reason: long(500), ReasonCode: ReasonOther}}},
		{Name: "reason of 501 chars", Given: []EventData{usdPlaced},
			When:    CancelOrder{OrderID: oid, Reason: long(501)},
			WantErr: CodeInvalidInput, WantField: []string{"input", "reason"}},
		{Name: "reason with newline", Given: []EventData{usdPlaced},
			When:    CancelOrder{OrderID: oid, Reason: "line one\nline two"},
			WantErr: CodeInvalidInput, WantField: []string{"input", "reason"}},

		// RemoveOrderItem input.
		{Name: "remove empty sku", Given: []EventData{usdPlaced}, When: RemoveOrderItem{OrderID: oid},
			WantErr: CodeInvalidInput, WantField: []string{"input", "sku"}},
		{Name: "remove sku of 65 chars", Given: []EventData{usdPlaced}, When: RemoveOrderItem{OrderID: oid, SKU: long(65)},
			WantErr: CodeInvalidInput, WantField: []string{"input", "sku"}},

		// AddOrderItem input, checked against the order's currency.
		{Name: "add existing sku", Given: []EventData{usdPlaced},
			When:    AddOrderItem{OrderID: oid, Item: inp("sku-1", 1, "1.00")},
			WantErr: CodeInvalidInput, WantField: []string{"input", "item", "sku"}, WantMsg: "sku-1"},
		{Name: "add empty sku", Given: []EventData{usdPlaced},
			When:    AddOrderItem{OrderID: oid, Item: inp("", 1, "1.00")},
			WantErr: CodeInvalidInput, WantField: []string{"input", "item", "sku"}},
		{Name: "add sku of 65 chars", Given: []EventData{usdPlaced},
			When:    AddOrderItem{OrderID: oid, Item: inp(long(65), 1, "1.00")},
			WantErr: CodeInvalidInput, WantField: []string{"input", "item", "sku"}},
		{Name: "add empty name", Given: []EventData{usdPlaced},
			When:    AddOrderItem{OrderID: oid, Item: ItemInput{SKU: "s", Quantity: 1, UnitPrice: "1"}},
			WantErr: CodeInvalidInput, WantField: []string{"input", "item", "name"}},
		{Name: "add quantity 0", Given: []EventData{usdPlaced},
			When:    AddOrderItem{OrderID: oid, Item: inp("sku-2", 0, "1.00")},
			WantErr: CodeInvalidInput, WantField: []string{"input", "item", "quantity"}},
		{Name: "add quantity 10000", Given: []EventData{usdPlaced},
			When: AddOrderItem{OrderID: oid, Item: inp("sku-2", 10000, "1.00")},
			Then: []EventData{OrderItemAdded{Item: line("sku-2", 10000, 100)}}},
		{Name: "add quantity 10001", Given: []EventData{usdPlaced},
			When:    AddOrderItem{OrderID: oid, Item: inp("sku-2", 10001, "1.00")},
			WantErr: CodeInvalidInput, WantField: []string{"input", "item", "quantity"}},
		{Name: "add 3-decimal price to USD order", Given: []EventData{usdPlaced},
			When:    AddOrderItem{OrderID: oid, Item: inp("sku-2", 1, "19.999")},
			WantErr: CodeInvalidInput, WantField: []string{"input", "item", "unitPrice"}},
		{Name: "add 5-decimal price to USD order", Given: []EventData{usdPlaced},
			When:    AddOrderItem{OrderID: oid, Item: inp("sku-2", 1, "1.23456")},
			WantErr: CodeInvalidInput, WantField: []string{"input", "item", "unitPrice"}},
		{Name: "add negative price", Given: []EventData{usdPlaced},
			When:    AddOrderItem{OrderID: oid, Item: inp("sku-2", 1, "-1")},
			WantErr: CodeInvalidInput, WantField: []string{"input", "item", "unitPrice"}},
		{Name: "add decimal price to JPY order", Given: []EventData{placedEvt("JPY", line("a", 1, 100))},
			When:    AddOrderItem{OrderID: oid, Item: inp("sku-2", 1, "100.5")},
			WantErr: CodeInvalidInput, WantField: []string{"input", "item", "unitPrice"}, WantMsg: "JPY"},
		{Name: "add whole price to JPY order", Given: []EventData{placedEvt("JPY", line("a", 1, 100))},
			When: AddOrderItem{OrderID: oid, Item: inp("sku-2", 1, "100")},
			Then: []EventData{OrderItemAdded{Item: line("sku-2", 1, 100)}}},
		{Name: "add 3-decimal price to KWD order", Given: []EventData{placedEvt("KWD", line("a", 1, 100))},
			When: AddOrderItem{OrderID: oid, Item: inp("sku-2", 1, "1.234")},
			Then: []EventData{OrderItemAdded{Item: line("sku-2", 1, 1234)}}},
		{Name: "add 4-decimal price to KWD order", Given: []EventData{placedEvt("KWD", line("a", 1, 100))},
			When:    AddOrderItem{OrderID: oid, Item: inp("sku-2", 1, "1.2345")},
			WantErr: CodeInvalidInput, WantField: []string{"input", "item", "unitPrice"}},
		{Name: "add 100th item", Given: []EventData{placedEvt("USD", lines(99)...)},
			When: AddOrderItem{OrderID: oid, Item: inp("new", 1, "1")},
			Then: []EventData{OrderItemAdded{Item: line("new", 1, 100)}}},
		{Name: "add 101st item", Given: []EventData{placedEvt("USD", lines(100)...)},
			When:    AddOrderItem{OrderID: oid, Item: inp("new", 1, "1")},
			WantErr: CodeInvalidInput, WantField: []string{"input", "item"}, WantMsg: "100"},
		{Name: "add 101st item after an add", Given: []EventData{placedEvt("USD", lines(99)...), OrderItemAdded{Item: line("x", 1, 1)}},
			When:    AddOrderItem{OrderID: oid, Item: inp("new", 1, "1")},
			WantErr: CodeInvalidInput, WantField: []string{"input", "item"}},
		{Name: "add 100th item after a remove", Given: []EventData{placedEvt("USD", lines(100)...), OrderItemRemoved{SKU: "sku-000"}},
			When: AddOrderItem{OrderID: oid, Item: inp("new", 1, "1")},
			Then: []EventData{OrderItemAdded{Item: line("new", 1, 100)}}},
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
			Name: fmt.Sprintf("price %q %s", p.price, p.currency),
			When: placeCmd(p.currency, inp("s", 1, p.price)),
		}
		if p.ok {
			tc.Then = []EventData{placedEvt(p.currency, line("s", 1, p.want))}
		} else {
			tc.WantErr, tc.WantField = CodeInvalidInput, items0("unitPrice")
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
