package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coderws "github.com/coder/websocket"
	"github.com/gorilla/websocket"
)

// The subscription tests talk to the gateway as a browser would: over a real
// websocket (graphql-transport-ws, and the legacy graphql-ws protocol of
// subscriptions-transport-ws) and over server-sent events.

const (
	protoTransportWS = "graphql-transport-ws"
	protoLegacyWS    = "graphql-ws"

	// eventWait bounds every wait for something the gateway should send.
	eventWait = 15 * time.Second
)

const orderUpdatedQuery = `subscription($id: ID!) { orderUpdated(id: $id) { id customerId status version itemCount items { sku quantity } } }`

// wsMsg is one message of either websocket protocol.
type wsMsg struct {
	Type    string          `json:"type"`
	ID      string          `json:"id,omitempty"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// wsClient is a GraphQL websocket client. Its reader answers the server's
// pings and queues every other message; the test goroutine takes them with
// next, which sets aside messages it is not looking for.
type wsClient struct {
	conn   *coderws.Conn
	proto  string
	noPong bool
	msgs   chan wsMsg
	quit   chan struct{}
	done   chan struct{} // closed when the reader has ended; readErr is then set
	stash  []wsMsg       // taken but not yet wanted; only the owning goroutine uses it

	readErr   error
	pings     atomic.Int64
	started   atomic.Bool
	startOnce sync.Once
	closeOnce sync.Once
}

type wsDial struct {
	proto  string      // default graphql-transport-ws
	header http.Header // e.g. Origin
	client *http.Client
	noInit bool // do not send connection_init
	paused bool // do not start reading after the handshake
	noPong bool // do not answer the server's pings
	// token is connection_init's bearer token: the staff token when empty,
	// none when "-" (nor in the upgrade request then).
	token string
}

func wsURL(g *gateway) string { return "ws" + strings.TrimPrefix(g.url, "http") + "/graphql" }

// tryDialWS opens a websocket and, unless o.noInit, completes
// connection_init → connection_ack. It does not use testing.TB, so it can
// run on any goroutine.
func tryDialWS(ctx context.Context, url string, o wsDial) (*wsClient, *http.Response, error) {
	if o.proto == "" {
		o.proto = protoTransportWS
	}
	if o.token == "-" && o.header.Get("Authorization") == "" {
		// No token anywhere: not the one the tests' transport puts in the
		// upgrade request (the server reads it when connection_init has none).
		o.header = o.header.Clone()
		if o.header == nil {
			o.header = http.Header{}
		}
		withoutToken(o.header)
	}
	conn, resp, err := coderws.Dial(ctx, url, &coderws.DialOptions{HTTPClient: o.client, HTTPHeader: o.header, Subprotocols: []string{o.proto}})
	if err != nil {
		return nil, resp, err
	}
	if conn.Subprotocol() != o.proto {
		conn.CloseNow()
		return nil, resp, fmt.Errorf("negotiated subprotocol %q, want %q", conn.Subprotocol(), o.proto)
	}
	conn.SetReadLimit(4 << 20)
	c := &wsClient{conn: conn, proto: o.proto, noPong: o.noPong, msgs: make(chan wsMsg, 1024), quit: make(chan struct{}), done: make(chan struct{})}
	if !o.noInit {
		if err := c.send(ctx, wsMsg{Type: "connection_init", Payload: initPayload(o.token)}); err != nil {
			conn.CloseNow()
			return nil, resp, err
		}
		_, data, err := conn.Read(ctx)
		if err != nil {
			conn.CloseNow()
			return nil, resp, fmt.Errorf("waiting for connection_ack: %w", err)
		}
		var m wsMsg
		if err := json.Unmarshal(data, &m); err != nil || m.Type != "connection_ack" {
			conn.CloseNow()
			return nil, resp, fmt.Errorf("want connection_ack, got %s", data)
		}
	}
	if !o.paused {
		c.start()
	}
	return c, resp, nil
}

// initPayload is connection_init's payload for token (see wsDial.token).
func initPayload(token string) json.RawMessage {
	switch token {
	case "-":
		return nil
	case "":
		token = staffToken
	}
	b, _ := json.Marshal(map[string]string{"authorization": "Bearer " + token})
	return b
}

// dialWS is tryDialWS that fails the test, and closes the client when the
// test ends.
func dialWS(t testing.TB, g *gateway, o wsDial) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), eventWait)
	defer cancel()
	c, _, err := tryDialWS(ctx, wsURL(g), o)
	if err != nil {
		t.Fatalf("dial %s: %v", wsURL(g), err)
	}
	t.Cleanup(c.close)
	return c
}

// start begins reading (a paused client has not read anything yet).
func (c *wsClient) start() {
	c.startOnce.Do(func() {
		c.started.Store(true)
		go c.read()
	})
}

func (c *wsClient) read() {
	defer close(c.done)
	for {
		_, data, err := c.conn.Read(context.Background())
		if err != nil {
			c.readErr = err
			return
		}
		var m wsMsg
		if err := json.Unmarshal(data, &m); err != nil {
			c.readErr = fmt.Errorf("undecodable message %q: %w", data, err)
			return
		}
		if m.Type == "ping" && c.proto == protoTransportWS && !c.noPong {
			c.pings.Add(1)
			_ = c.conn.Write(context.Background(), coderws.MessageText, []byte(`{"type":"pong"}`))
			continue
		}
		select {
		case c.msgs <- m:
		case <-c.quit:
			return
		}
	}
}

// close drops the connection without a close handshake and waits for the
// reader to end.
func (c *wsClient) close() {
	c.closeOnce.Do(func() {
		close(c.quit)
		c.conn.CloseNow()
		if c.started.Load() {
			<-c.done
		}
	})
}

func (c *wsClient) send(ctx context.Context, m wsMsg) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return c.conn.Write(ctx, coderws.MessageText, b)
}

func (c *wsClient) dataType() string {
	if c.proto == protoLegacyWS {
		return "data"
	}
	return "next"
}

// trySubscribe starts operation id.
func (c *wsClient) trySubscribe(id, query string, vars map[string]any) error {
	typ := "subscribe"
	if c.proto == protoLegacyWS {
		typ = "start"
	}
	payload, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	ctx, cancel := context.WithTimeout(context.Background(), eventWait)
	defer cancel()
	return c.send(ctx, wsMsg{ID: id, Type: typ, Payload: payload})
}

func (c *wsClient) subscribe(t testing.TB, id, query string, vars map[string]any) {
	t.Helper()
	if err := c.trySubscribe(id, query, vars); err != nil {
		t.Fatalf("subscribe %s: %v", id, err)
	}
}

var errNoMessage = errors.New("no message")

// tryNext returns the next message that match accepts (keep-alives are
// dropped unless match takes them); others are set aside for later calls.
func (c *wsClient) tryNext(timeout time.Duration, match func(wsMsg) bool) (wsMsg, error) {
	for i, m := range c.stash {
		if match(m) {
			c.stash = append(c.stash[:i], c.stash[i+1:]...)
			return m, nil
		}
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	take := func(m wsMsg) bool {
		if match(m) {
			return true
		}
		if m.Type != "ka" && m.Type != "pong" {
			c.stash = append(c.stash, m)
		}
		return false
	}
	for {
		select {
		case m := <-c.msgs:
			if take(m) {
				return m, nil
			}
		case <-c.done:
			for drained := false; !drained; {
				select {
				case m := <-c.msgs:
					if take(m) {
						return m, nil
					}
				default:
					drained = true
				}
			}
			return wsMsg{}, fmt.Errorf("connection closed (status %d): %w", coderws.CloseStatus(c.readErr), c.readErr)
		case <-timer.C:
			return wsMsg{}, fmt.Errorf("%w within %s", errNoMessage, timeout)
		}
	}
}

func byID(id string) func(wsMsg) bool { return func(m wsMsg) bool { return m.ID == id } }

// tryNextOrder returns the next order sent for operation id.
func (c *wsClient) tryNextOrder(id, field string, timeout time.Duration) (Order, error) {
	m, err := c.tryNext(timeout, byID(id))
	if err != nil {
		return Order{}, fmt.Errorf("operation %s: %w", id, err)
	}
	return c.decodeOrder(m, field)
}

func (c *wsClient) decodeOrder(m wsMsg, field string) (Order, error) {
	if m.Type != c.dataType() {
		return Order{}, fmt.Errorf("operation %s: want %q, got %q %s", m.ID, c.dataType(), m.Type, m.Payload)
	}
	var p struct {
		Data   map[string]*Order `json:"data"`
		Errors []gqlError        `json:"errors"`
	}
	if err := json.Unmarshal(m.Payload, &p); err != nil {
		return Order{}, fmt.Errorf("operation %s: payload %s: %v", m.ID, m.Payload, err)
	}
	if len(p.Errors) > 0 || p.Data[field] == nil {
		return Order{}, fmt.Errorf("operation %s: payload %s", m.ID, m.Payload)
	}
	return *p.Data[field], nil
}

func (c *wsClient) nextOrder(t testing.TB, id, field string) Order {
	t.Helper()
	o, err := c.tryNextOrder(id, field, eventWait)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// expectQuiet fails if any message other than a keep-alive is waiting.
func (c *wsClient) expectQuiet(t testing.TB, what string) {
	t.Helper()
	if len(c.stash) > 0 {
		t.Fatalf("%s: unexpected message %+v", what, c.stash[0])
	}
	for {
		select {
		case m := <-c.msgs:
			if m.Type == "ka" || m.Type == "pong" {
				continue
			}
			t.Fatalf("%s: unexpected message %s %s %s", what, m.Type, m.ID, m.Payload)
		default:
			return
		}
	}
}

// waitFor polls cond every 5ms until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitForSubs waits until the gateway's hub holds n subscriptions: a
// subscribe message has no reply of its own when there is no current state.
func waitForSubs(t testing.TB, g *gateway, n int) {
	t.Helper()
	waitFor(t, eventWait, fmt.Sprintf("%d subscriptions in the hub", n), func() bool { return g.Hub().Count() == n })
}

// tryMutate runs a mutation without testing.TB (for other goroutines).
func tryMutate(url, name string, input map[string]any) (Payload, error) {
	inputType := strings.ToUpper(name[:1]) + name[1:] + "Input"
	q := fmt.Sprintf("mutation($input: %s!) { m: %s(input: $input) { order { id status version } version userErrors { code message } } }", inputType, name)
	body, _ := json.Marshal(map[string]any{"query": q, "variables": map[string]any{"input": input}})
	resp, err := http.Post(url+"/graphql", "application/json", bytes.NewReader(body))
	if err != nil {
		return Payload{}, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var r struct {
		Data struct {
			M *Payload `json:"m"`
		} `json:"data"`
		Errors []gqlError `json:"errors"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return Payload{}, fmt.Errorf("%s: response %d %s", name, resp.StatusCode, raw)
	}
	if len(r.Errors) > 0 || r.Data.M == nil {
		return Payload{}, fmt.Errorf("%s: %s", name, raw)
	}
	if len(r.Data.M.UserErrors) > 0 {
		return *r.Data.M, fmt.Errorf("%s: userErrors %+v", name, r.Data.M.UserErrors)
	}
	return *r.Data.M, nil
}

