// Command load measures the order gateway as its users see it: the real
// server binary, started as a process of its own on the stack a user runs,
// driven over HTTP by concurrent clients from this process, beside what a
// team would otherwise write (cmd/plain: the same GraphQL API as a plain
// produce-consume service, at-least-once, without transactions), on the same
// broker and store in the same run.
//
//	go run ./cmd/load                                  # embedded stack
//	go run ./cmd/load -stack kafka                     # Apache Kafka (scripts/kafka.sh) + embedded store
//	go run ./cmd/load -stack kafka-postgres            # Apache Kafka + FerretDB on PostgreSQL (scripts/postgres.sh)
//	go run ./cmd/load -url http://host:8080/graphql    # a gateway that is already running
//
//	go run ./cmd/load -systems gateway,gateway-traced,gateway,gateway-traced -scenarios place-confirm   # the cost of tracing
//
// For each system, scenario and client count it reports orders/s, the
// latency of each operation (p50, p90, p99, max), errors by code, and the
// CPU of every process involved: the system under test, the broker's JVM,
// the PostgreSQL server, and this load generator. KAFKA_BROKERS and
// STORE_POSTGRESQL_URL, when set, name a broker or database to use instead
// of starting one.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type options struct {
	stack      string
	url        string
	systems    []string
	scenarios  []string
	clients    []int
	duration   time.Duration
	warmup     time.Duration
	partitions int
	env        []string // extra NAME=value settings for the systems under test
	keep       bool
	rate       int           // orders/s offered in the lag scenario
	drain      time.Duration // how long the lag scenario waits for the last changes
}

func main() { os.Exit(run()) }

func run() int {
	var o options
	var systems, scen, clients, extra string
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.StringVar(&o.stack, "stack", "embedded", "embedded, kafka (Apache Kafka + embedded store) or kafka-postgres (Apache Kafka + FerretDB on PostgreSQL)")
	fs.StringVar(&o.url, "url", "", "drive a running gateway at this GraphQL URL (plain http) instead of starting one")
	fs.StringVar(&systems, "systems", "gateway,plain", "systems to measure, in this order (one may come back: gateway,gateway-traced,gateway,gateway-traced): gateway (the real binary), gateway-traced (the same with every trace sampled and exported: OTEL_TRACES_EXPORTER=console, OTEL_TRACES_SAMPLER=always_on, the spans written to /dev/null), plain (cmd/plain, the plain produce-consume service)")
	fs.StringVar(&scen, "scenarios", "place-confirm", "comma-separated: place, place-confirm, query, mixed, lag (open loop at -rate, gateway only: how long after a mutation's answer a subscriber sees its change)")
	fs.IntVar(&o.rate, "rate", 500, "orders/s (each placed, then confirmed) offered in the lag scenario")
	fs.DurationVar(&o.drain, "drain", 30*time.Second, "how long the lag scenario waits for the last changes after the load")
	fs.StringVar(&clients, "clients", "1,32", "comma-separated client counts")
	fs.DurationVar(&o.duration, "duration", 15*time.Second, "measured time of each run")
	fs.DurationVar(&o.warmup, "warmup", 3*time.Second, "unmeasured time before each run")
	fs.IntVar(&o.partitions, "partitions", 6, "PARTITIONS of the systems under test")
	fs.StringVar(&extra, "env", "", "comma-separated NAME=value settings passed to the systems under test, e.g. FETCH_WAIT=100ms")
	fs.BoolVar(&o.keep, "keep", false, "keep the broker and database this run started (print how to stop them)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	o.systems = splitList(systems)
	o.scenarios = splitList(scen)
	o.env = splitList(extra)
	for _, s := range o.scenarios {
		if scenarios[s] == nil && s != "lag" {
			fmt.Fprintf(os.Stderr, "load: unknown scenario %q\n", s)
			return 2
		}
	}
	for _, c := range splitList(clients) {
		n, err := strconv.Atoi(c)
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "load: -clients: %q is not a positive number\n", c)
			return 2
		}
		o.clients = append(o.clients, n)
	}
	switch o.stack {
	case "embedded", "kafka", "kafka-postgres":
	default:
		fmt.Fprintf(os.Stderr, "load: unknown stack %q\n", o.stack)
		return 2
	}
	if o.url != "" {
		if _, err := newConns(o.url, 0, 0); err != nil {
			fmt.Fprintln(os.Stderr, "load: -url:", err)
			return 2
		}
	}
	var err error
	if tokens, err = newTokens(o.url); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := measure(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		return 1
	}
	return 0
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// stack is the broker and store the systems under test use.
type stack struct {
	name     string
	brokers  string // "" for the embedded stack
	pgURL    string // FerretDB on PostgreSQL; "" for the SQLite store
	groups   []group
	cleanups []func()
	root     string // the repository
	tmp      string
}

