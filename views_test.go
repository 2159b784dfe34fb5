package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ordergateway/gateway/app"
	"github.com/ordergateway/gateway/view"
)

// The views' generations (docs/design.md, "Rebuilding the views"): a
// rebuild under load, a switch back, a drop. The views commands run as
// `go run . views ...` runs them against Kafka and MongoDB: in a Main of
// their own (ViewsOnly) beside the serving gateway.

// startViews starts a views command's Main on cfg's broker and store.
func startViews(t testing.TB, cfg app.Config) *app.Main {
	t.Helper()
	m := &app.Main{Config: cfg, ViewsOnly: true}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := m.Run(ctx); err != nil {
		m.Close()
		t.Fatalf("start views command: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// lineWriter passes each complete line to the test log.
type lineWriter struct {
	t   testing.TB
	mu  sync.Mutex
	buf bytes.Buffer
	all bytes.Buffer
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.all.Write(p)
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil {
			w.buf.WriteString(line)
			return len(p), nil
		}
		w.t.Log(strings.TrimSpace(line))
	}
}

func (w *lineWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.all.String()
}

// gqlTry posts a GraphQL request without testing.TB (for the load's
// goroutines): an error for a transport failure, a GraphQL error or a
// consistency wait that ran out.
func gqlTry(url, query string, vars map[string]any, out any) error {
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	resp, err := http.Post(url+"/graphql", "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var r gqlResponse
	if err := json.Unmarshal(raw, &r); err != nil {
		return fmt.Errorf("response %d: %s", resp.StatusCode, raw)
	}
	if len(r.Errors) > 0 {
		return fmt.Errorf("errors: %s", raw)
	}
	if r.Extensions["consistency"] != nil {
		return fmt.Errorf("consistency not reached: %s", raw)
	}
	return json.Unmarshal(r.Data, out)
}

// loadOrder is one order a load client wrote, as its last write left it.
type loadOrder struct {
	id, customer, status, token string
	version                     int
}

// viewsLoad runs clients that each place, read, change, confirm and read
// orders until stop is closed, counting errors.
type viewsLoad struct {
	url     string
	errs    atomic.Int64
	ops     atomic.Int64
	mu      sync.Mutex
	orders  []loadOrder
	firstEr []string
	phase   atomic.Value // "before the rebuild", "during the rebuild", "after the switch": in the errors
}

func (l *viewsLoad) fail(err error) {
	l.errs.Add(1)
	l.mu.Lock()
	if len(l.firstEr) < 5 {
		l.firstEr = append(l.firstEr, fmt.Sprintf("%s, %s: %v", l.phase.Load(), time.Now().Format("15:04:05.000"), err))
	}
	l.mu.Unlock()
}

const viewsPayload = `order { id status version } version consistencyToken userErrors { code message }`

func (l *viewsLoad) mutate(name string, input map[string]any) (loadOrder, error) {
	inputType := strings.ToUpper(name[:1]) + name[1:] + "Input"
	var out struct {
		M struct {
			Order            *struct{ ID, Status string } `json:"order"`
			Version          *int                         `json:"version"`
			ConsistencyToken *string                      `json:"consistencyToken"`
			UserErrors       []UserError                  `json:"userErrors"`
		} `json:"m"`
	}
	q := fmt.Sprintf("mutation($input: %s!) { m: %s(input: $input) { %s } }", inputType, name, viewsPayload)
	if err := gqlTry(l.url, q, map[string]any{"input": input}, &out); err != nil {
		return loadOrder{}, fmt.Errorf("%s: %w", name, err)
	}
	if len(out.M.UserErrors) > 0 || out.M.Order == nil || out.M.Version == nil || out.M.ConsistencyToken == nil {
		return loadOrder{}, fmt.Errorf("%s: %+v", name, out.M)
	}
	return loadOrder{id: out.M.Order.ID, status: out.M.Order.Status, version: *out.M.Version, token: *out.M.ConsistencyToken}, nil
}

// read reads the order with the token and checks that the answer includes
// the write.
func (l *viewsLoad) read(o loadOrder) error {
	var out struct {
		Order *struct {
			Status  string `json:"status"`
			Version int    `json:"version"`
		} `json:"order"`
	}
	err := gqlTry(l.url, `query($id: ID!, $t: String) { order(id: $id, consistencyToken: $t) { status version } }`,
		map[string]any{"id": o.id, "t": o.token}, &out)
	switch {
	case err != nil:
		return fmt.Errorf("order %s: %w", o.id, err)
	case out.Order == nil:
		return fmt.Errorf("order %s v%d: missing", o.id, o.version)
	case out.Order.Version < o.version || out.Order.Version == o.version && out.Order.Status != o.status:
		return fmt.Errorf("order %s: read %s v%d after writing %s v%d", o.id, out.Order.Status, out.Order.Version, o.status, o.version)
	}
	return nil
}

func (l *viewsLoad) client(i int, stop <-chan struct{}) {
	customer := fmt.Sprintf("cust-views-%d", i)
	addr := map[string]any{"name": "Ada", "line1": "1 Main St", "city": "Berlin", "postalCode": "10115", "country": "DE"}
	for n := 0; ; n++ {
		select {
		case <-stop:
			return
		default:
		}
		in := placeInput(customer, item("A", 1, "2.50"))
		in["shippingAddress"] = addr
		o, err := l.mutate("placeOrder", in)
		if err != nil {
			l.fail(err)
			continue
		}
		o.customer = customer
		steps := []func() (loadOrder, error){
			func() (loadOrder, error) { return o, l.read(o) },
			func() (loadOrder, error) {
				return l.mutate("addOrderItem", map[string]any{"orderId": o.id, "item": item("B"+strconv.Itoa(n), 2, "1")})
			},
			func() (loadOrder, error) { return l.mutate("confirmOrder", map[string]any{"orderId": o.id}) },
		}
		last := o
		for _, step := range steps {
			next, err := step()
			if err != nil {
				l.fail(err)
				break
			}
			next.customer = customer
			last = next
		}
		if err := l.read(last); err != nil {
			l.fail(err)
		}
		l.ops.Add(1)
		l.mu.Lock()
		l.orders = append(l.orders, last)
		l.mu.Unlock()
	}
}

// viewsSubscriber follows ordersUpdated (every order) over a websocket and
// keeps each order's versions as they arrive.
type viewsSubscriber struct {
	mu       sync.Mutex
	versions map[string][]int
	err      error
	done     chan struct{}
}

func subscribeAll(t *testing.T, g *gateway, stop <-chan struct{}) *viewsSubscriber {
	c := dialWS(t, g, wsDial{})
	c.subscribe(t, "1", `subscription { ordersUpdated { id customerId status version } }`, nil)
	waitForSubs(t, g, 1)
	s := &viewsSubscriber{versions: map[string][]int{}, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			o, err := c.tryNextOrder("1", "ordersUpdated", 500*time.Millisecond)
			if err != nil {
				select {
				case <-stop:
					return // the load is over and nothing came for 500 ms
				default:
				}
				if strings.Contains(err.Error(), "within") {
					continue
				}
				s.mu.Lock()
				s.err = err
				s.mu.Unlock()
				return
			}
			s.mu.Lock()
			s.versions[o.ID] = append(s.versions[o.ID], o.Version)
			s.mu.Unlock()
		}
	}()
	return s
}

// TestViewsRebuildUnderLoad: 20 clients place, change, confirm and read
// orders (each read with the write's consistency token) while a views
// rebuild runs to completion and switches: no query fails or misses its
// write, every order is in the new generation at its last version after
// the switch, and a subscriber of every order's changes gets each order's
// versions in order up to its last, across the switch.
func TestViewsRebuildUnderLoad(t *testing.T) {
	const clients = 20
	cfg := testConfig(t)
	g := startGateway(t, cfg)
	load := &viewsLoad{url: g.url}
	load.phase.Store("before the rebuild")
	stop := make(chan struct{})
	subStop := make(chan struct{})
	sub := subscribeAll(t, g, subStop)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			load.client(i, stop)
		}()
	}
	stopLoad := func() {
		select {
		case <-stop:
		default:
			close(stop)
			wg.Wait()
		}
	}
	defer stopLoad()
	// History for the rebuild to replay.
	waitFor(t, 60*time.Second, "100 orders written before the rebuild", func() bool { return load.ops.Load() >= 100 })

	views := startViews(t, cfg)
	out := &lineWriter{t: t}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	started := time.Now()
	load.phase.Store("during the rebuild")
	t.Logf("rebuild started at %s", started.Format("15:04:05.000"))
	gen, err := views.RebuildViews(ctx, out, app.DefaultMaxGap)
	load.phase.Store("after the switch")
	t.Logf("rebuild returned at %s", time.Now().Format("15:04:05.000"))
	if err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	took := time.Since(started)
	if gen != 2 {
		t.Fatalf("rebuild made generation %d, want 2", gen)
	}
	waitFor(t, 5*time.Second, "the gateway to follow the switch", func() bool { return g.ViewsGeneration() == 2 })
	atSwitch := load.ops.Load()
	// The load goes on over the new generation.
	waitFor(t, 60*time.Second, "50 more orders after the switch", func() bool { return load.ops.Load() >= atSwitch+50 })
	stopLoad()
	close(subStop)
	<-sub.done

	if n := load.errs.Load(); n != 0 {
		t.Fatalf("%d errors in %d orders' writes and reads; first: %v", n, load.ops.Load(), load.firstEr)
	}
	if m := regexp.MustCompile(`switched to generation 2 \(from 1\) after \S+: (\d+) events applied`).FindStringSubmatch(out.String()); m == nil {
		t.Fatalf("no switch line in the rebuild's output:\n%s", out)
	} else {
		applied, _ := strconv.Atoi(m[1])
		t.Logf("rebuild: %d events applied in %s: %.0f events/s (kafka: %s), %d orders before the switch, %d after",
			applied, took.Round(time.Millisecond), float64(applied)/took.Seconds(), testKafka, atSwitch, load.ops.Load()-atSwitch)
	}
	if !strings.Contains(out.String(), "events applied,") || !strings.Contains(out.String(), "ETA") {
		t.Errorf("no progress line in the rebuild's output:\n%s", out)
	}
	// Every order, read from the new generation without a token, is at
	// its last write.
	byCustomer := map[string]int{}
	for _, o := range load.orders {
		var got struct {
			Order *struct {
				Status  string `json:"status"`
				Version int    `json:"version"`
			} `json:"order"`
		}
		g.data(t, `query($id: ID!) { order(id: $id) { status version } }`, map[string]any{"id": o.id}, &got)
		if got.Order == nil || got.Order.Version != o.version || got.Order.Status != o.status {
			t.Fatalf("order %s after the switch: %+v, want %s v%d", o.id, got.Order, o.status, o.version)
		}
		byCustomer[o.customer]++
	}
	// And the summaries count them.
	for customer, n := range byCustomer {
		var got struct {
			Customer *struct{ OrderCount int } `json:"customer"`
		}
		g.data(t, `query($id: ID!) { customer(id: $id) { orderCount } }`, map[string]any{"id": customer}, &got)
		if got.Customer == nil || got.Customer.OrderCount < n {
			t.Fatalf("customer %s after the switch: %+v, want at least %d orders", customer, got.Customer, n)
		}
	}
	// The subscriber got every order of its customer up to its last
	// version, versions only going up.
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if sub.err != nil {
		t.Fatalf("subscriber: %v", sub.err)
	}
	seen := 0
	for _, o := range load.orders {
		vs := sub.versions[o.id]
		checkIncreasing(t, "subscriber of "+o.id, vs)
		if len(vs) == 0 || vs[len(vs)-1] != o.version {
			t.Fatalf("subscriber: order %s: versions %v, want up to %d", o.id, vs, o.version)
		}
		seen++
	}
	t.Logf("subscriber: %d orders followed to their last version", seen)
	// /readyz and the metrics name the generation.
	checkGenerationShown(t, g, 2)
}

