package live

import (
	"sync"

	"go.opentelemetry.io/otel/trace"
)

// maxTraces bounds the trace contexts a feed keeps; past it they start
// again (an update pushed after that has no parent span).
const maxTraces = 10000

// traces are the trace contexts of recent view changes, by order and
// version.
type traces struct {
	mu sync.Mutex
	m  map[traceKey]trace.SpanContext
}

type traceKey struct {
	orderID string
	version int
}

func (t *traces) put(orderID string, version int, sc trace.SpanContext) {
	if !sc.IsValid() {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil || len(t.m) >= maxTraces {
		t.m = map[traceKey]trace.SpanContext{}
	}
	t.m[traceKey{orderID, version}] = sc
}

// TraceOf is the trace context the change of orderID to version carried,
// if tracing is on and the feed still has it.
func (f *Feed) TraceOf(orderID string, version int) (trace.SpanContext, bool) {
	if f.tracer == nil {
		return trace.SpanContext{}, false
	}
	f.traces.mu.Lock()
	defer f.traces.mu.Unlock()
	sc, ok := f.traces.m[traceKey{orderID, version}]
	return sc, ok
}
