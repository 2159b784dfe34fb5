package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// client is one simulated frontend: it sends GraphQL requests over HTTP,
// one at a time, as fast as answers come.
type client struct {
	conns *conns
	id    int
	token string // "": its customer's (auth.go)
	cust  string // its customer's id, once asked
	body  []byte // the last mutation's request body, for the next
}

// gqlResult is what the driver reads of a GraphQL answer: the data go
// where Data points.
type gqlResult struct {
	Data   any `json:"data"`
	Errors []struct {
		Message    string         `json:"message"`
		Extensions map[string]any `json:"extensions"`
	} `json:"errors"`
}

// post sends one request; a transport error, a non-200 status or a GraphQL
// error is returned as an error whose text starts with a stable code.
func (c *client) post(ctx context.Context, query string, vars map[string]any, out any) error {
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	return c.send(ctx, body, out)
}

// send posts body, a GraphQL request, and decodes the answer's data into
// out (nil: they are not read).
func (c *client) send(ctx context.Context, body []byte, out any) error {
	answered := false
	err := c.conns.post(ctx, c.bearer(), body, func(status int, raw []byte) error {
		answered = true
		if status != 200 {
			return fmt.Errorf("HTTP_%d: %.200s", status, raw)
		}
		r := gqlResult{Data: out}
		if out == nil {
			r.Data = &struct{}{}
		}
		if err := json.Unmarshal(raw, &r); err != nil {
			if json.Valid(raw) {
				return fmt.Errorf("BAD_DATA: %v", err)
			}
			return fmt.Errorf("NOT_JSON: %.200s", raw)
		}
		if len(r.Errors) > 0 {
			code, _ := r.Errors[0].Extensions["code"].(string)
			return fmt.Errorf("%s: %.200s", code, r.Errors[0].Message)
		}
		return nil
	})
	if err != nil && !answered {
		return fmt.Errorf("TRANSPORT: %v", err)
	}
	return err
}

