package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// scrape reads the gateway's /metrics: every sample by its series, written
// as the Prometheus text format writes it (labels in name order).
func scrape(t testing.TB, g *gateway) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + g.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /metrics: %d %s", resp.StatusCode, b)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// series names a sample as scrape keys it; labels are name, value pairs.
func series(name string, labels ...string) string {
	if len(labels) == 0 {
		return name
	}
	type pair struct{ k, v string }
	var ps []pair
	for i := 0; i < len(labels); i += 2 {
		ps = append(ps, pair{labels[i], labels[i+1]})
	}
	slices.SortFunc(ps, func(a, b pair) int { return strings.Compare(a.k, b.k) })
	var b strings.Builder
	b.WriteString(name + "{")
	for i, p := range ps {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(p.k + `="` + p.v + `"`)
	}
	b.WriteString("}")
	return b.String()
}

// sumOf adds the samples of metric name (any labels).
func sumOf(m map[string]float64, name string) float64 {
	var s float64
	for k, v := range m {
		if k == name || strings.HasPrefix(k, name+"{") {
			s += v
		}
	}
	return s
}

// TestMetricsCountAKnownWorkload scrapes /metrics before and after a known
// workload over HTTP and SSE and checks that each counter moved by exactly
// what the workload did.
func TestMetricsCountAKnownWorkload(t *testing.T) {
	g := startGateway(t, testConfig(t))
	waitReady(t, g)
	before := scrape(t, g)
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "order_gateway_handler_partitions_assigned"} {
		if _, ok := before[name]; !ok {
			t.Errorf("/metrics has no %s", name)
		}
	}
	if v := before["order_gateway_handler_partitions_assigned"]; v != 3 {
		t.Errorf("handler partitions assigned = %v, want 3", v)
	}

	// An SSE subscription to an order, then: three orders placed, the
	// first confirmed, a missing one confirmed (NOT_FOUND), a query, a
	// document that does not parse, a request without a token.
	first := g.mustMutate(t, "placeOrder", placeInput("c-m1", item("A", 1, "1.00")))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream := sseAs(t, ctx, g, staffToken, `subscription($id: ID!) { orderUpdated(id: $id) { id status version } }`, map[string]any{"id": first.ID})
	events := readSSE(stream.Body)
	nextVersion := func(want int) {
		t.Helper()
		for {
			select {
			case ev, ok := <-events:
				if !ok {
					t.Fatal("the event stream ended")
				}
				if ev.event == "next" && strings.Contains(ev.data, `"version":`+strconv.Itoa(want)) {
					return
				}
			case <-time.After(15 * time.Second):
				t.Fatalf("no update to version %d", want)
			}
		}
	}
	nextVersion(1) // the current state: once the view has it
	// And a websocket subscription to the second customer's orders.
	ws := dialWS(t, g, wsDial{})
	ws.subscribe(t, "1", `subscription { ordersUpdated(customerId: "c-m2") { id version } }`, nil)
	waitSubscribers(t, g, 2)
	open := scrape(t, g)
	for k, want := range map[string]float64{
		series("order_gateway_graphql_subscriptions", "field", "orderUpdated"):  1,
		series("order_gateway_graphql_subscriptions", "field", "ordersUpdated"): 1,
		"order_gateway_graphql_sse_streams":                                     1,
		"order_gateway_graphql_websocket_connections":                           1,
	} {
		if open[k] != want {
			t.Errorf("%s = %v with the stream open, want %v", k, open[k], want)
		}
	}
	g.mustMutate(t, "placeOrder", placeInput("c-m2", item("B", 2, "2.00")))
	ws.nextOrder(t, "1", "ordersUpdated")
	ws.close()
	g.mustMutate(t, "placeOrder", placeInput("c-m3", item("C", 3, "3.00")))
	g.mustMutate(t, "confirmOrder", map[string]any{"orderId": first.ID})
	nextVersion(2)
	if p := g.mutate(t, "confirmOrder", map[string]any{"orderId": "no-such-order"}); len(p.UserErrors) != 1 || p.UserErrors[0].Code != "NOT_FOUND" {
		t.Fatalf("confirmOrder of a missing order: %+v", p.UserErrors)
	}
	g.orderAt(t, first.ID, "")
	if r := g.do(t, `query { order(id: `, nil); len(r.Errors) == 0 {
		t.Fatal("a document that does not parse was answered without errors")
	}
	req, _ := http.NewRequest(http.MethodPost, g.url+"/graphql", bytes.NewReader([]byte(`{"query":"{ __typename }"}`)))
	req.Header.Set("Content-Type", "application/json")
	withoutToken(req.Header)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a request without a token: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	cancel()

	// The projection of the last events and the stream's end are
	// asynchronous: wait for them before the last scrape.
	var after map[string]float64
	applied := series("order_gateway_projection_events_applied_total", "generation", "1") // the views' first generation
	deadline := time.Now().Add(15 * time.Second)
	for {
		after = scrape(t, g)
		if after[applied]-before[applied] >= 4 &&
			after["order_gateway_graphql_sse_streams"] == 0 && after["order_gateway_graphql_websocket_connections"] == 0 && sumOf(after, "order_gateway_consumer_lag_records") == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	moved := func(k string) float64 { return after[k] - before[k] }
	for k, want := range map[string]float64{
		series("order_gateway_graphql_requests_total", "operation_type", "mutation", "outcome", "ok", "code", ""):                            4,
		series("order_gateway_graphql_requests_total", "operation_type", "mutation", "outcome", "user_error", "code", "NOT_FOUND"):           1,
		series("order_gateway_graphql_requests_total", "operation_type", "query", "outcome", "ok", "code", ""):                               1,
		series("order_gateway_graphql_requests_total", "operation_type", "subscription", "outcome", "ok", "code", ""):                        2,
		series("order_gateway_graphql_requests_total", "operation_type", "unknown", "outcome", "user_error", "code", "GRAPHQL_PARSE_FAILED"): 1,
		series("order_gateway_graphql_requests_total", "operation_type", "unknown", "outcome", "user_error", "code", "UNAUTHENTICATED"):      1,
		series("order_gateway_graphql_request_duration_seconds_count", "operation_type", "mutation"):                                         5,
		series("order_gateway_graphql_request_duration_seconds_count", "operation_type", "query"):                                            1,
		series("order_gateway_graphql_field_duration_seconds_count", "operation_type", "mutation", "field", "placeOrder"):                    3,
		series("order_gateway_graphql_field_duration_seconds_count", "operation_type", "mutation", "field", "confirmOrder"):                  2,
		series("order_gateway_graphql_field_duration_seconds_count", "operation_type", "query", "field", "order"):                            1,
		series("order_gateway_graphql_subscription_updates_sent_total", "transport", "sse"):                                                  2,
		series("order_gateway_graphql_subscription_updates_sent_total", "transport", "websocket"):                                            1,
		"order_gateway_graphql_requests_in_flight":                                                  0,
		"order_gateway_graphql_sse_streams":                                                         0,
		"order_gateway_graphql_websocket_connections":                                               0,
		series("order_gateway_graphql_subscriptions", "field", "orderUpdated"):                      0,
		series("order_gateway_commands_sent_total", "command", "PlaceOrder"):                        3,
		series("order_gateway_commands_sent_total", "command", "ConfirmOrder"):                      2,
		series("order_gateway_commands_answered_total", "outcome", "ok", "code", ""):                4,
		series("order_gateway_commands_answered_total", "outcome", "rejected", "code", "NOT_FOUND"): 1,
		series("order_gateway_commands_stage_duration_seconds_count", "stage", "total"):             5,
		"order_gateway_commands_timed_out_total":                                                    0,
		"order_gateway_handler_batch_size_commands_sum":                                             5,
		"order_gateway_handler_queued_duration_seconds_count":                                       5,
		applied: 4,
		series("order_gateway_projection_batch_size_events_sum", "generation", "1"):                     4,
		series("order_gateway_dead_letters_total", "source", "commands"):                                0,
		series("order_gateway_dead_letters_total", "source", "events"):                                  0,
		series("order_gateway_projection_conflicts_retried_total", "generation", "1", "view", "orders"): 0,
	} {
		if got := moved(k); got != want {
			t.Errorf("%s moved by %v, want %v", k, got, want)
		}
	}
	// Transactions: at least one per batch, none aborted.
	if moved(series("order_gateway_handler_transactions_total", "result", "committed")) < 1 ||
		moved(series("order_gateway_handler_transactions_total", "result", "aborted")) != 0 {
		t.Errorf("transactions: committed +%v, aborted +%v", moved(series("order_gateway_handler_transactions_total", "result", "committed")),
			moved(series("order_gateway_handler_transactions_total", "result", "aborted")))
	}
	// Nothing failed: every error series is there, and none moved.
	for _, name := range []string{"order_gateway_store_errors_total", "order_gateway_broker_errors_total"} {
		if n := sumOf(after, name) - sumOf(before, name); n != 0 {
			t.Errorf("%s moved by %v", name, n)
		}
	}
	if _, ok := after[series("order_gateway_broker_errors_total", "api", "transaction", "kind", "fenced")]; !ok {
		t.Error("no broker errors series for fenced transactions")
	}
	if n := sumOf(after, "order_gateway_projection_records_behind"); n != 0 {
		t.Errorf("records behind after the workload: %v", n)
	}
	// Both groups' lag, read from their committed offsets: one series per
	// partition, 0 once everything is committed.
	for _, group := range []string{"command-handler", "projector"} {
		for p := range 3 {
			k := series("order_gateway_consumer_lag_records", "group", group, "partition", strconv.Itoa(p))
			if v, ok := after[k]; !ok || v != 0 {
				t.Errorf("%s = %v (present %v), want 0", k, v, ok)
			}
		}
	}
	for k, v := range after {
		if strings.Contains(k, "no-such-order") || strings.Contains(k, first.ID) || strings.Contains(k, "c-m1") {
			t.Errorf("a metric names an order or a customer: %s %v", k, v)
		}
	}
}

