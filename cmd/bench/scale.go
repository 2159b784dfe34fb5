package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	"github.com/jackc/pgx/v5"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/kafka"
)

// scale is issue 17's scale scenario for the command handler: -orders
// orders (a fifth of them one customer's) written straight to the snapshots
// topic, then a gateway started as its own process (so that its RSS is its
// own: the benchmark's broker and store are in this process) on that
// history with the default HANDLER_CACHE_ORDERS:
//   - first start: all snapshots restored into its local store;
//   - mutation latency (sequential placeOrder) and throughput (concurrent
//     placeOrder for -duration), and RSS after that load;
//   - restart on the same DATA_DIR: time from the process's start to the
//     first answered mutation on an old order and on a new one, and RSS;
//   - the same load on an empty gateway, the baseline.
//
// The first start also projects the history (one OrderPlaced event per
// order) and measures the big customer's summary: its stored size, the
// latency of customer(id) and its counts against the history's.
func (b *bench) scale(ctx context.Context) error {
	n := b.o.orders
	bin, err := buildGateway(b.env.dir)
	if err != nil {
		return err
	}
	name := b.env.name("scale")
	if err := ensureTopics(b.env.brokers, name); err != nil {
		return err
	}
	topics := kafka.NewTopics(name)
	t0 := time.Now()
	old, err := writeScaleHistory(ctx, b.env.brokers, topics, n)
	if err != nil {
		return err
	}
	b.note("scale: writing %d orders' events and snapshots (%d of customer c-big) took %s", n, n/5, time.Since(t0).Round(time.Millisecond))
	scen := fmt.Sprintf("scale, %d orders, %d partitions", n, partitions)
	dataDir := filepath.Join(b.env.dir, "scale-gateway")

	// First start: everything restored from the changelog.
	g, err := startGatewayProcess(ctx, bin, b.env, name, dataDir)
	if err != nil {
		return err
	}
	first, err := g.firstAnswer(ctx, old[0])
	if err != nil {
		g.stop()
		return fmt.Errorf("first start: %w", err)
	}
	// The views: every order projected, then the big customer's summary
	// (its stored size, customer(id) latency, its counts).
	t0 = time.Now()
	big, err := g.bigCustomer(ctx, n/5)
	if err != nil {
		g.stop()
		return err
	}
	b.note("scale: %d orders projected in %s (%.0f events/s)", n, time.Since(t0).Round(time.Second), float64(n)/time.Since(t0).Seconds())
	summarySize, err := summaryBytes(ctx, b.env, strings.ReplaceAll(name, ".", "_"), "c-big")
	if err != nil {
		g.stop()
		return err
	}
	full, err := g.load(ctx, b.o.duration, b.o.concurrency)
	if err != nil {
		g.stop()
		return err
	}
	rssLoad := g.rss()
	du := dirSize(filepath.Join(dataDir, "handler-state"))
	g.stop()

	// Restart on the same DATA_DIR.
	g, err = startGatewayProcess(ctx, bin, b.env, name, dataDir)
	if err != nil {
		return err
	}
	restartOld, err := g.firstAnswer(ctx, old[1])
	if err != nil {
		g.stop()
		return fmt.Errorf("restart: %w", err)
	}
	c := newGQL(g.url, 1)
	t := time.Now()
	if _, _, err := c.placeOrder(ctx, "c-new", newKey()); err != nil {
		g.stop()
		return fmt.Errorf("restart: new order: %w", err)
	}
	restartNew := restartOld + time.Since(t)
	c.close()
	rssRestart := g.rss()
	g.stop()

	// The baseline: an empty gateway.
	emptyName := b.env.name("scale-empty")
	if err := ensureTopics(b.env.brokers, emptyName); err != nil {
		return err
	}
	g, err = startGatewayProcess(ctx, bin, b.env, emptyName, filepath.Join(b.env.dir, "scale-empty"))
	if err != nil {
		return err
	}
	if err := g.waitReady(ctx); err != nil {
		g.stop()
		return err
	}
	empty, err := g.load(ctx, b.o.duration, b.o.concurrency)
	rssEmpty := g.rss()
	g.stop()
	if err != nil {
		return err
	}

	mib := func(v uint64) string { return fmt.Sprintf("%d MiB", v>>20) }
	b.add(row{scen, "first start (no local state): process start → first answered confirmOrder of an old order", secs(first), "", "", ""})
	b.add(row{scen, "restart (same DATA_DIR): process start → first answered confirmOrder of an old order / placeOrder of a new one", secs(restartOld) + " / " + secs(restartNew), "", "", ""})
	b.add(row{scen, "gateway RSS after the load / after the restart (HANDLER_CACHE_ORDERS 10,000)", mib(rssLoad) + " / " + mib(rssRestart), "empty gateway after the same load", mib(rssEmpty), ratio(float64(rssLoad), float64(rssEmpty))})
	b.add(row{scen, "placeOrder p50 / p99, 1 client", ms(full.p50) + " / " + ms(full.p99), "empty gateway", ms(empty.p50) + " / " + ms(empty.p99), ratio(float64(full.p50), float64(empty.p50))})
	b.add(row{scen, fmt.Sprintf("placeOrder throughput, %d clients, %s", b.o.concurrency, b.o.duration), fmt.Sprintf("%.0f /s", full.rate), "empty gateway", fmt.Sprintf("%.0f /s", empty.rate), ratio(full.rate, empty.rate)})
	b.add(row{scen, "local state store on disk (handler-state)", mib(du), "", "", ""})
	b.target(fmt.Sprintf("RSS ≤ 512 MB at %d orders", n), mib(max(rssLoad, rssRestart)), max(rssLoad, rssRestart) <= 512<<20)
	b.target(fmt.Sprintf("restart to the first answered mutation ≤ 5 s at %d orders", n), secs(restartNew), restartNew <= 5*time.Second)
	b.target("mutation latency p50 within 20% of an empty gateway's", ms(full.p50)+" vs "+ms(empty.p50), float64(full.p50) <= 1.2*float64(empty.p50))
	b.target("mutation throughput within 20% of an empty gateway's", fmt.Sprintf("%.0f vs %.0f /s", full.rate, empty.rate), full.rate >= 0.8*empty.rate)
	stored := "summary document (BSON)"
	if b.env.scalePG != "" {
		stored = "summary as stored in PostgreSQL (JSON)"
	}
	b.add(row{scen, fmt.Sprintf("customer c-big (%d orders): %s / customer(id) p50, p99 (%d reads)", n/5, stored, bigReads), fmt.Sprintf("%d bytes / %s, %s", summarySize, ms(big.p50), ms(big.p99)), "", "", ""})
	b.target(fmt.Sprintf("the big customer's summary ≤ 16 KB at %d orders", n/5), fmt.Sprintf("%d bytes", summarySize), summarySize <= 16<<10)
	b.target("customer(id) p50 ≤ 5 ms", ms(big.p50), big.p50 <= 5*time.Millisecond)
	b.target("the big customer's counts exactly right", big.counts, big.exact)
	return nil
}