type payload struct {
	Order *struct {
		ID      string `json:"id"`
		Status  string `json:"status"`
		Version int    `json:"version"`
	} `json:"order"`
	Version          *int    `json:"version"`
	ConsistencyToken *string `json:"consistencyToken"`
	UserErrors       []struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"userErrors"`
}

const (
	placeMutation   = `mutation($in: PlaceOrderInput!) { m: placeOrder(input: $in) { order { id status version } version consistencyToken userErrors { code message } } }`
	confirmMutation = `mutation($in: ConfirmOrderInput!) { m: confirmOrder(input: $in) { order { id status version } version consistencyToken userErrors { code message } } }`
	orderQuery      = `query($id: ID!, $t: String) { order(id: $id, consistencyToken: $t) { id status version total { amount currencyCode } items { sku quantity } } }`
	ordersQuery     = `query($c: ID!) { orders(filter: {customerId: $c}, first: 10) { edges { node { id status version } } pageInfo { hasNextPage } } }`
)

// appendRandomKey appends a random idempotency key (24 hex digits).
func appendRandomKey(b []byte) []byte {
	var k [12]byte
	_, _ = rand.Read(k[:])
	return hex.AppendEncode(b, k[:])
}

// mutate sends body, a mutation whose field is aliased m, and turns
// userErrors into errors.
func (c *client) mutate(ctx context.Context, body []byte) (payload, error) {
	var out struct{ M payload }
	if err := c.send(ctx, body, &out); err != nil {
		return payload{}, err
	}
	if len(out.M.UserErrors) > 0 {
		return out.M, fmt.Errorf("%s: %s", out.M.UserErrors[0].Code, out.M.UserErrors[0].Message)
	}
	if out.M.Order == nil {
		return out.M, fmt.Errorf("NO_ORDER: the payload has no order")
	}
	return out.M, nil
}

// customers is how many customers the load's orders belong to.
const customers = 50

func (c *client) customer() string {
	if c.cust == "" {
		c.cust = "load-c" + strconv.Itoa(c.id%customers)
	}
	return c.cust
}

// bearer is the client's token: its customer's, unless it has its own.
func (c *client) bearer() string {
	if c.token != "" {
		return c.token
	}
	return tokens.customer(c.customer())
}

// The mutations' request bodies are written by hand (what json.Marshal of
// their variables would write), sparing the load's CPU.
var (
	placeQueryJSON, _   = json.Marshal(placeMutation)
	confirmQueryJSON, _ = json.Marshal(confirmMutation)
)

func (c *client) place(ctx context.Context) (payload, error) {
	b := append(c.body[:0], `{"query":`...)
	b = append(b, placeQueryJSON...)
	b = append(b, `,"variables":{"in":{"customerId":`...)
	b, _ = appendJSON(b, c.customer())
	b = append(b, `,"currencyCode":"EUR","idempotencyKey":"`...)
	b = appendRandomKey(b)
	b = append(b, `","items":[{"sku":"TEA","name":"Green tea","quantity":2,"unitPrice":"4.50"},{"sku":"CUP","name":"Cup","quantity":1,"unitPrice":"12.00"}]}}}`...)
	c.body = b
	return c.mutate(ctx, b)
}

func (c *client) confirm(ctx context.Context, orderID string, version int) (payload, error) {
	b := append(c.body[:0], `{"query":`...)
	b = append(b, confirmQueryJSON...)
	b = append(b, `,"variables":{"in":{"orderId":`...)
	b, _ = appendJSON(b, orderID)
	b = append(b, `,"expectedVersion":`...)
	b = strconv.AppendInt(b, int64(version), 10)
	b = append(b, `,"idempotencyKey":"`...)
	b = appendRandomKey(b)
	b = append(b, `"}}}`...)
	c.body = b
	return c.mutate(ctx, b)
}

// appendJSON appends v's JSON.
func appendJSON(b []byte, v any) ([]byte, error) {
	j, err := json.Marshal(v)
	return append(b, j...), err
}

// recorder collects what one load run measured; safe for concurrent use.
type recorder struct {
	mu     sync.Mutex
	lat    map[string][]time.Duration // by operation
	errs   map[string]int             // by first word (the code)
	sample map[string]string          // one message per code
	orders atomic.Int64               // orders completed as the scenario counts them
	muts   atomic.Int64               // mutations answered without error
	last   atomic.Pointer[written]    // the last write answered
}

// written is a write a mutation answered: its order and consistency token.
type written struct{ orderID, token string }

// wrote notes p's write as the last one answered.
func (r *recorder) wrote(p payload) {
	if p.Order != nil && p.ConsistencyToken != nil {
		r.last.Store(&written{p.Order.ID, *p.ConsistencyToken})
	}
}

func newRecorder() *recorder {
	return &recorder{lat: map[string][]time.Duration{}, errs: map[string]int{}, sample: map[string]string{}}
}

// time runs op, records its latency under name, and its error, if any.
func (r *recorder) time(name string, op func() error) error {
	t0 := time.Now()
	err := op()
	d := time.Since(t0)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		code, _, _ := strings.Cut(err.Error(), ":")
		r.errs[name+" "+code]++
		if _, ok := r.sample[code]; !ok {
			r.sample[code] = err.Error()
		}
		return err
	}
	r.lat[name] = append(r.lat[name], d)
	if strings.HasSuffix(name, "Order") && name != "order" {
		r.muts.Add(1)
	}
	return nil
}

func (r *recorder) errorCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, v := range r.errs {
		n += v
	}
	return n
}

// percentile returns the p-th percentile (nearest rank) of sorted d.
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := int(math.Ceil(float64(len(d))*p/100)) - 1
	return d[max(0, min(i, len(d)-1))]
}

// opStats is one operation's latency summary.
type opStats struct {
	name               string
	n                  int
	p50, p90, p99, max time.Duration
}

