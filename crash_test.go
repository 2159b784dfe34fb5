package main

import (
	"github.com/ordergateway/gateway/app"

	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/kafka"
	"github.com/ordergateway/gateway/view"
)

// process is the gateway running as a child process, so it can be killed -9.
type process struct {
	t    testing.TB
	bin  string
	env  []string
	url  string
	cmd  *exec.Cmd
	logs *os.File
}

func buildGateway(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "order-gateway")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func (p *process) start() {
	p.t.Helper()
	p.cmd = exec.Command(p.bin)
	p.cmd.Env = append(append(os.Environ(), "AUTH_JWT_SECRET="+string(testSecret)), p.env...) // the clients' tokens: authclient_test.go
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	// After a SIGKILL the dead instance's group members linger until their
	// session times out, and on Apache Kafka the rebalance that admits the
	// new instance can take a while longer.
	start, last := time.Now(), ""
	for time.Since(start) < 150*time.Second {
		if resp, err := http.Get(p.url + "/readyz"); err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				p.t.Logf("gateway process ready in %s", time.Since(start).Round(100*time.Millisecond))
				return
			}
			last = string(body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.t.Fatalf("gateway process not ready in 150s (last /readyz: %s); its log ends:\n%s", last, tail(p.logs.Name(), 60))
}

func (p *process) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_, _ = p.cmd.Process.Wait()
}

func (p *process) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _, _ = p.cmd.Process.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		p.kill()
	}
}