// checkIncreasing fails unless the versions strictly increase.
func checkIncreasing(t testing.TB, who string, vs []int) {
	t.Helper()
	for i := 1; i < len(vs); i++ {
		if vs[i] <= vs[i-1] {
			t.Fatalf("%s: version %d after %d (all: %v)", who, vs[i], vs[i-1], vs)
		}
	}
}

// TestSubscriptionOrderUpdated: orderUpdated over graphql-transport-ws sends
// the current state, then each later version; for an order that does not
// exist yet it sends nothing until the order is placed.
func TestSubscriptionOrderUpdated(t *testing.T) {
	g := startGateway(t, testConfig(t))
	o := g.mustMutate(t, "placeOrder", placeInput("cust-sub", item("A", 1, "10")))

	c := dialWS(t, g, wsDial{})
	c.subscribe(t, "1", orderUpdatedQuery, map[string]any{"id": o.ID})
	first := c.nextOrder(t, "1", "orderUpdated")
	if first.ID != o.ID || first.Version != 1 || first.Status != "PENDING" || first.CustomerID != "cust-sub" {
		t.Fatalf("first message is not the current state: %+v", first)
	}
	steps := []struct {
		mutation string
		input    map[string]any
		status   string
	}{
		{"confirmOrder", map[string]any{"orderId": o.ID}, "CONFIRMED"},
		{"shipOrder", map[string]any{"orderId": o.ID, "trackingNumber": "T-1"}, "SHIPPED"},
		{"deliverOrder", map[string]any{"orderId": o.ID}, "DELIVERED"},
	}
	for i, s := range steps {
		g.mustMutate(t, s.mutation, s.input)
		got := c.nextOrder(t, "1", "orderUpdated")
		if got.Version != i+2 || got.Status != s.status {
			t.Fatalf("after %s: got version %d %s, want %d %s", s.mutation, got.Version, got.Status, i+2, s.status)
		}
	}
	t.Logf("order %s: snapshot v1 PENDING, then v2 CONFIRMED, v3 SHIPPED, v4 DELIVERED (%d server pings answered)", o.ID, c.pings.Load())

	// An order that does not exist yet: nothing until it is placed.
	id := fmt.Sprintf("sub-later-%d", time.Now().UnixNano())
	before := g.Hub().Count()
	c.subscribe(t, "2", orderUpdatedQuery, map[string]any{"id": id})
	waitForSubs(t, g, before+1)
	if m, err := c.tryNext(300*time.Millisecond, byID("2")); err == nil {
		t.Fatalf("sent %s %s for an order that does not exist", m.Type, m.Payload)
	} else if !errors.Is(err, errNoMessage) {
		t.Fatal(err)
	}
	g.mustMutate(t, "placeOrder", map[string]any{"orderId": id, "customerId": "cust-sub", "currencyCode": "EUR", "items": []any{item("B", 2, "3")}})
	got := c.nextOrder(t, "2", "orderUpdated")
	if got.ID != id || got.Version != 1 || got.Status != "PENDING" || got.ItemCount != 2 {
		t.Fatalf("placed order: %+v", got)
	}
	c.expectQuiet(t, "after the placed order")
	t.Logf("order %s: nothing for 300ms while it did not exist, then v1 once placed", id)
}

// TestSubscriptionNoGapUnderBurst: 40 concurrent addOrderItem at one order;
// a subscriber opened before and one opened during the burst each get the
// state and then only newer versions, up to the final one.
func TestSubscriptionNoGapUnderBurst(t *testing.T) {
	const n = 40
	g := startGateway(t, testConfig(t))
	o := g.mustMutate(t, "placeOrder", placeInput("cust-burst", item("P", 1, "1")))

	early := dialWS(t, g, wsDial{})
	early.subscribe(t, "1", orderUpdatedQuery, map[string]any{"id": o.ID})
	snap := early.nextOrder(t, "1", "orderUpdated")
	if snap.Version != 1 {
		t.Fatalf("snapshot: %+v", snap)
	}

	var done atomic.Int64
	errs := make(chan error, n)
	fifth := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := tryMutate(g.url, "addOrderItem", map[string]any{"orderId": o.ID, "item": item(fmt.Sprintf("S%02d", i), 1, "1")})
			errs <- err
			if done.Add(1) == 5 {
				close(fifth)
			}
		}()
	}
	// A second subscriber, opened while the burst runs.
	select {
	case <-fifth:
	case <-time.After(eventWait):
		t.Fatal("the burst did not get going")
	}
	doneAtDial := done.Load()
	late := dialWS(t, g, wsDial{})
	late.subscribe(t, "1", orderUpdatedQuery, map[string]any{"id": o.ID})
	lateSnap := late.nextOrder(t, "1", "orderUpdated")
	doneAtSnap := done.Load()

	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	collect := func(c *wsClient, who string, first Order) []int {
		vs := []int{first.Version}
		last := first
		for last.Version < n+1 {
			o, err := c.tryNextOrder("1", "orderUpdated", eventWait)
			if err != nil {
				t.Fatalf("%s: after versions %v: %v", who, vs, err)
			}
			vs = append(vs, o.Version)
			checkIncreasing(t, who, vs)
			last = o
		}
		if last.Version != n+1 || len(last.Items) != n+1 || last.ItemCount != n+1 {
			t.Fatalf("%s: final state version %d with %d items (itemCount %d), want %d", who, last.Version, len(last.Items), last.ItemCount, n+1)
		}
		c.expectQuiet(t, who+" after the final version")
		return vs
	}
	ev := collect(early, "early subscriber", snap)
	lv := collect(late, "late subscriber", lateSnap)
	t.Logf("early subscriber: snapshot v1, then %d distinct versions up to v%d: %v", len(ev)-1, n+1, ev)
	t.Logf("late subscriber: opened after %d/%d mutations returned, snapshot v%d (%d returned by then), then %d versions up to v%d: %v",
		doneAtDial, n, lateSnap.Version, doneAtSnap, len(lv)-1, n+1, lv)
	if lateSnap.Version == n+1 {
		t.Logf("note: the burst had finished in the views before the late snapshot was read")
	}
}