// writeScaleHistory writes n orders' histories (an OrderPlaced event to the
// events topic and the PENDING order's snapshot with one recorded outcome to
// the snapshots topic; every fifth order the customer c-big's) and returns
// two old order ids.
func writeScaleHistory(ctx context.Context, brokers []string, topics kafka.Topics, n int) ([]string, error) {
	sc := kafka.Config("bench-scale-history", fetchWait)
	sc.Producer.Partitioner = sarama.NewHashPartitioner
	sc.Producer.Return.Successes = true
	sc.Producer.Flush.Frequency = 5 * time.Millisecond
	prod, err := sarama.NewAsyncProducer(brokers, sc)
	if err != nil {
		return nil, err
	}
	var failed atomic.Int64
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for range prod.Successes() {
		}
	}()
	go func() {
		defer wg.Done()
		for e := range prod.Errors() {
			failed.Add(1)
			err := e.Err
			firstErr.CompareAndSwap(nil, &err)
		}
	}()
	base := time.Now().UTC().Truncate(time.Millisecond)
	for i := range n {
		id := fmt.Sprintf("ord_s%08d", i)
		customer := fmt.Sprintf("c-%06d", i%50000)
		if i%5 == 0 {
			customer = "c-big"
		}
		o := domain.Order{ID: id, CustomerID: customer, Status: domain.StatusPending, Currency: "EUR",
			Items:   []domain.Item{{SKU: "TEA-1", Name: "Green tea", Quantity: 2, UnitPrice: 450}, {SKU: "MUG-2", Name: "Mug", Quantity: 1, UnitPrice: 1200}},
			History: []domain.StatusChange{{Status: domain.StatusPending, At: base}}, Version: 1, CreatedAt: base, UpdatedAt: base}
		v, _ := json.Marshal(snapState{Order: o, Outcomes: []snapOutcome{{Key: "key-" + id, Hash: "0123456789abcdef0123456789abcdef", CommandID: "cmd_" + id, Version: 1}}})
		ev, err := domain.MarshalEvent(domain.Event{OrderID: id, Version: 1, OccurredAt: base, CommandID: "cmd_" + id,
			Data: domain.OrderPlaced{CustomerID: customer, Currency: o.Currency, Items: o.Items}})
		if err != nil {
			prod.AsyncClose()
			wg.Wait()
			return nil, err
		}
		for _, m := range []*sarama.ProducerMessage{
			{Topic: topics.Events, Key: sarama.StringEncoder(id), Value: sarama.ByteEncoder(ev)},
			{Topic: topics.Snapshots, Key: sarama.StringEncoder(id), Value: sarama.ByteEncoder(v)},
		} {
			select {
			case prod.Input() <- m:
			case <-ctx.Done():
				prod.AsyncClose()
				wg.Wait()
				return nil, ctx.Err()
			}
		}
	}
	prod.AsyncClose()
	wg.Wait()
	if f := failed.Load(); f > 0 {
		return nil, fmt.Errorf("%d of %d snapshots not written: %v", f, n, *firstErr.Load())
	}
	return []string{"ord_s00000000", fmt.Sprintf("ord_s%08d", n/2)}, nil
}

