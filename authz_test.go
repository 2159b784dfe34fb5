package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	coderws "github.com/coder/websocket"

	"github.com/ordergateway/gateway/app"
	"github.com/ordergateway/gateway/command"
	"github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/kafka"
)

// asHTTP, asWS and asSSE run one query or mutation with a token ("" for
// none) over each transport and return its response.
type transport struct {
	name string
	run  func(t *testing.T, g *gateway, token, query string, vars map[string]any) gqlResponse
}

var transports = []transport{
	{"http", func(t *testing.T, g *gateway, token, query string, vars map[string]any) gqlResponse {
		t.Helper()
		return g.doAs(t, token, query, vars)
	}},
	{"websocket", func(t *testing.T, g *gateway, token, query string, vars map[string]any) gqlResponse {
		t.Helper()
		c := dialWS(t, g, wsDial{token: token})
		defer c.close()
		c.subscribe(t, "1", query, vars)
		m, err := c.tryNext(eventWait, byID("1"))
		if err != nil {
			t.Fatalf("websocket: %v", err)
		}
		var r gqlResponse
		if m.Type == "error" {
			_ = json.Unmarshal(m.Payload, &r.Errors)
			return r
		}
		if err := json.Unmarshal(m.Payload, &r); err != nil {
			t.Fatalf("websocket: %s %s", m.Type, m.Payload)
		}
		return r
	}},
	{"sse", func(t *testing.T, g *gateway, token, query string, vars map[string]any) gqlResponse {
		t.Helper()
		resp := sseAs(t, context.Background(), g, token, query, vars)
		events := readSSE(resp.Body)
		ev, ok := <-events
		if !ok || ev.event != "next" {
			t.Fatalf("sse: status %d, first event %+v", resp.StatusCode, ev)
		}
		var r gqlResponse
		if err := json.Unmarshal([]byte(ev.data), &r); err != nil {
			t.Fatalf("sse: %s", ev.data)
		}
		if last, ok := <-events; !ok || last.event != "complete" {
			t.Fatalf("sse: after the result: %+v", last)
		}
		return r
	}},
}

