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
	"github.com/ordergateway/gateway/view"
)

// cpuFloor is the least process CPU a mutation of the throughput load
// needs on this machine, broker and store, summed from parts that any
// GraphQL gateway doing CQRS over Kafka with the gateway's read model
// must do, each measured alone in this run:
//   - hop: the raw floor's hop under the throughput load (process CPU per
//     hop: clients, broker, server);
//   - graphql: the GraphQL server alone over HTTP under the same load
//     (process CPU per mutation: load generator and server, commands
//     decided in memory);
//   - store: the read model's writes, at their cheapest. A placeOrder and
//     its confirmOrder change one order view and one customer summary; at
//     best both events fold into one insert of the order view (in bulk)
//     and one replace of the customer's existing summary (in chunks, no
//     version guard read), written by one writer, as SQLite allows. Half
//     of that pair's CPU is charged to each mutation.
//
// It is measured on the embedded stack only, where the broker and the store
// run in this process and their CPU is the process's. The process CPU the
// load generator spends is counted in hop and graphql, as it is in the
// gateway's own figure. Dividing the machine's cores by
// the sum bounds the mutations per second any such gateway can sustain
// here with a read model that keeps up.
type cpuFloor struct {
	hop, graphql           time.Duration
	orderInsert, summaryRe time.Duration // per document written
	summaryChunk           int           // replaces per bulk write, the cheaper measured
}

func (f cpuFloor) store() time.Duration { return (f.orderInsert + f.summaryRe) / 2 }
func (f cpuFloor) total() time.Duration { return f.hop + f.graphql + f.store() }

// maxRate is the mutations per second that cores allow at the floor's CPU.
func (f cpuFloor) maxRate(cores int) float64 {
	if f.total() <= 0 {
		return 0
	}
	return float64(cores) / f.total().Seconds()
}

// measureCPUFloor measures the graphql and store parts; hop comes from the
// raw floor's throughput run. Nothing else of the bench may run meanwhile:
// process CPU is what is measured.
func (b *bench) measureCPUFloor(ctx context.Context) (cpuFloor, error) {
	var f cpuFloor
	if b.raw != nil && b.raw.tputHops > 0 {
		f.hop = time.Duration(b.raw.tputCores * float64(b.raw.tputElapsed) / float64(b.raw.tputHops))
	}

	url, stop, err := graphqlAlone()
	if err != nil {
		return f, err
	}
	c := newGQL(url, b.o.concurrency)
	r, _ := httpLoad(ctx, c, b.o.concurrency, min(b.o.duration, 5*time.Second), "floor")
	c.close()
	stop()
	if r.errs.Load() > 0 || r.ok.Load() == 0 {
		return f, fmt.Errorf("GraphQL server alone under load: %d ok, %d errors %v", r.ok.Load(), r.errs.Load(), r.firstErrs)
	}
	f.graphql = r.cpu / time.Duration(r.ok.Load())

	f.orderInsert, f.summaryRe, f.summaryChunk, err = b.storeFloor(ctx)
	return f, err
}

// storeFloor times, on a fresh database of the store, one writer inserting
// order views in bulk (500 per InsertMany) and replacing existing customer
// summaries (10 orders each, one more per replace) by _id in bulk writes of
// 16 and of 64; it returns the process CPU per insert and per replace, the
// cheaper replace chunk, and that chunk.
func (b *bench) storeFloor(ctx context.Context) (insert, replace time.Duration, chunk int, err error) {
	name := b.env.name("floor")
	client, orders, _, err := openRawOrders(ctx, b.env, name)
	if err != nil {
		return 0, 0, 0, err
	}
	defer client.Disconnect(context.Background())
	customers := client.Database(name).Collection("customers")

	n, nCustomers, perCustomer, replaces := 4000, 640, 10, 2048
	if b.o.short {
		n, nCustomers, replaces = 1000, 64, 512
	}
	_, docs := projEvents(n + nCustomers*(perCustomer+1) + 2*replaces)
	next := 0
	take := func() view.OrderDoc { d := docs[next]; next++; return d }

	// The summaries, and the collection's _id lookup index, before timing.
	summaries := make([]view.CustomerDoc, nCustomers)
	seed := make([]any, nCustomers)
	for i := range summaries {
		s := view.CustomerDoc{ID: fmt.Sprintf("floor-c-%04d", i)}
		for range perCustomer {
			d := take()
			d.CustomerID = s.ID
			countOrder(&s, view.Contribution{}, d)
		}
		summaries[i], seed[i] = s, s
	}
	if _, err := customers.InsertMany(ctx, seed); err != nil {
		return 0, 0, 0, fmt.Errorf("store floor: seed summaries: %w", err)
	}
	if err := b.env.indexIDs(ctx); err != nil {
		return 0, 0, 0, err
	}

	cpu0 := cpuTime()
	for i := 0; i < n; i += 500 {
		batch := make([]any, 0, 500)
		for range min(500, n-i) {
			batch = append(batch, take())
		}
		if _, err := orders.InsertMany(ctx, batch); err != nil {
			return 0, 0, 0, fmt.Errorf("store floor: insert order views: %w", err)
		}
	}
	insert = (cpuTime() - cpu0) / time.Duration(n)

	for _, size := range []int{16, 64} {
		cpu0 := cpuTime()
		for i := 0; i < replaces; i += size {
			models := make([]mongo.WriteModel, 0, size)
			for j := i; j < min(i+size, replaces); j++ {
				s := &summaries[j%nCustomers]
				d := take()
				d.CustomerID = s.ID
				countOrder(s, view.Contribution{}, d)
				models = append(models, mongo.NewReplaceOneModel().SetFilter(bson.D{{Key: "_id", Value: s.ID}}).SetReplacement(*s))
			}
			res, err := customers.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false))
			if err != nil {
				return 0, 0, 0, fmt.Errorf("store floor: replace summaries (%d per write): %w", size, err)
			}
			if res.ModifiedCount != int64(len(models)) {
				return 0, 0, 0, fmt.Errorf("store floor: %d of %d summary replaces changed a document", res.ModifiedCount, len(models))
			}
		}
		per := (cpuTime() - cpu0) / time.Duration(replaces)
		if replace == 0 || per < replace {
			replace, chunk = per, size
		}
	}
	return insert, replace, chunk, nil
}