// checkGenerationShown checks /readyz's body and the metrics for the
// gateway's generation.
func checkGenerationShown(t *testing.T, g *gateway, gen int) {
	t.Helper()
	resp, err := http.Get(g.url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	var ready map[string]string
	json.NewDecoder(resp.Body).Decode(&ready)
	resp.Body.Close()
	if ready["views"] != fmt.Sprintf("generation %d", gen) {
		t.Errorf("/readyz: %v, want views: generation %d", ready, gen)
	}
	resp, err = http.Get("http://" + g.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), fmt.Sprintf("\norder_gateway_views_generation %d\n", gen)) {
		t.Errorf("metrics: no order_gateway_views_generation %d", gen)
	}
}

// TestViewsSwitchBackAndDrop: after a rebuild, orders written on the new
// generation are in the old one once switched back to it (it catches up
// from its committed offsets); the active generation cannot be dropped,
// the other can, and a dropped generation's number is not reused.
func TestViewsSwitchBackAndDrop(t *testing.T) {
	cfg := testConfig(t)
	g := startGateway(t, cfg)
	place := func(customer string) Order {
		return g.mustMutate(t, "placeOrder", placeInput(customer, item("A", 1, "3")))
	}
	before := place("cust-back")
	views := startViews(t, cfg)
	out := &lineWriter{t: t}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if gen, err := views.RebuildViews(ctx, out, 0); err != nil || gen != 2 {
		t.Fatalf("rebuild: generation %d, %v", gen, err)
	}
	waitFor(t, 5*time.Second, "the gateway on generation 2", func() bool { return g.ViewsGeneration() == 2 })
	if o := g.orderAt(t, before.ID, ""); o == nil || o.Version != 1 {
		t.Fatalf("order placed before the rebuild, in generation 2: %+v", o)
	}
	// Written while generation 2 is active: generation 1 does not have it.
	during := g.mutate(t, "placeOrder", placeInput("cust-back", item("B", 2, "1")))
	confirmed := g.mutate(t, "confirmOrder", map[string]any{"orderId": before.ID})
	if o := g.orderAt(t, during.Order.ID, *during.ConsistencyToken); o == nil {
		t.Fatal("order written on generation 2 missing")
	}
	if err := views.SwitchViews(ctx, out, 1, 0); err != nil {
		t.Fatalf("switch back: %v", err)
	}
	waitFor(t, 5*time.Second, "the gateway back on generation 1", func() bool { return g.ViewsGeneration() == 1 })
	// A token issued on generation 2 is honoured by generation 1.
	if o := g.orderAt(t, during.Order.ID, *during.ConsistencyToken); o == nil || o.Version != 1 {
		t.Fatalf("order written on generation 2, read from generation 1: %+v", o)
	}
	if o := g.orderAt(t, before.ID, *confirmed.ConsistencyToken); o == nil || o.Status != "CONFIRMED" {
		t.Fatalf("order confirmed on generation 2, read from generation 1: %+v", o)
	}
	// The gateway projects generation 1 again.
	after := g.mutate(t, "placeOrder", placeInput("cust-back", item("C", 1, "1")))
	if o := g.orderAt(t, after.Order.ID, *after.ConsistencyToken); o == nil {
		t.Fatal("order written after the switch back missing")
	}
	checkGenerationShown(t, g, 1)

	if err := views.DropViews(ctx, 1); err == nil || !strings.Contains(err.Error(), "active") {
		t.Fatalf("drop of the active generation: %v, want a refusal", err)
	}
	if err := views.DropViews(ctx, 2); err != nil {
		t.Fatalf("drop generation 2: %v", err)
	}
	if err := views.DropViews(ctx, 7); err == nil {
		t.Fatal("drop of an unknown generation: no error")
	}
	if err := views.SwitchViews(ctx, out, 2, 0); err == nil || !strings.Contains(err.Error(), "dropped") {
		t.Fatalf("switch to a dropped generation: %v, want a refusal", err)
	}
	gens, err := views.ViewsStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	states := map[int]string{}
	for _, s := range gens {
		states[s.Generation] = s.State
		if s.Active != (s.Generation == 1) {
			t.Errorf("generation %d active: %v", s.Generation, s.Active)
		}
	}
	if states[1] != view.StateBuilt || states[2] != view.StateDropped {
		t.Fatalf("generations: %+v", gens)
	}
	// Its collections are gone.
	v2 := g.Store().At(2)
	if d, err := v2.Order(ctx, before.ID); err != nil || d != nil {
		t.Fatalf("generation 2 after its drop: %+v, %v", d, err)
	}
	// A new rebuild takes the next number; the old views keep serving
	// meanwhile, and the new generation has every order.
	gen, err := views.RebuildViews(ctx, out, 0)
	if err != nil || gen != 3 {
		t.Fatalf("second rebuild: generation %d, %v", gen, err)
	}
	waitFor(t, 5*time.Second, "the gateway on generation 3", func() bool { return g.ViewsGeneration() == 3 })
	for _, id := range []string{before.ID, during.Order.ID, after.Order.ID} {
		if o := g.orderAt(t, id, ""); o == nil {
			t.Fatalf("order %s missing from generation 3", id)
		}
	}
}