// doAs posts a GraphQL request with token ("" for none).
func (g *gateway) doAs(t testing.TB, token, query string, vars map[string]any) gqlResponse {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, _ := http.NewRequest(http.MethodPost, g.url+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	setToken(req.Header, token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST /graphql: %v", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var r gqlResponse
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("response is not JSON (%d): %s", resp.StatusCode, raw)
	}
	r.Status = resp.StatusCode
	return r
}

func setToken(h http.Header, token string) {
	if token == "" {
		withoutToken(h)
		return
	}
	h.Set("Authorization", "Bearer "+token)
}

// sseAs opens an event stream for query with token.
func sseAs(t *testing.T, ctx context.Context, g *gateway, token, query string, vars map[string]any) *http.Response {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, g.url+"/graphql", bytes.NewReader(body))
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Content-Type", "application/json")
	setToken(req.Header, token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

type sseEvent struct {
	event, data string
	at          time.Time
}

// readSSE delivers a stream's events until it ends.
func readSSE(body io.Reader) <-chan sseEvent {
	events := make(chan sseEvent, 64)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		var ev sseEvent
		for sc.Scan() {
			switch line := sc.Text(); {
			case line == "":
				if ev.event != "" || ev.data != "" {
					ev.at = time.Now()
					events <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "event:"):
				ev.event = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
			case strings.HasPrefix(line, "data:"):
				ev.data += strings.TrimSpace(strings.TrimPrefix(line, "data:"))
			}
		}
	}()
	return events
}

// code is the extensions.code of r's first error, or "".
func (r gqlResponse) code() string {
	if len(r.Errors) == 0 {
		return ""
	}
	c, _ := r.Errors[0].Extensions["code"].(string)
	return c
}

const mutationOf = "mutation($input: %s!) { m: %s(input: $input) { order { id customerId status version } version consistencyToken userErrors { code message field } } }"

// mutation is the query of mutation name with its payload.
func mutation(name string) string {
	return fmt.Sprintf(mutationOf, strings.ToUpper(name[:1])+name[1:]+"Input", name)
}

// payloadOf decodes a mutation's payload; nil when there is none.
func payloadOf(t *testing.T, r gqlResponse) *Payload {
	t.Helper()
	var out struct{ M *Payload }
	if len(r.Data) > 0 && string(r.Data) != "null" {
		if err := json.Unmarshal(r.Data, &out); err != nil {
			t.Fatalf("payload %s: %v", r.Data, err)
		}
	}
	return out.M
}

// TestAuthorizationTable: every row of the table, allowed and
// refused, over HTTP, a websocket and server-sent events. Alice and Bob are
// customers; staff is the tests' default token.
func TestAuthorizationTable(t *testing.T) {
	g := startGateway(t, testConfig(t))
	topics := kafka.NewTopics(g.Config.TopicPrefix)
	var neverSent []string // order ids of commands that must not reach the commands topic
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			alice, bob := "alice-"+tr.name, "bob-"+tr.name
			aliceTok, bobTok := customerToken(alice), customerToken(bob)
			as := func(token, query string, vars map[string]any) gqlResponse {
				t.Helper()
				return tr.run(t, g, token, query, vars)
			}
			mutate := func(token, name string, input map[string]any) (*Payload, gqlResponse) {
				t.Helper()
				r := as(token, mutation(name), map[string]any{"input": input})
				return payloadOf(t, r), r
			}
			allowed := func(what string) func(p *Payload, r gqlResponse) Order {
				return func(p *Payload, r gqlResponse) Order {
					t.Helper()
					if len(r.Errors) > 0 || p == nil || len(p.UserErrors) > 0 || p.Order == nil {
						t.Fatalf("%s: want it done, got %+v %+v", what, r.Errors, p)
					}
					return *p.Order
				}
			}
			forbidden := func(what string, r gqlResponse) {
				t.Helper()
				if r.code() != "FORBIDDEN" || payloadOf(t, r) != nil {
					t.Errorf("%s: want a FORBIDDEN error and no payload, got %+v data %s", what, r.Errors, r.Data)
				}
			}
			notFound := func(what string, p *Payload, r gqlResponse, id string) {
				t.Helper()
				missing := domain.NotFound(id).Message
				if len(r.Errors) > 0 || p == nil || p.Order != nil || p.Version != nil || p.ConsistencyToken != nil ||
					len(p.UserErrors) != 1 || p.UserErrors[0].Code != "NOT_FOUND" || p.UserErrors[0].Message != missing {
					t.Errorf("%s: want NOT_FOUND as for a missing order, got %+v %+v", what, r.Errors, p)
				}
			}

			// placeOrder: only with their own customerId.
			mine := allowed("alice places her order")(mutate(aliceTok, "placeOrder", placeInput(alice, item("A", 1, "1"))))
			if mine.CustomerID != alice {
				t.Fatalf("alice's order belongs to %s", mine.CustomerID)
			}
			spare := allowed("alice places another")(mutate(aliceTok, "placeOrder", placeInput(alice, item("A", 1, "1"))))
			theirs := allowed("bob places his order")(mutate(bobTok, "placeOrder", placeInput(bob, item("B", 1, "1"))))
			forged := "ord_forged_" + tr.name
			_, r := mutate(aliceTok, "placeOrder", map[string]any{"orderId": forged, "customerId": bob, "currencyCode": "EUR", "items": []any{item("A", 1, "1")}})
			forbidden("alice places an order for bob", r)
			neverSent = append(neverSent, forged)

			// addOrderItem, removeOrderItem, confirmOrder, cancelOrder: own orders only;
			// another customer's order is a missing one.
			for _, c := range []struct {
				name  string
				input func(id string) map[string]any
			}{
				{"addOrderItem", func(id string) map[string]any { return map[string]any{"orderId": id, "item": item("C", 2, "3")} }},
				{"removeOrderItem", func(id string) map[string]any { return map[string]any{"orderId": id, "sku": "C"} }},
				{"confirmOrder", func(id string) map[string]any { return map[string]any{"orderId": id} }},
			} {
				p, r := mutate(aliceTok, c.name, c.input(theirs.ID))
				notFound("alice: "+c.name+" on bob's order", p, r, theirs.ID)
				allowed("alice: " + c.name + " on her order")(mutate(aliceTok, c.name, c.input(mine.ID)))
			}
			p, r := mutate(aliceTok, "cancelOrder", map[string]any{"orderId": theirs.ID, "reason": "mine now"})
			notFound("alice cancels bob's order", p, r, theirs.ID)
			allowed("alice cancels her order")(mutate(aliceTok, "cancelOrder", map[string]any{"orderId": spare.ID, "reason": "changed my mind"}))
			p, r = mutate(aliceTok, "confirmOrder", map[string]any{"orderId": "ord_missing_" + tr.name})
			notFound("alice confirms a missing order", p, r, "ord_missing_"+tr.name)

			// shipOrder, deliverOrder: staff only (nothing is sent for a customer).
			_, r = mutate(aliceTok, "shipOrder", map[string]any{"orderId": mine.ID, "trackingNumber": "T-1", "idempotencyKey": "never-" + tr.name})
			forbidden("alice ships her order", r)
			_, r = mutate(bobTok, "deliverOrder", map[string]any{"orderId": theirs.ID})
			forbidden("bob delivers his order", r)
			allowed("staff ships alice's order")(mutate(staffToken, "shipOrder", map[string]any{"orderId": mine.ID, "trackingNumber": "T-1"}))
			shipped := allowed("staff delivers alice's order")(mutate(staffToken, "deliverOrder", map[string]any{"orderId": mine.ID}))
			allowed("staff confirms bob's order")(mutate(staffToken, "confirmOrder", map[string]any{"orderId": theirs.ID}))
			if shipped.Status != "DELIVERED" || shipped.Version != 6 {
				t.Errorf("alice's order after the table: %s at version %d, want DELIVERED at 6 (every refusal changed nothing)", shipped.Status, shipped.Version)
			}
			g.orderAt(t, theirs.ID, consistencyTokenFor(theirs.ID, 2)) // the views include every write
			g.orderAt(t, mine.ID, consistencyTokenFor(mine.ID, 6))

			// order: own, else null.
			const orderQ = `query($id: ID!) { order(id: $id) { id customerId version } }`
			var got struct{ Order *Order }
			r = as(aliceTok, orderQ, map[string]any{"id": mine.ID})
			if json.Unmarshal(r.Data, &got); len(r.Errors) > 0 || got.Order == nil || got.Order.ID != mine.ID {
				t.Errorf("alice reads her order: %+v %s", r.Errors, r.Data)
			}
			r = as(aliceTok, orderQ, map[string]any{"id": theirs.ID})
			if got.Order = nil; len(r.Errors) > 0 || json.Unmarshal(r.Data, &got) != nil || got.Order != nil {
				t.Errorf("alice reads bob's order: want null without an error, got %+v %s", r.Errors, r.Data)
			}
			r = as(staffToken, orderQ, map[string]any{"id": theirs.ID})
			if got.Order = nil; len(r.Errors) > 0 || json.Unmarshal(r.Data, &got) != nil || got.Order == nil {
				t.Errorf("staff reads bob's order: %+v %s", r.Errors, r.Data)
			}

			// orders: limited to their own, whatever the filter says.
			const ordersQ = `query($f: OrderFilter) { orders(filter: $f, first: 100) { totalCount edges { node { id customerId } } } }`
			owners := func(token string, filter map[string]any) (customers map[string]int, total int) {
				t.Helper()
				var out struct {
					Orders struct {
						TotalCount int
						Edges      []struct{ Node Order }
					}
				}
				r := as(token, ordersQ, map[string]any{"f": filter})
				if len(r.Errors) > 0 || json.Unmarshal(r.Data, &out) != nil {
					t.Fatalf("orders(%v): %+v %s", filter, r.Errors, r.Data)
				}
				customers = map[string]int{}
				for _, e := range out.Orders.Edges {
					customers[e.Node.CustomerID]++
				}
				return customers, out.Orders.TotalCount
			}
			if c, n := owners(aliceTok, nil); len(c) != 1 || c[alice] != 2 || n != 2 {
				t.Errorf("alice lists orders without a filter: %v (total %d), want her 2 only", c, n)
			}
			if c, n := owners(aliceTok, map[string]any{"customerId": bob}); len(c) != 0 || n != 0 {
				t.Errorf("alice lists bob's orders: %v (total %d), want none", c, n)
			}
			if c, _ := owners(aliceTok, map[string]any{"customerId": alice, "status": []string{"DELIVERED"}}); c[alice] != 1 || len(c) != 1 {
				t.Errorf("alice lists her delivered orders: %v", c)
			}
			if c, _ := owners(staffToken, map[string]any{"customerId": bob}); c[bob] != 1 || len(c) != 1 {
				t.Errorf("staff lists bob's orders: %v", c)
			}
			if c, _ := owners(staffToken, nil); c[alice] != 2 || c[bob] != 1 {
				t.Errorf("staff lists every order: %v", c)
			}

			// customer: their own only.
			// (The tokens make the summaries include the writes above.)
			const customerQ = `query($id: ID!, $t: String) { customer(id: $id, consistencyToken: $t) { customerId orderCount } }`
			var sum struct{ Customer *struct{ CustomerID string } }
			if r = as(aliceTok, customerQ, map[string]any{"id": alice, "t": consistencyTokenFor(mine.ID, 6)}); len(r.Errors) > 0 || json.Unmarshal(r.Data, &sum) != nil || sum.Customer == nil {
				t.Errorf("alice reads her summary: %+v %s", r.Errors, r.Data)
			}
			if r = as(aliceTok, customerQ, map[string]any{"id": bob}); r.code() != "FORBIDDEN" || strings.Contains(string(r.Data), "orderCount") {
				t.Errorf("alice reads bob's summary: want FORBIDDEN, got %+v %s", r.Errors, r.Data)
			}
			sum.Customer = nil
			if r = as(staffToken, customerQ, map[string]any{"id": bob, "t": consistencyTokenFor(theirs.ID, 2)}); json.Unmarshal(r.Data, &sum) != nil || sum.Customer == nil || sum.Customer.CustomerID != bob {
				t.Errorf("staff reads bob's summary: %+v %s", r.Errors, r.Data)
			}
		})
	}
	// Nothing of a refused command reached Kafka.
	for _, m := range readTopic(t, topics.Commands, time.Second) {
		for _, id := range neverSent {
			if string(m.Key) == id {
				t.Errorf("a refused command for %s was sent to the commands topic", id)
			}
		}
		if kafka.Header(m, command.HeaderIdempotencyKey) != "" && strings.HasPrefix(kafka.Header(m, command.HeaderIdempotencyKey), "never-") {
			t.Errorf("a customer's shipOrder was sent to the commands topic")
		}
		if p := kafka.Header(m, command.HeaderPrincipal); p == "" {
			t.Errorf("command %s was sent without a principal", m.Key)
		}
	}
}

