// Command bench measures the order gateway end to end (GraphQL over HTTP
// against the real Kafka and MongoDB paths) next to raw baselines measured in
// the same run on the same broker and store, and prints one table.
//
//	go run ./cmd/bench            # the default run (a few minutes)
//	go run ./cmd/bench -short     # everything small, under a minute
//	KAFKA_BROKERS=127.0.0.1:9092 MONGODB_URI=mongodb://… go run ./cmd/bench
//
// With no KAFKA_BROKERS / MONGODB_URI it starts the embedded broker (kfake)
// and store (FerretDB on SQLite) under a temporary folder, as the server does
// under ./data. Every run uses its own topic prefixes and database names.
// The gateway is started in this process through app.Main, the server's own
// assembly (see gateway.go), so the load generator shares the CPU with it;
// so does the raw baseline's load generator.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/ordergateway/gateway/embedded"
	"github.com/ordergateway/gateway/kafka"
	"github.com/ordergateway/gateway/view"
)

type opts struct {
	duration     time.Duration
	concurrency  int
	orders       int
	scenarios    map[string]bool
	short        bool
	cpuprofile   string
	trace        string
	memprofile   string
	latencyPairs int
	warmPairs    int
	projEvents   int
	queries      int
	lagRate      int
	lagDuration  time.Duration
	lagTimeline  bool
	breakdown    bool
	queryBudget  time.Duration // most time spent on one query kind
	lagDrain     time.Duration // how long the lag scenario waits for the views after the load
}

var allScenarios = []string{"latency", "throughput", "lag", "projection", "queries", "restore"}

// optInScenarios run only when named: scale writes -orders snapshots and
// runs the gateway as a process of its own (issue 17's scale test).
var optInScenarios = []string{"scale"}

func main() { os.Exit(run()) }