// TestMetricsProjectionGap: while events wait for the projector (here: its
// linger, 2 s after an event), the projection gap of their partition is
// up, in events and seconds; once they are applied it is 0 again.
func TestMetricsProjectionGap(t *testing.T) {
	cfg := testConfig(t)
	cfg.ProjectorLinger = 2 * time.Second
	g := startGateway(t, cfg)
	waitReady(t, g)
	for round := 1; round <= 3; round++ {
		placed := time.Now()
		g.mustMutate(t, "placeOrder", placeInput("c-gap", item("A", 1, "1.00")))
		m := scrape(t, g)
		if time.Since(placed) > 1500*time.Millisecond {
			t.Skip("the machine is too slow to scrape within the projector's linger")
		}
		behind, gap := sumOf(m, "order_gateway_projection_records_behind"), 0.0
		for k, v := range m {
			if strings.HasPrefix(k, "order_gateway_projection_gap_seconds{") {
				gap = max(gap, v)
			}
		}
		// One event, and the commit marker of the transaction before it
		// when that one wrote to the same partition.
		if behind < 1 || behind > 2 || gap <= 0 {
			t.Fatalf("round %d: with one event waiting: records behind %v, gap %vs (want 1 or 2, and > 0)", round, behind, gap)
		}
		if lag := projectorLag(m); lag < 1 {
			t.Errorf("round %d: with one event waiting the projector's lag is %v", round, lag)
		}
		deadline := time.Now().Add(15 * time.Second)
		for {
			m = scrape(t, g)
			behind = sumOf(m, "order_gateway_projection_records_behind")
			gap = sumOf(m, "order_gateway_projection_gap_seconds")
			if behind == 0 && gap == 0 && projectorLag(m) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the gap stayed up: records behind %v, gap %vs, projector lag %v", round, behind, gap, projectorLag(m))
			}
			time.Sleep(100 * time.Millisecond)
		}
		if n := sumOf(m, "order_gateway_projection_partitions_assigned"); n != 3 {
			t.Errorf("projector partitions assigned: %v, want 3", n)
		}
		if got := strings.Count(strings.Join(keys(m), "\n"), "order_gateway_projection_gap_seconds{"); got != 3 {
			t.Errorf("%d partitions have a gap series, want 3", got)
		}
	}
}

