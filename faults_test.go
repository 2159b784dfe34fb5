package main

import (
	"encoding/json"
	"strings"

	"github.com/ordergateway/gateway/app"

	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/ordergateway/gateway/embedded"
	"github.com/ordergateway/gateway/kafka"
	"github.com/ordergateway/gateway/projector"
	"github.com/ordergateway/gateway/view"
)

// dumpViews returns every view document of a database as raw BSON, by
// collection, ordered by id.
func dumpViews(t testing.TB, uri, database string) map[string][]bson.Raw {
	t.Helper()
	ctx := context.Background()
	c, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(ctx)
	out := map[string][]bson.Raw{}
	for _, coll := range []string{"orders", "customers"} {
		// An order view's uncounted transitions depend on how the events
		// fell into batches and when the summaries caught up: bookkeeping,
		// not the view (view.OrderDoc.Uncounted).
		cur, err := c.Database(database).Collection(coll).Find(ctx, bson.D{},
			options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}).SetProjection(bson.D{{Key: "uncounted", Value: 0}}))
		if err != nil {
			t.Fatalf("dump %s: %v", coll, err)
		}
		var docs []bson.Raw
		if err := cur.All(ctx, &docs); err != nil {
			t.Fatalf("dump %s: %v", coll, err)
		}
		out[coll] = docs
	}
	return out
}

func sameViews(a, b map[string][]bson.Raw) (bool, string) {
	for coll := range a {
		if len(a[coll]) != len(b[coll]) {
			return false, fmt.Sprintf("%s: %d documents, then %d", coll, len(a[coll]), len(b[coll]))
		}
		for i := range a[coll] {
			if !bytes.Equal(a[coll][i], b[coll][i]) {
				return false, fmt.Sprintf("%s differs:\n%s\n%s", coll, a[coll][i], b[coll][i])
			}
		}
	}
	return true, ""
}

// makeOrders places orders for two customers and moves them through every
// status; it returns each order's final version, once the views include it.
func makeOrders(t testing.TB, g *gateway, n int) map[string]int {
	t.Helper()
	versions := map[string]int{}
	for i := range n {
		o := g.mustMutate(t, "placeOrder", placeInput("cust-"+strconv.Itoa(i%2), item("A", i+1, "2.25"), item("B", 1, "10")))
		steps := []struct {
			name  string
			input map[string]any
		}{
			{"confirmOrder", map[string]any{"orderId": o.ID}},
			{"shipOrder", map[string]any{"orderId": o.ID, "trackingNumber": "T" + strconv.Itoa(i)}},
			{"deliverOrder", map[string]any{"orderId": o.ID}},
		}
		if i%4 == 3 {
			steps = steps[:1]
			steps = append(steps, struct {
				name  string
				input map[string]any
			}{"cancelOrder", map[string]any{"orderId": o.ID, "reason": "no longer needed"}})
		}
		last := o
		for _, s := range steps[:i%len(steps)+1] {
			last = g.mustMutate(t, s.name, s.input)
		}
		g.orderAt(t, o.ID, consistencyTokenFor(o.ID, last.Version))
		versions[o.ID] = last.Version
	}
	return versions
}

// summariesInclude waits, through customer(consistencyToken:), until each
// order's customer summary includes it at the given version (summaries are
// written just after the order views that makeOrders waits for).
func summariesInclude(t testing.TB, g *gateway, versions map[string]int) {
	t.Helper()
	for id, v := range versions {
		o := g.orderAt(t, id, consistencyTokenFor(id, v))
		r := g.do(t, `query($c: ID!, $t: String) { customer(id: $c, consistencyToken: $t) { orderCount } }`,
			map[string]any{"c": o.CustomerID, "t": consistencyTokenFor(id, v)})
		if len(r.Errors) > 0 || r.Extensions["consistency"] != nil {
			t.Fatalf("summary of %s with order %s@%d: %+v %v", o.CustomerID, id, v, r.Errors, r.Extensions)
		}
	}
}

// runProjector runs a projector of its own group until the test ends.
func runProjector(t testing.TB, cfg app.Config, group string) {
	t.Helper()
	store, err := view.Open(cfg.MongoURI, cfg.MongoDatabase)
	if err != nil {
		t.Fatal(err)
	}
	p, err := projector.New(projector.Config{Brokers: cfg.KafkaBrokers, Topics: kafka.NewTopics(cfg.TopicPrefix), Group: group,
		FetchWait: cfg.FetchWait, SessionTimeout: cfg.SessionTimeout}, store)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx) }()
	t.Cleanup(func() { cancel(); p.Close(); <-done; store.Close(context.Background()) })
}