// TestKillNineUnderLoad runs the gateway as a separate process on a
// persisted data folder, drives well over 1,000 mutations from concurrent
// clients that retry with their idempotency keys, kills the process with
// SIGKILL twice in the middle and restarts it, and then checks the whole
// history: every acknowledged mutation has exactly its events in the log,
// once; the log holds nothing else; every order view is the fold of its
// events; every customer summary is what the order views imply.
func TestKillNineUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills gateway processes")
	}
	const target = 1200 // acknowledged mutations
	bin := buildGateway(t)
	dataDir := t.TempDir()
	kafkaPort, mongoAddr := freePort(t), freeAddr(t)
	logs, err := os.Create(filepath.Join(dataDir, "gateway.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	httpAddr := freeAddr(t)
	prefix := fmt.Sprintf("crash%d", time.Now().UnixNano()%1e6)
	env := []string{"LISTEN_ADDR=" + httpAddr, "DATA_DIR=" + dataDir, "TOPIC_PREFIX=" + prefix, "PARTITIONS=3",
		"EMBEDDED_KAFKA_PORT=" + strconv.Itoa(kafkaPort), "EMBEDDED_MONGODB_ADDR=" + mongoAddr,
		"COMMAND_TIMEOUT=3s", "LOG_LEVEL=info", "MONGODB_URI=", "KAFKA_BROKERS="}
	brokers := []string{"127.0.0.1:" + strconv.Itoa(kafkaPort)}
	if testKafka == "external" {
		env = append(env, "KAFKA_BROKERS="+strings.Join(testBrokers, ","), "SESSION_TIMEOUT=6s")
		brokers = testBrokers
	} else {
		env = append(env, "SESSION_TIMEOUT=2s")
	}
	p := &process{t: t, bin: bin, env: env, url: "http://" + httpAddr, logs: logs}
	p.start()
	defer func() { p.stop() }()
	client := &gateway{url: p.url}

	var (
		acked    atomic.Int64
		retries  atomic.Int64
		mu       sync.Mutex
		versions = map[string]int{} // order → acknowledged version
		wg       sync.WaitGroup
		failed   atomic.Pointer[string]
	)
	giveUp := time.Now().Add(3 * time.Minute)
	// send retries one mutation until it is answered without a system error.
	send := func(name string, input map[string]any) (Payload, bool) {
		q := fmt.Sprintf("mutation($input: %sInput!) { m: %s(input: $input) { order { id version } version userErrors { code message } } }", upperFirst(name), name)
		for time.Now().Before(giveUp) {
			r, err := client.post(q, map[string]any{"input": input})
			if err == nil && len(r.Errors) == 0 {
				var out struct{ M Payload }
				if err := json.Unmarshal(r.Data, &out); err == nil {
					return out.M, true
				}
			}
			retries.Add(1)
			time.Sleep(50 * time.Millisecond)
		}
		return Payload{}, false
	}
	for c := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; acked.Load() < target && failed.Load() == nil; n++ {
				key := fmt.Sprintf("client%d-order%d", c, n)
				in := placeInput(fmt.Sprintf("cust-%d", c%3), item("A", 1+n%5, "3.99"))
				in["idempotencyKey"] = key
				steps := []struct {
					name  string
					input func(id string) map[string]any
				}{
					{"placeOrder", func(string) map[string]any { return in }},
					{"addOrderItem", func(id string) map[string]any {
						return map[string]any{"orderId": id, "item": item("B", 2, "0.25"), "idempotencyKey": key + "-add"}
					}},
					{"confirmOrder", func(id string) map[string]any {
						return map[string]any{"orderId": id, "idempotencyKey": key + "-confirm"}
					}},
					{"shipOrder", func(id string) map[string]any {
						return map[string]any{"orderId": id, "trackingNumber": "T-" + key, "idempotencyKey": key + "-ship"}
					}},
					{"deliverOrder", func(id string) map[string]any {
						return map[string]any{"orderId": id, "idempotencyKey": key + "-deliver"}
					}},
				}
				id := ""
				for i, s := range steps {
					payload, ok := send(s.name, s.input(id))
					if !ok || len(payload.UserErrors) > 0 || payload.Version == nil || *payload.Version != i+1 {
						msg := fmt.Sprintf("%s for %s: answered %v, payload %+v", s.name, key, ok, payload)
						failed.Store(&msg)
						return
					}
					id = payload.Order.ID
					mu.Lock()
					versions[id] = i + 1
					mu.Unlock()
					acked.Add(1)
				}
			}
		}()
	}
	for _, at := range []int64{target / 4, target / 2} {
		for acked.Load() < at && failed.Load() == nil {
			time.Sleep(5 * time.Millisecond)
		}
		p.kill()
		t.Logf("killed the gateway with SIGKILL after %d acknowledged mutations", acked.Load())
		p.start()
	}
	wg.Wait()
	if f := failed.Load(); f != nil {
		t.Fatalf("a client gave up: %s; the gateway's log ends:\n%s", *f, tail(logs.Name(), 60))
	}

	// The log: exactly the acknowledged events, once each, nothing else.
	prevBrokers := testBrokers
	testBrokers = brokers
	events := eventsByOrder(t, kafka.NewTopics(prefix))
	testBrokers = prevBrokers
	checkExactlyOnce(t, events, versions)
	wantTypes := []string{"OrderPlaced", "OrderItemAdded", "OrderConfirmed", "OrderShipped", "OrderDelivered"}
	eventCount := 0
	for id, es := range events {
		if _, ok := versions[id]; !ok {
			t.Errorf("the log holds %d events of order %s that no client placed", len(es), id)
		}
		for i, e := range es {
			if i < len(wantTypes) && e.Data.EventType() != wantTypes[i] {
				t.Errorf("order %s event %d is %s, want %s", id, i+1, e.Data.EventType(), wantTypes[i])
			}
		}
		eventCount += len(es)
	}

	// The views: each order is the fold of its events, each summary what the
	// order views imply (the projector may still be catching up: wait).
	var orders map[string]view.OrderDoc
	var customers map[string]view.CustomerDoc
	deadline := time.Now().Add(30 * time.Second)
	for {
		orders, customers = readViews(t, "mongodb://"+mongoAddr, "orders")
		mismatch := compareViews(events, orders, customers)
		if mismatch == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("views do not match the log after 30s: %s", mismatch)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("checked %d acknowledged mutations (%d retried attempts) on %d orders across 2 kills: %d events in the log, %d order views and %d customer summaries match",
		acked.Load(), retries.Load(), len(versions), eventCount, len(orders), len(customers))
}

// post sends a GraphQL request; unlike do, it reports transport errors
// instead of failing the test (the server may be down on purpose).
func (g *gateway) post(query string, vars map[string]any) (gqlResponse, error) {
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, g.url+"/graphql", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return gqlResponse{}, err
	}
	defer resp.Body.Close()
	var r gqlResponse
	err = json.NewDecoder(resp.Body).Decode(&r)
	return r, err
}