// projectorLag sums the projector group's consumer lag.
func projectorLag(m map[string]float64) float64 {
	var n float64
	for k, v := range m {
		if strings.HasPrefix(k, "order_gateway_consumer_lag_records{") && strings.Contains(k, `group="projector"`) {
			n += v
		}
	}
	return n
}

func keys(m map[string]float64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestMetricsAddr: with METRICS_ADDR, /metrics is served there and not on
// the GraphQL listener.
func TestMetricsAddr(t *testing.T) {
	cfg := testConfig(t)
	cfg.MetricsAddr = "127.0.0.1:0"
	g := startGateway(t, cfg)
	if g.MetricsAddr() == g.Addr() {
		t.Fatal("METRICS_ADDR is the GraphQL listener")
	}
	if m := scrape(t, g); m["order_gateway_graphql_requests_in_flight"] != 0 {
		t.Fatalf("in flight: %v", m["order_gateway_graphql_requests_in_flight"])
	}
	resp, err := http.Get(g.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("/metrics on LISTEN_ADDR with METRICS_ADDR set: %d, want 404", resp.StatusCode)
	}
}

// TestDeployFilesUseServedMetrics: every metric the Grafana dashboard and
// the alert rules under deploy/ name is one a gateway serves.
func TestDeployFilesUseServedMetrics(t *testing.T) {
	g := startGateway(t, testConfig(t))
	waitReady(t, g)
	g.do(t, `{ __typename }`, nil) // the histograms by field have a series once observed
	served := map[string]bool{}
	deadline := time.Now().Add(15 * time.Second)
	for !served["order_gateway_projection_gap_seconds"] {
		if time.Now().After(deadline) {
			t.Fatal("no projection gap series: the projector holds no claim")
		}
		clear(served)
		resp, err := http.Get(g.url + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for line := range strings.Lines(string(body)) {
			f := strings.Fields(line)
			if len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
				served[f[2]] = true
				if f[3] == "histogram" {
					served[f[2]+"_bucket"], served[f[2]+"_sum"], served[f[2]+"_count"] = true, true, true
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	var rules struct {
		Groups []struct {
			Rules []struct{ Alert, Expr string }
		}
	}
	alerts, err := os.ReadFile("deploy/prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(alerts, &rules); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	var names []string
	for _, gr := range rules.Groups {
		for _, r := range gr.Rules {
			names = append(names, r.Alert)
		}
	}
	for _, want := range []string{"OrderGatewayProjectionGap", "OrderGatewayDeadLetters", "OrderGatewayCommandTimeouts", "OrderGatewayHandlerNotAssigned"} {
		if !slices.Contains(names, want) {
			t.Errorf("alerts.yml has no %s (it has %v)", want, names)
		}
	}
	dashboard, err := os.ReadFile("deploy/grafana/order-gateway.json")
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(dashboard) {
		t.Fatal("the dashboard is not JSON")
	}
	metricName := regexp.MustCompile(`\b(order_gateway|go|process)_[a-z_]+\b`)
	for file, text := range map[string][]byte{"alerts.yml": alerts, "order-gateway.json": dashboard} {
		found := 0
		for _, name := range metricName.FindAllString(string(text), -1) {
			found++
			if !served[name] {
				t.Errorf("%s names %s, which the gateway does not serve", file, name)
			}
		}
		if found == 0 {
			t.Errorf("%s names no metric", file)
		}
	}
}