func run() int {
	var o opts
	var scen string
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.DurationVar(&o.duration, "duration", 20*time.Second, "duration of each throughput run (gateway and raw floor)")
	fs.IntVar(&o.concurrency, "concurrency", 64, "concurrent clients in the throughput runs")
	fs.IntVar(&o.orders, "orders", 100000, "orders whose snapshots the restore and scale scenarios write and restore")
	fs.StringVar(&scen, "scenarios", strings.Join(allScenarios, ","), "comma-separated scenarios: "+strings.Join(allScenarios, ", ")+" (memory is measured with throughput); also, only when named: "+strings.Join(optInScenarios, ", "))
	fs.BoolVar(&o.short, "short", false, "everything small (whole run under a minute)")
	fs.DurationVar(&projectorLinger, "projector-linger", projectorLinger, "how long the projector's batches wait for more events after their first (the server's PROJECTOR_LINGER)")
	fs.DurationVar(&fetchWait, "fetch-wait", fetchWait, "how long every consumer's fetch may wait for data, gateway and raw alike (the server's FETCH_WAIT)")
	fs.StringVar(&o.trace, "trace", "", "write an execution trace of the whole run to this file (go tool trace; large: use with one short scenario)")
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of the gateway's throughput load to this file (of the whole run if the throughput scenario is not selected)")
	fs.StringVar(&o.memprofile, "memprofile", "", "write a heap profile at the end to this file")
	fs.IntVar(&o.latencyPairs, "latency-pairs", 500, "placeOrder+confirmOrder pairs (and raw two-hop pairs) in the latency scenario")
	fs.IntVar(&o.projEvents, "projection-events", 5000, "events pre-loaded for the projection scenario (one order each; also the query data set)")
	fs.IntVar(&o.queries, "queries", 1000, "requests per query kind in the queries scenario")
	fs.IntVar(&o.lagRate, "lag-rate", 1000, "mutations/s offered in the projection lag scenario")
	fs.BoolVar(&o.breakdown, "breakdown", false, "also run two diagnostic throughput variants: bus.Send without HTTP/GraphQL, and the gateway without its projector")
	fs.DurationVar(&o.lagDuration, "lag-duration", 10*time.Second, "duration of the projection lag scenario")
	fs.BoolVar(&o.lagTimeline, "lag-timeline", false, "also print the worst lag of each 250 ms of the lag scenario")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "bench: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.short {
		def := func(name string, apply func()) {
			if !set[name] {
				apply()
			}
		}
		def("duration", func() { o.duration = 3 * time.Second })
		def("orders", func() { o.orders = 2000 })
		def("latency-pairs", func() { o.latencyPairs = 60 })
		def("projection-events", func() { o.projEvents = 300 })
		def("queries", func() { o.queries = 200 })
		def("lag-duration", func() { o.lagDuration = 3 * time.Second })
	}
	o.warmPairs = 10
	o.queryBudget = 15 * time.Second
	o.lagDrain = 60 * time.Second
	if o.short {
		o.warmPairs = 5
		o.queryBudget = 1500 * time.Millisecond
		o.lagDrain = 5 * time.Second
	}
	o.scenarios = map[string]bool{}
	for _, s := range strings.Split(scen, ",") {
		s = strings.TrimSpace(s)
		if s == "memory" {
			s = "throughput"
		}
		if s == "" {
			continue
		}
		known := false
		for _, a := range append(allScenarios, optInScenarios...) {
			known = known || a == s
		}
		if !known {
			fmt.Fprintf(os.Stderr, "bench: -scenarios: unknown scenario %q (known: %s, memory)\n", s, strings.Join(allScenarios, ", "))
			return 2
		}
		o.scenarios[s] = true
	}
	switch {
	case o.duration <= 0 || o.lagDuration <= 0:
		fmt.Fprintln(os.Stderr, "bench: -duration and -lag-duration must be positive")
		return 2
	case o.concurrency < 1 || o.orders < partitions || o.latencyPairs < 1 || o.projEvents < 1 || o.queries < 1 || o.lagRate < 2:
		fmt.Fprintf(os.Stderr, "bench: -concurrency, -latency-pairs, -projection-events, -queries must be ≥ 1, -orders ≥ %d, -lag-rate ≥ 2\n", partitions)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if o.cpuprofile != "" && !o.scenarios["throughput"] {
		f, err := os.Create(o.cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench: -cpuprofile:", err)
			return 2
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "bench: -cpuprofile:", err)
			return 2
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}

	if o.trace != "" {
		f, err := os.Create(o.trace)
		if err == nil {
			err = trace.Start(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench: -trace:", err)
			return 2
		}
		defer func() { trace.Stop(); f.Close() }()
	}

	started := time.Now()
	e, err := startEnv(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		if e != nil {
			e.close()
		}
		return 1
	}
	b := &bench{env: e, o: o}
	b.header(os.Stdout)
	b.runAll(ctx)
	e.close()
	b.report(os.Stdout, time.Since(started))

	if o.memprofile != "" {
		runtime.GC()
		if f, err := os.Create(o.memprofile); err != nil {
			fmt.Fprintln(os.Stderr, "bench: -memprofile:", err)
		} else {
			_ = pprof.WriteHeapProfile(f)
			f.Close()
		}
	}
	if b.failed > 0 || ctx.Err() != nil {
		return 1
	}
	return 0
}

// env is the broker and store every scenario uses.
type env struct {
	brokers  []string
	mongoURI string
	// scalePG is STORE_POSTGRESQL_URL: the scale scenario's gateway
	// process then keeps its views on that PostgreSQL (its own embedded
	// FerretDB over it, as users run it) instead of in mongoURI's store.
	scalePG      string
	brokerDesc   string
	storeDesc    string
	kafkaEmbed   *embedded.Kafka
	mongoEmbed   *embedded.Mongo
	dir          string
	runID        string
	logger       *slog.Logger
	prefixes     []string // topic prefixes created, for cleanup on an external broker
	databases    []string // databases created, for cleanup on an external store
	embeddedKafk bool
	embeddedMong bool
}

func depVersion(path string) string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == path {
				return d.Version
			}
		}
	}
	return "?"
}

