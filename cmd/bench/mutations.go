package main

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/ordergateway/gateway/domain"
)

// rawResults are the raw floor's figures, compared with the gateway's.
type rawResults struct {
	hop, pair   *samples      // sequential, one client
	hopCPU      time.Duration // process CPU per sequential hop
	hopWall     time.Duration // wall time per sequential hop (mean)
	tput        float64       // hops/s at the throughput concurrency
	tputErrs    int64
	tputLat     *samples
	tputElapsed time.Duration
	tputCores   float64
	tputHops    int64 // hops answered in the throughput load

	// With a raw projector (rawProjector) only.
	tputProjected int64 // events of the throughput load in the read model when it stopped
	projFailed    int64 // events whose write failed

	// Single mutations over HTTP through the GraphQL server, each decided in
	// memory and put through a raw hop (rawHopCommands), sequential (while
	// the raw read model writes, if there is one).
	gqlHop *samples
}

// loadResult is what a closed-loop load run achieved.
type loadResult struct {
	ok, errs  atomic.Int64
	lat       samples
	elapsed   time.Duration
	cpu       time.Duration // process CPU time used meanwhile
	mu        sync.Mutex
	firstErrs []string
}

func (r *loadResult) record(d time.Duration, err error) {
	if err != nil {
		r.errs.Add(1)
		r.mu.Lock()
		if len(r.firstErrs) < 3 {
			r.firstErrs = append(r.firstErrs, err.Error())
		}
		r.mu.Unlock()
		return
	}
	r.ok.Add(1)
	r.lat.add(d)
}

// runLoad runs conc workers, each calling step in a loop, until dur has
// passed (a step in flight finishes; it is counted). elapsed runs until the
// last worker stops.
func runLoad(ctx context.Context, conc int, dur time.Duration, step func(ctx context.Context, worker, i int, r *loadResult)) *loadResult {
	r := &loadResult{}
	cpu0 := cpuTime()
	start := time.Now()
	deadline := start.Add(dur)
	var wg sync.WaitGroup
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline) && ctx.Err() == nil; i++ {
				step(ctx, w, i, r)
			}
		}()
	}
	wg.Wait()
	r.elapsed = time.Since(start)
	r.cpu = cpuTime() - cpu0
	return r
}

// offerOrders starts one order every 2/rate s (rate mutations/s, an order
// being two) for dur, each running order(i) in a goroutine of its own, with
// at most inFlight running at once; an order due while inFlight are running
// is not started. It returns when every started order has finished, with
// the time from the first start and the number of orders not started.
func offerOrders(ctx context.Context, rate int, dur time.Duration, inFlight int, order func(i int)) (elapsed time.Duration, dropped int) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, inFlight)
	interval := 2 * time.Second / time.Duration(rate)
	start := time.Now()
	for i := 0; ; i++ {
		next := start.Add(time.Duration(i) * interval)
		if next.Sub(start) >= dur || ctx.Err() != nil {
			break
		}
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		select {
		case sem <- struct{}{}:
		default:
			dropped++
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			order(i)
		}()
	}
	wg.Wait()
	return time.Since(start), dropped
}

// cores is the average number of CPUs the process used during the run.
func (r *loadResult) cores() float64 { return r.cpu.Seconds() / r.elapsed.Seconds() }

func timed(f func() error) (time.Duration, error) {
	t := time.Now()
	err := f()
	return time.Since(t), err
}

// rawMutations measures the raw floor: sequential hops (latency) and
// closed-loop hops at the throughput concurrency; then the same again on
// fresh topics with a raw projector keeping a read model (rawProjector).
func (b *bench) rawMutations(ctx context.Context) error {
	res, err := b.rawHops(ctx, b.env.name("raw"), false)
	if err != nil {
		return err
	}
	b.raw = res
	if b.rawCQRS, err = b.rawHops(ctx, b.env.name("rawcqrs"), true); err != nil {
		return fmt.Errorf("raw floor with a read model: %w", err)
	}
	return nil
}