// addCPUFloorRows prints the floor next to the gateway's own CPU per
// mutation and rate, and returns the target note for the ≥5,000/s line.
func (b *bench) addCPUFloorRows(scen string, f cpuFloor, gatewayCPU time.Duration, gatewayRate float64) string {
	cores := runtime.NumCPU()
	b.add(row{scen, fmt.Sprintf("least CPU per mutation (raw hop %s + GraphQL server alone %s + read-model writes %s: per placeOrder+confirmOrder, one order view insert in bulk %s and one customer summary replace in chunks of %d %s, halved; each measured alone under load)",
		ms(f.hop), ms(f.graphql), ms(f.store()), ms(f.orderInsert), f.summaryChunk, ms(f.summaryRe)),
		ms(f.total()), "gateway CPU per mutation under the load", ms(gatewayCPU), ratio(float64(gatewayCPU), float64(f.total()))})
	b.add(row{scen, fmt.Sprintf("most mutations/s %d cores allow at that CPU, with a read model that keeps up", cores), rate(f.maxRate(cores), "/s"),
		"gateway mutations/s", rate(gatewayRate, "/s"), ratio(gatewayRate, f.maxRate(cores))})
	if f.hop == 0 {
		return ""
	}
	if most := f.maxRate(cores); most < 5000 {
		return fmt.Sprintf("; out of reach here: at the least CPU a mutation needs (%s) %d cores allow %s", ms(f.total()), cores, rate(most, "/s"))
	}
	return ""
}

// targetRate is the throughput target, mutations/s.
const targetRate = 5000

// rateResult is what the least gateway did under an offered load.
type rateResult struct {
	offered  float64 // mutations/s offered
	answered float64 // mutations/s answered
	errs     int64
	dropped  int     // orders not offered: 512 already in flight
	written  float64 // events/s the read model wrote during the load
	caughtUp float64 // share of the load's events in the read model when it stopped

	// With trackLag: the time from each mutation's response to its event's
	// write by the read model, and how many were not written within the
	// drain time after the load.
	lags    *samples
	missing int
}