// TestSubscriptionOrdersUpdatedFilter: ordersUpdated(customerId, status)
// sends matching changes and the one that makes an order leave the filter,
// and nothing else.
func TestSubscriptionOrdersUpdatedFilter(t *testing.T) {
	g := startGateway(t, testConfig(t))
	suffix := fmt.Sprint(time.Now().UnixNano())
	idA, idB, idS := "filter-a-"+suffix, "filter-b-"+suffix, "filter-s-"+suffix

	f := dialWS(t, g, wsDial{})
	f.subscribe(t, "f", `subscription { ordersUpdated(customerId: "cust-f", status: [PENDING]) { id customerId status version } }`, nil)
	waitForSubs(t, g, 1)
	// A watcher of the orders that must not pass the filter: its live update
	// shows the hub has offered that change to every subscription.
	w := dialWS(t, g, wsDial{})
	w.subscribe(t, "a", orderUpdatedQuery, map[string]any{"id": idA})
	w.subscribe(t, "b", orderUpdatedQuery, map[string]any{"id": idB})
	waitForSubs(t, g, 3)

	next := func(what string) Order {
		t.Helper()
		o, err := f.tryNextOrder("f", "ordersUpdated", eventWait)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return o
	}
	place := func(id, customer string) {
		g.mustMutate(t, "placeOrder", map[string]any{"orderId": id, "customerId": customer, "currencyCode": "USD", "items": []any{item("X", 1, "2")}})
	}

	place(idA, "cust-f")
	if o := next("placed cust-f order"); o.ID != idA || o.Status != "PENDING" || o.Version != 1 {
		t.Fatalf("placed cust-f order: %+v", o)
	}
	place(idB, "cust-other")
	if o := w.nextOrder(t, "b", "orderUpdated"); o.Version != 1 {
		t.Fatalf("watcher: %+v", o)
	}
	if o := w.nextOrder(t, "a", "orderUpdated"); o.Version != 1 {
		t.Fatalf("watcher: %+v", o)
	}
	g.mustMutate(t, "confirmOrder", map[string]any{"orderId": idA})
	if o := next("confirmed cust-f order"); o.ID != idA || o.Status != "CONFIRMED" || o.Version != 2 {
		t.Fatalf("the change that leaves the filter: want %s v2 CONFIRMED, got %+v", idA, o)
	}
	if o := w.nextOrder(t, "a", "orderUpdated"); o.Version != 2 {
		t.Fatalf("watcher: %+v", o)
	}
	g.mustMutate(t, "shipOrder", map[string]any{"orderId": idA, "trackingNumber": "T"})
	if o := w.nextOrder(t, "a", "orderUpdated"); o.Version != 3 || o.Status != "SHIPPED" {
		t.Fatalf("watcher: %+v", o)
	}
	// The sentinel is the next thing the filter sends: neither the other
	// customer's order nor the shipped one came in between.
	place(idS, "cust-f")
	if o := next("sentinel"); o.ID != idS || o.Status != "PENDING" {
		t.Fatalf("want the sentinel %s, got %+v (an order outside the filter was sent)", idS, o)
	}
	f.expectQuiet(t, "after the sentinel")
	t.Logf("filter got %s PENDING, %s CONFIRMED (leaving), then the sentinel; not %s (other customer) nor the SHIPPED change", idA, idA, idB)
}

// TestSubscriptionSSE: orderUpdated over server-sent events.
// openSSE starts a subscription over server-sent events (graphql-sse's
// distinct connections mode); its body is closed when the test ends.
func openSSE(t *testing.T, ctx context.Context, g *gateway, query string) *http.Response {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query})
	return postSSE(t, ctx, g, string(body))
}

// postSSE posts body (any text, valid or not) asking for an event stream.
func postSSE(t *testing.T, ctx context.Context, g *gateway, body string) *http.Response {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, g.url+"/graphql", strings.NewReader(body))
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestSubscriptionSSE(t *testing.T) {
	g := startGateway(t, testConfig(t))
	o := g.mustMutate(t, "placeOrder", placeInput("cust-sse", item("A", 1, "1")))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp := openSSE(t, ctx, g, fmt.Sprintf(`subscription { orderUpdated(id: %q) { id version status } }`, o.ID))
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}

	type sseEvent struct{ event, data string }
	events := make(chan sseEvent, 16)
	readDone := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.event != "" || ev.data != "" {
					events <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, ":"): // comment / keep-alive
			case strings.HasPrefix(line, "event:"):
				ev.event = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
			case strings.HasPrefix(line, "data:"):
				ev.data += strings.TrimSpace(strings.TrimPrefix(line, "data:"))
			}
		}
		readDone <- sc.Err()
	}()
	nextOrder := func(what string) Order {
		t.Helper()
		select {
		case ev := <-events:
			var p struct {
				Data   struct{ OrderUpdated *Order }
				Errors []gqlError
			}
			if ev.event != "next" || json.Unmarshal([]byte(ev.data), &p) != nil || len(p.Errors) > 0 || p.Data.OrderUpdated == nil {
				t.Fatalf("%s: event %q data %s", what, ev.event, ev.data)
			}
			return *p.Data.OrderUpdated
		case err := <-readDone:
			t.Fatalf("%s: stream ended: %v", what, err)
		case <-time.After(eventWait):
			t.Fatalf("%s: no event within %s", what, eventWait)
		}
		return Order{}
	}
	if s := nextOrder("snapshot"); s.ID != o.ID || s.Version != 1 || s.Status != "PENDING" {
		t.Fatalf("snapshot: %+v", s)
	}
	g.mustMutate(t, "confirmOrder", map[string]any{"orderId": o.ID})
	if u := nextOrder("update"); u.Version != 2 || u.Status != "CONFIRMED" {
		t.Fatalf("update: %+v", u)
	}
	cancel()
	select {
	case <-readDone:
	case <-time.After(eventWait):
		t.Fatal("the SSE reader did not end after the request was cancelled")
	}
	t.Logf("SSE: event next v1 PENDING, then v2 CONFIRMED after confirmOrder")
}

// TestSSEStreams: the server-sent events transport beyond one subscription:
// keep-alive comments, queries and mutations, errors, many streams of one
// order (each gets every update; the hub lets go of them when they go).
func TestSSEStreams(t *testing.T) {
	g := startGateway(t, testConfig(t)) // WS_PING_INTERVAL 2s: SSE keep-alives too
	o := g.mustMutate(t, "placeOrder", placeInput("cust-sse2", item("A", 1, "1")))
	post := func(body string) *http.Response { t.Helper(); return postSSE(t, context.Background(), g, body) }
	readAllEvents := func(resp *http.Response) string {
		t.Helper()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	t.Run("query", func(t *testing.T) {
		waitFor(t, eventWait, "the order in the views", func() bool { // views follow the mutation (on real Kafka, visibly)
			var out struct{ Order *Order }
			r := g.do(t, `query($id: ID!) { order(id: $id) { id } }`, map[string]any{"id": o.ID})
			return len(r.Errors) == 0 && json.Unmarshal(r.Data, &out) == nil && out.Order != nil
		})
		body, _ := json.Marshal(map[string]string{"query": fmt.Sprintf(`{ order(id: %q) { id version } }`, o.ID)})
		resp := post(string(body))
		got := readAllEvents(resp)
		want := fmt.Sprintf(":\n\nevent: next\ndata: {\"data\":{\"order\":{\"id\":%q,\"version\":1}}}\n\nevent: complete\n\n", o.ID)
		if resp.Header.Get("Content-Type") != "text/event-stream" || got != want {
			t.Fatalf("content type %q, stream %q; want %q", resp.Header.Get("Content-Type"), got, want)
		}
	})

	t.Run("errors", func(t *testing.T) {
		if resp := post(`{"query": `); resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("a body that is not JSON: status %d, want 400", resp.StatusCode)
		}
		got := readAllEvents(post(`{"query": "subscription { orderUpdated(id: \"x\") { nope } }"}`))
		if !strings.Contains(got, "event: next\ndata: {\"errors\":") || !strings.Contains(got, "nope") || !strings.HasSuffix(got, "event: complete\n\n") {
			t.Fatalf("an invalid subscription: stream %q, want one next with its errors, then complete", got)
		}
	})

	t.Run("keep-alive", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		resp := openSSE(t, ctx, g, fmt.Sprintf(`subscription { orderUpdated(id: %q) { version } }`, o.ID))
		lines := make(chan string, 16)
		go func() {
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		deadline := time.After(3 * testConfig(t).WSPingInterval)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatal("the stream ended")
				}
				if l == ": ping" {
					return
				}
			case <-deadline:
				t.Fatal("no keep-alive comment within three ping intervals")
			}
		}
	})

	t.Run("many streams", func(t *testing.T) {
		waitForSubs(t, g, 0)
		const n = 20
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		versions := make(chan int, 4*n)
		for range n {
			resp := openSSE(t, ctx, g, fmt.Sprintf(`subscription { orderUpdated(id: %q) { version status } }`, o.ID))
			go func() {
				sc := bufio.NewScanner(resp.Body)
				for sc.Scan() {
					if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
						var p struct {
							Data struct{ OrderUpdated struct{ Version int } }
						}
						if json.Unmarshal([]byte(data), &p) == nil {
							versions <- p.Data.OrderUpdated.Version
						}
					}
				}
			}()
		}
		count := func(v int) {
			t.Helper()
			for i := range n {
				select {
				case got := <-versions:
					if got != v {
						t.Fatalf("stream got version %d, want %d", got, v)
					}
				case <-time.After(eventWait):
					t.Fatalf("%d of %d streams got version %d", i, n, v)
				}
			}
		}
		count(1)
		g.mustMutate(t, "confirmOrder", map[string]any{"orderId": o.ID})
		count(2)
		waitForSubs(t, g, n)
		open, _ := settledGoroutines()
		cancel()
		waitForSubs(t, g, 0) // the clients went away: their subscriptions are gone
		closed, _ := settledGoroutines()
		// Per stream, in this one process: the client's connection (read and
		// write loops) and its reader here, the server's connection and its
		// background read. A goroutine per subscription or per keep-alive
		// would make it 6 or more.
		perStream := float64(open-closed) / n
		t.Logf("%d SSE streams: %.1f goroutines each, client and server", n, perStream)
		if perStream > 5.5 {
			t.Errorf("%.1f goroutines per SSE stream, client and server; want at most 5 (%s)", perStream, goroutinesByCreator())
		}
	})
}