// TestSubscriptionsAreOwnOrdersOnly: orderUpdated and ordersUpdated, over a
// websocket and SSE, send a customer their own orders only: another
// customer's order looks like one that does not exist (nothing is sent),
// and ordersUpdated leaves out other customers' orders whatever customerId
// says; staff get every order.
func TestSubscriptionsAreOwnOrdersOnly(t *testing.T) {
	g := startGateway(t, testConfig(t))
	alice, bob := "alice-subs", "bob-subs"
	aliceTok := customerToken(alice)
	mine := g.mustMutate(t, "placeOrder", placeInput(alice, item("A", 1, "1")))
	theirs := g.mustMutate(t, "placeOrder", placeInput(bob, item("B", 1, "1")))
	g.orderAt(t, mine.ID, consistencyTokenFor(mine.ID, 1))
	g.orderAt(t, theirs.ID, consistencyTokenFor(theirs.ID, 1))
	const ordersUpdated = `subscription($c: ID) { ordersUpdated(customerId: $c) { id customerId version } }`

	// websocket
	ws := dialWS(t, g, wsDial{token: aliceTok})
	ws.subscribe(t, "mine", orderUpdatedQuery, map[string]any{"id": mine.ID})
	ws.subscribe(t, "theirs", orderUpdatedQuery, map[string]any{"id": theirs.ID})
	ws.subscribe(t, "all", ordersUpdated, nil)
	ws.subscribe(t, "bob", ordersUpdated, map[string]any{"c": bob})
	staff := dialWS(t, g, wsDial{})
	staff.subscribe(t, "theirs", orderUpdatedQuery, map[string]any{"id": theirs.ID})
	staff.subscribe(t, "bob", ordersUpdated, map[string]any{"c": bob})
	if o := ws.nextOrder(t, "mine", "orderUpdated"); o.ID != mine.ID || o.Version != 1 {
		t.Fatalf("alice's orderUpdated of her order: %+v", o)
	}
	if o := staff.nextOrder(t, "theirs", "orderUpdated"); o.ID != theirs.ID || o.Version != 1 {
		t.Fatalf("staff's orderUpdated of bob's order: %+v", o)
	}

	// SSE
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sseMine := readSSE(sseAs(t, ctx, g, aliceTok, orderUpdatedQuery, map[string]any{"id": mine.ID}).Body)
	sseTheirs := readSSE(sseAs(t, ctx, g, aliceTok, orderUpdatedQuery, map[string]any{"id": theirs.ID}).Body)
	sseAll := readSSE(sseAs(t, ctx, g, aliceTok, ordersUpdated, nil).Body)
	sseBob := readSSE(sseAs(t, ctx, g, aliceTok, ordersUpdated, map[string]any{"c": bob}).Body)
	sseOrder := func(what string, events <-chan sseEvent, field string) Order {
		t.Helper()
		select {
		case ev := <-events:
			var p struct {
				Data   map[string]*Order
				Errors []gqlError
			}
			if ev.event != "next" || json.Unmarshal([]byte(ev.data), &p) != nil || len(p.Errors) > 0 || p.Data[field] == nil {
				t.Fatalf("%s: event %q %s", what, ev.event, ev.data)
			}
			return *p.Data[field]
		case <-time.After(eventWait):
			t.Fatalf("%s: nothing within %s", what, eventWait)
		}
		return Order{}
	}
	if o := sseOrder("SSE: alice's orderUpdated of her order", sseMine, "orderUpdated"); o.ID != mine.ID || o.Version != 1 {
		t.Fatalf("SSE: alice's orderUpdated of her order: %+v", o)
	}
	waitForSubs(t, g, 10)

	// Both orders change: alice hears of hers only, staff of bob's.
	g.mustMutate(t, "confirmOrder", map[string]any{"orderId": theirs.ID})
	g.mustMutate(t, "confirmOrder", map[string]any{"orderId": mine.ID})
	if o := ws.nextOrder(t, "mine", "orderUpdated"); o.Version != 2 {
		t.Errorf("websocket: alice's order update: %+v", o)
	}
	// The matching streams may begin with her order's placing (version 1):
	// the views feed can read a change after a subscription that began
	// after the change was stored (a change from just before it). It is
	// skipped; any other repeat or regression fails.
	wsAllNext := func() Order {
		t.Helper()
		o := ws.nextOrder(t, "all", "ordersUpdated")
		if o.ID == mine.ID && o.Version == 1 {
			o = ws.nextOrder(t, "all", "ordersUpdated")
		}
		return o
	}
	sseAllNext := func() Order {
		t.Helper()
		o := sseOrder("SSE: alice's ordersUpdated", sseAll, "ordersUpdated")
		if o.ID == mine.ID && o.Version == 1 {
			o = sseOrder("SSE: alice's ordersUpdated", sseAll, "ordersUpdated")
		}
		return o
	}
	if o := wsAllNext(); o.ID != mine.ID || o.CustomerID != alice || o.Version != 2 {
		t.Errorf("websocket: alice's ordersUpdated without a filter sent %+v, want only her order", o)
	}
	if o := staff.nextOrder(t, "theirs", "orderUpdated"); o.Version != 2 {
		t.Errorf("websocket: staff's update of bob's order: %+v", o)
	}
	if o := staff.nextOrder(t, "bob", "ordersUpdated"); o.ID != theirs.ID {
		t.Errorf("websocket: staff's ordersUpdated for bob: %+v", o)
	}
	if o := sseOrder("SSE: alice's order update", sseMine, "orderUpdated"); o.Version != 2 {
		t.Errorf("SSE: alice's order update: %+v", o)
	}
	if o := sseAllNext(); o.ID != mine.ID || o.Version != 2 {
		t.Errorf("SSE: alice's ordersUpdated without a filter sent %+v, want only her order", o)
	}
	// A second change of alice's order comes after bob's in every stream
	// that saw bob's: the streams that must not have seen it are quiet.
	g.mustMutate(t, "cancelOrder", map[string]any{"orderId": mine.ID, "reason": "r"})
	if o := wsAllNext(); o.ID != mine.ID || o.Version != 3 {
		t.Errorf("websocket: alice's ordersUpdated: %+v", o)
	}
	if o := sseAllNext(); o.ID != mine.ID || o.Version != 3 {
		t.Errorf("SSE: alice's ordersUpdated: %+v", o)
	}
	time.Sleep(300 * time.Millisecond)
	for _, id := range []string{"theirs", "bob"} {
		if m, err := ws.tryNext(10*time.Millisecond, byID(id)); err == nil {
			t.Errorf("websocket: alice's subscription %q got bob's order: %s %s", id, m.Type, m.Payload)
		}
	}
	for name, events := range map[string]<-chan sseEvent{"orderUpdated of bob's order": sseTheirs, "ordersUpdated for bob": sseBob} {
		select {
		case ev := <-events:
			t.Errorf("SSE: alice's %s sent %s %s", name, ev.event, ev.data)
		default:
		}
	}
}

