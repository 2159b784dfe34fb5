package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// connection is the GraphQL OrderConnection as the query tests read it.
type connection struct {
	Edges []struct {
		Cursor string `json:"cursor"`
		Node   struct {
			ID         string    `json:"id"`
			CustomerID string    `json:"customerId"`
			Status     string    `json:"status"`
			CreatedAt  time.Time `json:"createdAt"`
		} `json:"node"`
	} `json:"edges"`
	PageInfo struct {
		HasNextPage     bool    `json:"hasNextPage"`
		HasPreviousPage bool    `json:"hasPreviousPage"`
		StartCursor     *string `json:"startCursor"`
		EndCursor       *string `json:"endCursor"`
	} `json:"pageInfo"`
	TotalCount int `json:"totalCount"`
}

func (c connection) ids() []string {
	out := make([]string, len(c.Edges))
	for i, e := range c.Edges {
		out[i] = e.Node.ID
	}
	return out
}

const ordersQuery = `query($f: OrderFilter, $first: Int, $after: String) {
  orders(filter: $f, first: $first, after: $after) {
    edges { cursor node { id customerId status createdAt } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    totalCount
  }
}`

// ordersVars builds the variables of ordersQuery, leaving out those not
// given (an explicit null is not the same as an omitted argument).
func ordersVars(filter map[string]any, first *int, after string) map[string]any {
	vars := map[string]any{}
	if filter != nil {
		vars["f"] = filter
	}
	if first != nil {
		vars["first"] = *first
	}
	if after != "" {
		vars["after"] = after
	}
	return vars
}

// orders runs ordersQuery, which must succeed.
func (g *gateway) orders(t testing.TB, filter map[string]any, first *int, after string) connection {
	t.Helper()
	var out struct{ Orders connection }
	g.data(t, ordersQuery, ordersVars(filter, first, after), &out)
	return out.Orders
}

func intp(n int) *int { return &n }

// placed is what the test knows about an order it placed.
type placed struct {
	id, customer, status string
	createdAt            time.Time
}

func (o placed) String() string {
	return fmt.Sprintf("{%s %s %s %s}", o.id, o.customer, o.status, o.createdAt.Format(time.RFC3339Nano))
}

// newestFirst sorts by (createdAt, id) descending, the order orders() uses.
func newestFirst(os []placed) []placed {
	out := slices.Clone(os)
	slices.SortFunc(out, func(a, b placed) int {
		if c := b.createdAt.Compare(a.createdAt); c != 0 {
			return c
		}
		return strings.Compare(b.id, a.id)
	})
	return out
}

func idsOf(os []placed) []string {
	out := make([]string, len(os))
	for i, o := range os {
		out[i] = o.id
	}
	return out
}

// onlyError returns the only error of r, failing the test if there is not
// exactly one.
func onlyError(t testing.TB, what string, r gqlResponse) gqlError {
	t.Helper()
	if len(r.Errors) != 1 {
		t.Fatalf("%s: want exactly one GraphQL error, got %d: %+v (data %s)", what, len(r.Errors), r.Errors, r.Data)
	}
	return r.Errors[0]
}

// fieldOf is extensions.field of e.
func fieldOf(e gqlError) []string {
	raw, _ := e.Extensions["field"].([]any)
	out := make([]string, len(raw))
	for i, f := range raw {
		out[i], _ = f.(string)
	}
	return out
}

