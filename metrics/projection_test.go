package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// gathered is every sample of the projection metrics in reg by metric name
// and generation: a counter's or gauge's value, a histogram's count.
func gathered(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += " " + l.GetName() + "=" + l.GetValue()
			}
			switch {
			case m.Counter != nil:
				out[key] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[key] = m.GetGauge().GetValue()
			case m.Histogram != nil:
				out[key] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

// Two projectors of different generations in one gateway (a rebuild's
// beside the serving one) count in series of their own; a generation's
// series go once its last projector is released, and what a released one
// counts afterwards does not bring them back.
func TestProjectionsCountByGeneration(t *testing.T) {
	reg := prometheus.NewRegistry()
	ps := NewProjections(reg)
	serving, rebuild := ps.Generation(1), ps.Generation(2)
	for range 3 {
		serving.Partitions.Inc()
		rebuild.Partitions.Inc()
	}
	serving.Events.Add(4)
	serving.BatchSize.Observe(4)
	serving.Write.Observe(0.01)
	rebuild.Events.Add(10)
	rebuild.BatchSize.Observe(10)
	rebuild.OrdersConflicts.Inc()
	rebuild.Partitions.Dec() // a rebalance of the rebuild's group
	got := gathered(t, reg)
	for k, want := range map[string]float64{
		"order_gateway_projection_partitions_assigned generation=1":                    3,
		"order_gateway_projection_partitions_assigned generation=2":                    2,
		"order_gateway_projection_events_applied_total generation=1":                   4,
		"order_gateway_projection_events_applied_total generation=2":                   10,
		"order_gateway_projection_batch_size_events generation=1":                      1,
		"order_gateway_projection_batch_size_events generation=2":                      1,
		"order_gateway_projection_write_duration_seconds generation=1":                 1,
		"order_gateway_projection_write_duration_seconds generation=2":                 0,
		"order_gateway_projection_conflicts_retried_total generation=1 view=orders":    0,
		"order_gateway_projection_conflicts_retried_total generation=2 view=orders":    1,
		"order_gateway_projection_conflicts_retried_total generation=2 view=customers": 0,
	} {
		if v, ok := got[k]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", k, v, ok, want)
		}
	}

	// Generation 2 is handed over to serve and generation 1's projector
	// stops; a second projector of generation 2 (another switch to it seen
	// meanwhile) holds its series until it stops too.
	again := ps.Generation(2)
	serving.Release()
	serving.Release() // again: nothing
	serving.Events.Inc()
	serving.Partitions.Dec()
	got = gathered(t, reg)
	for k := range got {
		if strings.Contains(k+" ", " generation=1 ") {
			t.Errorf("generation 1 released, still served: %s", k)
		}
	}
	if v := got["order_gateway_projection_events_applied_total generation=2"]; v != 10 {
		t.Errorf("generation 2's events after generation 1's release: %v, want 10", v)
	}
	rebuild.Release()
	if v, ok := gathered(t, reg)["order_gateway_projection_partitions_assigned generation=2"]; !ok || v != 2 {
		t.Errorf("generation 2's partitions with one projector of it left: %v (present %v), want 2", v, ok)
	}
	again.Release()
	if got := gathered(t, reg); len(got) != 0 {
		t.Errorf("series left with every projector released: %v", got)
	}
}