// runViewsCLI runs `order-gateway views args...` with env as its
// environment and returns its exit code, output and errors.
func runViewsCLI(env map[string]string, args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := app.ViewsCommand(args, func(k string) string { return env[k] }, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// TestViewsThroughTheAdminListener: with the embedded stack, whose data
// folder the running gateway holds, `views` commands run in the gateway
// through ADMIN_ADDR, with the token the gateway wrote in the data folder;
// the rebuilt generation's projector is handed over and goes on projecting.
// Without ADMIN_ADDR, or with a wrong token, the command says so in one line.
func TestViewsThroughTheAdminListener(t *testing.T) {
	cfg := testConfig(t)
	cfg.KafkaBrokers, cfg.MongoURI = nil, "" // the embedded stack, in cfg.DataDir
	cfg.AdminAddr = "127.0.0.1:0"
	g := startGateway(t, cfg)
	before := g.mutate(t, "placeOrder", placeInput("cust-admin", item("A", 1, "3")))

	env := map[string]string{"DATA_DIR": cfg.DataDir, "LOG_LEVEL": "warn"}
	if code, _, errs := runViewsCLI(env, "status"); code != 1 || !strings.Contains(errs, "ADMIN_ADDR") {
		t.Fatalf("without ADMIN_ADDR: exit %d, %q", code, errs)
	}
	env["ADMIN_ADDR"] = g.AdminAddr()
	env["ADMIN_TOKEN"] = "not-the-gateways-token"
	if code, _, errs := runViewsCLI(env, "status"); code != 1 || !strings.Contains(errs, "admin token") {
		t.Fatalf("with a wrong token: exit %d, %q", code, errs)
	}
	delete(env, "ADMIN_TOKEN") // the one in DATA_DIR/admin-token

	code, out, errs := runViewsCLI(env, "rebuild", "--max-gap", "0")
	t.Logf("views rebuild through the admin listener:\n%s", out)
	if code != 0 || !strings.Contains(out, "switched to generation 2 (from 1)") {
		t.Fatalf("rebuild: exit %d, out %q, errors %q", code, out, errs)
	}
	waitFor(t, 5*time.Second, "the gateway on generation 2", func() bool { return g.ViewsGeneration() == 2 })
	if o := g.orderAt(t, before.Order.ID, *before.ConsistencyToken); o == nil {
		t.Fatal("order placed before the rebuild missing from generation 2")
	}
	after := g.mutate(t, "confirmOrder", map[string]any{"orderId": before.Order.ID})
	if o := g.orderAt(t, before.Order.ID, *after.ConsistencyToken); o == nil || o.Status != "CONFIRMED" {
		t.Fatalf("order confirmed after the switch: %+v", o)
	}
	if code, out, _ := runViewsCLI(env, "status"); code != 0 || !regexp.MustCompile(`(?m)^2\s+built\s+yes\s`).MatchString(out) {
		t.Fatalf("status: exit %d:\n%s", code, out)
	}
	if code, _, errs := runViewsCLI(env, "drop", "--generation", "2"); code != 1 || !strings.Contains(errs, "active") {
		t.Fatalf("drop of the active generation: exit %d, %q", code, errs)
	}
	if code, out, errs := runViewsCLI(env, "drop", "--generation", "1"); code != 0 || !strings.Contains(out, "generation 1 dropped") {
		t.Fatalf("drop generation 1: exit %d, %q %q", code, out, errs)
	}
	checkGenerationShown(t, g, 2)
	if code, _, errs := runViewsCLI(env, "switch", "--generation", "x"); code != 2 || !strings.Contains(errs, "generation") {
		t.Fatalf("a bad --generation: exit %d, %q", code, errs)
	}
}

// TestViewsSwitchFromAGenerationBehind: the serving generation's projector
// stops applying (paused) while orders are placed and confirmed; a rebuild
// (which does not wait for a stalled generation) applies them, publishes
// their changes because the serving generation never committed them, and
// switches: a subscriber of every order gets each one's last version, and
// the orders are read from the new generation.
func TestViewsSwitchFromAGenerationBehind(t *testing.T) {
	cfg := testConfig(t)
	g := startGateway(t, cfg)
	stop := make(chan struct{})
	sub := subscribeAll(t, g, stop)
	first := g.mustMutate(t, "placeOrder", placeInput("cust-behind", item("A", 1, "1")))
	waitFor(t, eventWait, "the first order's change", func() bool {
		sub.mu.Lock()
		defer sub.mu.Unlock()
		return len(sub.versions[first.ID]) > 0
	})
	g.Projector().Pause(true) // generation 1 applies nothing more
	var last []Payload
	for i := range 4 {
		p := g.mutate(t, "placeOrder", placeInput("cust-behind", item(fmt.Sprintf("B%d", i), 1, "1")))
		last = append(last, g.mutate(t, "confirmOrder", map[string]any{"orderId": p.Order.ID}))
	}
	views := startViews(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if gen, err := views.RebuildViews(ctx, &lineWriter{t: t}, 0); err != nil || gen != 2 {
		t.Fatalf("rebuild: generation %d, %v", gen, err)
	}
	waitFor(t, 5*time.Second, "the gateway on generation 2", func() bool { return g.ViewsGeneration() == 2 })
	for _, p := range last {
		if o := g.orderAt(t, p.Order.ID, *p.ConsistencyToken); o == nil || o.Status != "CONFIRMED" {
			t.Fatalf("order %s after the switch: %+v", p.Order.ID, o)
		}
		waitFor(t, eventWait, "the subscriber to get "+p.Order.ID+"'s confirmation", func() bool {
			sub.mu.Lock()
			defer sub.mu.Unlock()
			vs := sub.versions[p.Order.ID]
			return len(vs) > 0 && vs[len(vs)-1] == *p.Version
		})
	}
	close(stop)
	<-sub.done
	if sub.err != nil {
		t.Fatalf("subscriber: %v", sub.err)
	}
}

// TestViewsWaitsFollowTheNewGeneration: a rebuild in the gateway (as the
// admin listener runs it) switches while far behind (--max-gap above the
// history, its projector held before its first batch): reads with their
// consistency tokens, which now look at the new generation, are woken by
// its changes once its projector (handed over to the gateway) goes on.
func TestViewsWaitsFollowTheNewGeneration(t *testing.T) {
	cfg := testConfig(t)
	cfg.ConsistencyTimeout = 5 * time.Second
	g := startGateway(t, cfg)
	var written []Payload
	for i := range 10 {
		p := g.mutate(t, "placeOrder", placeInput("cust-follow", item(fmt.Sprintf("F%d", i), 1, "1")))
		written = append(written, g.mutate(t, "confirmOrder", map[string]any{"orderId": p.Order.ID}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	type result struct {
		gen int
		err error
	}
	rebuilt := make(chan result, 1)
	go func() {
		gen, err := g.RebuildViews(ctx, &lineWriter{t: t}, 1_000_000)
		rebuilt <- result{gen, err}
	}()
	// Held before its first batch: it switches with nothing applied.
	waitFor(t, 10*time.Second, "the rebuild's projector", func() bool {
		if p := g.CatchingUp(); p != nil {
			p.Pause(true)
			return true
		}
		return false
	})
	if r := <-rebuilt; r.err != nil || r.gen != 2 {
		t.Fatalf("rebuild: generation %d, %v", r.gen, r.err)
	}
	waitFor(t, 5*time.Second, "the gateway on generation 2", func() bool { return g.ViewsGeneration() == 2 })
	if d, _ := g.Store().Order(ctx, written[0].Order.ID); d != nil {
		t.Fatalf("generation 2 has order %s before its projector went on", d.ID)
	}
	errs := make(chan error, len(written))
	for _, p := range written {
		go func() {
			var out struct{ Order *struct{ Version int } }
			err := gqlTry(g.url, `query($id: ID!, $t: String) { order(id: $id, consistencyToken: $t) { version } }`,
				map[string]any{"id": p.Order.ID, "t": *p.ConsistencyToken}, &out)
			if err == nil && (out.Order == nil || out.Order.Version != *p.Version) {
				err = fmt.Errorf("order %s: %+v", p.Order.ID, out.Order)
			}
			errs <- err
		}()
	}
	time.Sleep(time.Second) // the reads wait on generation 2
	g.Projector().Pause(false)
	for range written {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestViewsRebuildMetricsByGeneration: a views rebuild's projector in the
// gateway counts in its own generation's projection series, beside the
// serving one's: neither's events, batches or partitions show in the
// other's. A rebuild given up takes its series away; after a switch the
// old generation's series go, and the handed-over projector goes on
// counting in its own.
func TestViewsRebuildMetricsByGeneration(t *testing.T) {
	g := startGateway(t, testConfig(t))
	waitReady(t, g)
	for i := range 3 {
		g.mustMutate(t, "placeOrder", placeInput("cust-gen-metrics", item(fmt.Sprintf("G%d", i), 1, "1")))
	}
	const (
		applied = "order_gateway_projection_events_applied_total"
		batched = "order_gateway_projection_batch_size_events_sum"
		parts   = "order_gateway_projection_partitions_assigned"
	)
	of := func(gen int, name string) string { return series(name, "generation", strconv.Itoa(gen)) }
	waitMetrics(t, g, "generation 1 to apply the 3 events", func(m map[string]float64) bool {
		return m[of(1, applied)] == 3 && m[of(1, parts)] == 3
	})

	// Generation 2's rebuild never counts as caught up (its gap is never
	// at most -1): it projects beside generation 1 until given up.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rebuildCtx, giveUp := context.WithCancel(ctx)
	defer giveUp()
	rebuilt := make(chan error, 1)
	go func() {
		_, err := g.RebuildViews(rebuildCtx, &lineWriter{t: t}, -1)
		rebuilt <- err
	}()
	m := waitMetrics(t, g, "generation 2 to apply the history", func(m map[string]float64) bool {
		return m[of(2, applied)] == 3 && m[of(2, parts)] == 3
	})
	for k, want := range map[string]float64{of(1, applied): 3, of(1, batched): 3, of(1, parts): 3, of(2, batched): 3} {
		if m[k] != want {
			t.Errorf("with both generations projected: %s = %v, want %v", k, m[k], want)
		}
	}
	giveUp()
	if err := <-rebuilt; !errors.Is(err, context.Canceled) {
		t.Fatalf("rebuild given up: %v", err)
	}
	m = waitMetrics(t, g, "generation 2's series to go", func(m map[string]float64) bool { return !hasGeneration(m, 2) })
	if m[of(1, parts)] != 3 || m[of(1, applied)] != 3 {
		t.Errorf("generation 1 after the rebuild was given up: %v partitions, %v events", m[of(1, parts)], m[of(1, applied)])
	}

	// Generation 3's rebuild switches: its projector is handed over and
	// generation 1's stops.
	if gen, err := g.RebuildViews(ctx, &lineWriter{t: t}, 0); err != nil || gen != 3 {
		t.Fatalf("rebuild: generation %d, %v", gen, err)
	}
	waitFor(t, 5*time.Second, "the gateway on generation 3", func() bool { return g.ViewsGeneration() == 3 })
	g.mustMutate(t, "placeOrder", placeInput("cust-gen-metrics", item("G3", 1, "1")))
	waitMetrics(t, g, "generation 3 to apply the new event and generation 1's series to go", func(m map[string]float64) bool {
		return m[of(3, applied)] == 4 && m[of(3, parts)] == 3 && !hasGeneration(m, 1)
	})
}

// hasGeneration says whether a scrape has a series of views generation gen.
func hasGeneration(m map[string]float64, gen int) bool {
	label := fmt.Sprintf(`generation="%d"`, gen)
	for k := range m {
		if strings.Contains(k, label) {
			return true
		}
	}
	return false
}

// waitMetrics scrapes g's /metrics every 50 ms until cond holds of a
// scrape, and returns it; after 30 s it fails with the projection's series.
func waitMetrics(t *testing.T, g *gateway, what string, cond func(map[string]float64) bool) map[string]float64 {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		m := scrape(t, g)
		if cond(m) {
			return m
		}
		if time.Now().After(deadline) {
			var proj []string
			for k, v := range m {
				if strings.HasPrefix(k, "order_gateway_projection_") && !strings.Contains(k, "_bucket") {
					proj = append(proj, fmt.Sprintf("%s %v", k, v))
				}
			}
			slices.Sort(proj)
			t.Fatalf("timed out waiting for %s; the projection's series:\n%s", what, strings.Join(proj, "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