// TestSubscriptionLegacyProtocol: the graphql-ws protocol of
// subscriptions-transport-ws: ack, keep-alives, start → data, stop → complete.
func TestSubscriptionLegacyProtocol(t *testing.T) {
	g := startGateway(t, testConfig(t))
	o := g.mustMutate(t, "placeOrder", placeInput("cust-legacy", item("A", 1, "1")))

	c := dialWS(t, g, wsDial{proto: protoLegacyWS})
	isKA := func(m wsMsg) bool { return m.Type == "ka" }
	if _, err := c.tryNext(eventWait, isKA); err != nil {
		t.Fatalf("first keep-alive: %v", err)
	}
	c.subscribe(t, "1", orderUpdatedQuery, map[string]any{"id": o.ID})
	if s := c.nextOrder(t, "1", "orderUpdated"); s.Version != 1 || s.Status != "PENDING" {
		t.Fatalf("snapshot: %+v", s)
	}
	g.mustMutate(t, "confirmOrder", map[string]any{"orderId": o.ID})
	if u := c.nextOrder(t, "1", "orderUpdated"); u.Version != 2 || u.Status != "CONFIRMED" {
		t.Fatalf("update: %+v", u)
	}
	// A periodic keep-alive (WSPingInterval 2s), not just the one after the
	// ack (tryNext drops the keep-alives it is not looking for).
	start := time.Now()
	if _, err := c.tryNext(eventWait, isKA); err != nil {
		t.Fatalf("periodic keep-alive: %v", err)
	}
	kaAfter := time.Since(start)
	ctx, cancel := context.WithTimeout(context.Background(), eventWait)
	defer cancel()
	if err := c.send(ctx, wsMsg{ID: "1", Type: "stop"}); err != nil {
		t.Fatal(err)
	}
	if m, err := c.tryNext(eventWait, byID("1")); err != nil || m.Type != "complete" {
		t.Fatalf("after stop: %+v %v", m, err)
	}
	waitForSubs(t, g, 0)
	if err := c.send(ctx, wsMsg{Type: "connection_terminate"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.done:
	case <-time.After(eventWait):
		t.Fatal("connection_terminate did not close the connection")
	}
	t.Logf("graphql-ws: ack, ka, data v1 then v2, periodic ka after %s, stop → complete, terminate → closed (%d)", kaAfter.Round(time.Millisecond), coderws.CloseStatus(c.readErr))
}

// TestWebsocketControlFrames: the server answers a websocket ping with a
// pong carrying its payload, echoes the code of the client's close frame,
// and (legacy protocol) sends connection_error before closing a connection
// that breaks the protocol.
func TestWebsocketControlFrames(t *testing.T) {
	cfg := testConfig(t)
	// "start before connection_init" must reach the server before the
	// init timeout closes the connection with 4408 instead (2s in the
	// tests, the subject of TestWebsocketProtocolErrors).
	cfg.WSInitTimeout = eventWait
	g := startGateway(t, cfg)

	t.Run("ping", func(t *testing.T) {
		c := dialWS(t, g, wsDial{})
		ctx, cancel := context.WithTimeout(context.Background(), eventWait)
		defer cancel()
		for range 3 {
			if err := c.conn.Ping(ctx); err != nil { // coder/websocket checks that the pong carries its payload
				t.Fatalf("websocket ping: %v", err)
			}
		}
	})

	t.Run("close echo", func(t *testing.T) {
		c, _, err := websocket.DefaultDialer.Dial(wsURL(g), http.Header{"Sec-WebSocket-Protocol": {protoTransportWS}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(eventWait))
		if err := c.WriteMessage(websocket.TextMessage, []byte(`{"type":"connection_init","payload":{"authorization":"Bearer `+staffToken+`"}}`)); err != nil {
			t.Fatal(err)
		}
		if _, ack, err := c.ReadMessage(); err != nil || !bytes.Contains(ack, []byte("connection_ack")) {
			t.Fatalf("want connection_ack, got %q, %v", ack, err)
		}
		if err := c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4000, "bye"), time.Now().Add(eventWait)); err != nil {
			t.Fatal(err)
		}
		// The server's keep-alive ping (every WSPingInterval, 2s, from the
		// ack on) can come before the close frame on a loaded machine; it
		// is not an answer to the close.
		var msg []byte
		for {
			if _, msg, err = c.ReadMessage(); err != nil || string(msg) != `{"type":"ping"}` {
				break
			}
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != 4000 {
			t.Fatalf("after the client's close 4000, read %q, %v; want the server's close frame with 4000", msg, err)
		}
	})

	// connection_error is the last message: the close follows it, with
	// nothing between them, not even a keep-alive ("ka", sent after the ack
	// and every WSPingInterval), queued or not. Each case runs on several
	// connections: what was queued when the reader refused the message
	// depends on how far the writer had got.
	t.Run("legacy connection_error", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			noInit bool
			send   wsMsg
		}{
			{"start before connection_init", true, wsMsg{Type: "start", ID: "1", Payload: json.RawMessage(`{"query":"subscription { ordersUpdated { id } }"}`)}},
			{"an unknown message type", false, wsMsg{Type: "hello"}},
		} {
			for i := range 20 {
				c := dialWS(t, g, wsDial{proto: protoLegacyWS, noInit: tc.noInit})
				ctx, cancel := context.WithTimeout(context.Background(), eventWait)
				err := c.send(ctx, tc.send)
				cancel()
				if err != nil {
					t.Fatal(err)
				}
				m, err := c.tryNext(eventWait, func(m wsMsg) bool { return m.Type == "connection_error" })
				if err != nil {
					t.Fatalf("%s, connection %d: %v", tc.name, i+1, err)
				}
				anything := func(wsMsg) bool { return true }
				if next, err := c.tryNext(eventWait, anything); err == nil || coderws.CloseStatus(c.readErr) != 4400 {
					t.Fatalf("%s, connection %d: after connection_error %s: %+v, %v (status %d); want the close with 4400", tc.name, i+1, m.Payload, next, err, coderws.CloseStatus(c.readErr))
				}
				c.close()
			}
		}
	})
}