// TestOrdersQuery places orders for several customers in several statuses
// and checks filtering, ordering and cursor pagination of orders().
func TestOrdersQuery(t *testing.T) {
	g := startGateway(t, testConfig(t))

	// Each order: its customer and the mutations after placeOrder.
	plan := []struct {
		customer string
		steps    []string
		status   string
	}{
		{"cust-a", nil, "PENDING"},
		{"cust-a", []string{"confirm"}, "CONFIRMED"},
		{"cust-b", []string{"confirm", "ship"}, "SHIPPED"},
		{"cust-a", []string{"confirm", "ship", "deliver"}, "DELIVERED"},
		{"cust-b", []string{"cancel"}, "CANCELLED"},
		{"cust-c", []string{"confirm"}, "CONFIRMED"},
		{"cust-b", nil, "PENDING"},
		{"cust-c", []string{"confirm", "cancel"}, "CANCELLED"},
	}
	var all []placed
	for i, p := range plan {
		pl := g.mutate(t, "placeOrder", placeInput(p.customer, item("A", i+1, "2.50")))
		if len(pl.UserErrors) > 0 || pl.Order == nil || pl.ConsistencyToken == nil {
			t.Fatalf("placeOrder #%d: %+v", i, pl)
		}
		id, token := pl.Order.ID, *pl.ConsistencyToken
		for _, s := range p.steps {
			var q Payload
			switch s {
			case "confirm":
				q = g.mutate(t, "confirmOrder", map[string]any{"orderId": id})
			case "ship":
				q = g.mutate(t, "shipOrder", map[string]any{"orderId": id, "trackingNumber": "T-" + id})
			case "deliver":
				q = g.mutate(t, "deliverOrder", map[string]any{"orderId": id})
			case "cancel":
				q = g.mutate(t, "cancelOrder", map[string]any{"orderId": id, "reason": "test"})
			}
			if len(q.UserErrors) > 0 || q.ConsistencyToken == nil {
				t.Fatalf("%s order #%d (%s): %+v", s, i, id, q)
			}
			token = *q.ConsistencyToken
		}
		o := g.orderAt(t, id, token)
		if o == nil || o.Status != p.status || o.CustomerID != p.customer {
			t.Fatalf("order #%d (%s) in the views: want %s for %s, got %+v", i, id, p.status, p.customer, o)
		}
		all = append(all, placed{id: id, customer: p.customer, status: o.Status, createdAt: o.CreatedAt})
	}
	expectAll := newestFirst(all)
	pages, filters := 0, 0

	// totalCount is counted only when selected; a fragment selects it too.
	for _, q := range []string{
		`{ orders(first: 1) { ...Total } } fragment Total on OrderConnection { totalCount }`,
		`{ orders(first: 1) { ... on OrderConnection { totalCount } } }`,
	} {
		var out struct{ Orders connection }
		g.data(t, q, nil, &out)
		if out.Orders.TotalCount != len(expectAll) {
			t.Errorf("%s: totalCount %d, want %d", q, out.Orders.TotalCount, len(expectAll))
		}
	}

	// check runs one filtered query and compares it with the expected
	// orders, computed from what the test placed.
	check := func(name string, filter map[string]any, keep func(placed) bool) {
		t.Helper()
		filters++
		var want []placed
		for _, o := range expectAll {
			if keep(o) {
				want = append(want, o)
			}
		}
		c := g.orders(t, filter, intp(100), "")
		if got := c.ids(); !equalStrings(got, idsOf(want)) {
			t.Errorf("%s: want ids %v (newest first), got %v", name, idsOf(want), got)
		}
		if c.TotalCount != len(want) {
			t.Errorf("%s: want totalCount %d, got %d", name, len(want), c.TotalCount)
		}
		if c.PageInfo.HasNextPage || c.PageInfo.HasPreviousPage {
			t.Errorf("%s: want hasNextPage=false hasPreviousPage=false, got %+v", name, c.PageInfo)
		}
		for i, e := range c.Edges {
			if i < len(want) && (e.Node.CustomerID != want[i].customer || e.Node.Status != want[i].status || !e.Node.CreatedAt.Equal(want[i].createdAt)) {
				t.Errorf("%s: edge %d: want %v, got %+v", name, i, want[i], e.Node)
			}
		}
	}

	// No filter, the default page size (20 > 8 orders).
	c := g.orders(t, nil, nil, "")
	if got := c.ids(); !equalStrings(got, idsOf(expectAll)) || c.TotalCount != len(all) {
		t.Fatalf("orders with no arguments: want %v and totalCount %d, got %v and totalCount %d", idsOf(expectAll), len(all), got, c.TotalCount)
	}
	check("no filter", nil, func(placed) bool { return true })
	check("empty filter", map[string]any{}, func(placed) bool { return true })
	check("customerId cust-a", map[string]any{"customerId": "cust-a"}, func(o placed) bool { return o.customer == "cust-a" })
	check("customerId cust-b", map[string]any{"customerId": "cust-b"}, func(o placed) bool { return o.customer == "cust-b" })
	check("status [PENDING, CONFIRMED]", map[string]any{"status": []string{"PENDING", "CONFIRMED"}},
		func(o placed) bool { return o.status == "PENDING" || o.status == "CONFIRMED" })
	check("status [CANCELLED]", map[string]any{"status": []string{"CANCELLED"}}, func(o placed) bool { return o.status == "CANCELLED" })
	check("status []", map[string]any{"status": []string{}}, func(placed) bool { return true })
	check("customerId cust-b + status [PENDING, SHIPPED]", map[string]any{"customerId": "cust-b", "status": []string{"PENDING", "SHIPPED"}},
		func(o placed) bool { return o.customer == "cust-b" && (o.status == "PENDING" || o.status == "SHIPPED") })
	check("customerId cust-c + status [DELIVERED]", map[string]any{"customerId": "cust-c", "status": []string{"DELIVERED"}},
		func(placed) bool { return false })

	// Time filters: strictly after / before a middle order's createdAt.
	byTime := newestFirst(all)
	slices.Reverse(byTime) // oldest first
	lo, mid, hi := byTime[1].createdAt, byTime[len(byTime)/2].createdAt, byTime[len(byTime)-2].createdAt
	ts := func(t time.Time) string { return t.Format(time.RFC3339Nano) }
	check("createdAfter "+ts(mid), map[string]any{"createdAfter": ts(mid)}, func(o placed) bool { return o.createdAt.After(mid) })
	check("createdBefore "+ts(mid), map[string]any{"createdBefore": ts(mid)}, func(o placed) bool { return o.createdAt.Before(mid) })
	check("createdAfter "+ts(lo)+" createdBefore "+ts(hi), map[string]any{"createdAfter": ts(lo), "createdBefore": ts(hi)},
		func(o placed) bool { return o.createdAt.After(lo) && o.createdAt.Before(hi) })
	check("createdAfter "+ts(hi)+" createdBefore "+ts(lo)+" (empty range)", map[string]any{"createdAfter": ts(hi), "createdBefore": ts(lo)},
		func(placed) bool { return false })
	check("customerId cust-a + createdAfter "+ts(lo), map[string]any{"customerId": "cust-a", "createdAfter": ts(lo)},
		func(o placed) bool { return o.customer == "cust-a" && o.createdAt.After(lo) })
	// Bounds finer than the stored millisecond keep their strict meaning.
	half := 500 * time.Microsecond
	for _, b := range []time.Time{mid.Add(half), mid.Add(-half)} {
		check("createdBefore "+ts(b), map[string]any{"createdBefore": ts(b)}, func(o placed) bool { return o.createdAt.Before(b) })
		check("createdAfter "+ts(b), map[string]any{"createdAfter": ts(b)}, func(o placed) bool { return o.createdAt.After(b) })
	}
	check("unknown customer", map[string]any{"customerId": "nobody"}, func(placed) bool { return false })

	// Pagination: first=3 pages, walked with after=endCursor.
	walk := func(name string, filter map[string]any, size int) []string {
		t.Helper()
		var ids []string
		seen := map[string]bool{}
		after := ""
		for n := 0; ; n++ {
			if n > len(all)+1 {
				t.Fatalf("%s: still hasNextPage after %d pages", name, n)
			}
			pages++
			c := g.orders(t, filter, intp(size), after)
			if c.PageInfo.HasPreviousPage != (n > 0) {
				t.Errorf("%s page %d: want hasPreviousPage=%v, got %v", name, n, n > 0, c.PageInfo.HasPreviousPage)
			}
			if len(c.Edges) > size || (c.PageInfo.HasNextPage && len(c.Edges) != size) {
				t.Errorf("%s page %d: want %d edges (hasNextPage=%v), got %d", name, n, size, c.PageInfo.HasNextPage, len(c.Edges))
			}
			if len(c.Edges) == 0 {
				if c.PageInfo.StartCursor != nil || c.PageInfo.EndCursor != nil {
					t.Errorf("%s page %d: empty page: want null start/endCursor, got %v/%v", name, n, c.PageInfo.StartCursor, c.PageInfo.EndCursor)
				}
			} else {
				first, last := c.Edges[0].Cursor, c.Edges[len(c.Edges)-1].Cursor
				if c.PageInfo.StartCursor == nil || *c.PageInfo.StartCursor != first || c.PageInfo.EndCursor == nil || *c.PageInfo.EndCursor != last {
					t.Errorf("%s page %d: want startCursor %q endCursor %q (first/last edge), got %v/%v", name, n, first, last, c.PageInfo.StartCursor, c.PageInfo.EndCursor)
				}
			}
			for _, id := range c.ids() {
				if seen[id] {
					t.Errorf("%s page %d: order %s was already on an earlier page", name, n, id)
				}
				seen[id] = true
				ids = append(ids, id)
			}
			if !c.PageInfo.HasNextPage {
				return ids
			}
			if c.PageInfo.EndCursor == nil {
				t.Fatalf("%s page %d: hasNextPage but no endCursor", name, n)
			}
			after = *c.PageInfo.EndCursor
		}
	}
	if got := walk("all, first=3", nil, 3); !equalStrings(got, idsOf(expectAll)) {
		t.Errorf("pages of 3: want %v, got %v", idsOf(expectAll), got)
	}
	if got := walk("all, first=1", nil, 1); !equalStrings(got, idsOf(expectAll)) {
		t.Errorf("pages of 1: want %v, got %v", idsOf(expectAll), got)
	}
	if got := walk("all, first=4", nil, 4); !equalStrings(got, idsOf(expectAll)) { // 8 = 2 full pages
		t.Errorf("pages of 4: want %v, got %v", idsOf(expectAll), got)
	}
	var wantB []string
	for _, o := range expectAll {
		if o.customer == "cust-b" {
			wantB = append(wantB, o.id)
		}
	}
	if got := walk("cust-b, first=2", map[string]any{"customerId": "cust-b"}, 2); !equalStrings(got, wantB) {
		t.Errorf("pages of 2 of cust-b: want %v, got %v", wantB, got)
	}
	filters++

	// first: 0 gives no edges but the count.
	c = g.orders(t, nil, intp(0), "")
	if len(c.Edges) != 0 || c.TotalCount != len(all) || c.PageInfo.StartCursor != nil || c.PageInfo.EndCursor != nil {
		t.Errorf("first: 0: want no edges, null cursors and totalCount %d, got %d edges, totalCount %d, pageInfo %+v", len(all), len(c.Edges), c.TotalCount, c.PageInfo)
	}
	c = g.orders(t, map[string]any{"customerId": "cust-a"}, intp(0), "")
	if len(c.Edges) != 0 || c.TotalCount != 3 {
		t.Errorf("first: 0 for cust-a: want no edges and totalCount 3, got %d edges and totalCount %d", len(c.Edges), c.TotalCount)
	}

	// totalCount ignores the cursor.
	p1 := g.orders(t, nil, intp(3), "")
	p2 := g.orders(t, nil, intp(3), *p1.PageInfo.EndCursor)
	pages += 2
	if p1.TotalCount != len(all) || p2.TotalCount != len(all) {
		t.Errorf("totalCount: want %d on every page, got %d and %d", len(all), p1.TotalCount, p2.TotalCount)
	}

	// Cursor stability: a new (newest) order does not shift page 2.
	fresh := g.mutate(t, "placeOrder", placeInput("cust-a", item("N", 1, "1")))
	if len(fresh.UserErrors) > 0 || fresh.Order == nil {
		t.Fatalf("placeOrder (new): %+v", fresh)
	}
	if g.orderAt(t, fresh.Order.ID, *fresh.ConsistencyToken) == nil {
		t.Fatalf("new order %s not in the views", fresh.Order.ID)
	}
	p2again := g.orders(t, nil, intp(3), *p1.PageInfo.EndCursor)
	if !equalStrings(p2again.ids(), p2.ids()) || !equalJSON(t, p2again.PageInfo, p2.PageInfo) {
		t.Errorf("page 2 after a new order: want the same page %v %+v, got %v %+v", p2.ids(), p2.PageInfo, p2again.ids(), p2again.PageInfo)
	}
	if p2again.TotalCount != len(all)+1 {
		t.Errorf("page 2 after a new order: want totalCount %d, got %d", len(all)+1, p2again.TotalCount)
	}
	p1again := g.orders(t, nil, intp(3), "")
	wantP1 := append([]string{fresh.Order.ID}, p1.ids()[:2]...)
	if !equalStrings(p1again.ids(), wantP1) {
		t.Errorf("fresh page 1 after a new order: want %v (the new order first), got %v", wantP1, p1again.ids())
	}
	pages += 2

	// Errors and empty answers.
	r := g.do(t, ordersQuery, ordersVars(nil, intp(101), ""))
	if e := onlyError(t, "first: 101", r); e.Extensions["code"] != "INVALID_INPUT" || !equalStrings(fieldOf(e), []string{"first"}) {
		t.Errorf("first: 101: want INVALID_INPUT on [first], got %+v", e)
	}
	r = g.do(t, ordersQuery, ordersVars(nil, intp(-1), ""))
	if e := onlyError(t, "first: -1", r); e.Extensions["code"] != "INVALID_INPUT" || !equalStrings(fieldOf(e), []string{"first"}) {
		t.Errorf("first: -1: want INVALID_INPUT on [first], got %+v", e)
	}
	c = g.orders(t, nil, intp(100), "")
	if len(c.Edges) != len(all)+1 {
		t.Errorf("first: 100: want all %d orders, got %d", len(all)+1, len(c.Edges))
	}
	for _, bad := range []string{"garbage", "e30", "!!!"} { // e30 is base64 of {}
		r = g.do(t, ordersQuery, ordersVars(nil, intp(3), bad))
		if e := onlyError(t, "after: "+bad, r); e.Extensions["code"] != "INVALID_INPUT" || !equalStrings(fieldOf(e), []string{"after"}) {
			t.Errorf("after: %q: want INVALID_INPUT on [after], got %+v", bad, e)
		}
	}

	c = g.orders(t, map[string]any{"customerId": "nobody"}, nil, "")
	if len(c.Edges) != 0 || c.TotalCount != 0 || c.PageInfo.HasNextPage || c.PageInfo.StartCursor != nil {
		t.Errorf("unknown customer: want no edges and totalCount 0, got %d edges, totalCount %d, %+v", len(c.Edges), c.TotalCount, c.PageInfo)
	}

	r = g.do(t, `{ customer(id: "nobody") { customerId orderCount } }`, nil)
	if len(r.Errors) != 0 || string(r.Data) != `{"customer":null}` {
		t.Errorf(`customer(id: "nobody"): want data {"customer":null} and no errors, got %s %+v`, r.Data, r.Errors)
	}
	r = g.do(t, `{ order(id: "nope") { id } }`, nil)
	if len(r.Errors) != 0 || string(r.Data) != `{"order":null}` {
		t.Errorf(`order(id: "nope"): want data {"order":null} and no errors, got %s %+v`, r.Data, r.Errors)
	}

	t.Logf("checked %d orders, %d pages, %d filters", len(all)+1, pages, filters)
}

