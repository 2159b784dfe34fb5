package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coderws "github.com/coder/websocket"
)

// BenchmarkSubscribers connects N websocket subscribers (graphql-transport-ws)
// to one gateway process, all watching one order, applies updates to it, and
// reports, for an update that reaches all of them: delivery latency measured
// from the moment the mutation was acknowledged (so it includes the
// projector's write; an upper bound on write-to-subscriber), the gateway's
// resident memory per idle subscriber, and its CPU time per delivered
// message. The baseline, in the same run, is the same update delivered to a
// single subscriber.
//
//	go test -run '^$' -bench Subscribers -benchtime 1x .
func BenchmarkSubscribers(b *testing.B) {
	sizes := []int{1, 1000, 10000}
	if s := os.Getenv("BENCH_SUBSCRIBERS"); s != "" { // e.g. BENCH_SUBSCRIBERS=3000
		n, _ := strconv.Atoi(s)
		sizes = []int{n}
	}
	for _, n := range sizes {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			for range b.N {
				benchSubscribers(b, n, 20)
			}
		})
	}
}

func benchSubscribers(b *testing.B, subscribers, updates int) {
	bin := buildGateway(b)
	dataDir := b.TempDir()
	logs, _ := os.Create(filepath.Join(dataDir, "gateway.log"))
	defer logs.Close()
	httpAddr := freeAddr(b)
	env := []string{"LISTEN_ADDR=" + httpAddr, "DATA_DIR=" + dataDir, "PARTITIONS=1", "LOG_LEVEL=warn",
		"MONGODB_URI=", "KAFKA_BROKERS=", "SESSION_TIMEOUT=2s", "WS_PING_INTERVAL=60s", "GOGC=100"}
	profile := os.Getenv("BENCH_CPUPROFILE")    // a file: the gateway's CPU profile of the first 5s of updates
	memProfile := os.Getenv("BENCH_MEMPROFILE") // a file: its heap profile when idle (and FILE.txt, with runtime.MemStats)
	debugAddr := ""
	if profile != "" || memProfile != "" {
		debugAddr = freeAddr(b)
		env = append(env, "DEBUG_ADDR="+debugAddr)
	}
	p := &process{t: b, bin: bin, env: env, url: "http://" + httpAddr, logs: logs}
	p.start()
	defer p.stop()
	client := &gateway{url: p.url}
	order := client.mustMutate(b, "placeOrder", placeInput("bench", item("SKU-0", 1, "1")))

	// received[v] counts the subscribers that have version v.
	var mu sync.Mutex
	arrivals := map[int][]time.Time{}
	var conns []*coderws.Conn
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var readers sync.WaitGroup
	var ready atomic.Int64
	rssBefore := processRSS(b, p.cmd.Process.Pid)
	dial := func() (*coderws.Conn, error) {
		c, _, err := coderws.Dial(ctx, "ws://"+httpAddr+"/graphql", &coderws.DialOptions{Subprotocols: []string{"graphql-transport-ws"}})
		if err != nil {
			return nil, err
		}
		c.SetReadLimit(1 << 20)
		init, _ := json.Marshal(map[string]any{"type": "connection_init"})
		sub, _ := json.Marshal(map[string]any{"id": "1", "type": "subscribe", "payload": map[string]any{
			"query": `subscription($id: ID!) { orderUpdated(id: $id) { id version status itemCount } }`, "variables": map[string]any{"id": order.ID}}})
		if err := c.Write(ctx, coderws.MessageText, init); err != nil {
			return nil, err
		}
		if err := c.Write(ctx, coderws.MessageText, sub); err != nil {
			return nil, err
		}
		return c, nil
	}
	sem := make(chan struct{}, 100)
	var dialErr atomic.Pointer[error]
	var dialed atomic.Int64
	var dials sync.WaitGroup
	for range subscribers {
		sem <- struct{}{}
		dials.Add(1)
		go func() {
			defer dials.Done()
			defer func() { <-sem }()
			c, err := dial()
			if err != nil {
				dialErr.Store(&err)
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			dialed.Add(1)
			readers.Add(1)
			go func() {
				defer readers.Done()
				var m struct {
					Type    string
					Payload struct {
						Data struct{ OrderUpdated struct{ Version int } }
					}
				}
				for {
					_, data, err := c.Read(ctx)
					if err != nil {
						return
					}
					now := time.Now()
					if json.Unmarshal(data, &m) != nil || m.Type != "next" {
						continue
					}
					v := m.Payload.Data.OrderUpdated.Version
					if v == 1 {
						ready.Add(1)
						continue
					}
					mu.Lock()
					arrivals[v] = append(arrivals[v], now)
					mu.Unlock()
				}
			}()
		}()
	}
	dials.Wait()
	b.Logf("%d websockets open; waiting for their snapshots", dialed.Load())
	if e := dialErr.Load(); e != nil {
		b.Fatalf("dial: %v", *e)
	}
	waitUntil(b, 2*time.Minute, func() bool { return ready.Load() == int64(subscribers) }, "all subscribers got the snapshot")
	b.Logf("%d subscribers connected and got the snapshot", ready.Load())
	time.Sleep(2 * time.Second) // idle
	rssIdle := processRSS(b, p.cmd.Process.Pid)
	if memProfile != "" {
		for file, url := range map[string]string{memProfile: "/debug/pprof/heap", memProfile + ".txt": "/debug/pprof/heap?debug=1"} {
			if err := fetchProfile("http://"+debugAddr+url, file); err != nil {
				b.Errorf("heap profile: %v", err)
			}
		}
	}
	cpuBefore := processCPU(b, p.cmd.Process.Pid)

	b.ResetTimer()
	profiled := make(chan struct{})
	if profile != "" {
		go func() {
			defer close(profiled)
			if err := fetchProfile("http://"+debugAddr+"/debug/pprof/profile?seconds=5", profile); err != nil {
				b.Errorf("CPU profile: %v", err)
			}
		}()
	} else {
		close(profiled)
	}
	var latencies []time.Duration
	for u := range updates {
		v := u + 2
		start := time.Now()
		client.mustMutate(b, "addOrderItem", map[string]any{"orderId": order.ID, "item": item(fmt.Sprintf("SKU-%d", u+1), 1, "1")})
		acked := time.Now()
		waitUntil(b, 30*time.Second, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(arrivals[v]) == subscribers
		}, fmt.Sprintf("all %d subscribers got version %d", subscribers, v))
		mu.Lock()
		for _, at := range arrivals[v] {
			latencies = append(latencies, at.Sub(acked))
		}
		mu.Unlock()
		_ = start
	}
	b.StopTimer()
	<-profiled
	cpu := processCPU(b, p.cmd.Process.Pid) - cpuBefore
	slices.Sort(latencies)
	pct := func(q float64) float64 {
		return float64(latencies[min(len(latencies)-1, int(q*float64(len(latencies))))]) / 1e6
	}
	delivered := subscribers * updates
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(latencies[len(latencies)-1])/1e6, "max-ms")
	b.ReportMetric(float64(rssIdle-rssBefore)/1024/float64(subscribers), "KB/idle-sub")
	b.ReportMetric(float64(cpu.Microseconds())/float64(delivered), "cpu-µs/msg")
	b.Logf("%d subscribers × %d updates on %d cores: delivery after ack p50 %.1f ms, p99 %.1f ms, max %.1f ms; gateway RSS %d MB → %d MB idle; CPU %s for %d messages",
		subscribers, updates, runtime.NumCPU(), pct(0.5), pct(0.99), float64(latencies[len(latencies)-1])/1e6,
		rssBefore>>20, rssIdle>>20, cpu, delivered)
	for _, c := range conns {
		c.CloseNow()
	}
	cancel()
	readers.Wait()
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
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b)[strings.LastIndexByte(string(b), ')')+2:])
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // clock ticks (USER_HZ = 100)
}