// TestWebsocketProtocolErrors: close codes, the per-connection subscription
// cap, and the origin allowlist.
func TestWebsocketProtocolErrors(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxSubscriptions = 2
	// A gateway that waits long for connection_init: on a loaded machine
	// the tests' 2 s init timeout could end a connection (4408) before
	// the message under test (invalid JSON, subscribe before
	// connection_init) reaches it. The init timeout has its own gateway.
	cfg.WSInitTimeout = eventWait
	g := startGateway(t, cfg)

	closeCode := func(t *testing.T, c *wsClient) (coderws.StatusCode, time.Duration) {
		t.Helper()
		start := time.Now()
		select {
		case <-c.done:
		case <-time.After(eventWait):
			t.Fatal("the server did not close the connection")
		}
		return coderws.CloseStatus(c.readErr), time.Since(start)
	}

	t.Run("init timeout", func(t *testing.T) {
		g := startGateway(t, testConfig(t)) // WSInitTimeout 2s
		c := dialWS(t, g, wsDial{noInit: true})
		code, after := closeCode(t, c)
		if code != 4408 {
			t.Fatalf("close status %d (%v), want 4408", code, c.readErr)
		}
		if after < time.Second {
			t.Fatalf("closed after %s, before the 2s init timeout", after)
		}
		t.Logf("no connection_init: closed with 4408 after %s", after.Round(time.Millisecond))
	})

	t.Run("invalid JSON", func(t *testing.T) {
		for _, proto := range []string{protoTransportWS, protoLegacyWS} {
			c := dialWS(t, g, wsDial{proto: proto, noInit: true})
			if err := c.conn.Write(context.Background(), coderws.MessageText, []byte(`{"type": connection_init`)); err != nil {
				t.Fatal(err)
			}
			code, after := closeCode(t, c)
			if code != 4400 {
				t.Fatalf("%s: close status %d (%v), want 4400", proto, code, c.readErr)
			}
			t.Logf("%s: invalid JSON first message: closed with 4400 after %s", proto, after.Round(time.Millisecond))
		}
	})

	t.Run("subscription limit", func(t *testing.T) {
		o := g.mustMutate(t, "placeOrder", placeInput("cust-limit", item("A", 1, "1")))
		base := g.Hub().Count()
		c := dialWS(t, g, wsDial{})
		for _, id := range []string{"1", "2"} {
			c.subscribe(t, id, orderUpdatedQuery, map[string]any{"id": o.ID})
			if s := c.nextOrder(t, id, "orderUpdated"); s.Version != 1 {
				t.Fatalf("subscription %s: %+v", id, s)
			}
		}
		c.subscribe(t, "3", orderUpdatedQuery, map[string]any{"id": o.ID})
		// The refusal is an "error" message, or (as the graphql-ws reference
		// server does for a source stream that cannot be created) a "next"
		// carrying only errors, followed by "complete".
		m, err := c.tryNext(eventWait, byID("3"))
		if err != nil {
			t.Fatalf("third subscription: %v", err)
		}
		if (m.Type != "error" && m.Type != "next") || !strings.Contains(string(m.Payload), "at most 2 subscriptions") {
			t.Fatalf("third subscription: want an error about the limit, got %s %s", m.Type, m.Payload)
		}
		if m.Type == "next" {
			var p struct {
				Data   map[string]any `json:"data"`
				Errors []gqlError     `json:"errors"`
			}
			if err := json.Unmarshal(m.Payload, &p); err != nil || p.Data != nil || len(p.Errors) != 1 {
				t.Fatalf("third subscription: %s", m.Payload)
			}
			if end, err := c.tryNext(eventWait, byID("3")); err != nil || end.Type != "complete" {
				t.Fatalf("third subscription: want complete after the error result, got %+v %v", end, err)
			}
		}
		t.Logf("third subscription refused: %s %s", m.Type, m.Payload)
		if g.Hub().Count() != base+2 {
			t.Fatalf("hub holds %d subscriptions, want %d", g.Hub().Count(), base+2)
		}
		g.mustMutate(t, "confirmOrder", map[string]any{"orderId": o.ID})
		for _, id := range []string{"1", "2"} {
			if u := c.nextOrder(t, id, "orderUpdated"); u.Version != 2 {
				t.Fatalf("subscription %s after the refusal: %+v", id, u)
			}
		}
		// Completing one frees its slot.
		ctx, cancel := context.WithTimeout(context.Background(), eventWait)
		defer cancel()
		if err := c.send(ctx, wsMsg{ID: "1", Type: "complete"}); err != nil {
			t.Fatal(err)
		}
		waitForSubs(t, g, base+1)
		attempts := 0
		for deadline := time.Now().Add(5 * time.Second); ; {
			attempts++
			id := fmt.Sprintf("again-%d", attempts)
			c.subscribe(t, id, orderUpdatedQuery, map[string]any{"id": o.ID})
			m, err := c.tryNext(eventWait, byID(id))
			if err != nil {
				t.Fatal(err)
			}
			if m.Type == "next" {
				if s, err := c.decodeOrder(m, "orderUpdated"); err != nil || s.Version != 2 {
					t.Fatalf("subscription after completing one: %+v %v", s, err)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the completed subscription's slot was not freed: %s %s", m.Type, m.Payload)
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("subscriptions 1 and 2 got v2 after the refusal; after completing 1 a new one was accepted (attempt %d)", attempts)
	})

	t.Run("origin", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), eventWait)
		defer cancel()
		c, resp, err := tryDialWS(ctx, wsURL(g), wsDial{header: http.Header{"Origin": {"http://evil.example"}}})
		if err == nil {
			c.close()
			t.Fatal("a websocket from http://evil.example was accepted")
		}
		if resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("origin http://evil.example: want HTTP 403, got %v (%v)", resp, err)
		}
		ok := dialWS(t, g, wsDial{header: http.Header{"Origin": {"http://localhost:3000"}}})
		ok.close()
		t.Logf("origin http://evil.example refused with 403; http://localhost:3000 accepted and acknowledged")
	})

	// The close codes of graphql-transport-ws (graphql-ws's PROTOCOL.md).
	t.Run("protocol violations", func(t *testing.T) {
		o := g.mustMutate(t, "placeOrder", placeInput("cust-codes", item("A", 1, "1")))
		subscribe := func(id string) wsMsg {
			payload, _ := json.Marshal(map[string]any{"query": orderUpdatedQuery, "variables": map[string]any{"id": o.ID}})
			return wsMsg{ID: id, Type: "subscribe", Payload: payload}
		}
		for _, tc := range []struct {
			name   string
			noInit bool
			send   []wsMsg
			want   coderws.StatusCode
		}{
			{"subscribe before connection_init", true, []wsMsg{subscribe("1")}, 4401},
			{"a second connection_init", false, []wsMsg{{Type: "connection_init"}}, 4429},
			{"a subscription id in use", false, []wsMsg{subscribe("dup"), subscribe("dup")}, 4409},
			{"a long subscription id in use (the reason is cut to fit the close frame)", false, []wsMsg{subscribe(strings.Repeat("id", 100)), subscribe(strings.Repeat("id", 100))}, 4409},
			{"an unknown message type", false, []wsMsg{{Type: "hello"}}, 4400},
			{"a server message from the client", false, []wsMsg{{Type: "next", ID: "1"}}, 4400},
			{"subscribe without an id", false, []wsMsg{subscribe("")}, 4400},
		} {
			c := dialWS(t, g, wsDial{noInit: tc.noInit})
			ctx, cancel := context.WithTimeout(context.Background(), eventWait)
			for _, m := range tc.send {
				if err := c.send(ctx, m); err != nil {
					t.Fatal(err)
				}
			}
			cancel()
			if code, _ := closeCode(t, c); code != tc.want {
				t.Fatalf("%s: close status %d (%v), want %d", tc.name, code, c.readErr, tc.want)
			}
			t.Logf("%s: closed with %d (%v)", tc.name, tc.want, c.readErr)
		}
		waitForSubs(t, g, 0)
	})

	t.Run("operation errors", func(t *testing.T) {
		o := g.mustMutate(t, "placeOrder", placeInput("cust-ops", item("A", 1, "1")))
		c := dialWS(t, g, wsDial{})
		ctx, cancel := context.WithTimeout(context.Background(), eventWait)
		defer cancel()
		// A payload that is not a GraphQL request, and a query that does not
		// parse: an "error" message for that operation; the connection stays.
		if err := c.send(ctx, wsMsg{ID: "bad-payload", Type: "subscribe", Payload: json.RawMessage(`{"query": 5}`)}); err != nil {
			t.Fatal(err)
		}
		if m, err := c.tryNext(eventWait, byID("bad-payload")); err != nil || m.Type != "error" || !strings.Contains(string(m.Payload), `the payload is not a GraphQL request: \"query\" must be a string`) || !strings.Contains(string(m.Payload), "BAD_REQUEST") {
			t.Fatalf("bad payload: %+v %v", m, err)
		}
		c.subscribe(t, "bad-query", "subscription { orderUpdated(id: ", nil)
		if m, err := c.tryNext(eventWait, byID("bad-query")); err != nil || m.Type != "error" {
			t.Fatalf("bad query: %+v %v", m, err)
		}
		// The connection still serves subscriptions (the first state also
		// tells that the order is in the views).
		c.subscribe(t, "s", orderUpdatedQuery, map[string]any{"id": o.ID})
		if s := c.nextOrder(t, "s", "orderUpdated"); s.ID != o.ID || s.Version != 1 {
			t.Fatalf("subscription after the errors: %+v", s)
		}
		// A query over the websocket: its result, then complete.
		c.subscribe(t, "q", `query($id: ID!) { order(id: $id) { id status } }`, map[string]any{"id": o.ID})
		m, err := c.tryNext(eventWait, byID("q"))
		if err != nil || m.Type != "next" || !strings.Contains(string(m.Payload), o.ID) {
			t.Fatalf("query: %+v %v", m, err)
		}
		if m, err := c.tryNext(eventWait, byID("q")); err != nil || m.Type != "complete" {
			t.Fatalf("query: want complete, got %+v %v", m, err)
		}
		t.Logf("bad payload and bad query: error messages; then a subscription works; a query: next, complete")
	})

	// Operations in flight per connection are capped (at the subscription
	// cap plus 100; with no subscription cap, at 100).
	t.Run("operations in flight", func(t *testing.T) {
		cfg := testConfig(t)
		cfg.MaxSubscriptions = 0
		g := startGateway(t, cfg)
		o := g.mustMutate(t, "placeOrder", placeInput("cust-ops-cap", item("A", 1, "1")))
		c := dialWS(t, g, wsDial{})
		for i := range 100 {
			c.subscribe(t, fmt.Sprint(i), orderUpdatedQuery, map[string]any{"id": o.ID})
		}
		waitForSubs(t, g, 100)
		c.subscribe(t, "one-more", orderUpdatedQuery, map[string]any{"id": o.ID})
		m, err := c.tryNext(eventWait, byID("one-more"))
		if err != nil || m.Type != "error" || !strings.Contains(string(m.Payload), "at most 100 operations") {
			t.Fatalf("the 101st operation: %+v %v", m, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), eventWait)
		defer cancel()
		if err := c.send(ctx, wsMsg{ID: "0", Type: "complete"}); err != nil {
			t.Fatal(err)
		}
		waitForSubs(t, g, 99)
		c.subscribe(t, "after", orderUpdatedQuery, map[string]any{"id": o.ID})
		if s := c.nextOrder(t, "after", "orderUpdated"); s.ID != o.ID {
			t.Fatalf("after completing one: %+v", s)
		}
		t.Logf("101st operation refused: %s; after completing one, another was accepted", m.Payload)
	})

	// graphql-transport-ws: a client that sends nothing, not even a pong,
	// for two ping intervals (2s each here) is disconnected; one that
	// answers stays.
	t.Run("missed pongs", func(t *testing.T) {
		silent := dialWS(t, g, wsDial{noPong: true})
		answering := dialWS(t, g, wsDial{})
		code, after := closeCode(t, silent)
		if code != 4499 {
			t.Fatalf("silent client: close status %d (%v), want 4499", code, silent.readErr)
		}
		if after < 3*time.Second {
			t.Fatalf("silent client closed after %s, before two ping intervals (4s)", after)
		}
		time.Sleep(2 * time.Second)
		select {
		case <-answering.done:
			t.Fatalf("the client that answers pings was closed too: %v", answering.readErr)
		default:
		}
		if answering.pings.Load() == 0 {
			t.Fatal("the answering client got no ping")
		}
		t.Logf("silent client closed with 4499 after %s; the answering one (%d pings) stays open", after.Round(time.Millisecond), answering.pings.Load())
	})

	// graphql-ws (legacy): its clients send nothing after init, but answer
	// the ping frames that come with each "ka" (every websocket client
	// does). A peer gone silent (here: one that no longer reads, so it
	// answers nothing) is disconnected after two ping intervals; one that
	// reads stays.
	t.Run("legacy peer gone silent", func(t *testing.T) {
		gone := dialWS(t, g, wsDial{proto: protoLegacyWS, paused: true})
		alive := dialWS(t, g, wsDial{proto: protoLegacyWS})
		time.Sleep(5 * time.Second) // two ping intervals (2s each) and a margin
		gone.start()                // reads what was sent: "ka"s, then the close
		// It finds the server's close frame (4499), or, answering a ping
		// first, the socket closed.
		code, _ := closeCode(t, gone)
		if e := fmt.Sprint(gone.readErr); code != 4499 && !strings.Contains(e, "broken pipe") && !strings.Contains(e, "reset by peer") && !strings.Contains(e, "EOF") {
			t.Fatalf("silent legacy client: close status %d (%v), want 4499 or a closed socket", code, gone.readErr)
		}
		select {
		case <-alive.done:
			t.Fatalf("the legacy client that reads was closed too: %v", alive.readErr)
		default:
		}
		t.Logf("silent legacy client closed with 4499; the one that reads (and so answers ping frames) stays open")
	})
}