func (s *stack) close() {
	for i := len(s.cleanups) - 1; i >= 0; i-- {
		s.cleanups[i]()
	}
}

func repoRoot() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return "", fmt.Errorf("go list -m: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// script runs one of the repository's scripts and returns its last stdout
// line.
func (s *stack) script(name string, args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(s.root, "scripts", name), args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("scripts/%s %s: %w", name, strings.Join(args, " "), err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1], nil
}

func startStack(o options) (*stack, error) {
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "order-gateway-load-")
	if err != nil {
		return nil, err
	}
	s := &stack{name: o.stack, root: root, tmp: tmp}
	s.cleanups = append(s.cleanups, func() { os.RemoveAll(tmp) })
	if o.stack == "embedded" {
		return s, nil
	}
	s.brokers = os.Getenv("KAFKA_BROKERS")
	if s.brokers == "" {
		if s.brokers, err = s.script("kafka.sh", "start"); err != nil {
			s.close()
			return nil, err
		}
		if o.keep {
			fmt.Fprintln(os.Stderr, "load: Apache Kafka keeps running at", s.brokers, "(scripts/kafka.sh stop)")
		} else {
			s.cleanups = append(s.cleanups, func() { _, _ = s.script("kafka.sh", "stop") })
		}
	}
	s.groups = append(s.groups, matching("broker", "kafka.Kafka"))
	if o.stack == "kafka-postgres" {
		s.pgURL = os.Getenv("STORE_POSTGRESQL_URL")
		if s.pgURL == "" {
			if s.pgURL, err = s.script("postgres.sh", "start"); err != nil {
				s.close()
				return nil, err
			}
			if o.keep {
				fmt.Fprintln(os.Stderr, "load: PostgreSQL keeps running at", s.pgURL, "(scripts/postgres.sh stop)")
			} else {
				s.cleanups = append(s.cleanups, func() { _, _ = s.script("postgres.sh", "stop") })
			}
		}
		s.groups = append(s.groups, named("store", "postgres"))
	}
	return s, nil
}

// build compiles a package of the repository into the stack's folder.
func (s *stack) build(pkg, name string) (string, error) {
	bin := filepath.Join(s.tmp, name)
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir, cmd.Stdout, cmd.Stderr = s.root, os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build %s: %w", pkg, err)
	}
	return bin, nil
}

// system is a running system under test.
type system struct {
	name string
	id   string // its topics' prefix and its database
	url  string
	cmd  *exec.Cmd
	log  string
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// start runs bin with the stack's settings and waits until /readyz is 200.
func (s *stack) start(ctx context.Context, name, bin string, o options) (*system, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	id := fmt.Sprintf("load%d", time.Now().UnixNano()%1e9)
	dir := filepath.Join(s.tmp, name+"-"+id)
	logPath := dir + ".log"
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "LISTEN_ADDR=127.0.0.1:"+strconv.Itoa(port), "DATA_DIR="+dir,
		"TOPIC_PREFIX="+id, "MONGODB_DATABASE="+id, "PARTITIONS="+strconv.Itoa(o.partitions), "LOG_LEVEL=warn",
		"KAFKA_BROKERS="+s.brokers, "STORE_POSTGRESQL_URL="+s.pgURL, tokens.env())
	cmd.Env = append(cmd.Env, o.env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if name == "gateway-traced" {
		// Every trace sampled, and every span encoded as JSON by the
		// console exporter, as to a collector, but written to /dev/null
		// (the gateway logs to standard error).
		cmd.Env = append(cmd.Env, "OTEL_TRACES_EXPORTER=console", "OTEL_TRACES_SAMPLER=always_on")
		devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			return nil, err
		}
		defer devNull.Close()
		cmd.Stdout = devNull
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	sys := &system{name: name, id: id, url: fmt.Sprintf("http://127.0.0.1:%d/graphql", port), cmd: cmd, log: logPath}
	deadline := time.Now().Add(120 * time.Second)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", port))
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return sys, nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			sys.stop()
			return nil, fmt.Errorf("%s did not get ready within 120 s; its log: %s", name, tail(logPath))
		}
		if cmd.ProcessState != nil {
			return nil, fmt.Errorf("%s exited: %s", name, tail(logPath))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (sys *system) stop() {
	_ = sys.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = sys.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-sys.cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-15):], "\n")
}