// rawHops runs the raw floor's hops on fresh topics named prefix, with a
// raw projector writing the events to the store (database prefix) if
// withProjector.
func (b *bench) rawHops(ctx context.Context, prefix string, withProjector bool) (*rawResults, error) {
	if err := ensureTopics(b.env.brokers, prefix); err != nil {
		return nil, err
	}
	srv, err := startRawServer(b.env.brokers, prefix, b.env.logger)
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	var proj *rawProjector
	if withProjector {
		if proj, err = startRawProjector(ctx, b.env, prefix, false); err != nil {
			return nil, err
		}
		defer proj.Close()
	}
	cl, err := newRawClient(b.env.brokers, prefix)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	res := &rawResults{hop: &samples{}, pair: &samples{}}
	hops := int64(0)
	// Warm up: every partition's transactional producer, connections.
	for range b.o.warmPairs * 3 {
		if err := cl.hop(ctx, randID("ord_")); err != nil {
			return nil, fmt.Errorf("raw warm-up: %w", err)
		}
		hops++
	}
	if proj != nil {
		// The projector's first batch waits for the store's indexes and
		// connections; the measured hops should not.
		if err := proj.waitFor(ctx, hops, 30*time.Second); err != nil {
			return nil, err
		}
		// The warm-up created the summaries' collection.
		if err := b.env.indexIDs(ctx); err != nil {
			return nil, err
		}
	}
	if b.o.scenarios["latency"] {
		cpu0, t0 := cpuTime(), time.Now()
		for range b.o.latencyPairs {
			key := randID("ord_")
			t0 := time.Now()
			if err := cl.hop(ctx, key); err != nil {
				return nil, err
			}
			t1 := time.Now()
			if err := cl.hop(ctx, key); err != nil {
				return nil, err
			}
			t2 := time.Now()
			res.hop.add(t1.Sub(t0))
			res.hop.add(t2.Sub(t1))
			res.pair.add(t2.Sub(t0))
		}
		hops += int64(2 * b.o.latencyPairs)
		res.hopCPU = (cpuTime() - cpu0) / time.Duration(2*b.o.latencyPairs)
		res.hopWall = time.Since(t0) / time.Duration(2*b.o.latencyPairs)
		if proj != nil {
			if err := proj.waitFor(ctx, hops, 60*time.Second); err != nil {
				return nil, err
			}
		}
		n, err := leastGatewayLatency(ctx, cl, b.o.latencyPairs, b.o.warmPairs, res)
		if err != nil {
			return nil, fmt.Errorf("the least gateway: %w", err)
		}
		hops += n
		if proj != nil {
			// Caught up before the throughput load, like the gateway's
			// projector between its phases.
			if err := proj.waitFor(ctx, hops, 60*time.Second); err != nil {
				return nil, err
			}
		}
	}
	if b.o.scenarios["throughput"] {
		r := runLoad(ctx, b.o.concurrency, b.o.duration, func(ctx context.Context, w, i int, r *loadResult) {
			key := randID("ord_")
			for range 2 {
				d, err := timed(func() error { return cl.hop(ctx, key) })
				r.record(d, err)
				if err != nil {
					return
				}
			}
		})
		res.tput = float64(r.ok.Load()) / r.elapsed.Seconds()
		res.tputErrs = r.errs.Load()
		res.tputLat = &r.lat
		res.tputElapsed = r.elapsed
		res.tputCores = r.cores()
		res.tputHops = r.ok.Load()
		if proj != nil {
			res.tputProjected = proj.written.Load() + proj.failed.Load() - hops
		}
		for _, e := range r.firstErrs {
			b.note("raw floor throughput error: %s", e)
		}
	}
	if proj != nil {
		res.projFailed = proj.failed.Load()
	}
	return res, nil
}