// TestSubscriptionSelectionsAreNotMixed: subscriptions with the same query
// share each update's result, so this checks that the ones with another
// selection, or another order, each get their own.
func TestSubscriptionSelectionsAreNotMixed(t *testing.T) {
	g := startGateway(t, testConfig(t))
	o1 := g.mustMutate(t, "placeOrder", placeInput("cust-sel", item("A", 1, "1")))
	o2 := g.mustMutate(t, "placeOrder", placeInput("cust-sel", item("B", 2, "1")))
	const narrow = `subscription($id: ID!) { orderUpdated(id: $id) { id version } }`
	const wide = `subscription($id: ID!) { orderUpdated(id: $id) { id version status items { sku } } }`
	const aliased = `subscription($id: ID!) { o: orderUpdated(id: $id) { v: version } }`
	type sub struct {
		c           *wsClient
		query, id   string
		field, keys string // the result's field and its keys, sorted
	}
	subs := []sub{
		{query: narrow, id: o1.ID, field: "orderUpdated", keys: "id version"},
		{query: narrow, id: o1.ID, field: "orderUpdated", keys: "id version"},
		{query: wide, id: o1.ID, field: "orderUpdated", keys: "id items status version"},
		{query: aliased, id: o1.ID, field: "o", keys: "v"},
		{query: narrow, id: o2.ID, field: "orderUpdated", keys: "id version"},
	}
	for i := range subs {
		subs[i].c = dialWS(t, g, wsDial{})
		subs[i].c.subscribe(t, "1", subs[i].query, map[string]any{"id": subs[i].id})
	}
	check := func(s sub, want int) {
		t.Helper()
		for {
			m, err := s.c.tryNext(eventWait, byID("1"))
			if err != nil {
				t.Fatalf("%s on %s: %v", s.query, s.id, err)
			}
			var p struct{ Data map[string]map[string]any }
			if err := json.Unmarshal(m.Payload, &p); err != nil || m.Type != "next" {
				t.Fatalf("%s: %s %s", s.query, m.Type, m.Payload)
			}
			res := p.Data[s.field]
			keys := make([]string, 0, len(res))
			for k := range res {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			if strings.Join(keys, " ") != s.keys || len(p.Data) != 1 {
				t.Fatalf("%s on %s: got %s, want field %s with %s", s.query, s.id, m.Payload, s.field, s.keys)
			}
			if id, ok := res["id"]; ok && id != s.id {
				t.Fatalf("%s on %s: got order %v", s.query, s.id, id)
			}
			v, ok := res["version"].(float64)
			if !ok {
				v, _ = res["v"].(float64)
			}
			if int(v) == want {
				return
			}
		}
	}
	for _, s := range subs {
		check(s, 1)
	}
	g.mustMutate(t, "confirmOrder", map[string]any{"orderId": o1.ID})
	g.mustMutate(t, "confirmOrder", map[string]any{"orderId": o2.ID})
	for _, s := range subs {
		check(s, 2)
	}
	t.Logf("5 subscriptions (two with the same query, one wider, one aliased, one on another order) each got v1 and v2 in their own shape")
}

// TestSubscriptionAcrossInstances: a change made through one instance
// reaches a subscriber of another.
func TestSubscriptionAcrossInstances(t *testing.T) {
	cfg := testConfig(t)
	a := startGateway(t, cfg)
	b := startGatewayProcess(t, cfg) // a second gateway process
	o := b.mustMutate(t, "placeOrder", placeInput("cust-multi", item("A", 1, "1")))

	c := dialWS(t, a, wsDial{})
	c.subscribe(t, "1", orderUpdatedQuery, map[string]any{"id": o.ID})
	// The snapshot comes from the shared store; it may already be past v1
	// only if something else changed the order, which nothing does.
	if s := c.nextOrder(t, "1", "orderUpdated"); s.Version != 1 {
		t.Fatalf("snapshot on a: %+v", s)
	}
	b.mustMutate(t, "confirmOrder", map[string]any{"orderId": o.ID})
	if u := c.nextOrder(t, "1", "orderUpdated"); u.Version != 2 || u.Status != "CONFIRMED" {
		t.Fatalf("update on a: %+v", u)
	}
	t.Logf("subscriber on %s got v2 CONFIRMED for a confirmOrder sent to the process at %s", a.Addr(), b.url)
}

// smallReadBufferClient dials with a 64 KB socket receive buffer, so the
// server's writes to a client that stops reading block sooner (smaller
// ones make loopback TCP crawl once it reads again). dialed, unless nil,
// gets each connection it makes.
func smallReadBufferClient(dialed func(net.Conn)) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetReadBuffer(64 << 10)
		}
		if err == nil && dialed != nil {
			dialed(conn)
		}
		return conn, err
	}}}
}

// itemsUnder30Aliases is a selection that repeats an order's items under
// 30 aliases, to make each message large.
func itemsUnder30Aliases() string {
	var pad strings.Builder
	for i := range 30 {
		fmt.Fprintf(&pad, " p%d: items { sku name quantity unitPrice { amount currencyCode } lineTotal { amount currencyCode } }", i)
	}
	return pad.String()
}

// TestSlowSubscriberDoesNotHoldOthers: a subscriber that stops reading does
// not delay another one; when it reads again it gets the latest state.
func TestSlowSubscriberDoesNotHoldOthers(t *testing.T) {
	const n = 60
	cfg := testConfig(t)
	// The slow client reads nothing until the fast one has every version:
	// it answers no pings meanwhile, and once its socket buffers are full
	// (some 4 MB, about v43 of the 61 versions) the server's write to it
	// waits. With the tests' 2s ping interval the server would drop it
	// after 4s, and with the default WS_WRITE_TIMEOUT (10s) once the rest
	// of the mutations and the fast client's reads take longer than that,
	// as they do on a loaded machine (on 2 cores with 4 busy loops the
	// write waited 4-6 s, with 8 it was dropped). Either is the server's
	// job (TestWebsocketProtocolErrors, TestStalledClientIsDisconnected)
	// but not what this test is about, so both are longer than the test
	// may run (go test's default -timeout is 10 minutes).
	cfg.WSPingInterval, cfg.WSWriteTimeout = time.Hour, time.Hour
	g := startGateway(t, cfg)
	o := g.mustMutate(t, "placeOrder", placeInput("cust-slow", item("P", 1, "1")))

	// The slow client's socket has a small receive buffer (smaller ones make
	// loopback TCP crawl once it reads again), so the server's writes to it
	// block sooner.
	slowHTTP := smallReadBufferClient(nil)
	// Each message repeats the items under 30 aliases (about 300 KB by the
	// end, 10 MB in all), so the unread ones fill the socket buffers and the
	// server's writes to slow block.
	pad := itemsUnder30Aliases()
	query := `subscription($id: ID!) { orderUpdated(id: $id) { id status version itemCount items { sku quantity }` + pad + ` } }`
	slow := dialWS(t, g, wsDial{client: slowHTTP, paused: true})
	slow.subscribe(t, "1", query, map[string]any{"id": o.ID})
	fast := dialWS(t, g, wsDial{})
	fast.subscribe(t, "1", query, map[string]any{"id": o.ID})
	waitForSubs(t, g, 2)

	start := time.Now()
	fastVs := []int{}
	for i := range n {
		g.mustMutate(t, "addOrderItem", map[string]any{"orderId": o.ID, "item": item(fmt.Sprintf("S%02d", i), 1, "1")})
	}
	mutated := time.Since(start)
	for len(fastVs) == 0 || fastVs[len(fastVs)-1] < n+1 {
		u, err := fast.tryNextOrder("1", "orderUpdated", eventWait)
		if err != nil {
			t.Fatalf("fast subscriber after versions %v: %v", fastVs, err)
		}
		fastVs = append(fastVs, u.Version)
		checkIncreasing(t, "fast subscriber", fastVs)
	}
	fastDone := time.Since(start)

	slowStart := time.Now()
	slow.start()
	var slowVs []int
	var last Order
	for last.Version < n+1 {
		u, err := slow.tryNextOrder("1", "orderUpdated", eventWait)
		if err != nil {
			t.Fatalf("slow subscriber after versions %v: %v", slowVs, err)
		}
		slowVs = append(slowVs, u.Version)
		checkIncreasing(t, "slow subscriber", slowVs)
		last = u
	}
	if len(last.Items) != n+1 {
		t.Fatalf("slow subscriber's last state has %d items, want %d", len(last.Items), n+1)
	}
	slow.expectQuiet(t, "slow subscriber after the final version")
	if len(slowVs) < len(fastVs) {
		t.Logf("slow got %d fewer states than fast: newer states replaced the ones it had not read", len(fastVs)-len(slowVs))
	}
	t.Logf("%d mutations in %s; fast got v%d after %s (%d messages); slow then read %d messages in %s, ending at v%d: %v",
		n, mutated.Round(time.Millisecond), n+1, fastDone.Round(time.Millisecond), len(fastVs), len(slowVs), time.Since(slowStart).Round(time.Millisecond), n+1, slowVs)
}