// result is one row of the report.
type result struct {
	system, scenario string
	clients          int
	took             time.Duration
	orders           int64
	mutations        int64
	muts             opStats
	ops              []opStats
	errs             map[string]int
	samples          map[string]string
	cpu              map[string]float64       // cores, by group
	used             map[string]time.Duration // CPU time, by group
	caughtUp         time.Duration            // how long after the load the views included its last write
	reached          bool                     // whether they did (within 2 min)
	batching         batching                 // the gateway's batching in the window (zeros for the plain service)
}

func measure(ctx context.Context, o options, w io.Writer) error {
	var (
		s   *stack
		err error
	)
	if o.url == "" {
		if s, err = startStack(o); err != nil {
			return err
		}
		defer s.close()
	}
	fmt.Fprintf(w, "# load: stack %s, %d partitions, %s measured after %s of warm-up, %s\n\n", o.stack, o.partitions, o.duration, o.warmup, time.Now().UTC().Format(time.RFC3339))
	var results []result
	var lags []lagRow
	systems := o.systems
	if o.url != "" {
		systems = []string{"gateway"}
	}
	for _, name := range systems {
		url := o.url
		var groups []group
		var sys *system
		if url == "" {
			pkg := map[string]string{"gateway": ".", "gateway-traced": ".", "plain": "./cmd/plain"}[name]
			if pkg == "" {
				return fmt.Errorf("unknown system %q", name)
			}
			bin, err := s.build(pkg, name)
			if err != nil {
				return err
			}
			if sys, err = s.start(ctx, name, bin, o); err != nil {
				return err
			}
			url = sys.url
			groups = append(groups, pidGroup(name, sys.cmd.Process.Pid))
			groups = append(groups, s.groups...)
		}
		groups = append(groups, selfCPU())
		ids := &idPool{}
		for _, scenario := range o.scenarios {
			if scenario == "lag" {
				if name == "plain" {
					continue // the plain service has no subscriptions (its documents are written before it answers)
				}
				r, err := runLag(ctx, url, o.rate, o.duration, o.drain, groups)
				if err != nil {
					return err
				}
				lags = append(lags, lagRow{system: name, lagResult: r})
				fmt.Fprintf(os.Stderr, "load: %s lag at %d orders/s: answered %.0f orders/s, lag p50 %s p99 %s ms, seen %d of %d\n",
					name, o.rate, float64(r.answered)/r.took.Seconds(), msf(r.lag.p50), msf(r.lag.p99), r.seen, r.expected)
				continue
			}
			if scenario == "query" && ids.len() == 0 {
				// Orders to read: placed (and kept) by a short warm-up of its own.
				drive(ctx, url, "place", 8, 0, 3*time.Second, ids, func() {}, func() {})
			}
			for _, n := range o.clients {
				if ctx.Err() != nil {
					break
				}
				m := &cpuMeter{groups: groups}
				var ended time.Time
				var before, after batching
				begin := func() { before = readBatching(ctx, url); m.begin() }
				finish := func() { m.finish(); ended = time.Now(); after = readBatching(ctx, url) }
				rec, took := drive(ctx, url, scenario, n, o.warmup, o.duration, ids, begin, finish)
				r := result{system: name, scenario: scenario, clients: n, took: took, orders: rec.orders.Load(), mutations: rec.muts.Load(),
					muts: rec.mutationStats(), ops: rec.stats(), errs: rec.errs, samples: rec.sample, cpu: map[string]float64{}, used: map[string]time.Duration{},
					batching: after.since(before)}
				for i, g := range groups {
					r.cpu[g.name] = m.cores(i)
					r.used[g.name] = m.used(i)
				}
				if w := rec.last.Load(); w != nil {
					// How far behind the views were when the load stopped.
					r.caughtUp, r.reached = catchUp(ctx, url, w, ended, 2*time.Minute)
				}
				results = append(results, r)
				printResult(os.Stderr, r)
			}
		}
		if sys != nil {
			sys.stop()
			if err := s.dropData(sys.id); err != nil {
				fmt.Fprintln(os.Stderr, "load:", err)
			}
		}
	}
	report(w, results)
	reportLag(w, o.rate, lags)
	return ctx.Err()
}

type lagRow struct {
	system string
	lagResult
}

