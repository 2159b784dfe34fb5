package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"

	"github.com/ordergateway/gateway/kafka"
	"github.com/ordergateway/gateway/view"
)

// lag offers mutations at a fixed rate (open loop: placeOrder, then
// confirmOrder as soon as it is answered, for rate/2 orders a second) and
// measures, for each mutation, the time from its HTTP response to the first
// views-topic record of that order at that version or later. The projector
// publishes to the views topic right after its MongoDB writes, so this is the
// read-your-writes delay a client sees (plus up to one fetch wait of the
// benchmark's own views consumer).
func (b *bench) lag(ctx context.Context) error {
	name := b.env.name("lag")
	g, err := startGateway(ctx, b.env, name, name)
	if err != nil {
		return err
	}
	defer g.Close()
	c := newGQL(g.url, 512)
	defer c.close()

	// Follow the views topic from its end.
	topics := kafka.NewTopics(name)
	sc := kafka.Config("bench-lag-views", fetchWait)
	cons, err := sarama.NewConsumer(b.env.brokers, sc)
	if err != nil {
		return err
	}
	defer cons.Close()
	parts, err := cons.Partitions(topics.Views)
	if err != nil {
		return err
	}
	type arrival struct {
		version int
		at      time.Time
	}
	var mu sync.Mutex
	seen := map[string][]arrival{}
	var wg sync.WaitGroup
	var pcs []sarama.PartitionConsumer
	for _, p := range parts {
		pc, err := cons.ConsumePartition(topics.Views, p, sarama.OffsetNewest)
		if err != nil {
			for _, pc := range pcs {
				pc.AsyncClose()
			}
			return err
		}
		pcs = append(pcs, pc)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for m := range pc.Messages() {
				now := time.Now()
				var ch view.Change
				if json.Unmarshal(m.Value, &ch) != nil {
					continue
				}
				mu.Lock()
				seen[ch.Order.ID] = append(seen[ch.Order.ID], arrival{ch.Order.Version, now})
				mu.Unlock()
			}
		}()
	}
	defer func() {
		for _, pc := range pcs {
			pc.AsyncClose()
		}
		wg.Wait()
	}()

	for i := range b.o.warmPairs {
		id, v, err := c.placeOrder(ctx, "c-warm", fmt.Sprintf("lagwarm-%d", i))
		if err == nil {
			_, err = c.confirmOrder(ctx, id, v)
		}
		if err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}

	type answered struct {
		id      string
		version int
		at      time.Time
	}
	var (
		amu      sync.Mutex
		answers  []answered
		errs     atomic.Int64
		firstErr atomic.Pointer[string]
	)
	fail := func(err error) {
		errs.Add(1)
		s := err.Error()
		firstErr.CompareAndSwap(nil, &s)
	}
	start := time.Now() // the timeline's origin
	offeredFor, dropped := offerOrders(ctx, b.o.lagRate, b.o.lagDuration, 512, func(i int) {
		id, v, err := c.placeOrder(ctx, fmt.Sprintf("c-lag-%d", i%50), fmt.Sprintf("lag-%d", i))
		if err != nil {
			fail(err)
			return
		}
		t := time.Now()
		amu.Lock()
		answers = append(answers, answered{id, v, t})
		amu.Unlock()
		v2, err := c.confirmOrder(ctx, id, v)
		if err != nil {
			fail(err)
			return
		}
		t = time.Now()
		amu.Lock()
		answers = append(answers, answered{id, v2, t})
		amu.Unlock()
	})

	firstAt := func(a answered) (time.Time, bool) {
		mu.Lock()
		defer mu.Unlock()
		var best time.Time
		for _, s := range seen[a.id] {
			if s.version >= a.version && (best.IsZero() || s.at.Before(best)) {
				best = s.at
			}
		}
		return best, !best.IsZero()
	}
	// Let the projector finish (up to lagDrain).
	missing := drain(ctx, b.o.lagDrain, len(answers), func(i int) bool {
		_, ok := firstAt(answers[i])
		return ok
	})
	// A mutation whose view never arrived counts as a lag longer than any
	// measured (shown as "> drain"), so the percentiles are not flattered.
	const never = time.Duration(1 << 62)
	var lags samples
	early := 0
	timeline := map[int]time.Duration{} // 250 ms bucket of the answer → its worst lag
	for _, a := range answers {
		at, ok := firstAt(a)
		if !ok {
			lags.add(never)
			continue
		}
		d := at.Sub(a.at)
		if d < 0 {
			early++
			d = 0
		}
		lags.add(d)
		bucket := int(a.at.Sub(start) / (250 * time.Millisecond))
		timeline[bucket] = max(timeline[bucket], d)
	}
	if b.o.lagTimeline {
		var sb strings.Builder
		for i := 0; i <= int(offeredFor/(250*time.Millisecond)); i++ {
			fmt.Fprintf(&sb, " %.2fs:%s", float64(i)/4, ms(timeline[i]))
		}
		b.note("lag: worst lag of the mutations answered in each 250 ms:%s", sb.String())
	}
	achieved := float64(len(answers)) / offeredFor.Seconds()
	scen := fmt.Sprintf("projection lag at %d mutations/s offered", b.o.lagRate)
	b.add(row{scen, "mutations answered/s (errors, offers dropped at 512 in flight)", fmt.Sprintf("%s (%d errors, %d dropped)", rate(achieved, "/s"), errs.Load(), dropped), "", "", ""})
	show := func(d time.Duration) string {
		if d == never {
			return "not reached" // not in the views when we stopped waiting
		}
		return ms(d)
	}
	rt := ratio(float64(lags.pct(99)), float64(250*time.Millisecond))
	if lags.pct(99) == never {
		rt = "—"
	}
	b.add(row{scen, "lag from mutation response to views p50 / p99 / max", show(lags.pct(50)) + " / " + show(lags.pct(99)) + " / " + show(lags.maxv()),
		"target p99", "250 ms", rt})
	if missing > 0 {
		b.add(row{scen, fmt.Sprintf("mutations not in the views %s after the load", b.o.lagDrain), fmt.Sprintf("%d of %d", missing, len(answers)), "", "", ""})
	}
	if e := firstErr.Load(); e != nil {
		b.note("lag: first error: %s", *e)
	}
	b.note("lag: %d of %d views were visible before the mutation's HTTP response arrived (counted as 0 ms)", early, lags.len())

	// The floor under the same load, with the gateway stopped: the least
	// GraphQL gateway with the raw read model, its lag taken at the read
	// model's own write (no views topic to cross), so a lower bound.
	g.Close()
	floorNote := ""
	if f, err := b.leastGatewayAtRate(ctx, b.o.lagRate, b.o.lagDuration, true); err != nil {
		b.note("lag: the least gateway at %d mutations/s not measured: %v", b.o.lagRate, err)
	} else {
		fp99 := f.lags.pct(99)
		b.add(row{scen, "the least GraphQL gateway with the read model under the same load (its GraphQL server, a raw hop, the raw read model): mutations answered/s (errors, dropped); lag from mutation response to its read model's write p50 / p99 / max (not written after the load)",
			fmt.Sprintf("%s (%d errors, %d dropped); %s / %s / %s (%d)", rate(f.answered, "/s"), f.errs, f.dropped, ms(f.lags.pct(50)), ms(fp99), ms(f.lags.maxv()), f.missing),
			"target p99", "250 ms", ratio(float64(fp99), float64(250*time.Millisecond))})
		if lags.pct(99) != never && fp99 > 0 {
			b.add(row{scen, "lag p99 (as above)", show(lags.pct(99)), "the least gateway's lag p99", ms(fp99), ratio(float64(lags.pct(99)), float64(fp99))})
		}
		if fp99 >= 250*time.Millisecond || f.missing > 0 {
			floorNote = fmt.Sprintf("; out of reach here: the least gateway with the read model, under the same load, has a lag p99 of %s (%d not written)", ms(fp99), f.missing)
		} else {
			floorNote = fmt.Sprintf("; the least gateway with the read model: p99 %s", ms(fp99))
		}
	}
	met := lags.pct(99) < 250*time.Millisecond && missing == 0 && errs.Load() == 0 && dropped == 0
	b.target(fmt.Sprintf("projection lag p99 < 250 ms at %d mutations/s offered", b.o.lagRate),
		fmt.Sprintf("p99 %s, %s answered, %d missing, %d errors, %d dropped%s", show(lags.pct(99)), rate(achieved, "/s"), missing, errs.Load(), dropped, floorNote), met)
	return nil
}

// drain waits up to d, polling every 100 ms, until arrived(i) holds for
// each of the n answered mutations, and returns how many it did not hold
// for when it stopped.
func drain(ctx context.Context, d time.Duration, n int, arrived func(i int) bool) int {
	until := time.Now().Add(d)
	for {
		missing := 0
		for i := range n {
			if !arrived(i) {
				missing++
			}
		}
		if missing == 0 || time.Now().After(until) || ctx.Err() != nil {
			return missing
		}
		time.Sleep(100 * time.Millisecond)
	}
}