// waitForViews polls until the views equal want; it fails with the last
// difference after the deadline.
func waitForViews(t testing.TB, cfg app.Config, want map[string][]bson.Raw, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, diff := sameViews(want, dumpViews(t, cfg.MongoURI, cfg.MongoDatabase))
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("views did not converge within %s: %s", within, diff)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestProjectionReplay replays the whole events topic twice: over the
// existing views (nothing may change) and into emptied views (they must come
// back byte for byte).
func TestProjectionReplay(t *testing.T) {
	cfg := testConfig(t)
	g := startGateway(t, cfg)
	versions := makeOrders(t, g, 12)
	summariesInclude(t, g, versions)
	before := dumpViews(t, cfg.MongoURI, cfg.MongoDatabase)
	if len(before["orders"]) != len(versions) || len(before["customers"]) != 2 {
		t.Fatalf("views before replay: %d orders, %d customers", len(before["orders"]), len(before["customers"]))
	}

	// Replay over the existing views: a second group reads everything again.
	runProjector(t, cfg, cfg.TopicPrefix+".replay-1")
	waitForGroupAt(t, cfg, cfg.TopicPrefix+".replay-1", cfg.TopicPrefix+".projector")
	if ok, diff := sameViews(before, dumpViews(t, cfg.MongoURI, cfg.MongoDatabase)); !ok {
		t.Fatalf("replaying over the views changed them: %s", diff)
	}

	// Rebuild from nothing.
	g.stop()
	store, _ := view.Open(cfg.MongoURI, cfg.MongoDatabase)
	if err := store.Drop(context.Background()); err != nil {
		t.Fatal(err)
	}
	store.Close(context.Background())
	runProjector(t, cfg, cfg.TopicPrefix+".replay-2")
	waitForViews(t, cfg, before, 30*time.Second)
	t.Logf("replayed %d orders (%d customers) twice; views identical byte for byte", len(before["orders"]), len(before["customers"]))
}

// waitForGroupAt waits until group has committed, on every partition of the
// events topic, at least what reference has.
func waitForGroupAt(t testing.TB, cfg app.Config, group, reference string) {
	t.Helper()
	admin := newAdmin(t)
	defer admin.Close()
	topic := kafka.NewTopics(cfg.TopicPrefix).Events
	deadline := time.Now().Add(30 * time.Second)
	for {
		ref, err := admin.ListConsumerGroupOffsets(reference, nil)
		if err != nil {
			t.Fatal(err)
		}
		behind := -1 // unknown until the group has committed something
		got, err := admin.ListConsumerGroupOffsets(group, nil)
		if err == nil {
			behind = 0
			for p, b := range ref.Blocks[topic] {
				if g := got.GetBlock(topic, p); g == nil || g.Offset < b.Offset {
					behind++
				}
			}
		}
		if behind == 0 && len(ref.Blocks[topic]) > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("group %s did not reach %s's offsets in 30s (partitions behind: %d, last error: %v)", group, reference, behind, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestStoreOutage stops the view store under load: mutations keep working,
// queries answer UNAVAILABLE, /readyz says why, and once the store is back
// the projector catches up with nothing lost.
func TestStoreOutage(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	store, err := embedded.StartMongo(filepath.Join(dir, "mongodb"), addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { store.Close() }()
	cfg := testConfig(t)
	cfg.MongoURI = store.URI()
	cfg.StallTimeout = time.Second
	g := startGateway(t, cfg)
	before := makeOrders(t, g, 4)
	metricsBefore := scrape(t, g)

	store.Close()
	var during []Order
	for i := range 5 {
		during = append(during, g.mustMutate(t, "placeOrder", placeInput("cust-outage", item(strconv.Itoa(i), 1, "1"))))
	}
	r := g.do(t, `{ orders { totalCount } }`, nil)
	if len(r.Errors) != 1 || r.Errors[0].Extensions["code"] != "UNAVAILABLE" {
		t.Fatalf("query while the store is down: want UNAVAILABLE, got %+v", r.Errors)
	}
	if msg := r.Errors[0].Message; strings.Contains(msg, "127.0.0.1") || strings.Contains(msg, "topology") || len(msg) > 100 {
		t.Errorf("query while the store is down: the message shows the driver's detail: %q", msg)
	}
	// The failed query (and the projector's failed writes) are counted as
	// network errors of the store.
	key := series("order_gateway_store_errors_total", "kind", "network")
	if n := scrape(t, g)[key] - metricsBefore[key]; n < 1 {
		t.Errorf("%s moved by %v while the store was down, want at least 1", key, n)
	}
	if code := httpStatus(t, g.url+"/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz while the store is down: %d", code)
	}
	// Past STALL_TIMEOUT /readyz also names the projector, whose writes fail.
	waitForReadyz(t, g, 10*time.Second, func(body map[string]string) bool { return strings.Contains(body["projector"], "writes failing for") })

	if store, err = embedded.StartMongo(filepath.Join(dir, "mongodb"), addr, nil); err != nil {
		t.Fatal(err)
	}
	for _, o := range during {
		if v := g.orderAt(t, o.ID, consistencyTokenFor(o.ID, 1)); v == nil || v.Version != 1 {
			t.Fatalf("order placed during the outage: %+v", v)
		}
	}
	for id, v := range before {
		if o := g.orderAt(t, id, ""); o == nil || o.Version != v {
			t.Fatalf("order from before the outage: %+v, want version %d", o, v)
		}
	}
	if code := httpStatus(t, g.url+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz after the store is back: %d", code)
	}
	t.Logf("checked %d orders written before and %d during a store outage", len(before), len(during))
}

// TestBrokerRestart restarts the broker under load: requests fail fast while
// it is down (never past the command timeout), the gateway reconnects by
// itself, and every acknowledged mutation has its events exactly once.
func TestBrokerRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "kafka")
	port := freePort(t)
	broker, err := embedded.StartKafka(dir, port)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { broker.Close() }()
	cfg := testConfig(t)
	cfg.KafkaBrokers = []string{broker.Addr()}
	cfg.CommandTimeout = 3 * time.Second
	cfg.StallTimeout = time.Second
	g := startGateway(t, cfg)
	prevBrokers := testBrokers
	testBrokers = cfg.KafkaBrokers // eventsByOrder reads this broker
	defer func() { testBrokers = prevBrokers }()

	// Clients place and confirm orders, retrying with their idempotency keys
	// until they get an answer.
	var (
		stop      atomic.Bool
		mu        sync.Mutex
		versions  = map[string]int{}
		failures  atomic.Int64
		slowest   atomic.Int64
		wg        sync.WaitGroup
		completed atomic.Int64
	)
	attempt := func(name string, input map[string]any) Payload {
		for {
			start := time.Now()
			r := g.do(t, fmt.Sprintf("mutation($input: %sInput!) { m: %s(input: $input) { %s } }", upperFirst(name), name, payloadFields), map[string]any{"input": input})
			if d := time.Since(start); int64(d) > slowest.Load() {
				slowest.Store(int64(d))
			}
			if len(r.Errors) == 0 {
				var out struct{ M Payload }
				mustUnmarshal(t, r.Data, &out)
				return out.M
			}
			failures.Add(1)
			time.Sleep(100 * time.Millisecond)
		}
	}
	for c := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				key := fmt.Sprintf("c%d-%d", c, i)
				in := placeInput("cust-broker", item("A", 1, "1"))
				in["idempotencyKey"] = key
				p := attempt("placeOrder", in)
				c := attempt("confirmOrder", map[string]any{"orderId": p.Order.ID, "idempotencyKey": key + "-confirm"})
				mu.Lock()
				versions[p.Order.ID] = *c.Version
				mu.Unlock()
				completed.Add(1)
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	broker.Close()
	time.Sleep(500 * time.Millisecond)
	// A mutation while the broker is down fails fast, as UNAVAILABLE.
	start := time.Now()
	r := g.do(t, `mutation { placeOrder(input: {customerId: "c", currencyCode: "EUR", items: [{sku: "A", name: "A", quantity: 1, unitPrice: "1"}]}) { version } }`, nil)
	if len(r.Errors) != 1 || r.Errors[0].Extensions["code"] != "UNAVAILABLE" || time.Since(start) >= cfg.CommandTimeout {
		t.Errorf("mutation with the broker down: want UNAVAILABLE within %s, got %+v after %s", cfg.CommandTimeout, r.Errors, time.Since(start))
	}
	t.Logf("mutation with the broker down answered %v in %s", r.Errors[0].Extensions["code"], time.Since(start))
	// The command the broker did not take is counted as a produce error.
	produceErrors := 0.0
	for k, v := range scrape(t, g) {
		if strings.HasPrefix(k, `order_gateway_broker_errors_total{api="produce"`) {
			produceErrors += v
		}
	}
	if n := produceErrors; n < 1 {
		t.Errorf("broker produce errors with the broker down: %v, want at least 1", n)
	}
	time.Sleep(time.Second)
	if code := httpStatus(t, g.url+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz while the broker is down: %d", code)
	}
	// Past STALL_TIMEOUT /readyz also names the command handler, which has
	// commands and cannot commit them (or is out of its group).
	waitForReadyz(t, g, 30*time.Second, func(body map[string]string) bool {
		return strings.Contains(body["commandHandler"], "stalled") || strings.Contains(body["commandHandler"], "not handling commands")
	})
	if broker, err = embedded.StartKafka(dir, port); err != nil {
		t.Fatal(err)
	}
	atRestart := completed.Load()
	deadline := time.Now().Add(60 * time.Second)
	for completed.Load() < atRestart+20 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	if completed.Load() < atRestart+20 {
		t.Fatalf("the gateway did not recover: %d orders completed before the restart, %d after 60s", atRestart, completed.Load())
	}
	if max := time.Duration(slowest.Load()); max > cfg.CommandTimeout+2*time.Second {
		t.Errorf("a request took %s, past the %s command timeout", max, cfg.CommandTimeout)
	}
	checkExactlyOnce(t, eventsByOrder(t, kafka.NewTopics(cfg.TopicPrefix)), versions)
	t.Logf("%d orders placed and confirmed around a broker restart (%d failed attempts retried, slowest request %s); events exactly once",
		len(versions), failures.Load(), time.Duration(slowest.Load()))
}

func upperFirst(s string) string { return string(s[0]-'a'+'A') + s[1:] }

func mustUnmarshal(t testing.TB, b []byte, v any) {
	t.Helper()
	if err := jsonUnmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

func httpStatus(t testing.TB, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func freeAddr(t testing.TB) string { return "127.0.0.1:" + strconv.Itoa(freePort(t)) }

// waitForReadyz polls /readyz until ok accepts its body, or fails after
// within.
func waitForReadyz(t testing.TB, g *gateway, within time.Duration, ok func(map[string]string) bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	var body map[string]string
	for time.Now().Before(deadline) {
		resp, err := http.Get(g.url + "/readyz")
		if err == nil {
			body = map[string]string{}
			_ = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if ok(body) {
				t.Logf("/readyz: %v", body)
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("/readyz did not say so within %s: %v", within, body)
}

// TestCleanStopCommitsWhatTheProjectorWrote: a gateway that stops cleanly
// commits the projector's offsets of every batch it wrote, whose customer
// summaries it counts behind the order views (the claim waits a moment for
// them), so the next start replays nothing. Before, the last batches' offsets
// were left uncommitted at every stop, and a replay of an order's whole
// history over a view written by hand reported it as new
// (TestRetriedBatchStillReportsTheStatusLeft failed that way on Apache Kafka).
func TestCleanStopCommitsWhatTheProjectorWrote(t *testing.T) {
	cfg := testConfig(t)
	g := startGateway(t, cfg)
	versions := makeOrders(t, g, 6)
	summariesInclude(t, g, versions)
	g.stop()

	client, err := sarama.NewClient(testBrokers, kafka.Config("test-offsets", 20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	admin := newAdmin(t)
	defer admin.Close()
	topic := kafka.NewTopics(cfg.TopicPrefix).Events
	committed, err := admin.ListConsumerGroupOffsets(cfg.TopicPrefix+".projector", nil)
	if err != nil {
		t.Fatal(err)
	}
	parts, err := client.Partitions(topic)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range parts {
		end, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			t.Fatal(err)
		}
		var at int64 = -1
		if b := committed.GetBlock(topic, p); b != nil {
			at = b.Offset
		}
		// The last record of a partition is the commit marker of the
		// handler's last transaction: the committed offset points at it.
		if end > 0 && at < end-1 {
			t.Errorf("partition %d: the projector's committed offset is %d, the partition ends at %d: the next start replays %d records", p, at, end, end-1-at)
		}
	}
}