func reportLag(w io.Writer, rate int, rows []lagRow) {
	if len(rows) == 0 {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| system | offered orders/s | answered orders/s | mutation p50 / p99 (ms) | lag to a subscriber p50 / p90 / p99 / max (ms) | changes seen | errors | CPU (cores): system / broker / store / load |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
	for _, r := range rows {
		errs := 0
		for _, n := range r.errs {
			errs += n
		}
		cores := func(g string) string {
			if v, ok := r.cpu[g]; ok {
				return fmt.Sprintf("%.2f", v)
			}
			return "—"
		}
		fmt.Fprintf(w, "| %s | %d | %.0f | %s / %s | %s / %s / %s / %s | %d of %d | %d | %s / %s / %s / %s |\n",
			r.system, rate, float64(r.answered)/r.took.Seconds(), msf(r.muts.p50), msf(r.muts.p99),
			msf(r.lag.p50), msf(r.lag.p90), msf(r.lag.p99), msf(r.lag.max), r.seen, r.expected, errs,
			cores(r.system), cores("broker"), cores("store"), cores("load"))
		for k, n := range r.errs {
			code := strings.Fields(k)[len(strings.Fields(k))-1]
			fmt.Fprintf(w, "\n- %s lag: %s: %d (e.g. %s)", r.system, k, n, r.samples[code])
		}
	}
	fmt.Fprintln(w)
}

func msf(d time.Duration) string {
	f := float64(d) / float64(time.Millisecond)
	switch {
	case f >= 100:
		return fmt.Sprintf("%.0f", f)
	case f >= 10:
		return fmt.Sprintf("%.1f", f)
	default:
		return fmt.Sprintf("%.2f", f)
	}
}

func printResult(w io.Writer, r result) {
	fmt.Fprintf(w, "load: %s %s x%d: %.0f orders/s, %.0f mutations/s, mutation p50 %s p99 %s ms, errors %d, views caught up %v after (%v), CPU %v; %s\n",
		r.system, r.scenario, r.clients, float64(r.orders)/r.took.Seconds(), float64(r.mutations)/r.took.Seconds(),
		msf(r.muts.p50), msf(r.muts.p99), len(r.errs), r.caughtUp.Round(time.Millisecond), r.reached, r.cpu, r.batching)
}

func report(w io.Writer, results []result) {
	fmt.Fprintln(w, "| system | scenario | clients | orders/s | mutations/s | mutation p50 / p90 / p99 / max (ms) | errors | CPU (cores): system / broker / store / load | broker CPU per order | views caught up after the load |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range results {
		errs := 0
		for _, n := range r.errs {
			errs += n
		}
		perOrder := "—"
		if d, ok := r.used["broker"]; ok && r.orders > 0 {
			perOrder = msf(d/time.Duration(r.orders)) + " ms"
		}
		cores := func(g string) string {
			if _, ok := r.cpu[g]; !ok {
				return "—"
			}
			return fmt.Sprintf("%.2f", r.cpu[g])
		}
		caught := "—"
		switch {
		case r.reached:
			caught = msf(r.caughtUp) + " ms"
		case r.caughtUp > 0:
			caught = "not within " + r.caughtUp.Round(time.Second).String()
		}
		if r.mutations == 0 {
			// A read-only scenario (query): its rates and latencies are in
			// the operations table below.
			fmt.Fprintf(w, "| %s | %s | %d | — | — | — (reads: see below) | %d | %s / %s / %s / %s | — | — |\n",
				r.system, r.scenario, r.clients, errs, cores(r.system), cores("broker"), cores("store"), cores("load"))
			continue
		}
		fmt.Fprintf(w, "| %s | %s | %d | %.0f | %.0f | %s / %s / %s / %s | %d | %s / %s / %s / %s | %s | %s |\n",
			r.system, r.scenario, r.clients, float64(r.orders)/r.took.Seconds(), float64(r.mutations)/r.took.Seconds(),
			msf(r.muts.p50), msf(r.muts.p90), msf(r.muts.p99), msf(r.muts.max), errs,
			cores(r.system), cores("broker"), cores("store"), cores("load"), perOrder, caught)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| system | scenario | clients | operation | n | per second | p50 | p90 | p99 | max (ms) |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range results {
		for _, op := range r.ops {
			fmt.Fprintf(w, "| %s | %s | %d | %s | %d | %.0f | %s | %s | %s | %s |\n", r.system, r.scenario, r.clients, op.name, op.n, float64(op.n)/r.took.Seconds(),
				msf(op.p50), msf(op.p90), msf(op.p99), msf(op.max))
		}
	}
	var errLines []string
	for _, r := range results {
		for k, n := range r.errs {
			code := strings.Fields(k)[len(strings.Fields(k))-1]
			errLines = append(errLines, fmt.Sprintf("- %s %s x%d: %s: %d (e.g. %s)", r.system, r.scenario, r.clients, k, n, r.samples[code]))
		}
	}
	if len(errLines) > 0 {
		fmt.Fprintln(w, "\nErrors:")
		for _, l := range errLines {
			fmt.Fprintln(w, l)
		}
	}
}