func startEnv(ctx context.Context) (*env, error) {
	e := &env{
		runID:  "bench_" + strconv.FormatInt(time.Now().UnixMilli()%(36*36*36*36*36*36), 36),
		logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	dir, err := os.MkdirTemp("", "gateway-bench-")
	if err != nil {
		return nil, err
	}
	e.dir = dir
	if b := os.Getenv("KAFKA_BROKERS"); b != "" {
		for _, s := range strings.Split(b, ",") {
			if s = strings.TrimSpace(s); s != "" {
				e.brokers = append(e.brokers, s)
			}
		}
		e.brokerDesc = fmt.Sprintf("external Kafka at %s (KAFKA_BROKERS; sarama %s, protocol %s)", strings.Join(e.brokers, ","), depVersion("github.com/IBM/sarama"), kafka.Version)
	} else {
		k, err := embedded.StartKafka(filepath.Join(dir, "kafka"), 0)
		if err != nil {
			return e, err
		}
		e.kafkaEmbed, e.embeddedKafk = k, true
		e.brokers = []string{k.Addr()}
		e.brokerDesc = fmt.Sprintf("embedded kfake %s at %s, data under %s (sarama %s)", depVersion("github.com/twmb/franz-go/pkg/kfake"), k.Addr(), dir, depVersion("github.com/IBM/sarama"))
	}
	if u := os.Getenv("MONGODB_URI"); u != "" {
		e.mongoURI = u
		e.storeDesc = fmt.Sprintf("external MongoDB (MONGODB_URI; mongo-driver %s)", depVersion("go.mongodb.org/mongo-driver/v2"))
	} else {
		ferretLog := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})).With("component", "ferretdb")
		m, err := embedded.StartMongo(filepath.Join(dir, "mongodb"), "127.0.0.1:0", ferretLog)
		if err != nil {
			return e, err
		}
		e.mongoEmbed, e.embeddedMong = m, true
		e.mongoURI = m.URI()
		e.storeDesc = fmt.Sprintf("embedded FerretDB %s on SQLite at %s (mongo-driver %s)", depVersion("github.com/FerretDB/FerretDB"), m.URI(), depVersion("go.mongodb.org/mongo-driver/v2"))
	}
	if u := os.Getenv("STORE_POSTGRESQL_URL"); u != "" {
		e.scalePG = u
		e.storeDesc += "; the scale scenario's gateway: its store on PostgreSQL (STORE_POSTGRESQL_URL)"
	}
	// Fail early and clearly if the broker is not there.
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		admin, err := sarama.NewClusterAdmin(e.brokers, kafka.Config("bench-admin", fetchWait))
		if err == nil {
			admin.Close()
			break
		}
		select {
		case <-cctx.Done():
			return e, fmt.Errorf("kafka at %v not reachable: %v", e.brokers, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
	return e, nil
}

// indexIDs gives the embedded store's new collections their _id lookup
// index now (see embedded.Mongo.IndexIDs) rather than within the half second
// its background pass takes, so that no figure includes scans of a
// collection not yet indexed. Without the embedded store it does nothing.
func (e *env) indexIDs(ctx context.Context) error {
	if e.mongoEmbed == nil {
		return nil
	}
	if err := e.mongoEmbed.IndexIDs(ctx); err != nil {
		return fmt.Errorf("embedded store: _id lookup index: %w", err)
	}
	return nil
}

// storeOptions are the view store options the server would use: on the
// embedded store, which only this process writes, view.SoleWriter.
func (e *env) storeOptions() []view.Option {
	if e.embeddedMong {
		return []view.Option{view.SoleWriter()}
	}
	return nil
}

// name returns a fresh topic prefix / database name for part of the run.
func (e *env) name(part string) string {
	n := e.runID + "_" + part
	e.prefixes = append(e.prefixes, n)
	e.databases = append(e.databases, n)
	return n
}

func (e *env) close() {
	if !e.embeddedKafk && len(e.prefixes) > 0 && len(e.brokers) > 0 {
		if admin, err := sarama.NewClusterAdmin(e.brokers, kafka.Config("bench-admin", fetchWait)); err == nil {
			existing, _ := admin.ListTopics()
			for _, p := range e.prefixes {
				t := kafka.NewTopics(p)
				for _, name := range []string{t.Commands, t.Events, t.Snapshots, t.Replies, t.Views, t.DeadLetter} {
					if _, ok := existing[name]; ok {
						_ = admin.DeleteTopic(name)
					}
				}
			}
			admin.Close()
		}
	}
	if !e.embeddedMong && len(e.databases) > 0 && e.mongoURI != "" {
		if c, err := mongo.Connect(options.Client().ApplyURI(e.mongoURI).SetServerSelectionTimeout(3 * time.Second)); err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			for _, d := range e.databases {
				_ = c.Database(d).Drop(ctx)
			}
			cancel()
			_ = c.Disconnect(context.Background())
		}
	}
	if e.mongoEmbed != nil {
		e.mongoEmbed.Close()
		e.mongoEmbed = nil
	}
	if e.kafkaEmbed != nil {
		e.kafkaEmbed.Close()
		e.kafkaEmbed = nil
	}
	if e.dir != "" {
		os.RemoveAll(e.dir)
		e.dir = ""
	}
}

// row is one line of the result table.
type row struct {
	scenario, figure, value, baseline, baseValue, ratio string
}

type target struct {
	name, measured string
	met            *bool // nil: not measured
}

type bench struct {
	env     *env
	o       opts
	rows    []row
	targets []target
	notes   []string
	failed  int
	proj    *projData // the projected data set, shared by projection and queries
	raw     *rawResults
	rawCQRS *rawResults // the raw floor with a raw read model (rawProjector)
}

// startCPUProfile starts the -cpuprofile profile of the throughput load and
// returns its stop function (a no-op without -cpuprofile).
func (b *bench) startCPUProfile() func() {
	if b.o.cpuprofile == "" {
		return func() {}
	}
	f, err := os.Create(b.o.cpuprofile)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		b.note("-cpuprofile: %v", err)
		return func() {}
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}

func (b *bench) add(r row) { b.rows = append(b.rows, r) }

func (b *bench) note(format string, args ...any) {
	b.notes = append(b.notes, fmt.Sprintf(format, args...))
}

func (b *bench) target(name, measured string, met bool) {
	b.targets = append(b.targets, target{name: name, measured: measured, met: &met})
}

