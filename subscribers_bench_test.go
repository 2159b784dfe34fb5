//go:build linux

package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkSubscribers connects N websocket subscribers (graphql-transport-ws)
// to one gateway process, all watching one order, applies updates to it, and
// reports, for an update that reaches all of them: delivery latency measured
// from the moment the mutation was acknowledged (so it includes the
// projector's write; an upper bound on write-to-subscriber), the gateway's
// resident memory per idle subscriber, and its CPU time per delivered
// message.
//
// The baseline, in the same run with the same clients, is the floor: the
// same number of subscribers on cmd/fanoutfloor, a websocket server that
// only writes one prepared message per connection (latency measured from
// the moment the update is sent to it). The figures prefixed floor- are
// its; p99-x-floor is the gateway's p99 over the floor's.
//
//	go test -run '^$' -bench Subscribers -benchtime 1x .
//
// BENCH_SUBSCRIBERS=N runs one size; BENCH_UPDATES=N applies N updates
// (20); BENCH_CPUPROFILE=FILE and BENCH_MEMPROFILE=FILE save the gateway's
// profiles.
func BenchmarkSubscribers(b *testing.B) {
	sizes := []int{1, 1000, 10000}
	if s := os.Getenv("BENCH_SUBSCRIBERS"); s != "" { // e.g. BENCH_SUBSCRIBERS=3000
		n, _ := strconv.Atoi(s)
		sizes = []int{n}
	}
	updates := 20
	if s := os.Getenv("BENCH_UPDATES"); s != "" { // more updates, steadier CPU figures
		updates, _ = strconv.Atoi(s)
	}
	for _, n := range sizes {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			for range b.N {
				benchSubscribers(b, n, updates)
			}
		})
	}
}

func benchSubscribers(b *testing.B, subscribers, updates int) {
	g := fanoutGateway(b)
	defer g.stop()
	gw := runSubscribers(b, g, subscribers, updates)
	g.stop()
	f := fanoutFloor(b)
	defer f.stop()
	floor := runSubscribers(b, f, subscribers, updates)

	b.ReportMetric(gw.pct(0.50), "p50-ms")
	b.ReportMetric(gw.pct(0.99), "p99-ms")
	b.ReportMetric(gw.pct(1), "max-ms")
	b.ReportMetric(gw.kbPerSub, "KB/idle-sub")
	b.ReportMetric(gw.cpuPerMsg, "cpu-µs/msg")
	b.ReportMetric(floor.pct(0.50), "floor-p50-ms")
	b.ReportMetric(floor.pct(0.99), "floor-p99-ms")
	b.ReportMetric(floor.kbPerSub, "floor-KB/idle-sub")
	b.ReportMetric(floor.cpuPerMsg, "floor-cpu-µs/msg")
	b.ReportMetric(gw.pct(0.99)/floor.pct(0.99), "p99-x-floor")
	for _, r := range []struct {
		name string
		fanoutResult
	}{{"gateway", gw}, {"floor", floor}} {
		b.Logf("%-7s %d subscribers × %d updates on %d cores: delivery p50 %.1f ms, p99 %.1f ms, max %.1f ms; %.1f KB per idle subscriber (RSS %d MB → %d MB); %.1f µs CPU per message (%.1f µs of it in user space; clients: %.1f µs)",
			r.name, subscribers, updates, runtime.NumCPU(), r.pct(0.5), r.pct(0.99), r.pct(1), r.kbPerSub, r.rssBefore>>20, r.rssIdle>>20, r.cpuPerMsg, r.userPerMsg, r.clientCPUPerMsg)
	}
}

// fanoutTarget is a server the benchmark's subscribers connect to.
type fanoutTarget struct {
	wsURL string
	pid   int
	// update makes version v (2, 3, ...) go out and returns when the
	// latency clock starts.
	update func(v int) time.Time
	stop   func()
	// afterIdle runs once the subscribers are idle (profiles).
	afterIdle func()
	// during runs while the updates go out (profiles); the run waits for it.
	during func() (wait func())
	// afterUpdates runs once every update has arrived (profiles).
	afterUpdates func()
}