// TestUnauthenticated: without a valid token nothing runs: HTTP answers
// 401 with WWW-Authenticate and UNAUTHENTICATED (GET, POST, SSE), a
// websocket is closed with 4403 after connection_init; no answer quotes
// the token.
func TestUnauthenticated(t *testing.T) {
	cfg := testConfig(t)
	cfg.WSInitTimeout = eventWait // its websockets send connection_init after dialling: not the 2 s timeout's race under load
	g := startGateway(t, cfg)
	expired := tokenFor(domain.Principal{Role: domain.RoleStaff}, -time.Minute)
	// The staff token with its signature's end changed.
	foreign := staffToken[:len(staffToken)-10] + "AAAAAAAAAA"
	mutationBody := `{"query": "mutation { placeOrder(input: {customerId: \"c-x\", currencyCode: \"EUR\", items: [{sku: \"A\", name: \"A\", quantity: 1, unitPrice: \"1\"}]}) { order { id } } }"}`
	for _, c := range []struct {
		name, authorization string
	}{
		{"no token", ""},
		{"not bearer", "Basic dXNlcjpwYXNz"},
		{"malformed", "Bearer not.a.jwt"},
		{"expired", "Bearer " + expired},
		{"tampered", "Bearer " + foreign},
	} {
		for _, rc := range []struct {
			method, target, body string
			sse                  bool
		}{
			{http.MethodPost, "/graphql", mutationBody, false},
			{http.MethodGet, "/graphql?query=" + url.QueryEscape("{ orders { totalCount } }"), "", false},
			{http.MethodPost, "/graphql", `{"query": "subscription { ordersUpdated { id } }"}`, true},
		} {
			req := must(http.NewRequest(rc.method, g.url+rc.target, strings.NewReader(rc.body)))
			req.Header.Set("Content-Type", "application/json")
			if rc.sse {
				req.Header.Set("Accept", "text/event-stream")
			}
			withoutToken(req.Header)
			if c.authorization != "" {
				req.Header.Set("Authorization", c.authorization)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var r gqlResponse
			_ = json.Unmarshal(raw, &r)
			if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") ||
				r.code() != "UNAUTHENTICATED" || r.Data != nil || len(r.Errors[0].Message) > 150 {
				t.Errorf("%s, %s: status %d, WWW-Authenticate %q, body %s", c.name, req.Method, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), raw)
			}
			if tok := strings.TrimPrefix(c.authorization, "Bearer "); tok != "" && strings.Contains(string(raw), tok[:min(len(tok), 12)]) {
				t.Errorf("%s: the answer quotes the token: %s", c.name, raw)
			}
		}
		t.Logf("%s: 401 %s", c.name, c.authorization[:min(len(c.authorization), 12)])
	}
	// A body is not waited for: a request without a token sending its body
	// slowly is answered at once, and its connection closed.
	slow, err := net.Dial("tcp", strings.TrimPrefix(g.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fmt.Fprintf(slow, "POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"qu")
	_ = slow.SetReadDeadline(time.Now().Add(5 * time.Second))
	answer, err := io.ReadAll(slow)
	if !strings.HasPrefix(string(answer), "HTTP/1.1 401") || err != nil {
		t.Errorf("a slow body without a token: %v, %q", err, answer)
	}
	if r := g.do(t, `{ orders { totalCount } }`, nil); len(r.Errors) > 0 {
		t.Fatalf("with the staff token: %+v", r.Errors)
	}
	waitFor(t, eventWait, "no order placed", func() bool {
		var out struct{ Orders struct{ TotalCount int } }
		g.data(t, `{ orders(filter: {customerId: "c-x"}) { totalCount } }`, nil, &out)
		return out.Orders.TotalCount == 0
	})

	// websocket: closed with 4403 after connection_init (both protocols).
	for _, proto := range []string{protoTransportWS, protoLegacyWS} {
		for _, token := range []string{"-", "not.a.jwt", expired, foreign} {
			c := dialWS(t, g, wsDial{proto: proto, noInit: true, token: token})
			c.start()
			payload := initPayload(token)
			if token == foreign { // the other spelling of the key
				payload, _ = json.Marshal(map[string]string{"Authorization": "Bearer " + token})
			}
			if err := c.send(context.Background(), wsMsg{Type: "connection_init", Payload: payload}); err != nil {
				t.Fatal(err)
			}
			m, err := c.tryNext(eventWait, func(m wsMsg) bool { return m.Type == "connection_ack" || m.Type == "connection_error" })
			if proto == protoLegacyWS && (err != nil || m.Type != "connection_error") {
				t.Errorf("%s, token %.10q: want connection_error, got %+v %v", proto, token, m, err)
			}
			if proto == protoTransportWS && err == nil {
				t.Errorf("%s, token %.10q: got %s", proto, token, m.Type)
			}
			_, err = c.tryNext(eventWait, func(wsMsg) bool { return false })
			var ce coderws.CloseError
			if !asCloseError(err, &ce) || ce.Code != 4403 || strings.Contains(ce.Reason, token) && token != "-" {
				t.Errorf("%s, token %.10q: want close 4403 without the token, got %v", proto, token, err)
			}
		}
	}
	// The key may also be spelled Authorization.
	c := dialWS(t, g, wsDial{noInit: true})
	c.start()
	payload, _ := json.Marshal(map[string]string{"Authorization": "Bearer " + staffToken})
	if err := c.send(context.Background(), wsMsg{Type: "connection_init", Payload: payload}); err != nil {
		t.Fatal(err)
	}
	if m, err := c.tryNext(eventWait, func(m wsMsg) bool { return m.Type == "connection_ack" }); err != nil {
		t.Errorf("connection_init with Authorization: %v %+v", err, m)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func asCloseError(err error, ce *coderws.CloseError) bool {
	if err == nil {
		return false
	}
	for e := err; e != nil; {
		if c, ok := e.(coderws.CloseError); ok {
			*ce = c
			return true
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		e = u.Unwrap()
	}
	return false
}

// TestStreamsEndWhenTheirTokenExpires: a websocket is closed with 4403
// "token expired", and an SSE stream ends with a result carrying
// TOKEN_EXPIRED and then complete, within a second of the token's exp.
// TestWebsocketTokenInTheUpgradeRequest: a client that can set headers on
// the upgrade request (graphql-ws under node, mobile apps) may send its
// token there instead of in connection_init; a token in connection_init
// wins over it, and a bad one there is refused as in connection_init.
func TestWebsocketTokenInTheUpgradeRequest(t *testing.T) {
	cfg := testConfig(t)
	cfg.WSInitTimeout = eventWait // its websockets send connection_init after dialling: not the 2 s timeout's race under load
	g := startGateway(t, cfg)
	bearer := func(token string) http.Header { return http.Header{"Authorization": {"Bearer " + token}} }
	acked := func(c *wsClient, payload json.RawMessage) error {
		c.start()
		if err := c.send(context.Background(), wsMsg{Type: "connection_init", Payload: payload}); err != nil {
			return err
		}
		_, err := c.tryNext(eventWait, func(m wsMsg) bool { return m.Type == "connection_ack" })
		return err
	}
	// The header alone: acknowledged, and the principal is the header's
	// (a customer sees only their orders, so another's reads as missing).
	c := dialWS(t, g, wsDial{noInit: true, header: bearer(customerToken("c-up"))})
	if err := acked(c, nil); err != nil {
		t.Fatalf("connection_init without a token, the header's token valid: %v", err)
	}
	placeForAnother := `{"query": "mutation { placeOrder(input: {customerId: \"c-other\", currencyCode: \"EUR\", items: [{sku: \"A\", name: \"A\", quantity: 1, unitPrice: \"1\"}]}) { order { id } } }"}`
	if err := c.send(context.Background(), wsMsg{ID: "1", Type: "subscribe", Payload: json.RawMessage(placeForAnother)}); err != nil {
		t.Fatal(err)
	}
	m, err := c.tryNext(eventWait, func(m wsMsg) bool { return m.ID == "1" && (m.Type == "next" || m.Type == "error") })
	if err != nil || !strings.Contains(string(m.Payload), `"FORBIDDEN"`) {
		t.Errorf("the header's customer placed an order for another customer: want FORBIDDEN, got %v %s %s", err, m.Type, m.Payload)
	}
	// A bad header and no token in connection_init: 4403.
	c = dialWS(t, g, wsDial{noInit: true, header: bearer("not.a.jwt")})
	err = acked(c, nil)
	var ce coderws.CloseError
	if !asCloseError(err, &ce) || ce.Code != 4403 {
		t.Errorf("a bad token in the upgrade request: want close 4403, got %v", err)
	}
	// connection_init's token wins over the header's.
	c = dialWS(t, g, wsDial{noInit: true, header: bearer("not.a.jwt")})
	if err := acked(c, initPayload(staffToken)); err != nil {
		t.Errorf("a valid token in connection_init beside a bad header: %v", err)
	}
}

func TestStreamsEndWhenTheirTokenExpires(t *testing.T) {
	g := startGateway(t, testConfig(t))
	o := g.mustMutate(t, "placeOrder", placeInput("c-exp", item("A", 1, "1")))
	token := tokenFor(domain.Principal{Role: domain.RoleCustomer, CustomerID: "c-exp"}, 3*time.Second)
	exp := tokenExpiry(t, token)

	ws := dialWS(t, g, wsDial{token: token})
	ws.subscribe(t, "1", orderUpdatedQuery, map[string]any{"id": o.ID})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := readSSE(sseAs(t, ctx, g, token, orderUpdatedQuery, map[string]any{"id": o.ID}).Body)
	ws.nextOrder(t, "1", "orderUpdated")
	if ev := <-events; ev.event != "next" {
		t.Fatalf("SSE: first event %+v", ev)
	}

	var wg sync.WaitGroup
	wg.Go(func() {
		_, err := ws.tryNext(time.Until(exp)+eventWait, func(wsMsg) bool { return false })
		closedAt := time.Now()
		var ce coderws.CloseError
		if !asCloseError(err, &ce) || ce.Code != 4403 || ce.Reason != "token expired" {
			t.Errorf("websocket: want close 4403 token expired, got %v", err)
		}
		if late := closedAt.Sub(exp); late < 0 || late > time.Second {
			t.Errorf("websocket: closed %v after exp, want within a second", late)
		}
		t.Logf("websocket: closed 4403 %q %v after exp", ce.Reason, closedAt.Sub(exp).Round(time.Millisecond))
	})
	wg.Go(func() {
		var got []sseEvent
		for ev := range events {
			got = append(got, ev)
		}
		if len(got) != 2 || got[0].event != "next" || !strings.Contains(got[0].data, `"code":"TOKEN_EXPIRED"`) || got[1].event != "complete" {
			t.Errorf("SSE: want next with TOKEN_EXPIRED then complete, got %+v", got)
			return
		}
		if late := got[0].at.Sub(exp); late < 0 || late > time.Second {
			t.Errorf("SSE: ended %v after exp, want within a second", late)
		}
		t.Logf("SSE: %s %s, then complete, %v after exp", got[0].event, got[0].data, got[0].at.Sub(exp).Round(time.Millisecond))
	})
	wg.Wait()
	// The hub lets a stream go as its handler returns, which can come just
	// after the client read its end.
	waitForSubs(t, g, 0)
}

// tokenExpiry reads a token's exp (its payload, unverified).
func tokenExpiry(t *testing.T, token string) time.Time {
	t.Helper()
	parts := strings.Split(token, ".")
	var claims struct{ Exp int64 }
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil || json.Unmarshal(raw, &claims) != nil {
		t.Fatalf("token payload: %v", err)
	}
	return time.Unix(claims.Exp, 0)
}

// TestForgedCommandsAreRefusedByTheHandler: commands produced straight to
// the commands topic, past the gateway, for another customer's order (as
// that customer, and as a customer placing for someone else) or without a
// principal are refused by the handler and answered, never applied; the
// one without a principal is set aside in the dead-letter topic.
func TestForgedCommandsAreRefusedByTheHandler(t *testing.T) {
	cfg := testConfig(t)
	g := startGateway(t, cfg)
	topics := kafka.NewTopics(cfg.TopicPrefix)
	victim := g.mustMutate(t, "placeOrder", placeInput("c-victim", item("A", 1, "1")))

	sc := kafka.Config("test-forger", 20*time.Millisecond)
	sc.Producer.Return.Successes = true
	prod, err := sarama.NewSyncProducer(testBrokers, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	const forger = "gw_forger" // a reply destination no gateway reads: the answers stay in the replies topic
	forge := func(id string, cmd domain.Command, principal []byte) *sarama.ProducerMessage {
		typ, data, _ := domain.MarshalCommand(cmd)
		v, _ := json.Marshal(map[string]any{"commandId": id, "type": typ, "orderId": cmd.TargetOrderID(), "idempotencyKey": id, "data": json.RawMessage(data)})
		headers := []sarama.RecordHeader{{Key: []byte(command.HeaderCommandID), Value: []byte(id)},
			{Key: []byte(command.HeaderReplyTo), Value: []byte(forger)}, {Key: []byte(command.HeaderReplyPartition), Value: []byte("0")}}
		if principal != nil {
			headers = append(headers, sarama.RecordHeader{Key: []byte(command.HeaderPrincipal), Value: principal})
		}
		return &sarama.ProducerMessage{Topic: topics.Commands, Key: sarama.StringEncoder(cmd.TargetOrderID()), Value: sarama.ByteEncoder(v), Headers: headers}
	}
	thief := domain.MarshalPrincipal(domain.Principal{Role: domain.RoleCustomer, CustomerID: "c-thief"})
	want := map[string]string{ // command id → the answer's code
		"cmd_forged_cancel":  "NOT_FOUND",
		"cmd_forged_ship":    "FORBIDDEN",
		"cmd_forged_place":   "FORBIDDEN",
		"cmd_forged_noprinc": "FORBIDDEN",
	}
	if err := prod.SendMessages([]*sarama.ProducerMessage{
		forge("cmd_forged_cancel", domain.CancelOrder{OrderID: victim.ID, Reason: "stolen"}, thief),
		forge("cmd_forged_ship", domain.ShipOrder{OrderID: victim.ID, TrackingNumber: "T"}, thief),
		forge("cmd_forged_place", domain.PlaceOrder{OrderID: "ord_forged_place", CustomerID: "c-victim", Currency: "EUR",
			Items: []domain.ItemInput{{SKU: "A", Name: "A", Quantity: 1, UnitPrice: "1"}}}, thief),
		forge("cmd_forged_noprinc", domain.CancelOrder{OrderID: victim.ID, Reason: "no one"}, nil),
	}); err != nil {
		t.Fatal(err)
	}
	// Answered, never applied.
	got := map[string]string{}
	waitFor(t, eventWait, "the forged commands' answers", func() bool {
		for _, m := range readTopic(t, topics.Replies, 200*time.Millisecond) {
			var r command.Reply
			if string(m.Key) == forger && json.Unmarshal(m.Value, &r) == nil && r.Error != nil {
				got[r.CommandID] = string(r.Error.Code)
				if r.Order != nil || r.Version != 0 {
					t.Errorf("%s: the answer shows the order: %+v", r.CommandID, r)
				}
			}
		}
		return len(got) == len(want)
	})
	for id, code := range want {
		if got[id] != code {
			t.Errorf("%s: answered %q, want %s", id, got[id], code)
		}
	}
	after := g.mustMutate(t, "confirmOrder", map[string]any{"orderId": victim.ID})
	if after.Version != 2 || after.Status != "CONFIRMED" {
		t.Errorf("the victim's order after the forged commands: %s at version %d, want CONFIRMED at 2", after.Status, after.Version)
	}
	if o := g.orderAt(t, "ord_forged_place", ""); o != nil {
		t.Errorf("the forged placeOrder was applied: %+v", o)
	}
	var dead []string
	for _, m := range readTopic(t, topics.DeadLetter, time.Second) {
		dead = append(dead, kafka.Header(m, command.HeaderCommandID)+": "+kafka.Header(m, kafka.HeaderDLError))
	}
	if len(dead) != 1 || !strings.HasPrefix(dead[0], "cmd_forged_noprinc: ") {
		t.Errorf("dead letters %q, want the command without a principal only", dead)
	}
}

// TestAuthDisabled: with AUTH_DISABLED requests need no token and commands
// no principal (today's behaviour), and /readyz says so; with auth on it
// says "on".
func TestAuthDisabled(t *testing.T) {
	cfg := testConfig(t)
	cfg.Auth = testAuth()
	cfg.Auth.Disabled = true
	g := startGateway(t, cfg)
	o := placeWithoutToken(t, g)
	c := dialWS(t, g, wsDial{token: "-"})
	c.subscribe(t, "1", orderUpdatedQuery, map[string]any{"id": o})
	if got := c.nextOrder(t, "1", "orderUpdated"); got.ID != o {
		t.Errorf("websocket without a token: %+v", got)
	}
	if status := readyz(t, g); !strings.HasPrefix(status["auth"], "DISABLED") {
		t.Errorf("/readyz auth %q, want DISABLED…", status["auth"])
	}
	on := startGateway(t, testConfig(t))
	if status := readyz(t, on); status["auth"] != "on" {
		t.Errorf("/readyz auth %q, want on", status["auth"])
	}
}

func placeWithoutToken(t *testing.T, g *gateway) string {
	t.Helper()
	r := g.doAs(t, "", mutation("placeOrder"), map[string]any{"input": placeInput("c-open", item("A", 1, "1"))})
	p := payloadOf(t, r)
	if len(r.Errors) > 0 || p == nil || p.Order == nil {
		t.Fatalf("placeOrder without a token: %d %+v", r.Status, r.Errors)
	}
	return p.Order.ID
}

func readyz(t *testing.T, g *gateway) map[string]string {
	t.Helper()
	var status map[string]string
	waitFor(t, eventWait, "/readyz 200", func() bool {
		resp, err := http.Get(g.url + "/readyz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		status = nil
		return json.NewDecoder(resp.Body).Decode(&status) == nil && resp.StatusCode == http.StatusOK
	})
	return status
}

// TestZeroSetupTokens: with no AUTH_* setting the gateway generates a
// secret in DATA_DIR and logs a customer token (c-1) and a staff token
// that work.
func TestZeroSetupTokens(t *testing.T) {
	cfg := testConfig(t)
	cfg.Auth = app.Config{}.Auth
	var logs syncBuffer
	g := startMain(t, &app.Main{Config: cfg, Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	var line struct {
		CustomerToken string `json:"customer_token"`
		StaffToken    string `json:"staff_token"`
	}
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "customer_token") {
			_ = json.Unmarshal([]byte(l), &line)
		}
	}
	if line.CustomerToken == "" || line.StaffToken == "" {
		t.Fatalf("no tokens in the start log:\n%s", logs.String())
	}
	p := payloadOf(t, g.doAs(t, line.CustomerToken, mutation("placeOrder"), map[string]any{"input": placeInput("c-1", item("A", 1, "1"))}))
	if p == nil || p.Order == nil {
		t.Fatalf("the logged customer token cannot place an order for c-1")
	}
	if r := g.doAs(t, line.StaffToken, `{ customer(id: "c-1") { customerId } }`, nil); len(r.Errors) > 0 {
		t.Errorf("the logged staff token: %+v", r.Errors)
	}
	if r := g.doAs(t, staffToken, `{ orders { totalCount } }`, nil); r.Status != http.StatusUnauthorized {
		t.Errorf("a token of another secret: status %d", r.Status)
	}
}

// TestConsistencyTokenOfAnotherCustomersOrder: a customer's read with a
// consistencyToken naming another customer's order waits and answers as for
// a missing order, so neither its time nor its answer tells the order
// exists; the customer's own token is answered at once.
func TestConsistencyTokenOfAnotherCustomersOrder(t *testing.T) {
	cfg := testConfig(t)
	cfg.ConsistencyTimeout = time.Second
	g := startGateway(t, cfg)
	theirs := g.mustMutate(t, "placeOrder", placeInput("bob-ct", item("B", 1, "1")))
	mine := g.mustMutate(t, "placeOrder", placeInput("alice-ct", item("A", 1, "1")))
	g.orderAt(t, theirs.ID, consistencyTokenFor(theirs.ID, 1))
	g.orderAt(t, mine.ID, consistencyTokenFor(mine.ID, 1))
	alice := customerToken("alice-ct")
	read := func(id string) (gqlResponse, time.Duration) {
		t.Helper()
		t0 := time.Now()
		r := g.doAs(t, alice, `query($id: ID!, $t: String) { order(id: $id, consistencyToken: $t) { id } }`,
			map[string]any{"id": id, "t": consistencyTokenFor(id, 1)})
		return r, time.Since(t0)
	}
	shape := func(r gqlResponse, id string) string {
		b, _ := json.Marshal(map[string]any{"data": r.Data, "errors": r.Errors, "extensions": r.Extensions})
		return strings.ReplaceAll(string(b), id, "ID")
	}
	other, otherTook := read(theirs.ID)
	missing, missingTook := read("ord_never_placed")
	if shape(other, theirs.ID) != shape(missing, "ord_never_placed") || other.Extensions["consistency"] == nil {
		t.Errorf("another customer's order answers\n%s\na missing one\n%s", shape(other, theirs.ID), shape(missing, "ord_never_placed"))
	}
	if otherTook < 900*time.Millisecond || missingTook < 900*time.Millisecond {
		t.Errorf("waits: another customer's order %v, a missing one %v; want both the consistency timeout (1s)", otherTook, missingTook)
	}
	own, ownTook := read(mine.ID)
	if own.Extensions["consistency"] != nil || !strings.Contains(string(own.Data), mine.ID) || ownTook > 500*time.Millisecond {
		t.Errorf("her own order: %s %v in %v", own.Data, own.Extensions, ownTook)
	}
	t.Logf("another customer's order: %v, a missing one: %v, her own: %v", otherTook.Round(time.Millisecond), missingTook.Round(time.Millisecond), ownTook.Round(time.Millisecond))
}
