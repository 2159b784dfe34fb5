package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestWebsocketAndSSEFloods: hostile clients of the streaming transports
// (a connection that sends thousands of subscriptions and reads nothing,
// more websocket and SSE connections than MAX_CONNECTIONS, a flood of
// pings) get their refusals or are disconnected; what they held is freed;
// the heap stays bounded; and a normal mutation is answered right after
// each probe.
func TestWebsocketAndSSEFloods(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxConnections = 60
	cfg.WSWriteTimeout = 2 * time.Second
	g := startGateway(t, cfg)
	o := g.mustMutate(t, "placeOrder", placeInput("cust-flood", item("A", 1, "1")))
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}
	base := heap()
	afterProbe := func(what string) {
		t.Helper()
		t0 := time.Now()
		g.mustMutate(t, "confirmOrder", map[string]any{"orderId": g.mustMutate(t, "placeOrder", placeInput("cust-flood", item("B", 1, "1"))).ID})
		h := heap()
		t.Logf("%s: then a placeOrder and a confirmOrder answered in %s; heap %d MiB (%+d MiB)", what,
			time.Since(t0).Round(time.Millisecond), h>>20, (int64(h)-int64(base))>>20)
		if h > base+256<<20 {
			t.Errorf("%s: the heap grew by %d MiB", what, (h-base)>>20)
		}
	}

	t.Run("thousands of subscriptions on one connection, none read", func(t *testing.T) {
		c := dialWS(t, g, wsDial{paused: true})
		ctx, cancel := context.WithTimeout(context.Background(), eventWait)
		defer cancel()
		payload, _ := json.Marshal(map[string]any{"query": orderUpdatedQuery, "variables": map[string]any{"id": o.ID}})
		sent := 0
		for i := range 5000 {
			if err := c.send(ctx, wsMsg{ID: fmt.Sprint(i), Type: "subscribe", Payload: payload}); err != nil {
				break // the server closed it
			}
			sent++
		}
		if n := g.Hub().Count(); n > cfg.MaxSubscriptions {
			t.Fatalf("%d subscriptions in the hub from one connection (cap %d)", n, cfg.MaxSubscriptions)
		}
		// It reads nothing: once its buffers are full, a write waits
		// WS_WRITE_TIMEOUT and the server drops it.
		waitFor(t, eventWait, "the unread connection dropped and its subscriptions freed", func() bool { return g.Hub().Count() == 0 })
		c.start()
		var refused, data int
		for {
			m, err := c.tryNext(eventWait, func(wsMsg) bool { return true })
			if err != nil {
				break
			}
			switch m.Type {
			case "error":
				refused++
			case "next":
				data++
			}
		}
		t.Logf("sent %d subscribes; read back %d results and %d refusals before the close (%v)", sent, data, refused, c.readErr)
		afterProbe("subscribe flood")
	})

	t.Run("more websockets than MAX_CONNECTIONS", func(t *testing.T) {
		var (
			mu      sync.Mutex
			clients []*wsClient
			failed  int
			wg      sync.WaitGroup
		)
		for range 100 {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), eventWait)
				defer cancel()
				c, _, err := tryDialWS(ctx, wsURL(g), wsDial{})
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					failed++
					return
				}
				clients = append(clients, c)
			})
		}
		wg.Wait()
		if len(clients) > cfg.MaxConnections {
			t.Fatalf("%d websockets open (MAX_CONNECTIONS %d)", len(clients), cfg.MaxConnections)
		}
		if failed == 0 {
			t.Fatal("no websocket was refused past MAX_CONNECTIONS")
		}
		t.Logf("%d websockets open, %d refused (MAX_CONNECTIONS %d)", len(clients), failed, cfg.MaxConnections)
		for _, c := range clients {
			c.close()
		}
		waitFor(t, eventWait, "connections released", func() bool {
			resp, err := http.Get(g.url + "/healthz")
			if err == nil {
				resp.Body.Close()
			}
			return err == nil
		})
		afterProbe("websocket connection flood")
	})

	t.Run("more SSE streams than MAX_CONNECTIONS", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		body, _ := json.Marshal(map[string]any{"query": fmt.Sprintf(`subscription { orderUpdated(id: %q) { version } }`, o.ID)})
		var (
			mu       sync.Mutex
			open     int
			refused  int
			wg       sync.WaitGroup
			tr       = &http.Transport{MaxConnsPerHost: 0, DisableKeepAlives: true}
			client   = &http.Client{Transport: withStaffToken(tr)}
			received = make(chan struct{}, 200)
		)
		defer tr.CloseIdleConnections()
		for range 100 {
			wg.Go(func() {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, g.url+"/graphql", strings.NewReader(string(body)))
				req.Header.Set("Accept", "text/event-stream")
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil || resp.StatusCode != http.StatusOK {
					mu.Lock()
					refused++
					mu.Unlock()
					if err == nil {
						resp.Body.Close()
					}
					return
				}
				buf := make([]byte, 64)
				if n, _ := resp.Body.Read(buf); n > 0 {
					mu.Lock()
					open++
					mu.Unlock()
					received <- struct{}{}
				}
				<-ctx.Done()
				resp.Body.Close()
			})
		}
		time.Sleep(2 * time.Second)
		mu.Lock()
		gotOpen, gotRefused := open, refused
		mu.Unlock()
		if gotOpen > cfg.MaxConnections || gotRefused == 0 {
			t.Fatalf("%d SSE streams open, %d refused (MAX_CONNECTIONS %d)", gotOpen, gotRefused, cfg.MaxConnections)
		}
		t.Logf("%d SSE streams open, %d refused or cut (MAX_CONNECTIONS %d)", gotOpen, gotRefused, cfg.MaxConnections)
		cancel()
		wg.Wait()
		waitFor(t, eventWait, "SSE subscriptions freed", func() bool { return g.Hub().Count() == 0 })
		afterProbe("SSE stream flood")
	})

	t.Run("ping flood", func(t *testing.T) {
		c := dialWS(t, g, wsDial{})
		ctx, cancel := context.WithTimeout(context.Background(), eventWait)
		defer cancel()
		for range 20000 {
			if err := c.send(ctx, wsMsg{Type: "ping"}); err != nil {
				t.Fatalf("ping flood: %v", err)
			}
		}
		c.subscribe(t, "after", orderUpdatedQuery, map[string]any{"id": o.ID})
		if s := c.nextOrder(t, "after", "orderUpdated"); s.ID != o.ID {
			t.Fatalf("after the pings: %+v", s)
		}
		afterProbe("ping flood")
	})
}
