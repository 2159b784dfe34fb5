package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// lagResult is what the lag scenario measured: orders offered at a fixed
// rate (open loop: a new order starts on schedule whether or not earlier
// ones were answered), and how long after each mutation's answer a
// subscriber saw the change it made.
type lagResult struct {
	offered, answered int
	took              time.Duration
	muts              opStats
	lag               opStats
	seen, expected    int
	errs              map[string]int
	samples           map[string]string
	cpu               map[string]float64
}

// lagWatch follows the order changes of the load's customers, one
// server-sent events subscription (ordersUpdated) per customer, and matches
// each to the answer of the mutation that made it.
type lagWatch struct {
	mu       sync.Mutex
	answered map[string][]sighting // by order: the versions mutations answered, and when
	arrived  map[string][]sighting // by order: the versions the subscriber saw, and when
}

type sighting struct {
	version int
	at      time.Time
}

func (w *lagWatch) answer(id string, version int, at time.Time) {
	w.mu.Lock()
	w.answered[id] = append(w.answered[id], sighting{version, at})
	w.mu.Unlock()
}

// lags matches each answered version with the first arrival of that
// version or a newer one: the subscription sends the newest state of an
// order, so a version the projector folded into a later write (or the
// stream skipped) is seen when its successor is.
func (w *lagWatch) lags() (lags []time.Duration, expected int) {
	for id, as := range w.answered {
		for _, a := range as {
			expected++
			for _, s := range w.arrived[id] {
				if s.version >= a.version {
					lags = append(lags, max(0, s.at.Sub(a.at)))
					break
				}
			}
		}
	}
	return lags, expected
}

// follow reads customer's subscription until ctx ends. It returns once the
// stream is open.
func (w *lagWatch) follow(ctx context.Context, url, customer string) error {
	body, _ := json.Marshal(map[string]any{"query": "subscription($c: ID) { ordersUpdated(customerId: $c) { id version } }", "variables": map[string]any{"c": customer}})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+tokens.customer(customer))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return fmt.Errorf("subscribe: HTTP %d", resp.StatusCode)
	}
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			now := time.Now()
			var ev struct {
				Data struct {
					OrdersUpdated struct {
						ID      string `json:"id"`
						Version int    `json:"version"`
					} `json:"ordersUpdated"`
				} `json:"data"`
			}
			if json.Unmarshal([]byte(data), &ev) != nil {
				continue
			}
			o := ev.Data.OrdersUpdated
			w.mu.Lock()
			w.arrived[o.ID] = append(w.arrived[o.ID], sighting{o.Version, now})
			w.mu.Unlock()
		}
	}()
	return nil
}

// lag offers rate orders a second (each placed, then confirmed) for d, then
// waits up to drain for the last changes to arrive.
func runLag(ctx context.Context, url string, rate int, d, drain time.Duration, groups []group) (lagResult, error) {
	w := &lagWatch{answered: map[string][]sighting{}, arrived: map[string][]sighting{}}
	sctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	for i := range customers {
		if err := w.follow(sctx, url, (&client{id: i}).customer()); err != nil {
			return lagResult{}, err
		}
	}
	time.Sleep(200 * time.Millisecond) // the subscription is registered
	cs, err := newConns(url, 512, 30*time.Second)
	if err != nil {
		return lagResult{}, err
	}
	defer cs.close()
	rec := newRecorder()
	m := &cpuMeter{groups: groups}
	const maxInFlight = 2000
	var (
		wg       sync.WaitGroup
		inFlight atomic.Int64
		offered  int
		skipped  int
	)
	interval := time.Second / time.Duration(rate)
	m.begin()
	start := time.Now()
	for next := start; time.Since(start) < d && ctx.Err() == nil; next = next.Add(interval) {
		time.Sleep(time.Until(next))
		if inFlight.Load() >= maxInFlight {
			skipped++
			continue
		}
		offered++
		inFlight.Add(1)
		wg.Add(1)
		c := &client{conns: cs, id: offered}
		go func() {
			defer wg.Done()
			defer inFlight.Add(-1)
			var p payload
			if rec.time("placeOrder", func() (err error) { p, err = c.place(ctx); return }) != nil {
				return
			}
			w.answer(p.Order.ID, p.Order.Version, time.Now())
			var q payload
			if rec.time("confirmOrder", func() (err error) { q, err = c.confirm(ctx, p.Order.ID, p.Order.Version); return }) != nil {
				return
			}
			w.answer(q.Order.ID, q.Order.Version, time.Now())
			rec.orders.Add(1)
		}()
	}
	took := time.Since(start)
	wg.Wait()
	m.finish()
	deadline := time.Now().Add(drain)
	var lags []time.Duration
	var expected int
	for {
		w.mu.Lock()
		lags, expected = w.lags()
		w.mu.Unlock()
		if len(lags) >= expected || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	stopWatch()
	slices.Sort(lags)
	r := lagResult{offered: offered, answered: int(rec.orders.Load()), took: took, muts: rec.mutationStats(),
		seen: len(lags), expected: expected, errs: rec.errs, samples: rec.sample, cpu: map[string]float64{}}
	if skipped > 0 {
		r.errs["offer SKIPPED"] = skipped
		r.samples["SKIPPED"] = fmt.Sprintf("SKIPPED: %d orders were not offered: %d already in flight", skipped, maxInFlight)
	}
	if len(lags) > 0 {
		r.lag = opStats{name: "lag", n: len(lags), p50: percentile(lags, 50), p90: percentile(lags, 90), p99: percentile(lags, 99), max: lags[len(lags)-1]}
	}
	for i, g := range groups {
		r.cpu[g.name] = m.cores(i)
	}
	return r, nil
}