func readViews(t testing.TB, uri, database string) (map[string]view.OrderDoc, map[string]view.CustomerDoc) {
	t.Helper()
	ctx := context.Background()
	c, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(ctx)
	orders, customers := map[string]view.OrderDoc{}, map[string]view.CustomerDoc{}
	var od []view.OrderDoc
	var cd []view.CustomerDoc
	for coll, out := range map[string]any{"orders": &od, "customers": &cd} {
		cur, err := c.Database(database).Collection(coll).Find(ctx, bson.D{})
		if err != nil {
			t.Fatalf("read %s: %v", coll, err)
		}
		if err := cur.All(ctx, out); err != nil {
			t.Fatalf("read %s: %v", coll, err)
		}
	}
	for _, d := range od {
		orders[d.ID] = d
	}
	for _, d := range cd {
		customers[d.ID] = d
	}
	return orders, customers
}

// compareViews returns "" if every order view is the fold of its events and
// every customer summary is what the order views imply, or the first
// difference.
func compareViews(events map[string][]domain.Event, orders map[string]view.OrderDoc, customers map[string]view.CustomerDoc) string {
	if len(orders) != len(events) {
		return fmt.Sprintf("%d order views for %d orders in the log", len(orders), len(events))
	}
	byCustomer := map[string][]view.OrderDoc{}
	for id, es := range events {
		want, _ := json.Marshal(view.FromOrder(domain.Fold(es)))
		got, _ := json.Marshal(orders[id])
		if string(want) != string(got) {
			return fmt.Sprintf("order %s:\nview %s\nfold %s", id, got, want)
		}
		d := orders[id]
		byCustomer[d.CustomerID] = append(byCustomer[d.CustomerID], d)
	}
	if len(customers) != len(byCustomer) {
		return fmt.Sprintf("%d customer summaries, the order views imply %d", len(customers), len(byCustomer))
	}
	for id, docs := range byCustomer {
		// The counts, not the applied offsets (which depend on the log).
		w, _ := json.Marshal(view.SummaryOf(id, docs))
		g, _ := json.Marshal(customers[id].Clone())
		if string(w) != string(g) {
			return fmt.Sprintf("customer %s:\nview    %s\nimplied %s", id, g, w)
		}
	}
	return ""
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// startGatewayProcess runs the gateway binary as a child process with cfg's
// broker, store, topics and database, and stops it when the test ends.
func startGatewayProcess(t testing.TB, cfg app.Config) *gateway {
	t.Helper()
	httpAddr := freeAddr(t)
	logs, err := os.Create(filepath.Join(t.TempDir(), "gateway.log"))
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"LISTEN_ADDR=" + httpAddr, "DATA_DIR=" + t.TempDir(), "TOPIC_PREFIX=" + cfg.TopicPrefix,
		"MONGODB_DATABASE=" + cfg.MongoDatabase, "PARTITIONS=" + strconv.Itoa(cfg.Partitions),
		"KAFKA_BROKERS=" + strings.Join(cfg.KafkaBrokers, ","), "MONGODB_URI=" + cfg.MongoURI,
		"SESSION_TIMEOUT=" + cfg.SessionTimeout.String(), "COMMAND_TIMEOUT=" + cfg.CommandTimeout.String(), "LOG_LEVEL=warn"}
	p := &process{t: t, bin: buildGateway(t), env: env, url: "http://" + httpAddr, logs: logs}
	p.start()
	t.Cleanup(func() { p.stop(); logs.Close() })
	return &gateway{url: p.url}
}