func (b *bench) notMeasured(name, why string) {
	b.targets = append(b.targets, target{name: name, measured: why})
}

func ratio(v, base float64) string {
	if base == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2fx", v/base)
}

func (b *bench) header(w io.Writer) {
	cmd := "go run ./cmd/bench"
	if len(os.Args) > 1 {
		cmd += " " + strings.Join(os.Args[1:], " ")
	}
	var envs []string
	for _, k := range []string{"KAFKA_BROKERS", "MONGODB_URI"} {
		if v := os.Getenv(k); v != "" {
			envs = append(envs, k+"="+v)
		}
	}
	if len(envs) > 0 {
		cmd = strings.Join(envs, " ") + " " + cmd
	}
	fmt.Fprintf(w, "command:  %s\n", cmd)
	fmt.Fprintf(w, "machine:  %d CPUs (%s), %s RAM, %s/%s, %s\n", runtime.NumCPU(), cpuModel(), mib(memTotal()), runtime.GOOS, runtime.GOARCH, runtime.Version())
	fmt.Fprintf(w, "load:     %s at start (/proc/loadavg; other processes on this machine share the CPUs)\n", loadAvg())
	fmt.Fprintf(w, "broker:   %s\n", b.env.brokerDesc)
	fmt.Fprintf(w, "store:    %s\n", b.env.storeDesc)
	fmt.Fprintf(w, "run id:   %s (topic prefixes and databases %s_*)\n", b.env.runID, b.env.runID)
	scaleFetch := ""
	if !b.env.embeddedKafk {
		scaleFetch = "; the scale scenario's gateway process: its own default"
	}
	fmt.Fprintf(w, "settings: %d partitions, fetch wait %s for every consumer (gateway and raw%s), concurrency %d, throughput duration %s, restore orders %d, projection events %d, latency pairs %d, queries %d, lag %d mutations/s for %s\n",
		partitions, fetchWait, scaleFetch, b.o.concurrency, b.o.duration, b.o.orders, b.o.projEvents, b.o.latencyPairs, b.o.queries, b.o.lagRate, b.o.lagDuration)
	if b.env.embeddedMong && b.o.projEvents > 5000 {
		fmt.Fprintf(w, "warning:  %d projection events on the embedded store: FerretDB on SQLite scans whole tables, expect it to be slow\n", b.o.projEvents)
	}
	fmt.Fprintln(w)
}

func (b *bench) runAll(ctx context.Context) {
	step := func(name string, f func(context.Context) error) {
		if ctx.Err() != nil {
			return
		}
		fmt.Fprintf(os.Stderr, "bench: %s ...\n", name)
		t := time.Now()
		if err := f(ctx); err != nil {
			b.failed++
			b.add(row{scenario: name, figure: "FAILED: " + err.Error()})
			fmt.Fprintf(os.Stderr, "bench: %s failed: %v\n", name, err)
			return
		}
		fmt.Fprintf(os.Stderr, "bench: %s done in %s\n", name, time.Since(t).Round(100*time.Millisecond))
	}
	s := b.o.scenarios
	if s["latency"] || s["throughput"] {
		step("raw floor (latency/throughput)", b.rawMutations)
		step("gateway mutations (latency/throughput/memory)", b.gatewayMutations)
	}
	if s["lag"] {
		step("projection lag", b.lag)
	}
	if s["projection"] || s["queries"] {
		step("projection", b.projection)
	}
	if s["queries"] {
		step("queries", b.queryScenario)
	}
	if s["restore"] {
		step("restore", b.restore)
	}
	if s["scale"] {
		step("scale", b.scale)
	}
}

func (b *bench) report(w io.Writer, took time.Duration) {
	fmt.Fprintln(w, "| scenario | figure | value | baseline | baseline value | ratio |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	for _, r := range b.rows {
		cell := func(s string) string {
			if s == "" {
				return "—"
			}
			return strings.ReplaceAll(s, "|", "\\|")
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", cell(r.scenario), cell(r.figure), cell(r.value), cell(r.baseline), cell(r.baseValue), cell(r.ratio))
	}
	if len(b.targets) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| target | measured | result |")
		fmt.Fprintln(w, "|---|---|---|")
		for _, t := range b.targets {
			res := "not measured"
			if t.met != nil {
				res = map[bool]string{true: "met", false: "MISSED"}[*t.met]
			}
			fmt.Fprintf(w, "| %s | %s | %s |\n", t.name, t.measured, res)
		}
	}
	if len(b.notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range b.notes {
			fmt.Fprintln(w, "- "+n)
		}
	}
	fmt.Fprintf(w, "\nwhole run: %s; load average at the end %s; ratio = value / baseline value\n", took.Round(100*time.Millisecond), loadAvg())
}