// fanoutGateway starts the gateway process with one order to watch.
func fanoutGateway(b *testing.B) fanoutTarget {
	bin := buildGateway(b)
	dataDir := b.TempDir()
	logs, _ := os.Create(filepath.Join(dataDir, "gateway.log"))
	httpAddr := freeAddr(b)
	env := []string{"LISTEN_ADDR=" + httpAddr, "DATA_DIR=" + dataDir, "PARTITIONS=1", "LOG_LEVEL=warn",
		"MONGODB_URI=", "KAFKA_BROKERS=", "SESSION_TIMEOUT=2s", "WS_PING_INTERVAL=60s", "GOGC=100"}
	profile := os.Getenv("BENCH_CPUPROFILE")    // a file: the gateway's CPU profile of the first 5s of updates
	memProfile := os.Getenv("BENCH_MEMPROFILE") // a file: its heap profile when idle (and FILE.txt, with runtime.MemStats), and FILE.after once the updates have arrived
	debugAddr := ""
	if profile != "" || memProfile != "" {
		debugAddr = freeAddr(b)
		env = append(env, "DEBUG_ADDR="+debugAddr)
	}
	p := &process{t: b, bin: bin, env: env, url: "http://" + httpAddr, logs: logs}
	p.start()
	client := &gateway{url: p.url}
	order := client.mustMutate(b, "placeOrder", placeInput("bench", item("SKU-0", 1, "1")))
	var once sync.Once
	return fanoutTarget{
		wsURL: "ws://" + httpAddr + "/graphql?order=" + order.ID,
		pid:   p.cmd.Process.Pid,
		update: func(v int) time.Time {
			client.mustMutate(b, "addOrderItem", map[string]any{"orderId": order.ID, "item": item(fmt.Sprintf("SKU-%d", v), 1, "1")})
			return time.Now() // acknowledged
		},
		stop: func() { once.Do(func() { p.stop(); logs.Close() }) },
		afterIdle: func() {
			if memProfile == "" {
				return
			}
			for file, url := range map[string]string{memProfile: "/debug/pprof/heap", memProfile + ".txt": "/debug/pprof/heap?debug=1"} {
				if err := fetchProfile("http://"+debugAddr+url, file); err != nil {
					b.Errorf("heap profile: %v", err)
				}
			}
		},
		afterUpdates: func() {
			if memProfile == "" {
				return
			}
			if err := fetchProfile("http://"+debugAddr+"/debug/pprof/heap", memProfile+".after"); err != nil {
				b.Errorf("heap profile: %v", err)
			}
		},
		during: func() func() {
			if profile == "" {
				return func() {}
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				if err := fetchProfile("http://"+debugAddr+"/debug/pprof/profile?seconds=5", profile); err != nil {
					b.Errorf("CPU profile: %v", err)
				}
			}()
			return func() { <-done }
		},
	}
}

// fanoutFloor starts cmd/fanoutfloor.
func fanoutFloor(b *testing.B) fanoutTarget {
	bin := filepath.Join(b.TempDir(), "fanoutfloor")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/fanoutfloor").CombinedOutput(); err != nil {
		b.Fatalf("go build ./cmd/fanoutfloor: %v\n%s", err, out)
	}
	addr := freeAddr(b)
	cmd := exec.Command(bin, "-listen", addr)
	cmd.Env = append(os.Environ(), "GOGC=100")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	waitUntil(b, 30*time.Second, func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == http.StatusOK
	}, "the floor server is ready")
	var once sync.Once
	return fanoutTarget{
		wsURL: "ws://" + addr + "/graphql",
		pid:   cmd.Process.Pid,
		update: func(v int) time.Time {
			sent := time.Now()
			resp, err := http.Post(fmt.Sprintf("http://%s/publish?version=%d", addr, v), "text/plain", nil)
			if err != nil {
				b.Fatal(err)
			}
			resp.Body.Close()
			return sent
		},
		stop:         func() { once.Do(stop) },
		afterIdle:    func() {},
		during:       func() func() { return func() {} },
		afterUpdates: func() {},
	}
}

type fanoutResult struct {
	latencies           []time.Duration // sorted
	rssBefore, rssIdle  int64
	kbPerSub, cpuPerMsg float64
	userPerMsg          float64 // of cpuPerMsg, in user space (the rest is the kernel's: mostly the socket writes)
	clientCPUPerMsg     float64 // this process's: the clients'
}