// gatewayMutations measures placeOrder+confirmOrder over HTTP, sequentially
// and with concurrent clients, and the process's RSS meanwhile.
func (b *bench) gatewayMutations(ctx context.Context) error {
	name := b.env.name("mut")
	g, err := startGateway(ctx, b.env, name, name)
	if err != nil {
		return err
	}
	defer g.Close()
	c := newGQL(g.url, b.o.concurrency)
	defer c.close()
	raw := b.raw
	if raw == nil {
		raw = &rawResults{hop: &samples{}, pair: &samples{}}
	}
	for i := range b.o.warmPairs * 2 {
		id, v, err := c.placeOrder(ctx, "c-warm", randID("warm"+strconv.Itoa(i)))
		if err == nil {
			_, err = c.confirmOrder(ctx, id, v)
		}
		if err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	// The warm-up created the customers collection.
	if err := b.env.indexIDs(ctx); err != nil {
		return err
	}

	if b.o.scenarios["latency"] {
		var place, confirm, mut, pair samples
		cpu0, tl0 := cpuTime(), time.Now()
		for i := range b.o.latencyPairs {
			t0 := time.Now()
			id, v, err := c.placeOrder(ctx, "c-lat-"+strconv.Itoa(i%10), randID("lat"))
			if err != nil {
				return err
			}
			t1 := time.Now()
			if _, err := c.confirmOrder(ctx, id, v); err != nil {
				return err
			}
			t2 := time.Now()
			place.add(t1.Sub(t0))
			confirm.add(t2.Sub(t1))
			mut.add(t1.Sub(t0))
			mut.add(t2.Sub(t1))
			pair.add(t2.Sub(t0))
		}
		mutCPU := (cpuTime() - cpu0) / time.Duration(2*b.o.latencyPairs)
		mutWall := time.Since(tl0) / time.Duration(2*b.o.latencyPairs)
		for _, p := range []float64{50, 99} {
			ps := "p" + strconv.Itoa(int(p))
			b.add(row{"mutation latency, 1 client", "single mutation " + ps + " (placeOrder and confirmOrder pooled, HTTP)", ms(mut.pct(p)),
				"raw hop " + ps + " (command → txn reply+event+offset → reply)", ms(raw.hop.pct(p)), ratio(float64(mut.pct(p)), float64(raw.hop.pct(p)))})
		}
		for _, p := range []float64{50, 99} {
			ps := "p" + strconv.Itoa(int(p))
			b.add(row{"mutation latency, 1 client", "placeOrder→confirmOrder pair " + ps, ms(pair.pct(p)),
				"raw two-hop pair " + ps, ms(raw.pair.pct(p)), ratio(float64(pair.pct(p)), float64(raw.pair.pct(p)))})
		}
		b.add(row{"mutation latency, 1 client", "process CPU per sequential mutation (cores busy: CPU / wall time)", fmt.Sprintf("%s (%.2f cores)", ms(mutCPU), float64(mutCPU)/float64(mutWall)),
			"process CPU per sequential raw hop (cores busy)", fmt.Sprintf("%s (%.2f cores)", ms(raw.hopCPU), float64(raw.hopCPU)/float64(max(raw.hopWall, 1))), ratio(float64(mutCPU), float64(raw.hopCPU))})
		b.add(row{"mutation latency, 1 client", "placeOrder p50 / p99", ms(place.pct(50)) + " / " + ms(place.pct(99)), "", "", ""})
		b.add(row{"mutation latency, 1 client", "confirmOrder p50 / p99", ms(confirm.pct(50)) + " / " + ms(confirm.pct(99)), "", "", ""})
		alone, err := graphqlAloneLatency(ctx, b.o.latencyPairs)
		if err != nil {
			return fmt.Errorf("GraphQL server alone: %w", err)
		}
		b.add(row{"mutation latency, 1 client", "the GraphQL server alone (same mutations over HTTP, commands decided in memory, no Kafka) p50 / p99",
			ms(alone.pct(50)) + " / " + ms(alone.pct(99)), "", "", ""})
		if raw.hop.len() > 0 {
			lb := raw.hop.pct(50) + alone.pct(50)
			b.add(row{"mutation latency, 1 client", "lower bound for a GraphQL-over-HTTP gateway p50: raw hop p50 + GraphQL server alone p50", ms(lb),
				"raw hop p50", ms(raw.hop.pct(50)), ratio(float64(lb), float64(raw.hop.pct(50)))})
			bound := fmt.Sprintf("the lower bound above is %.2fx", float64(lb)/float64(raw.hop.pct(50)))
			if least := raw.gqlHop; least != nil && least.len() > 0 {
				for _, p := range []float64{50, 99} {
					ps := "p" + strconv.Itoa(int(p))
					b.add(row{"mutation latency, 1 client", "the least GraphQL gateway, measured: single mutation " + ps + " over HTTP through the GraphQL server, decided in memory and put through a raw hop (no read model; placeOrder and confirmOrder pooled)", ms(least.pct(p)),
						"raw hop " + ps, ms(raw.hop.pct(p)), ratio(float64(least.pct(p)), float64(raw.hop.pct(p)))})
				}
				bound += fmt.Sprintf(", %.2fx measured", float64(least.pct(50))/float64(raw.hop.pct(50)))
			}
			if rc := b.rawCQRS; rc != nil && rc.hop.len() > 0 {
				for _, p := range []float64{50, 99} {
					ps := "p" + strconv.Itoa(int(p))
					b.add(row{"mutation latency, 1 client", "raw floor with a read model: raw hop " + ps + " while a raw projector writes the order document and the customer summary of each event into the store (one write per order and one per customer of a batch) (" + strconv.FormatInt(rc.projFailed, 10) + " writes failed)", ms(rc.hop.pct(p)),
						"raw hop " + ps, ms(raw.hop.pct(p)), ratio(float64(rc.hop.pct(p)), float64(raw.hop.pct(p)))})
				}
				b.add(row{"mutation latency, 1 client", "process CPU per raw hop with the read model (cores busy)", fmt.Sprintf("%s (%.2f cores)", ms(rc.hopCPU), float64(rc.hopCPU)/float64(max(rc.hopWall, 1))),
					"process CPU per raw hop (cores busy)", ms(raw.hopCPU), ratio(float64(rc.hopCPU), float64(raw.hopCPU))})
				lbm := rc.hop.pct(50) + alone.pct(50)
				b.add(row{"mutation latency, 1 client", "lower bound for a GraphQL-over-HTTP gateway that keeps a read model p50: raw floor with a read model p50 + GraphQL server alone p50", ms(lbm),
					"raw hop p50", ms(raw.hop.pct(50)), ratio(float64(lbm), float64(raw.hop.pct(50)))})
				bound = fmt.Sprintf("lower bounds: %.2fx without a read model, %.2fx with the gateway's read model at its least on this store (sums of p50s)", float64(lb)/float64(raw.hop.pct(50)), float64(lbm)/float64(raw.hop.pct(50)))
				if least := raw.gqlHop; least != nil && least.len() > 0 {
					bound += fmt.Sprintf("; measured: %.2fx without a read model", float64(least.pct(50))/float64(raw.hop.pct(50)))
				}
				floor := rc.hop
				if least := rc.gqlHop; least != nil && least.len() > 0 {
					// The same bound measured in one piece: the GraphQL
					// server over HTTP in front of the raw hop, beside the
					// raw read model.
					for _, p := range []float64{50, 99} {
						ps := "p" + strconv.Itoa(int(p))
						b.add(row{"mutation latency, 1 client", "the least GraphQL gateway with the read model, measured: single mutation " + ps + " over HTTP through the GraphQL server, decided in memory and put through a raw hop while the raw projector writes (placeOrder and confirmOrder pooled)", ms(least.pct(p)),
							"raw hop " + ps, ms(raw.hop.pct(p)), ratio(float64(least.pct(p)), float64(raw.hop.pct(p)))})
					}
					lbm, floor = least.pct(50), least
					bound += fmt.Sprintf(", %.2fx with the read model", float64(lbm)/float64(raw.hop.pct(50)))
				}
				switch least := raw.gqlHop; {
				case least != nil && least.len() > 0 && least.pct(50) > raw.hop.pct(50)*3/2:
					bound += "; out of reach here for a GraphQL-over-HTTP gateway even without a read model"
				case lbm > raw.hop.pct(50)*3/2:
					bound += fmt.Sprintf("; out of reach here for views kept as fresh (projector linger %s)", projectorLinger)
				}
				for _, p := range []float64{50, 99} {
					ps := "p" + strconv.Itoa(int(p))
					b.add(row{"mutation latency, 1 client", "single mutation " + ps + " (as above)", ms(mut.pct(p)),
						"the least gateway with the read model " + ps, ms(floor.pct(p)), ratio(float64(mut.pct(p)), float64(floor.pct(p)))})
				}
			}
			r50, r99 := float64(mut.pct(50))/float64(raw.hop.pct(50)), float64(mut.pct(99))/float64(raw.hop.pct(99))
			b.target("mutation p50 within 1.5x of raw floor p50 (single mutation vs single hop)", fmt.Sprintf("%s vs %s = %.2fx (%s)", ms(mut.pct(50)), ms(raw.hop.pct(50)), r50, bound), r50 <= 1.5)
			b.target("mutation p99 within 3x of raw floor p99", fmt.Sprintf("%s vs %s = %.2fx", ms(mut.pct(99)), ms(raw.hop.pct(99)), r99), r99 <= 3)
		}
	}

	if b.o.scenarios["throughput"] {
		rss := startRSS(250 * time.Millisecond)
		stopProfile := b.startCPUProfile()
		r, placed := httpLoad(ctx, c, b.o.concurrency, b.o.duration, "tp")
		stopProfile()
		peak, mean := rss.finish()
		var ms0 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		tput := float64(r.ok.Load()) / r.elapsed.Seconds()
		errs := r.errs.Load()
		conc := strconv.Itoa(b.o.concurrency)
		b.add(row{"mutation throughput, " + conc + " clients", fmt.Sprintf("mutations/s over %s (errors)", r.elapsed.Round(10*time.Millisecond)), fmt.Sprintf("%s (%d errors)", rate(tput, "/s"), errs),
			"raw hops/s, " + conc + " clients (errors)", fmt.Sprintf("%s (%d errors)", rate(raw.tput, "/s"), raw.tputErrs), ratio(tput, raw.tput)})
		rawLat := raw.tputLat
		if rawLat == nil {
			rawLat = &samples{}
		}
		b.add(row{"mutation throughput, " + conc + " clients", "mutation latency under load p50 / p99", ms(r.lat.pct(50)) + " / " + ms(r.lat.pct(99)),
			"raw hop under load p50 / p99", ms(rawLat.pct(50)) + " / " + ms(rawLat.pct(99)), ratio(float64(r.lat.pct(50)), float64(rawLat.pct(50)))})
		if rc := b.rawCQRS; rc != nil && rc.tputHops > 0 {
			b.add(row{"mutation throughput, " + conc + " clients", "raw floor with a read model: raw hops/s (errors; events of the load in the read model when it stopped, i.e. written per second of the load; writes failed)",
				fmt.Sprintf("%s (%d errors; %d of %d, %s; %d)", rate(rc.tput, "/s"), rc.tputErrs, rc.tputProjected, rc.tputHops, rate(float64(rc.tputProjected)/rc.tputElapsed.Seconds(), "/s"), rc.projFailed),
				"raw hops/s", rate(raw.tput, "/s"), ratio(rc.tput, raw.tput)})
			b.add(row{"mutation throughput, " + conc + " clients", "mutations/s (as above)", rate(tput, "/s"),
				"raw floor with a read model, hops/s", rate(rc.tput, "/s"), ratio(tput, rc.tput)})
		}
		b.add(row{"mutation throughput, " + conc + " clients", "process CPU during the load (of " + strconv.Itoa(runtime.NumCPU()) + ")", fmt.Sprintf("%.2f cores", r.cores()),
			"process CPU during the raw load", fmt.Sprintf("%.2f cores", raw.tputCores), ratio(r.cores(), raw.tputCores)})
		for _, e := range r.firstErrs {
			b.note("gateway throughput error: %s", e)
		}
		// How far the projector got meanwhile (it shares the CPU).
		if n, err := countOrders(ctx, b.env.mongoURI, name); err == nil {
			b.note("throughput: %d orders placed; the projector had %d of them (and the warm-up/latency ones) in the views when the load stopped", placed, n)
		}
		// The floor's parts are measured with nothing else running: the
		// gateway (and its projector's backlog) stops first.
		g.Close()
		floorNote := ""
		if !b.env.embeddedKafk || !b.env.embeddedMong {
			// An external broker's or store's CPU is not this process's.
			b.note("least CPU per mutation: measured on the embedded stack only")
		} else if floor, err := b.measureCPUFloor(ctx); err != nil {
			b.note("least CPU per mutation not measured: %v", err)
		} else if r.ok.Load() > 0 {
			floorNote = b.addCPUFloorRows("mutation throughput, "+conc+" clients", floor, r.cpu/time.Duration(r.ok.Load()), tput)
			dur := min(b.o.duration, 10*time.Second)
			if at, err := b.leastGatewayAtRate(ctx, targetRate, dur, false); err != nil {
				b.note("the least gateway at %d mutations/s not measured: %v", targetRate, err)
			} else {
				floorNote += b.addAtRateRow("mutation throughput, "+conc+" clients", at, dur)
			}
		}
		b.target(fmt.Sprintf("≥5,000 mutations/s with %s clients on embedded, zero errors", conc), fmt.Sprintf("%s, %d errors (%s)%s", rate(tput, "/s"), errs, b.stackName(), floorNote),
			tput >= 5000 && errs == 0 && b.env.embeddedKafk && b.env.embeddedMong)
		what := "this process: gateway + load generator"
		if b.env.embeddedKafk || b.env.embeddedMong {
			what += " + embedded broker/store"
		}
		b.add(row{"memory", "VmRSS during throughput, peak / mean (" + what + ")", mib(peak) + " / " + mib(mean), "", "", ""})
		b.add(row{"memory", "Go heap in use / runtime total at end of throughput", mib(int64(ms0.HeapInuse)) + " / " + mib(int64(ms0.Sys)), "", "", ""})
	}
	if b.o.scenarios["throughput"] && b.o.breakdown {
		if err := b.breakdown(ctx); err != nil {
			return fmt.Errorf("breakdown: %w", err)
		}
	}
	return nil
}

// httpLoad runs conc clients, each placing and confirming orders over HTTP.
func httpLoad(ctx context.Context, c *gql, conc int, dur time.Duration, tag string) (*loadResult, int64) {
	var placed atomic.Int64
	r := runLoad(ctx, conc, dur, func(ctx context.Context, w, i int, r *loadResult) {
		t0 := time.Now()
		id, v, err := c.placeOrder(ctx, fmt.Sprintf("c-%d-%d", w, i%10), fmt.Sprintf("%s-%d-%d", tag, w, i))
		r.record(time.Since(t0), err)
		if err != nil {
			return
		}
		placed.Add(1)
		t1 := time.Now()
		_, err = c.confirmOrder(ctx, id, v)
		r.record(time.Since(t1), err)
	})
	return r, placed.Load()
}

// breakdown runs two diagnostic variants of the throughput load, each on a
// fresh gateway: commands sent with command.Bus.Send in process (no HTTP,
// no GraphQL), and HTTP against a gateway without its projector.
func (b *bench) breakdown(ctx context.Context) error {
	conc := strconv.Itoa(b.o.concurrency)
	name := b.env.name("bus")
	g, err := startGateway(ctx, b.env, name, name)
	if err != nil {
		return err
	}
	one := 1
	r := runLoad(ctx, b.o.concurrency, b.o.duration, func(ctx context.Context, w, i int, r *loadResult) {
		ctx = domain.WithPrincipal(ctx, benchStaff) // as the gateway's resolvers send it
		cmd := domain.PlaceOrder{CustomerID: fmt.Sprintf("c-%d-%d", w, i%10), Currency: "EUR",
			Items: []domain.ItemInput{{SKU: "TEA-1", Name: "Green tea", Quantity: 2, UnitPrice: "4.50"}, {SKU: "MUG-2", Name: "Mug", Quantity: 1, UnitPrice: "12.00"}}}
		t0 := time.Now()
		rep, err := g.bus.Send(ctx, cmd, fmt.Sprintf("bus-%d-%d", w, i))
		if err == nil && rep.Error != nil {
			err = rep.Error
		}
		r.record(time.Since(t0), err)
		if err != nil {
			return
		}
		t1 := time.Now()
		rep, err = g.bus.Send(ctx, domain.ConfirmOrder{OrderID: rep.OrderID, ExpectedVersion: &one}, "")
		if err == nil && rep.Error != nil {
			err = rep.Error
		}
		r.record(time.Since(t1), err)
	})
	g.Close()
	b.add(row{"diagnostic, " + conc + " clients", "command.Bus.Send in process (no HTTP/GraphQL), full gateway: mutations/s (errors), p50, CPU",
		fmt.Sprintf("%s (%d errors), %s, %.2f cores", rate(float64(r.ok.Load())/r.elapsed.Seconds(), "/s"), r.errs.Load(), ms(r.lat.pct(50)), r.cores()), "", "", ""})

	name = b.env.name("noproj")
	g, err = startGatewayOpts(ctx, b.env, name, name, false)
	if err != nil {
		return err
	}
	c := newGQL(g.url, b.o.concurrency)
	r, _ = httpLoad(ctx, c, b.o.concurrency, b.o.duration, "np")
	c.close()
	g.Close()
	b.add(row{"diagnostic, " + conc + " clients", "HTTP, gateway without its projector: mutations/s (errors), p50, CPU",
		fmt.Sprintf("%s (%d errors), %s, %.2f cores", rate(float64(r.ok.Load())/r.elapsed.Seconds(), "/s"), r.errs.Load(), ms(r.lat.pct(50)), r.cores()), "", "", ""})
	return nil
}

func (b *bench) stackName() string {
	if b.env.embeddedKafk && b.env.embeddedMong {
		return "embedded"
	}
	if !b.env.embeddedKafk && b.env.embeddedMong {
		return "external Kafka, embedded store: target is for embedded"
	}
	return "external: target is for embedded"
}

func countOrders(ctx context.Context, uri, database string) (int64, error) {
	c, err := mongo.Connect(options.Client().ApplyURI(uri).SetServerSelectionTimeout(3 * time.Second))
	if err != nil {
		return 0, err
	}
	defer c.Disconnect(context.Background())
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return c.Database(database).Collection("orders").CountDocuments(ctx, bson.D{})
}

// leastGatewayLatency times single mutations (placeOrder, then
// confirmOrder, pooled) over HTTP against the GraphQL server with
// rawHopCommands on cl, after warm pairs, into res.gqlHop. It returns the
// hops it made.
func leastGatewayLatency(ctx context.Context, cl *rawClient, pairs, warm int, res *rawResults) (int64, error) {
	url, stop, err := graphqlServer(rawHopCommands{mem: &memCommands{orders: map[string]domain.Order{}}, cl: cl})
	if err != nil {
		return 0, err
	}
	defer stop()
	c := newGQL(url, 1)
	defer c.close()
	res.gqlHop = &samples{}
	for i := range warm + pairs {
		t0 := time.Now()
		id, v, err := c.placeOrder(ctx, "c-least-"+strconv.Itoa(i%10), randID("least"))
		if err != nil {
			return 0, err
		}
		t1 := time.Now()
		if _, err := c.confirmOrder(ctx, id, v); err != nil {
			return 0, err
		}
		if i >= warm {
			res.gqlHop.add(t1.Sub(t0))
			res.gqlHop.add(time.Since(t1))
		}
	}
	return int64(2 * (warm + pairs)), nil
}

// graphqlAloneLatency times single mutations (placeOrder, then confirmOrder,
// pooled as in the latency rows) against graphqlAlone, after a warm-up.
func graphqlAloneLatency(ctx context.Context, pairs int) (*samples, error) {
	url, stop, err := graphqlAlone()
	if err != nil {
		return nil, err
	}
	defer stop()
	c := newGQL(url, 1)
	defer c.close()
	var s samples
	for i := range pairs + 50 {
		t0 := time.Now()
		id, v, err := c.placeOrder(ctx, "c-alone-"+strconv.Itoa(i%10), randID("alone"))
		if err != nil {
			return nil, err
		}
		t1 := time.Now()
		if _, err := c.confirmOrder(ctx, id, v); err != nil {
			return nil, err
		}
		if i >= 50 { // warm-up
			s.add(t1.Sub(t0))
			s.add(time.Since(t1))
		}
	}
	return &s, nil
}