// TestTakeoverAfterKill: two gateway processes share the topics and take
// mutations; one is killed with SIGKILL. The survivor takes the dead one's
// partitions over: every mutation sent to it is answered, those for the
// dead instance's partitions once the takeover is done. The longest of
// them is the takeover time, logged: the session timeout (the group's
// notice of the death), a rebalance, and the restore, which fences a
// transaction the dead instance left open after 2 s instead of waiting for
// the broker to time it out (command/fence.go).
func TestTakeoverAfterKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills gateway processes")
	}
	bin := buildGateway(t)
	prefix := fmt.Sprintf("takeover%d", time.Now().UnixNano()%1e6)
	session := 2 * time.Second
	if testKafka == "external" {
		session = 6 * time.Second // Apache Kafka's group.min.session.timeout.ms
	}
	start := func(name string) *process {
		logs, err := os.Create(filepath.Join(t.TempDir(), name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { logs.Close() })
		addr := freeAddr(t)
		env := []string{"LISTEN_ADDR=" + addr, "DATA_DIR=" + t.TempDir(), "TOPIC_PREFIX=" + prefix, "PARTITIONS=6",
			"KAFKA_BROKERS=" + strings.Join(testBrokers, ","), "MONGODB_URI=" + testMongoURI, "MONGODB_DATABASE=" + prefix,
			"SESSION_TIMEOUT=" + session.String(), "COMMAND_TIMEOUT=90s", "LOG_LEVEL=info"}
		p := &process{t: t, bin: bin, env: env, url: "http://" + addr, logs: logs}
		p.start()
		return p
	}
	victim, survivor := start("victim"), start("survivor")
	defer survivor.stop()
	// Both own partitions once the second has joined.
	time.Sleep(2 * session)

	client := &http.Client{Timeout: 2 * time.Minute}
	place := func(url, id string) error {
		body, _ := json.Marshal(map[string]any{
			"query":     `mutation($input: PlaceOrderInput!) { placeOrder(input: $input) { version userErrors { code } } }`,
			"variables": map[string]any{"input": map[string]any{"orderId": id, "customerId": "cust-takeover", "currencyCode": "USD", "items": []any{item("A", 1, "1")}}},
		})
		resp, err := client.Post(url+"/graphql", "application/json", strings.NewReader(string(body)))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var r gqlResponse
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			return err
		}
		if len(r.Errors) > 0 || !strings.Contains(string(r.Data), `"version":1`) {
			return fmt.Errorf("answered %s %+v", r.Data, r.Errors)
		}
		return nil
	}

	var (
		killedAt atomic.Pointer[time.Time]
		stop     atomic.Bool
		mu       sync.Mutex
		longest  time.Duration // of the survivor's mutations sent after the kill
		after    int
		failures []string
		wg       sync.WaitGroup
	)
	for c := range 6 {
		url := survivor.url
		if c >= 4 {
			url = victim.url // keeps the victim busy in its transactions when it dies
		}
		wg.Go(func() {
			for n := 0; !stop.Load(); n++ {
				sent := time.Now()
				err := place(url, fmt.Sprintf("%s-c%d-%d", prefix, c, n))
				if url == victim.url {
					if killedAt.Load() != nil {
						return
					}
					continue
				}
				took := time.Since(sent)
				mu.Lock()
				if err != nil {
					failures = append(failures, err.Error())
				}
				if k := killedAt.Load(); k != nil && !sent.Before(*k) {
					after++
					longest = max(longest, took)
				}
				mu.Unlock()
			}
		})
	}
	time.Sleep(2 * time.Second)
	now := time.Now()
	killedAt.Store(&now)
	victim.kill()
	time.Sleep(session + 10*time.Second)
	stop.Store(true)
	wg.Wait()

	if len(failures) > 0 {
		t.Fatalf("%d mutations sent to the survivor failed, first: %s; its log ends:\n%s", len(failures), failures[0], tail(survivor.logs.Name(), 40))
	}
	t.Logf("takeover: the longest of %d mutations sent to the survivor after the kill took %s (SESSION_TIMEOUT %s, %s broker)",
		after, longest.Round(10*time.Millisecond), session, testKafka)
	if after == 0 {
		t.Fatal("no mutation was sent to the survivor after the kill")
	}
	if log, err := os.ReadFile(survivor.logs.Name()); err == nil {
		for _, line := range strings.Split(string(log), "\n") {
			if strings.Contains(line, "open transaction") {
				t.Logf("survivor: %s", line)
			}
		}
	}
	// Not a speed check: waiting out the dead instance's open transaction
	// would take the session timeout plus the transaction timeout (as long)
	// plus the broker's 10 s abort check; a wedge, forever.
	if bound := 2*session + 10*time.Second; longest > bound+10*time.Second {
		t.Errorf("the takeover took %s, beyond %s: the restore did not fence the open transaction, or the partitions stayed unowned", longest, bound)
	}
}