// buildGateway compiles the gateway into dir.
func buildGateway(dir string) (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return "", fmt.Errorf("go list -m: %w", err)
	}
	bin := filepath.Join(dir, "order-gateway")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir, cmd.Stdout, cmd.Stderr = strings.TrimSpace(string(out)), os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build: %w", err)
	}
	return bin, nil
}

// gatewayProcess is a gateway running as its own process.
type gatewayProcess struct {
	cmd     *exec.Cmd
	url     string
	started time.Time
	log     string
}

func startGatewayProcess(ctx context.Context, bin string, e *env, prefix, dataDir string) (*gatewayProcess, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	logPath := dataDir + ".log"
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	store := "MONGODB_URI=" + e.mongoURI
	if e.scalePG != "" {
		store = "STORE_POSTGRESQL_URL=" + e.scalePG
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "LISTEN_ADDR=127.0.0.1:"+strconv.Itoa(port), "DATA_DIR="+dataDir, "TOPIC_PREFIX="+prefix,
		"MONGODB_DATABASE="+strings.ReplaceAll(prefix, ".", "_"), "PARTITIONS="+strconv.Itoa(partitions), "LOG_LEVEL=warn",
		"KAFKA_BROKERS="+strings.Join(e.brokers, ","), store, "AUTH_JWT_SECRET="+string(benchSecret),
		"SESSION_TIMEOUT="+sessionTimeout.String(), "STARTUP_TIMEOUT=60s")
	if e.embeddedKafk {
		// On an external broker the gateway's own default (500 ms on
		// Apache Kafka) is what users run.
		cmd.Env = append(cmd.Env, "FETCH_WAIT="+fetchWait.String())
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	g := &gatewayProcess{cmd: cmd, url: fmt.Sprintf("http://127.0.0.1:%d/graphql", port), started: time.Now(), log: logPath}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return g, nil
}

// firstAnswer confirms order id (at version 1) as soon as the gateway
// answers, and returns the time from the process's start to the answer.
// Every try has the same idempotency key: a try that timed out while the
// handler restored may have been applied, and its retry then gets the
// recorded outcome.
func (g *gatewayProcess) firstAnswer(ctx context.Context, id string) (time.Duration, error) {
	c := newGQL(g.url, 1)
	defer c.close()
	key := newKey()
	deadline := time.Now().Add(10 * time.Minute)
	for {
		var p payload
		err := c.do(ctx, confirmQuery, map[string]any{"in": map[string]any{"orderId": id, "expectedVersion": 1, "idempotencyKey": key}}, &p)
		if err == nil {
			_, v, perr := checkPayload("confirmOrder", p)
			if perr != nil || v != 2 {
				return 0, fmt.Errorf("confirmOrder of %s: version %d, %v; want version 2", id, v, perr)
			}
			return time.Since(g.started), nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return 0, fmt.Errorf("no answer to confirmOrder of %s: %v (log: %s)", id, err, g.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitReady waits until /readyz answers 200.
func (g *gatewayProcess) waitReady(ctx context.Context) error {
	url := strings.TrimSuffix(g.url, "/graphql") + "/readyz"
	for deadline := time.Now().Add(5 * time.Minute); ; {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("gateway not ready (log: %s)", g.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type scaleLoad struct {
	p50, p99 time.Duration
	rate     float64
}

// load measures placeOrder: 300 sequential, then concurrency clients for d.
func (g *gatewayProcess) load(ctx context.Context, d time.Duration, concurrency int) (scaleLoad, error) {
	var out scaleLoad
	c := newGQL(g.url, concurrency)
	defer c.close()
	var lat samples
	for i := range 300 {
		t := time.Now()
		if _, _, err := c.placeOrder(ctx, fmt.Sprintf("c-load-%d", i%100), newKey()); err != nil {
			return out, err
		}
		lat.add(time.Since(t))
	}
	out.p50, out.p99 = lat.pct(50), lat.pct(99)
	var done atomic.Int64
	var firstErr atomic.Pointer[error]
	lctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for w := range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for lctx.Err() == nil {
				if _, _, err := c.placeOrder(lctx, fmt.Sprintf("c-load-%d", w), newKey()); err != nil {
					if lctx.Err() == nil {
						firstErr.CompareAndSwap(nil, &err)
					}
					return
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	if e := firstErr.Load(); e != nil {
		return out, *e
	}
	out.rate = float64(done.Load()) / time.Since(start).Seconds()
	return out, nil
}

// rss is the process's resident set size (0 if it cannot be read).
func (g *gatewayProcess) rss() uint64 {
	kb, _ := procStatusKB(strconv.Itoa(g.cmd.Process.Pid), "VmRSS")
	return uint64(kb) << 10
}

// stop ends the gateway with SIGTERM (a clean stop) and waits for it.
func (g *gatewayProcess) stop() {
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = g.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = g.cmd.Process.Kill()
		<-done
	}
}

func dirSize(dir string) uint64 {
	var n uint64
	_ = filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			n += uint64(info.Size())
		}
		return nil
	})
	return n
}

var keySeq atomic.Int64

func newKey() string { return fmt.Sprintf("scale-%d-%d", time.Now().UnixNano(), keySeq.Add(1)) }

// bigReads is how many customer(id) reads of the big customer are timed.
const bigReads = 200

// bigCustomerResult is what bigCustomer measured.
type bigCustomerResult struct {
	p50, p99 time.Duration
	counts   string // what the summary says
	exact    bool   // and whether it is exactly the history's
}

// bigCustomer waits (up to 30 minutes) until the summary of c-big counts
// orders, then times bigReads reads of it and checks its counts: orders
// PENDING orders of 2 x 4.50 + 12.00 EUR, but for the one order the first
// start confirmed (firstAnswer).
func (g *gatewayProcess) bigCustomer(ctx context.Context, orders int) (bigCustomerResult, error) {
	const q = `query { customer(id: "c-big") { orderCount openOrderCount countsByStatus { status count } lifetimeValue { amount currencyCode } } }`
	type summary struct {
		Customer *struct {
			OrderCount     int
			OpenOrderCount int
			CountsByStatus []struct {
				Status string
				Count  int
			}
			LifetimeValue []struct{ Amount, CurrencyCode string }
		}
	}
	c := newGQL(g.url, 1)
	defer c.close()
	var out summary
	for deadline := time.Now().Add(30 * time.Minute); ; {
		out = summary{}
		if err := c.do(ctx, q, nil, &out); err == nil && out.Customer != nil && out.Customer.OrderCount >= orders {
			confirmed := 0
			for _, sc := range out.Customer.CountsByStatus {
				if sc.Status == "CONFIRMED" {
					confirmed = sc.Count
				}
			}
			if confirmed >= 1 { // the first start's confirmation, after the history
				break
			}
		}
		if time.Now().After(deadline) {
			return bigCustomerResult{}, fmt.Errorf("the big customer's summary did not count %d orders within 30 minutes (it counts %+v)", orders, out.Customer)
		}
		select {
		case <-ctx.Done():
			return bigCustomerResult{}, ctx.Err()
		case <-time.After(time.Second):
		}
	}
	var lat samples
	for range bigReads {
		t := time.Now()
		out = summary{}
		if err := c.do(ctx, q, nil, &out); err != nil {
			return bigCustomerResult{}, err
		}
		lat.add(time.Since(t))
	}
	s := out.Customer
	b, _ := json.Marshal(s)
	byStatus := map[string]int{}
	for _, sc := range s.CountsByStatus {
		byStatus[sc.Status] = sc.Count
	}
	exact := s.OrderCount == orders && s.OpenOrderCount == orders && byStatus["PENDING"] == orders-1 && byStatus["CONFIRMED"] == 1 && len(byStatus) == 2
	return bigCustomerResult{p50: lat.pct(50), p99: lat.pct(99), counts: string(b), exact: exact}, nil
}

// summaryBytes is the stored size of customer's summary in the views of
// database db: its BSON, or on PostgreSQL (e.scalePG) its JSON as FerretDB
// stores it there.
func summaryBytes(ctx context.Context, e *env, db, customer string) (int, error) {
	if e.scalePG != "" {
		return summaryBytesOnPostgreSQL(ctx, e.scalePG, db, customer)
	}
	client, err := mongo.Connect(options.Client().ApplyURI(e.mongoURI))
	if err != nil {
		return 0, err
	}
	defer client.Disconnect(context.Background()) //nolint:errcheck
	raw, err := client.Database(db).Collection("customers").FindOne(ctx, bson.D{{Key: "_id", Value: customer}}).Raw()
	if err != nil {
		return 0, fmt.Errorf("the summary of %s: %w", customer, err)
	}
	return len(raw), nil
}

// summaryBytesOnPostgreSQL reads the summary's stored JSON from FerretDB
// 1.24's tables: database db is a schema, whose _ferretdb_database_metadata
// names each collection's table.
func summaryBytesOnPostgreSQL(ctx context.Context, url, db, customer string) (int, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return 0, fmt.Errorf("the summary of %s: connect to PostgreSQL: %w", customer, err)
	}
	defer conn.Close(context.Background())
	var table string
	q := fmt.Sprintf(`SELECT _jsonb->>'table' FROM %s WHERE _jsonb->'_id' = to_jsonb('customers'::text)`, pgx.Identifier{db, "_ferretdb_database_metadata"}.Sanitize())
	if err := conn.QueryRow(ctx, q).Scan(&table); err != nil {
		return 0, fmt.Errorf("the summary of %s: the customers table: %w", customer, err)
	}
	var n int
	q = fmt.Sprintf(`SELECT octet_length(_jsonb::text) FROM %s WHERE _jsonb->'_id' = to_jsonb($1::text)`, pgx.Identifier{db, table}.Sanitize())
	if err := conn.QueryRow(ctx, q, customer).Scan(&n); err != nil {
		return 0, fmt.Errorf("the summary of %s: %w", customer, err)
	}
	return n, nil
}