func (r *recorder) stats() []opStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []opStats
	for name, d := range r.lat {
		d = slices.Clone(d)
		slices.Sort(d)
		out = append(out, opStats{name: name, n: len(d), p50: percentile(d, 50), p90: percentile(d, 90), p99: percentile(d, 99), max: d[len(d)-1]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// mutationLatencies merges the latencies of every mutation.
func (r *recorder) mutationStats() opStats {
	r.mu.Lock()
	var all []time.Duration
	for name, d := range r.lat {
		if name != "order" && name != "orders" {
			all = append(all, d...)
		}
	}
	r.mu.Unlock()
	slices.Sort(all)
	if len(all) == 0 {
		return opStats{name: "mutations"}
	}
	return opStats{name: "mutations", n: len(all), p50: percentile(all, 50), p90: percentile(all, 90), p99: percentile(all, 99), max: all[len(all)-1]}
}

// scenarios: what each client does in a loop.
var scenarios = map[string]func(ctx context.Context, c *client, r *recorder, ids *idPool){
	// place: one new order per iteration.
	"place": func(ctx context.Context, c *client, r *recorder, ids *idPool) {
		var p payload
		if r.time("placeOrder", func() (err error) { p, err = c.place(ctx); return }) == nil {
			r.orders.Add(1)
			r.wrote(p)
			ids.add(p.Order.ID)
		}
	},
	// place-confirm: place an order, then confirm it (what issue 16 measures).
	"place-confirm": func(ctx context.Context, c *client, r *recorder, ids *idPool) {
		var p payload
		if r.time("placeOrder", func() (err error) { p, err = c.place(ctx); return }) != nil {
			return
		}
		var q payload
		if r.time("confirmOrder", func() (err error) { q, err = c.confirm(ctx, p.Order.ID, p.Order.Version); return }) == nil {
			r.orders.Add(1)
			r.wrote(q)
			ids.add(p.Order.ID)
		}
	},
	// query: read an existing order by id (no consistency token), of any
	// customer: as staff.
	"query": func(ctx context.Context, c *client, r *recorder, ids *idPool) {
		c.token = tokens.staff
		id := ids.pick()
		var out struct{ Order *struct{ ID string } }
		if r.time("order", func() error { return c.post(ctx, orderQuery, map[string]any{"id": id}, &out) }) == nil && out.Order == nil {
			r.time("order", func() error { return fmt.Errorf("NOT_FOUND: order %s is not in the views", id) })
		}
	},
	// mixed: what a checkout page does: place, read it back with its
	// token, confirm, list the customer's orders.
	"mixed": func(ctx context.Context, c *client, r *recorder, ids *idPool) {
		var p payload
		if r.time("placeOrder", func() (err error) { p, err = c.place(ctx); return }) != nil {
			return
		}
		r.time("order", func() error {
			return c.post(ctx, orderQuery, map[string]any{"id": p.Order.ID, "t": p.ConsistencyToken}, nil)
		})
		var q payload
		if r.time("confirmOrder", func() (err error) { q, err = c.confirm(ctx, p.Order.ID, p.Order.Version); return }) == nil {
			r.orders.Add(1)
			r.wrote(q)
			ids.add(p.Order.ID)
		}
		r.time("orders", func() error { return c.post(ctx, ordersQuery, map[string]any{"c": c.customer()}, nil) })
	},
}

// idPool holds ids of orders that exist, for the query scenario.
type idPool struct {
	mu  sync.Mutex
	ids []string
}

func (p *idPool) add(id string) {
	p.mu.Lock()
	if len(p.ids) < 100_000 {
		p.ids = append(p.ids, id)
	}
	p.mu.Unlock()
}

func (p *idPool) pick() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.ids) == 0 {
		return "ord_none"
	}
	return p.ids[mrand.IntN(len(p.ids))]
}

func (p *idPool) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.ids)
}

// drive runs n clients of scenario against url for warmup+d and returns
// what was recorded after the warm-up, and the measured window. start and
// end are called as the measured window opens and closes.
func drive(ctx context.Context, url, scenario string, n int, warmup, d time.Duration, ids *idPool, start, end func()) (*recorder, time.Duration) {
	cs, err := newConns(url, n+4, 30*time.Second)
	if err != nil {
		panic(err) // the URL was checked when the run began
	}
	defer cs.close()
	step := scenarios[scenario]
	var (
		cur       atomic.Pointer[recorder]
		wg        sync.WaitGroup
		stop      atomic.Bool
		measureAt = time.Now().Add(warmup)
	)
	cur.Store(newRecorder())
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &client{conns: cs, id: i}
			for !stop.Load() && ctx.Err() == nil {
				step(ctx, c, cur.Load(), ids)
			}
		}()
	}
	select {
	case <-time.After(time.Until(measureAt)):
	case <-ctx.Done():
	}
	rec := newRecorder()
	cur.Store(rec)
	start()
	t0 := time.Now()
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
	cur.Store(newRecorder()) // what finishes after the window is not counted
	took := time.Since(t0)
	end()
	stop.Store(true)
	wg.Wait()
	return rec, took
}

// catchUp measures how long after since the views include w: it asks for
// w's order with w's token (each ask waits up to the server's consistency
// timeout) until the answer says the views got there, for at most limit.
func catchUp(ctx context.Context, url string, w *written, since time.Time, limit time.Duration) (time.Duration, bool) {
	hc := &http.Client{Timeout: 30 * time.Second}
	for time.Since(since) < limit && ctx.Err() == nil {
		body, _ := json.Marshal(map[string]any{"query": orderQuery, "variables": map[string]any{"id": w.orderID, "t": w.token}})
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+tokens.staff)
		resp, err := hc.Do(req)
		if err != nil {
			return 0, false
		}
		var r struct {
			Extensions map[string]any `json:"extensions"`
		}
		err = json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		if err == nil && r.Extensions["consistency"] == nil {
			return time.Since(since), true
		}
	}
	return time.Since(since), false
}