// TestStalledClientIsDisconnected: a client whose socket stays full for
// WS_WRITE_TIMEOUT is disconnected and its subscription freed, while others
// go on getting every version.
func TestStalledClientIsDisconnected(t *testing.T) {
	cfg := testConfig(t)
	cfg.WSWriteTimeout = time.Second
	cfg.WSPingInterval = time.Minute // missed pongs are another test's subject
	g := startGateway(t, cfg)
	o := g.mustMutate(t, "placeOrder", placeInput("cust-stalled", item("P", 1, "1")))

	conns := make(chan net.Conn, 1)
	stalledHTTP := smallReadBufferClient(func(c net.Conn) {
		select {
		case conns <- c:
		default:
		}
	})
	pad := itemsUnder30Aliases() // large messages, so the socket buffers fill
	query := `subscription($id: ID!) { orderUpdated(id: $id) { id version` + pad + ` } }`
	stalled := dialWS(t, g, wsDial{client: stalledHTTP, paused: true})
	stalledConn := <-conns
	stalled.subscribe(t, "1", query, map[string]any{"id": o.ID})
	fast := dialWS(t, g, wsDial{})
	fast.subscribe(t, "1", orderUpdatedQuery, map[string]any{"id": o.ID})
	waitForSubs(t, g, 2)

	// How long the stalled client is kept once its socket is full is
	// measured from the last time the server's end of its connection took
	// bytes (its send queue grew), not from the first version: filling
	// about 4 MB of socket buffers takes some 45 versions, each a round
	// trip to the views, which on 2 cores took 9-17 s with 3 busy loops
	// and 28 s with 8. A watcher polls that queue and the hub.
	serverEnd := [2]net.Addr{stalledConn.RemoteAddr(), stalledConn.LocalAddr()}
	var (
		mu                sync.Mutex
		queued, maxQueued int64
		grew              time.Time // when queued last changed
		seen              bool      // the server's end was found at least once
	)
	freed := make(chan time.Time, 1)
	stop := make(chan struct{})
	var watcher sync.WaitGroup
	defer watcher.Wait()
	defer close(stop)
	watcher.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			q, ok := sendQueue(serverEnd[0], serverEnd[1])
			now := time.Now()
			mu.Lock()
			if ok && (!seen || q != queued) {
				queued, grew, seen = q, now, true
				maxQueued = max(maxQueued, q)
			}
			mu.Unlock()
			if g.Hub().Count() < 2 {
				freed <- now
				return
			}
			select {
			case <-tick.C:
			case <-stop:
				return
			}
		}
	})

	start := time.Now()
	version := 1
	var freedAt time.Time
	for freedAt.IsZero() {
		select {
		case freedAt = <-freed:
			continue
		default:
		}
		if version == 80 {
			// Every version is sent: the socket filled long ago (see the
			// log), and the write that found it full has its timeout.
			select {
			case freedAt = <-freed:
			case <-time.After(eventWait):
				mu.Lock()
				q := queued
				mu.Unlock()
				t.Fatalf("the stalled client still holds its subscription %s after the last of %d versions (send queue %d bytes)", eventWait, version, q)
			}
			break
		}
		// Each version reaches the views before the next is sent, so each
		// becomes its own update (a projector write that takes longer, as
		// on PostgreSQL, would otherwise fold several versions into one,
		// and fewer, smaller messages might never fill the socket buffers).
		p := g.mutate(t, "addOrderItem", map[string]any{"orderId": o.ID, "item": item(fmt.Sprintf("S%02d", version), 1, "1")})
		if len(p.UserErrors) > 0 || p.ConsistencyToken == nil {
			t.Fatalf("addOrderItem: %+v", p.UserErrors)
		}
		g.orderAt(t, o.ID, *p.ConsistencyToken)
		version++
	}
	mu.Lock()
	lastGrew, full, found := grew, maxQueued, seen
	mu.Unlock()
	kept := "(not measured: the server's end of the connection is not in /proc/net/tcp here)"
	if found {
		// After its last growth the queue is full: the write then under way
		// (or the next version's) waits WS_WRITE_TIMEOUT and fails.
		stalledFor := freedAt.Sub(lastGrew)
		if stalledFor > 8*time.Second { // the default timeout is 10s: the setting was not applied
			t.Fatalf("the stalled client was dropped %s after its socket last took bytes (%d queued), not about WS_WRITE_TIMEOUT (1s) after", stalledFor, full)
		}
		kept = fmt.Sprintf("%s after its socket last took bytes (%d queued)", stalledFor.Round(time.Millisecond), full)
	}
	for last := 0; last < version; {
		u, err := fast.tryNextOrder("1", "orderUpdated", eventWait)
		if err != nil {
			t.Fatalf("fast subscriber after v%d: %v", last, err)
		}
		last = u.Version
	}
	// (Reading what the stalled client's buffers hold would take long on a
	// small receive buffer; its subscription is freed only with its
	// connection, which is what this checks.)
	t.Logf("stalled client's subscription freed %s after the first of %d versions, %s (WS_WRITE_TIMEOUT 1s); the other client got all of them",
		freedAt.Sub(start).Round(time.Millisecond), version, kept)
}

// TestSubscriberGoroutinesAreFreed: 1000 subscribers that vanish without a
// close handshake leave no subscription and no goroutine behind.
func TestSubscriberGoroutinesAreFreed(t *testing.T) {
	const conns, batch, orders = 1000, 50, 5
	g := startGateway(t, testConfig(t))
	ids := make([]string, orders)
	for i := range ids {
		ids[i] = g.mustMutate(t, "placeOrder", placeInput("cust-leak", item("A", 1, "1"))).ID
	}
	http.DefaultClient.CloseIdleConnections()

	// Each client dials through its own transport, which records the TCP
	// connection so half of them can be cut below the websocket.
	type client struct {
		ws  *wsClient
		tcp net.Conn
	}
	dial := func(i int) (client, error) {
		var tcp net.Conn
		hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			tcp = c
			return c, err
		}}}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, _, err := tryDialWS(ctx, wsURL(g), wsDial{client: hc})
		if err != nil {
			return client{}, fmt.Errorf("client %d: %w", i, err)
		}
		if err := c.trySubscribe("1", orderUpdatedQuery, map[string]any{"id": ids[i%orders]}); err != nil {
			c.close()
			return client{}, fmt.Errorf("client %d: %w", i, err)
		}
		if _, err := c.tryNextOrder("1", "orderUpdated", 30*time.Second); err != nil {
			c.close()
			return client{}, fmt.Errorf("client %d: %w", i, err)
		}
		return client{c, tcp}, nil
	}

	// Warm-up: one batch of subscriptions opened and closed, so the pools
	// that grow with concurrent requests (the store's connections, read for
	// each snapshot) are at their working size in the baseline.
	var warm sync.WaitGroup
	warmErrs := make([]error, batch)
	for i := range batch {
		warm.Go(func() {
			var c client
			if c, warmErrs[i] = dial(i); warmErrs[i] == nil {
				c.ws.close()
			}
		})
	}
	warm.Wait()
	if err := errors.Join(warmErrs...); err != nil {
		t.Fatalf("warm-up: %v", err)
	}
	waitForSubs(t, g, 0)
	baseline, baseEmbedded := settledGoroutines()

	start := time.Now()
	clients := make([]client, conns)
	var failed []error
	for lo := 0; lo < conns; lo += batch {
		var wg sync.WaitGroup
		errs := make([]error, batch)
		for i := lo; i < lo+batch; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				clients[i], errs[i-lo] = dial(i)
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				failed = append(failed, err)
			}
		}
		if len(failed) > 0 {
			break
		}
	}
	closeAll := func() {
		for i, c := range clients {
			if c.ws == nil {
				continue
			}
			if i%2 == 1 {
				c.tcp.Close() // cut the TCP connection under the websocket
			}
			c.ws.close() // CloseNow: no close handshake
		}
	}
	if len(failed) > 0 {
		closeAll()
		t.Fatalf("%d dials failed, first: %v", len(failed), failed[0])
	}
	waitForSubs(t, g, conns)
	peak := runtime.NumGoroutine()
	opened := time.Since(start)

	start = time.Now()
	closeAll()
	// The embedded store and broker run in this process; their goroutines
	// follow their clients' connection pools (the MongoDB driver keeps idle
	// connections), not the subscribers, so they are counted apart.
	deadline := time.Now().Add(30 * time.Second)
	var subs, gs, embedded int
	for {
		subs = g.Hub().Count()
		gs, embedded = goroutineCounts()
		if subs == 0 && gs-embedded <= baseline-baseEmbedded+10 {
			break
		}
		if time.Now().After(deadline) {
			t.Logf("goroutines by creator:\n%s", goroutinesByCreator())
			t.Fatalf("30s after closing %d connections: hub holds %d subscriptions, %d goroutines (%d of them the embedded store and broker); baseline %d (%d), peak %d",
				conns, subs, gs, embedded, baseline, baseEmbedded, peak)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("opened %d websocket subscriptions in %s (goroutines: baseline %d, peak %d); closed them abruptly (half CloseNow, half TCP close): after %s %d subscriptions, %d goroutines",
		conns, opened.Round(time.Millisecond), baseline, peak, time.Since(start).Round(time.Millisecond), subs, gs)
	t.Logf("without the embedded store and broker: baseline %d, now %d (theirs: %d → %d)", baseline-baseEmbedded, gs-embedded, baseEmbedded, embedded)
}

// goroutineCounts returns runtime.NumGoroutine and how many goroutines run
// in the embedded MongoDB-wire store and Kafka broker.
func goroutineCounts() (total, embedded int) {
	buf := make([]byte, 16<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		total++
		if strings.Contains(g, "github.com/FerretDB/") || strings.Contains(g, "franz-go/pkg/kfake") {
			embedded++
		}
	}
	return total, embedded
}

// settledGoroutines is goroutineCounts once the total has stopped
// changing for a moment (up to 2s).
func settledGoroutines() (total, embedded int) {
	total, embedded = goroutineCounts()
	for range 40 {
		time.Sleep(50 * time.Millisecond)
		t, e := goroutineCounts()
		if t == total {
			return t, e
		}
		total, embedded = t, e
	}
	return total, embedded
}

// goroutinesByCreator summarises runtime.Stack by each goroutine's state,
// top function and creator, most frequent first.
func goroutinesByCreator() string {
	buf := make([]byte, 16<<20)
	buf = buf[:runtime.Stack(buf, true)]
	counts := map[string]int{}
	for _, g := range strings.Split(string(buf), "\n\n") {
		lines := strings.Split(strings.TrimSpace(g), "\n")
		if len(lines) < 2 {
			continue
		}
		state := lines[0]
		if i := strings.Index(state, "["); i >= 0 {
			state = state[i:]
		}
		if i := strings.Index(state, ","); i >= 0 { // drop ", 2 minutes"
			state = state[:i] + "]"
		}
		key := state + " " + trimArgs(lines[1])
		for _, l := range lines {
			if strings.HasPrefix(l, "created by ") {
				l = strings.TrimPrefix(l, "created by ")
				if i := strings.Index(l, " in goroutine"); i >= 0 {
					l = l[:i]
				}
				key += " <- " + l
			}
		}
		counts[key]++
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return counts[b] - counts[a] })
	var sb strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&sb, "%5d %s\n", counts[k], k)
	}
	return sb.String()
}