// TestConsistencyTokenErrors: a token the server did not issue is an
// INVALID_INPUT error; a token the views never reach answers anyway, after
// the timeout, and says so in extensions.consistency.
func TestConsistencyTokenErrors(t *testing.T) {
	cfg := testConfig(t)
	cfg.ConsistencyTimeout = 300 * time.Millisecond
	g := startGateway(t, cfg)
	p := g.mutate(t, "placeOrder", placeInput("cust-token", item("A", 1, "1")))
	if len(p.UserErrors) > 0 || p.Order == nil || p.ConsistencyToken == nil {
		t.Fatalf("placeOrder: %+v", p)
	}
	id := p.Order.ID
	if g.orderAt(t, id, *p.ConsistencyToken) == nil {
		t.Fatalf("order %s not in the views", id)
	}

	const q = `query($id: ID!, $t: String) { order(id: $id, consistencyToken: $t) { id version } }`
	for _, bad := range []string{"nope", "ct1.", "ct1.!!!", consistencyTokenFor(id, 0), "ct1." + strings.Repeat("A", 8)} {
		r := g.do(t, q, map[string]any{"id": id, "t": bad})
		e := onlyError(t, fmt.Sprintf("consistencyToken %q", bad), r)
		if e.Extensions["code"] != "INVALID_INPUT" || !equalStrings(fieldOf(e), []string{"consistencyToken"}) {
			t.Errorf("consistencyToken %q: want INVALID_INPUT on [consistencyToken], got %+v", bad, e)
		}
		if string(r.Data) != `{"order":null}` {
			t.Errorf("consistencyToken %q: want data {\"order\":null}, got %s", bad, r.Data)
		}
	}
	// The same for orders and customer.
	r := g.do(t, `{ orders(consistencyToken: "nope") { totalCount } }`, nil)
	if e := onlyError(t, "orders(consistencyToken: nope)", r); e.Extensions["code"] != "INVALID_INPUT" || !equalStrings(fieldOf(e), []string{"consistencyToken"}) {
		t.Errorf("orders(consistencyToken: nope): want INVALID_INPUT on [consistencyToken], got %+v", e)
	}
	r = g.do(t, `{ customer(id: "cust-token", consistencyToken: "nope") { orderCount } }`, nil)
	if e := onlyError(t, "customer(consistencyToken: nope)", r); e.Extensions["code"] != "INVALID_INPUT" || !equalStrings(fieldOf(e), []string{"consistencyToken"}) {
		t.Errorf("customer(consistencyToken: nope): want INVALID_INPUT on [consistencyToken], got %+v", e)
	}

	// A version the views will never reach.
	start := time.Now()
	r = g.do(t, q, map[string]any{"id": id, "t": consistencyTokenFor(id, 99)})
	took := time.Since(start)
	if len(r.Errors) != 0 {
		t.Fatalf("unreachable version: want no errors, got %+v", r.Errors)
	}
	var out struct{ Order *struct{ ID string } }
	if err := json.Unmarshal(r.Data, &out); err != nil || out.Order == nil || out.Order.ID != id {
		t.Errorf("unreachable version: want the order %s anyway, got %s (%v)", id, r.Data, err)
	}
	cons, _ := r.Extensions["consistency"].(map[string]any)
	if cons == nil || cons["reached"] != false {
		t.Errorf("unreachable version: want extensions.consistency.reached == false, got extensions %v", r.Extensions)
	} else if msg, _ := cons["message"].(string); !strings.Contains(msg, id) {
		t.Errorf("unreachable version: want extensions.consistency.message naming order %s, got %q", id, msg)
	}
	if took < cfg.ConsistencyTimeout {
		t.Errorf("unreachable version: answered after %v, before the consistency timeout %v", took, cfg.ConsistencyTimeout)
	}

	// The token of a reached version adds no extension.
	r = g.do(t, q, map[string]any{"id": id, "t": *p.ConsistencyToken})
	if len(r.Errors) != 0 || r.Extensions["consistency"] != nil {
		t.Errorf("reached version: want no errors and no extensions.consistency, got %+v %v", r.Errors, r.Extensions)
	}
	t.Logf("unreachable version answered after %v (timeout %v)", took.Round(time.Millisecond), cfg.ConsistencyTimeout)

	// customer(consistencyToken:) waits for the write to reach the views;
	// then its customer's summary includes it.
	other := g.mutate(t, "placeOrder", placeInput("cust-other", item("B", 1, "1")))
	if other.ConsistencyToken == nil {
		t.Fatalf("placeOrder: %+v", other)
	}
	const cq = `query($c: ID!, $t: String) { customer(id: $c, consistencyToken: $t) { customerId orderCount } }`
	for _, c := range []struct{ customer, token string }{
		{"cust-other", *other.ConsistencyToken}, // its own write: reached
		{"cust-token", *other.ConsistencyToken}, // another customer's write: nothing to wait for
	} {
		r := g.do(t, cq, map[string]any{"c": c.customer, "t": c.token})
		var out struct {
			Customer *struct {
				CustomerID string
				OrderCount int
			}
		}
		if len(r.Errors) != 0 || r.Extensions["consistency"] != nil || json.Unmarshal(r.Data, &out) != nil || out.Customer == nil || out.Customer.OrderCount != 1 {
			t.Errorf("customer %s with the token of an order of cust-other: want 1 order, no errors, no extensions.consistency; got %s %+v %v", c.customer, r.Data, r.Errors, r.Extensions)
		}
	}
	// A token that never gets there answers after the timeout and says so:
	// the answer has the summary, no error, and the wait's message (the
	// projector writes summaries before order views, so the order view's
	// wait is the only one).
	start = time.Now()
	r = g.do(t, cq, map[string]any{"c": "cust-token", "t": consistencyTokenFor(id, 99)})
	took = time.Since(start)
	t.Logf("customer with an unreachable token answered after %s", took)
	if took >= cfg.ConsistencyTimeout*3/2 { // one budget; two would take about twice the timeout
		t.Errorf("customer with an unreachable token answered after %s: each wait took the whole timeout %s", took, cfg.ConsistencyTimeout)
	}
	cons, _ = r.Extensions["consistency"].(map[string]any)
	if cons == nil || cons["reached"] != false || len(r.Errors) != 0 || !strings.Contains(string(r.Data), `"customerId":"cust-token"`) {
		t.Errorf("customer with an unreachable token: want the summary, no errors, extensions.consistency.reached == false; got %s %+v %v", r.Data, r.Errors, r.Extensions)
	} else if msg, _ := cons["message"].(string); !strings.Contains(msg, "the views did not include") {
		t.Errorf("customer with an unreachable token: want the wait's message, got %q", msg)
	}
}
