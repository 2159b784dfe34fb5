package main

import (
	"io"
	"net/http"

	"github.com/ordergateway/gateway/app"

	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestOrderLifecycle drives one order through its whole life over HTTP and
// checks every payload against the views.
func TestOrderLifecycle(t *testing.T) {
	g := startGateway(t, testConfig(t))
	t.Logf("kafka: %s %v", testKafka, testBrokers)

	in := placeInput("cust-life", item("A", 2, "19.99"), item("B", 1, "5"))
	in["shippingAddress"] = map[string]any{"name": "Ada", "line1": "1 Main St", "city": "Berlin", "postalCode": "10115", "country": "DE"}
	p := g.mutate(t, "placeOrder", in)
	if len(p.UserErrors) != 0 || p.Order == nil || p.Version == nil || *p.Version != 1 || p.ConsistencyToken == nil {
		t.Fatalf("placeOrder payload: %+v", p)
	}
	o := *p.Order
	if o.Status != "PENDING" || o.ItemCount != 3 || o.Total != (Money{"44.98", "USD"}) || o.CustomerID != "cust-life" ||
		o.ShippingAddress == nil || o.ShippingAddress.City != "Berlin" || len(o.History) != 1 || o.Items[0].LineTotal.Amount != "39.98" {
		t.Fatalf("placed order: %+v", o)
	}
	id := o.ID

	steps := []struct {
		mutation string
		input    map[string]any
		status   string
		check    func(Order) bool
	}{
		{"addOrderItem", map[string]any{"orderId": id, "item": item("C", 3, "0.50")}, "PENDING", func(o Order) bool { return o.ItemCount == 6 && o.Total.Amount == "46.48" }},
		{"removeOrderItem", map[string]any{"orderId": id, "sku": "B"}, "PENDING", func(o Order) bool { return o.ItemCount == 5 && o.Total.Amount == "41.48" && len(o.Items) == 2 }},
		{"confirmOrder", map[string]any{"orderId": id, "expectedVersion": 3}, "CONFIRMED", nil},
		{"shipOrder", map[string]any{"orderId": id, "trackingNumber": "TRACK-1"}, "SHIPPED", func(o Order) bool { return o.TrackingNumber != nil && *o.TrackingNumber == "TRACK-1" }},
		{"deliverOrder", map[string]any{"orderId": id}, "DELIVERED", nil},
	}
	var last Payload
	for i, s := range steps {
		last = g.mutate(t, s.mutation, s.input)
		if len(last.UserErrors) != 0 || last.Order == nil {
			t.Fatalf("%s: %+v", s.mutation, last.UserErrors)
		}
		if got := *last.Order; got.Status != s.status || got.Version != i+2 || *last.Version != i+2 || (s.check != nil && !s.check(got)) {
			t.Fatalf("%s: order %+v", s.mutation, got)
		}
	}
	final := *last.Order
	if len(final.History) != 4 || final.History[3].Status != "DELIVERED" || !final.UpdatedAt.After(final.CreatedAt) && !final.UpdatedAt.Equal(final.CreatedAt) {
		t.Fatalf("final history: %+v", final.History)
	}

	viewed := g.orderAt(t, id, *last.ConsistencyToken)
	if viewed == nil {
		t.Fatal("order not in the views")
	}
	if !equalJSON(t, *viewed, final) {
		t.Fatalf("view differs from the write side:\nview  %+v\nwrite %+v", *viewed, final)
	}

	var cust struct {
		Customer struct {
			OrderCount, OpenOrderCount int
			CountsByStatus             []struct {
				Status string
				Count  int
			}
			LifetimeValue []Money
		}
	}
	g.data(t, `query($t: String) { customer(id: "cust-life", consistencyToken: $t) { orderCount openOrderCount countsByStatus { status count } lifetimeValue { amount currencyCode } } }`,
		map[string]any{"t": *last.ConsistencyToken}, &cust)
	c := cust.Customer
	if c.OrderCount != 1 || c.OpenOrderCount != 0 || len(c.CountsByStatus) != 1 || c.CountsByStatus[0].Status != "DELIVERED" ||
		len(c.LifetimeValue) != 1 || c.LifetimeValue[0] != (Money{"41.48", "USD"}) {
		t.Fatalf("customer summary: %+v", c)
	}
	t.Logf("checked %d mutations, the order view and the customer summary", len(steps)+1)
}

// TestCancel cancels from PENDING and from CONFIRMED.
func TestCancel(t *testing.T) {
	g := startGateway(t, testConfig(t))
	pending := g.mustMutate(t, "placeOrder", placeInput("cust-cancel", item("A", 1, "1")))
	confirmed := g.mustMutate(t, "placeOrder", placeInput("cust-cancel", item("A", 1, "2")))
	g.mustMutate(t, "confirmOrder", map[string]any{"orderId": confirmed.ID})

	var token string
	for _, id := range []string{pending.ID, confirmed.ID} {
		p := g.mutate(t, "cancelOrder", map[string]any{"orderId": id, "reason": "changed my mind"})
		if len(p.UserErrors) != 0 || p.Order.Status != "CANCELLED" || p.Order.CancellationReason == nil || *p.Order.CancellationReason != "changed my mind" {
			t.Fatalf("cancel %s: %+v", id, p)
		}
		h := p.Order.History[len(p.Order.History)-1]
		if h.Status != "CANCELLED" || h.Reason == nil || *h.Reason != "changed my mind" {
			t.Fatalf("cancel history: %+v", p.Order.History)
		}
		token = *p.ConsistencyToken
	}
	var cust struct {
		Customer struct {
			OrderCount, OpenOrderCount int
			LifetimeValue              []Money
		}
	}
	g.orderAt(t, confirmed.ID, token)
	g.orderAt(t, pending.ID, consistencyTokenFor(pending.ID, 2))
	// Summaries follow the order views: a token makes the query wait for its
	// write, one token per order (each may be on its own partition).
	for _, tok := range []string{consistencyTokenFor(pending.ID, 2), token} {
		g.data(t, `query($t: String) { customer(id: "cust-cancel", consistencyToken: $t) { orderCount openOrderCount lifetimeValue { amount } } }`, map[string]any{"t": tok}, &cust)
	}
	if cust.Customer.OrderCount != 2 || cust.Customer.OpenOrderCount != 0 || len(cust.Customer.LifetimeValue) != 0 {
		t.Fatalf("customer after cancels: %+v", cust.Customer)
	}
}

// TestRejections checks that every rejected command comes back as the right
// userError, and that nothing was appended for it.
func TestRejections(t *testing.T) {
	g := startGateway(t, testConfig(t))
	byStatus := map[string]string{}
	newOrder := func(status string) string {
		o := g.mustMutate(t, "placeOrder", placeInput("cust-rej", item("A", 1, "1")))
		switch status {
		case "CONFIRMED":
			g.mustMutate(t, "confirmOrder", map[string]any{"orderId": o.ID})
		case "SHIPPED":
			g.mustMutate(t, "confirmOrder", map[string]any{"orderId": o.ID})
			g.mustMutate(t, "shipOrder", map[string]any{"orderId": o.ID, "trackingNumber": "T"})
		case "DELIVERED":
			g.mustMutate(t, "confirmOrder", map[string]any{"orderId": o.ID})
			g.mustMutate(t, "shipOrder", map[string]any{"orderId": o.ID, "trackingNumber": "T"})
			g.mustMutate(t, "deliverOrder", map[string]any{"orderId": o.ID})
		case "CANCELLED":
			g.mustMutate(t, "cancelOrder", map[string]any{"orderId": o.ID, "reason": "r"})
		}
		return o.ID
	}
	for _, s := range []string{"PENDING", "CONFIRMED", "SHIPPED", "DELIVERED", "CANCELLED"} {
		byStatus[s] = newOrder(s)
	}
	cases := []struct {
		name, mutation string
		input          map[string]any
		code           string
		field          []string
	}{
		{"ship pending", "shipOrder", map[string]any{"orderId": byStatus["PENDING"], "trackingNumber": "T"}, "INVALID_TRANSITION", nil},
		{"deliver pending", "deliverOrder", map[string]any{"orderId": byStatus["PENDING"]}, "INVALID_TRANSITION", nil},
		{"deliver confirmed", "deliverOrder", map[string]any{"orderId": byStatus["CONFIRMED"]}, "INVALID_TRANSITION", nil},
		{"add item confirmed", "addOrderItem", map[string]any{"orderId": byStatus["CONFIRMED"], "item": item("Z", 1, "1")}, "INVALID_TRANSITION", nil},
		{"remove item confirmed", "removeOrderItem", map[string]any{"orderId": byStatus["CONFIRMED"], "sku": "A"}, "INVALID_TRANSITION", nil},
		{"confirm shipped", "confirmOrder", map[string]any{"orderId": byStatus["SHIPPED"]}, "INVALID_TRANSITION", nil},
		{"cancel shipped", "cancelOrder", map[string]any{"orderId": byStatus["SHIPPED"], "reason": "r"}, "INVALID_TRANSITION", nil},
		{"cancel delivered", "cancelOrder", map[string]any{"orderId": byStatus["DELIVERED"], "reason": "r"}, "INVALID_TRANSITION", nil},
		{"ship cancelled", "shipOrder", map[string]any{"orderId": byStatus["CANCELLED"], "trackingNumber": "T"}, "INVALID_TRANSITION", nil},
		{"confirm cancelled", "confirmOrder", map[string]any{"orderId": byStatus["CANCELLED"]}, "INVALID_TRANSITION", nil},
		{"unknown order", "confirmOrder", map[string]any{"orderId": "no-such-order"}, "NOT_FOUND", nil},
		{"unknown sku", "removeOrderItem", map[string]any{"orderId": byStatus["PENDING"], "sku": "NOPE"}, "NOT_FOUND", []string{"input", "sku"}},
		{"stale version", "confirmOrder", map[string]any{"orderId": byStatus["PENDING"], "expectedVersion": 7}, "VERSION_CONFLICT", nil},
		{"zero quantity", "placeOrder", placeInput("c", item("A", 0, "1")), "INVALID_INPUT", []string{"input", "items", "0", "quantity"}},
		{"too many decimals", "placeOrder", placeInput("c", item("A", 1, "1.999")), "INVALID_INPUT", []string{"input", "items", "0", "unitPrice"}},
		{"no items", "placeOrder", placeInput("c"), "INVALID_INPUT", []string{"input", "items"}},
		{"empty customer", "placeOrder", placeInput("", item("A", 1, "1")), "INVALID_INPUT", []string{"input", "customerId"}},
		{"bad currency", "placeOrder", map[string]any{"customerId": "c", "currencyCode": "XXY", "items": []any{item("A", 1, "1")}}, "INVALID_INPUT", []string{"input", "currencyCode"}},
		{"duplicate sku", "placeOrder", placeInput("c", item("A", 1, "1"), item("A", 2, "1")), "INVALID_INPUT", []string{"input", "items", "1", "sku"}},
		{"empty tracking", "shipOrder", map[string]any{"orderId": byStatus["CONFIRMED"], "trackingNumber": " "}, "INVALID_INPUT", []string{"input", "trackingNumber"}},
		{"empty reason", "cancelOrder", map[string]any{"orderId": byStatus["PENDING"], "reason": ""}, "INVALID_INPUT", []string{"input", "reason"}},
		{"sku already in order", "addOrderItem", map[string]any{"orderId": byStatus["PENDING"], "item": item("A", 1, "1")}, "INVALID_INPUT", []string{"input", "item", "sku"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := g.mutate(t, c.mutation, c.input)
			if len(p.UserErrors) != 1 || p.UserErrors[0].Code != c.code || p.UserErrors[0].Message == "" {
				t.Fatalf("want %s, got %+v", c.code, p.UserErrors)
			}
			if c.field != nil && !equalStrings(p.UserErrors[0].Field, c.field) {
				t.Fatalf("field: want %v, got %v", c.field, p.UserErrors[0].Field)
			}
		})
	}
	// Nothing was appended by the rejections: each order is at the version
	// its successful commands left it at.
	want := map[string]int{"PENDING": 1, "CONFIRMED": 2, "SHIPPED": 3, "DELIVERED": 4, "CANCELLED": 2}
	for s, id := range byStatus {
		p := g.mutate(t, "confirmOrder", map[string]any{"orderId": id, "expectedVersion": 99})
		if p.Version == nil || *p.Version != want[s] {
			t.Fatalf("%s order is at version %v, want %d", s, p.Version, want[s])
		}
	}
	t.Logf("checked %d rejections on %d orders", len(cases), len(byStatus))
}

// TestCommandTimeout: with no handler running, a mutation fails with
// COMMAND_TIMEOUT naming the command, after the configured timeout.
func TestCommandTimeout(t *testing.T) {
	cfg := testConfig(t)
	cfg.CommandTimeout = 500 * time.Millisecond
	g := startGateway(t, cfg)
	g.Handler().Close() // leave the group: nobody handles commands now
	r := g.do(t, `mutation { placeOrder(input: {customerId: "c", currencyCode: "EUR", items: [{sku: "A", name: "A", quantity: 1, unitPrice: "1"}]}) { version } }`, nil)
	if len(r.Errors) != 1 || r.Errors[0].Extensions["code"] != "COMMAND_TIMEOUT" || r.Errors[0].Extensions["commandId"] == nil {
		t.Fatalf("want COMMAND_TIMEOUT with commandId, got %+v", r.Errors)
	}
}

// TestUnreachableDependencies: a broker or store that never answers is
// retried for the startup timeout, then Run fails with one line naming it.
func TestUnreachableDependencies(t *testing.T) {
	for _, c := range []struct {
		name string
		set  func(*app.Config)
		want string
	}{
		{"broker", func(c *app.Config) { c.KafkaBrokers = []string{freeAddr(t)} }, "kafka at"},
		{"store", func(c *app.Config) { c.MongoURI = "mongodb://" + freeAddr(t) + "/" }, "mongodb at"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.StartupTimeout = time.Second
			c.set(&cfg)
			m := &app.Main{Config: cfg, Logger: slog.New(slog.DiscardHandler)}
			start := time.Now()
			err := m.Run(context.Background())
			m.Close()
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "not reachable within 1s") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("want one line naming %q and the timeout, got %v", c.want, err)
			}
			t.Logf("gave up after %s: %v", time.Since(start).Round(100*time.Millisecond), err)
		})
	}
}

// DEBUG_ADDR serves Go's profiling endpoints on their own address, and
// never on the GraphQL one.
func TestDebugAddr(t *testing.T) {
	cfg := testConfig(t)
	cfg.DebugAddr = "127.0.0.1:0"
	g := startGateway(t, cfg)
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := get("http://" + g.DebugAddr() + "/debug/pprof/"); code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Fatalf("profiling index on DEBUG_ADDR: %d %.200s", code, body)
	}
	if code, _ := get(g.url + "/debug/pprof/"); code != http.StatusNotFound {
		t.Fatalf("the GraphQL address answers /debug/pprof/ with %d, want 404", code)
	}
	if off := startGateway(t, testConfig(t)); off.DebugAddr() != "" {
		t.Fatalf("without DEBUG_ADDR the profiling endpoints listen on %s", off.DebugAddr())
	}
}
