package view

import (
	"context"
	"testing"
	"time"

	"github.com/ordergateway/gateway/metrics"
	"github.com/ordergateway/gateway/tracing"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace/noop"
)

// TestGenerations: generation 1 is the first collections and active with
// no record; a new generation takes the next number and its own
// collections; a switch is one write that Follow picks up; the active
// generation cannot be dropped, another can, and its number is not reused.
func TestGenerations(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	if g, err := s.ActiveGeneration(ctx); err != nil || g != 1 {
		t.Fatalf("active generation of a new store: %d, %v", g, err)
	}
	if err := s.PutOrders(ctx, []OrderWrite{{Doc: testOrder("o-1", 1)}}); err != nil {
		t.Fatal(err)
	}
	gen, err := s.NewGeneration(ctx)
	if err != nil || gen != 2 {
		t.Fatalf("new generation: %d, %v", gen, err)
	}
	s2 := s.At(2)
	if d, err := s2.Order(ctx, "o-1"); err != nil || d != nil {
		t.Fatalf("generation 2 before its writes: %+v, %v", d, err)
	}
	if err := s2.PutOrders(ctx, []OrderWrite{{Doc: testOrder("o-1", 2)}}); err != nil {
		t.Fatal(err)
	}
	if d, _ := s.Order(ctx, "o-1"); d == nil || d.Version != 1 {
		t.Fatalf("generation 1 after generation 2's write: %+v", d)
	}

	// Follow moves the store to the generation switched to.
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	changed := make(chan [2]int, 1)
	go s.Follow(fctx, func(from, to int) { changed <- [2]int{from, to} })
	// A read pinned before the switch stays on generation 1.
	pinned := Pin(ctx)
	if d, _ := s.Order(pinned, "o-1"); d == nil || d.Version != 1 {
		t.Fatalf("pinned read: %+v", d)
	}
	if err := s.SetActive(ctx, 2); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-changed:
		if c != [2]int{1, 2} {
			t.Fatalf("changed %v", c)
		}
	case <-time.After(10 * FollowInterval):
		t.Fatal("Follow did not see the switch")
	}
	if d, _ := s.Order(ctx, "o-1"); d == nil || d.Version != 2 || s.Generation() != 2 {
		t.Fatalf("read after the switch: %+v (generation %d)", d, s.Generation())
	}
	if d, _ := s.Order(pinned, "o-1"); d == nil || d.Version != 1 {
		t.Fatalf("pinned read after the switch: %+v", d)
	}
	Repin(pinned)
	if d, _ := s.Order(pinned, "o-1"); d == nil || d.Version != 2 {
		t.Fatalf("repinned read after the switch: %+v", d)
	}

	if err := s.DropGeneration(ctx, 2); err == nil {
		t.Fatal("dropped the active generation")
	}
	if err := s.DropGeneration(ctx, 1); err != nil {
		t.Fatalf("drop generation 1: %v", err)
	}
	if d, err := s.At(1).Order(ctx, "o-1"); err != nil || d != nil {
		t.Fatalf("generation 1 after its drop: %+v, %v", d, err)
	}
	gens, err := s.Generations(ctx)
	if err != nil || len(gens) != 2 || gens[0].State != StateDropped || !gens[1].Active {
		t.Fatalf("generations: %+v, %v", gens, err)
	}
	if gen, err := s.NewGeneration(ctx); err != nil || gen != 3 {
		t.Fatalf("next generation: %d, %v", gen, err)
	}
	if err := s.DropGeneration(ctx, 3); err == nil {
		t.Fatal("dropped a generation being built")
	}
}

func TestParseGeneration(t *testing.T) {
	for _, v := range []string{"", "0", "-1", "x", "1000001", "1.5"} {
		if _, err := ParseGeneration(v); err == nil {
			t.Errorf("ParseGeneration(%q): no error", v)
		}
	}
	if n, err := ParseGeneration(" 12 "); err != nil || n != 12 {
		t.Errorf("ParseGeneration(12): %d, %v", n, err)
	}
}

// TestAtKeepsTheOptions: a Store of another generation (the projector's
// and the rebuild's) writes as the Store it came from. At once dropped
// FilterGuards, so the projector on PostgreSQL read every guard first.
func TestAtKeepsTheOptions(t *testing.T) {
	s, err := Open("mongodb://127.0.0.1:1/", "at", SoleWriter(), FilterGuards(), SummaryLane(),
		WithErrors(metrics.NewErrors(prometheus.NewRegistry())), WithTracer(tracing.New(noop.NewTracerProvider())))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	d := s.At(2)
	if d.settings != s.settings || !d.guardsInFilter || !d.soleWriter || d.summaryTurn == nil || d.errs == nil || d.tracer == nil {
		t.Fatalf("At(2) has settings %+v; want those of the Store it came from, %+v", d.settings, s.settings)
	}
	if d.Generation() != 2 || s.Generation() != 1 {
		t.Fatalf("generations %d and %d, want 2 and 1", d.Generation(), s.Generation())
	}
}