// pct is the q-quantile of the latencies in milliseconds (1: the maximum).
func (r fanoutResult) pct(q float64) float64 {
	return float64(r.latencies[min(len(r.latencies)-1, int(q*float64(len(r.latencies))))]) / 1e6
}

// runSubscribers connects n subscribers to t, waits for each one's first
// state, lets them idle, then sends updates and times their arrival.
//
// The clients are lean on purpose (epollSubscribers: raw sockets, one epoll
// loop per core, a byte scan instead of JSON decoding): they share this
// machine's cores with the server, and every microsecond they spend is one
// the server does not get.
func runSubscribers(b *testing.B, t fanoutTarget, n, updates int) fanoutResult {
	r := fanoutResult{rssBefore: processRSS(b, t.pid)}
	orderID := ""
	if u, err := url.Parse(t.wsURL); err == nil {
		orderID = u.Query().Get("order")
	}
	subs, err := dialEpollSubscribers(t.wsURL, orderID, n, updates+1)
	if err != nil {
		b.Fatalf("dial: %v", err)
	}
	defer subs.close()
	failed := func() bool {
		if err := subs.err(); err != nil {
			b.Fatal(err)
		}
		return false
	}
	waitUntil(b, 2*time.Minute, func() bool { return failed() || subs.ready.Load() == int64(n) }, "all subscribers got the first state")
	time.Sleep(2 * time.Second) // idle
	r.rssIdle = processRSS(b, t.pid)
	t.afterIdle()
	userBefore, systemBefore := processUserSystem(b, t.pid)
	clientCPUBefore := processCPU(b, os.Getpid())

	b.ResetTimer()
	wait := t.during()
	for u := range updates {
		v := u + 2
		start := t.update(v)
		waitUntil(b, 30*time.Second, func() bool { return failed() || subs.delivered(v) == n },
			fmt.Sprintf("all %d subscribers got version %d", n, v))
		r.latencies = subs.latencies(r.latencies, v, start)
	}
	b.StopTimer()
	wait()
	t.afterUpdates()
	user, system := processUserSystem(b, t.pid)
	user, system = user-userBefore, system-systemBefore
	cpu := user + system
	r.userPerMsg = float64(user.Microseconds()) / float64(n*updates)
	r.clientCPUPerMsg = float64((processCPU(b, os.Getpid()) - clientCPUBefore).Microseconds()) / float64(n*updates)
	failed()
	slices.Sort(r.latencies)
	r.kbPerSub = float64(r.rssIdle-r.rssBefore) / 1024 / float64(n)
	r.cpuPerMsg = float64(cpu.Microseconds()) / float64(n*updates)
	return r
}

// nextVersion finds the order version in a "next" message without decoding
// it: the benchmark's query puts "version" in no other place.
func nextVersion(msg []byte) (int, bool) {
	if !bytes.Contains(msg, []byte(`"type":"next"`)) {
		return 0, false
	}
	i := bytes.Index(msg, []byte(`"version":`))
	if i < 0 {
		return 0, false
	}
	v := 0
	digits := msg[i+len(`"version":`):]
	n := 0
	for n < len(digits) && digits[n] >= '0' && digits[n] <= '9' {
		v = v*10 + int(digits[n]-'0')
		n++
	}
	return v, n > 0
}

// fetchProfile saves the profile served at url to file.
func fetchProfile(url, file string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func waitUntil(b testing.TB, within time.Duration, cond func() bool, what string) {
	deadline, next := time.Now().Add(within), time.Now().Add(15*time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("timed out after %s waiting until %s", within, what)
		}
		if time.Now().After(next) {
			b.Logf("still waiting until %s", what)
			next = time.Now().Add(15 * time.Second)
		}
		time.Sleep(time.Millisecond)
	}
}

// processRSS is a process's resident set size in bytes.
func processRSS(t testing.TB, pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// processCPU is a process's user+system CPU time.
func processCPU(t testing.TB, pid int) time.Duration {
	user, system := processUserSystem(t, pid)
	return user + system
}

// processUserSystem is a process's user and system CPU time.
func processUserSystem(t testing.TB, pid int) (user, system time.Duration) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b)[strings.LastIndexByte(string(b), ')')+2:])
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime) * time.Second / 100, time.Duration(stime) * time.Second / 100 // clock ticks (USER_HZ = 100)
}