// leastGatewayAtRate offers rate mutations/s for dur (open loop: an order
// every 2/rate s, placeOrder and then confirmOrder when answered, at most
// 512 orders in flight) to the least GraphQL gateway with the read model:
// the gateway's GraphQL server with rawHopCommands, on fresh raw topics,
// with the raw read model writing the views. A gateway that sustains rate
// must answer it and its read model must keep up with it. With trackLag it
// also measures the lag from each mutation's response to the read model's
// write of its event, waiting up to b.o.lagDrain after the load for them.
func (b *bench) leastGatewayAtRate(ctx context.Context, rate int, dur time.Duration, trackLag bool) (rateResult, error) {
	res := rateResult{offered: float64(rate)}
	prefix := b.env.name("leastrate" + strconv.Itoa(len(b.env.prefixes))) // fresh topics and database per call
	if err := ensureTopics(b.env.brokers, prefix); err != nil {
		return res, err
	}
	srv, err := startRawServer(b.env.brokers, prefix, b.env.logger)
	if err != nil {
		return res, err
	}
	defer srv.Close()
	proj, err := startRawProjector(ctx, b.env, prefix, trackLag)
	if err != nil {
		return res, err
	}
	defer proj.Close()
	cl, err := newRawClient(b.env.brokers, prefix)
	if err != nil {
		return res, err
	}
	defer cl.Close()
	url, stop, err := graphqlServer(rawHopCommands{mem: &memCommands{orders: map[string]domain.Order{}}, cl: cl})
	if err != nil {
		return res, err
	}
	defer stop()
	c := newGQL(url, 512)
	defer c.close()

	// Warm up every partition, the read model's collections and their
	// _id lookup index.
	warm := int64(0)
	for i := range b.o.warmPairs * 3 {
		id, v, err := c.placeOrder(ctx, "c-rate-warm", randID("ratewarm"+strconv.Itoa(i)))
		if err == nil {
			_, err = c.confirmOrder(ctx, id, v)
		}
		if err != nil {
			return res, fmt.Errorf("warm-up: %w", err)
		}
		warm += 2
	}
	if err := proj.waitFor(ctx, warm, 30*time.Second); err != nil {
		return res, err
	}
	if err := b.env.indexIDs(ctx); err != nil {
		return res, err
	}

	type answer struct {
		id string
		n  int // the order's n-th event
		at time.Time
	}
	var (
		answered, errs atomic.Int64
		amu            sync.Mutex
		answers        []answer
	)
	recordAnswer := func(id string, n int) {
		answered.Add(1)
		if trackLag {
			t := time.Now()
			amu.Lock()
			answers = append(answers, answer{id, n, t})
			amu.Unlock()
		}
	}
	w0 := proj.written.Load() + proj.failed.Load()
	elapsed, dropped := offerOrders(ctx, rate, dur, 512, func(i int) {
		id, v, err := c.placeOrder(ctx, fmt.Sprintf("c-rate-%d", i%640), fmt.Sprintf("rate-%d", i))
		if err == nil {
			recordAnswer(id, 1)
			_, err = c.confirmOrder(ctx, id, v)
		}
		if err != nil {
			errs.Add(1)
			return
		}
		recordAnswer(id, 2)
	})
	res.dropped = dropped
	written := proj.written.Load() + proj.failed.Load() - w0
	res.answered = float64(answered.Load()) / elapsed.Seconds()
	res.errs = errs.Load()
	res.written = float64(written) / elapsed.Seconds()
	if n := answered.Load(); n > 0 {
		res.caughtUp = float64(written) / float64(n)
	}
	if trackLag {
		res.missing = drain(ctx, b.o.lagDrain, len(answers), func(i int) bool {
			_, ok := proj.track.of(answers[i].id, answers[i].n)
			return ok
		})
		res.lags = &samples{}
		for _, a := range answers {
			if at, ok := proj.track.of(a.id, a.n); ok {
				res.lags.add(max(0, at.Sub(a.at)))
			}
		}
	}
	return res, nil
}

// keepsUp reports whether the least gateway sustained the offered rate:
// answered it and kept its read model within 5% of it, with no errors.
func (r rateResult) keepsUp() bool {
	return r.errs == 0 && r.dropped == 0 && r.answered >= 0.95*r.offered && r.caughtUp >= 0.95
}

// addAtRateRow prints what the least gateway did offered the target rate
// and returns the note for the ≥5,000/s target line.
func (b *bench) addAtRateRow(scen string, r rateResult, dur time.Duration) string {
	b.add(row{scen, fmt.Sprintf("the least GraphQL gateway with the read model, offered %d mutations/s for %s (open loop, at most 512 orders in flight): answered (errors, orders dropped); events/s its read model wrote (share of the answered mutations' events in it when the load stopped)", targetRate, dur),
		fmt.Sprintf("%s (%d errors, %d dropped); %s (%.0f%%)", rate(r.answered, "/s"), r.errs, r.dropped, rate(r.written, "events/s"), 100*r.caughtUp),
		"offered", rate(r.offered, "/s"), ratio(r.answered, r.offered)})
	if r.keepsUp() {
		return fmt.Sprintf("; the least gateway with the read model kept up with %d /s", targetRate)
	}
	return fmt.Sprintf("; the least gateway with the read model, offered %d /s, answered %s and its read model wrote %s (%.0f%%)", targetRate, rate(r.answered, "/s"), rate(r.written, "events/s"), 100*r.caughtUp)
}

// floorOffset numbers the transitions the bench's own summary writers count.
var floorOffset int64

// countOrder counts in s the change of one order from contribution from to
// its document d, as the projector counts an event.
func countOrder(s *view.CustomerDoc, from view.Contribution, d view.OrderDoc) bool {
	floorOffset++
	return s.Count(view.Transition{Offset: floorOffset, From: from, To: view.ContributionOf(d.ToOrder())})
}