// trimArgs drops the argument list of a stack frame.
func trimArgs(frame string) string {
	if i := strings.LastIndex(frame, "("); i > 0 {
		return frame[:i]
	}
	return frame
}

// TestShutdownEndsStreamsForReconnect: a gateway that shuts down ends its
// websockets with 1001 (going away) and cuts its SSE streams, without
// completing their subscriptions, so clients reconnect (to another instance)
// and subscribe again rather than take the end for the subscription's. It
// does not wait out SHUTDOWN_TIMEOUT for the streams.
func TestShutdownEndsStreamsForReconnect(t *testing.T) {
	cfg := testConfig(t)
	g := startGateway(t, cfg)
	o := g.mustMutate(t, "placeOrder", placeInput("cust-shutdown", item("A", 1, "1")))

	ws := dialWS(t, g, wsDial{})
	ws.subscribe(t, "1", orderUpdatedQuery, map[string]any{"id": o.ID})
	if s := ws.nextOrder(t, "1", "orderUpdated"); s.Version != 1 {
		t.Fatalf("websocket snapshot: %+v", s)
	}

	resp := openSSE(t, context.Background(), g, fmt.Sprintf(`subscription { orderUpdated(id: %q) { id version } }`, o.ID))
	events := make(chan string, 16) // event names, then "end: <error>"
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if line := sc.Text(); strings.HasPrefix(line, "event:") {
				events <- strings.TrimSpace(strings.TrimPrefix(line, "event:"))
			}
		}
		events <- fmt.Sprintf("end: %v", sc.Err())
	}()
	select {
	case ev := <-events:
		if ev != "next" {
			t.Fatalf("SSE: first event %q, want next", ev)
		}
	case <-time.After(eventWait):
		t.Fatal("SSE: no snapshot")
	}

	start := time.Now()
	g.stop()
	took := time.Since(start)
	if took > cfg.ShutdownTimeout/2 {
		t.Fatalf("shutdown took %s with open streams (SHUTDOWN_TIMEOUT %s)", took, cfg.ShutdownTimeout)
	}
	for {
		m, err := ws.tryNext(eventWait, func(wsMsg) bool { return true })
		if err != nil {
			break
		}
		if m.Type == "complete" {
			t.Fatalf("websocket: the subscription was completed at shutdown: %+v", m)
		}
	}
	if code := coderws.CloseStatus(ws.readErr); code != coderws.StatusGoingAway {
		t.Fatalf("websocket: closed with %d (%v), want 1001", code, ws.readErr)
	}
	for {
		select {
		case ev := <-events:
			if ev == "complete" {
				t.Fatal("SSE: the subscription was completed at shutdown")
			}
			if strings.HasPrefix(ev, "end:") {
				t.Logf("shutdown in %s: websocket closed with 1001, no complete; SSE stream cut (%s), no complete", took.Round(time.Millisecond), ev)
				return
			}
		case <-time.After(eventWait):
			t.Fatal("SSE: the stream did not end")
		}
	}
}

// TestShutdownFinishesWebsocketOperations: a mutation sent over a websocket
// before the gateway began to shut down gets its result before the socket
// closes with 1001, and an operation sent after that is refused with
// UNAVAILABLE rather than dropped. The mutation is made to outlast the start
// of the shutdown by having no command handler until a second instance
// starts.
func TestShutdownFinishesWebsocketOperations(t *testing.T) {
	cfg := testConfig(t)
	cfg.CommandTimeout, cfg.ShutdownTimeout = 40*time.Second, 40*time.Second
	g := startGateway(t, cfg)
	g.Handler().Close() // nobody handles commands until the second instance starts

	ws := dialWS(t, g, wsDial{})
	ws.subscribe(t, "m", fmt.Sprintf("mutation($input: PlaceOrderInput!) { placeOrder(input: $input) { %s } }", payloadFields),
		map[string]any{"input": placeInput("cust-drain", item("A", 1, "1"))})
	if m, err := ws.tryNext(300*time.Millisecond, byID("m")); err == nil {
		t.Fatalf("the mutation was answered with no handler running: %s", m.Payload)
	}

	stopped := make(chan struct{})
	go func() { g.stop(); close(stopped) }()

	// Queries sent once the shutdown has begun are refused.
	refused := false
	for i := 0; i < 500 && !refused; i++ {
		id := fmt.Sprintf("q%d", i)
		if err := ws.trySubscribe(id, `{ __typename }`, nil); err != nil {
			t.Fatalf("send query: %v", err)
		}
		m, err := ws.tryNext(eventWait, byID(id))
		if err != nil {
			t.Fatalf("query %s: %v", id, err)
		}
		switch m.Type {
		case "next":
			ws.tryNext(eventWait, byID(id)) // its complete
			time.Sleep(10 * time.Millisecond)
		case "error":
			var errs []gqlError
			if json.Unmarshal(m.Payload, &errs); len(errs) != 1 || errs[0].Extensions["code"] != "UNAVAILABLE" {
				t.Fatalf("query during shutdown: %s, want one UNAVAILABLE error", m.Payload)
			}
			refused = true
		default:
			t.Fatalf("query %s: unexpected %s %s", id, m.Type, m.Payload)
		}
	}
	if !refused {
		t.Fatal("queries were still taken during the shutdown")
	}
	select {
	case <-stopped:
		t.Fatal("the shutdown did not wait for the mutation in flight")
	default:
	}

	second := startGateway(t, cfg) // takes over the command partitions; answers the mutation
	m, err := ws.tryNext(cfg.CommandTimeout, byID("m"))
	if err != nil {
		t.Fatalf("the mutation in flight got no result before the socket closed: %v", err)
	}
	var res struct {
		Data struct{ PlaceOrder Payload } `json:"data"`
	}
	if m.Type != "next" || json.Unmarshal(m.Payload, &res) != nil || res.Data.PlaceOrder.Order == nil {
		t.Fatalf("mutation result: %s %s", m.Type, m.Payload)
	}
	if c, err := ws.tryNext(eventWait, byID("m")); err != nil || c.Type != "complete" {
		t.Fatalf("after the result: %+v %v, want complete", c, err)
	}
	select {
	case <-stopped:
	case <-time.After(cfg.ShutdownTimeout):
		t.Fatal("the shutdown did not end")
	}
	if _, err := ws.tryNext(eventWait, func(wsMsg) bool { return true }); err == nil {
		t.Fatal("the websocket is still open after the shutdown")
	}
	if code := coderws.CloseStatus(ws.readErr); code != coderws.StatusGoingAway {
		t.Fatalf("websocket: closed with %d (%v), want 1001", code, ws.readErr)
	}
	if o := second.orderAt(t, res.Data.PlaceOrder.Order.ID, *res.Data.PlaceOrder.ConsistencyToken); o == nil {
		t.Fatal("the order placed during the shutdown is not in the views")
	}
}
