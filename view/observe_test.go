package view

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/embedded"
	"github.com/ordergateway/gateway/metrics"
	"github.com/ordergateway/gateway/tracing"
)

// storeErrors reads the store errors of kind counted in reg.
func storeErrors(t *testing.T, reg *prometheus.Registry, kind string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "order_gateway_store_errors_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == kind {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no store errors series of kind %q", kind)
	return 0
}

// The store counts the errors it returns by kind, where they happen: an
// insert of a view that exists (duplicate_key, answered ErrConflict), a
// store nobody listens on (network), and not a request its caller
// cancelled.
func TestStoreCountsErrorsByKind(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	errs := metrics.NewErrors(reg)
	s := openTestStore(t)
	s.errs = errs
	if err := s.PutOrders(ctx, []OrderWrite{{Doc: testOrder("a", 1)}}); err != nil {
		t.Fatal(err)
	}
	for _, k := range metrics.StoreErrorKinds {
		if n := storeErrors(t, reg, k); n != 0 {
			t.Errorf("%s errors after a write that succeeded: %v", k, n)
		}
	}
	if err := s.PutOrders(ctx, []OrderWrite{{Doc: testOrder("a", 1)}}); !errors.Is(err, ErrConflict) {
		t.Fatalf("inserting an existing view: %v, want ErrConflict", err)
	}
	if n := storeErrors(t, reg, "duplicate_key"); n != 1 {
		t.Errorf("duplicate_key errors: %v, want 1", n)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Order(cancelled, "a"); err == nil {
		t.Fatal("a read with a cancelled context succeeded")
	}

	// A store nobody listens on: the read fails UNAVAILABLE once no server
	// is selected (3 s), and counts one network error.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	down, err := Open("mongodb://"+addr+"/", "viewtest_down", WithErrors(errs))
	if err != nil {
		t.Fatal(err)
	}
	defer down.Close(ctx)
	_, err = down.Order(ctx, "a")
	var de *domain.Error
	if !errors.As(err, &de) || de.Code != domain.CodeUnavailable {
		t.Fatalf("a read from a store that is down: %v, want UNAVAILABLE", err)
	}
	if n := storeErrors(t, reg, "network"); n != 1 {
		t.Errorf("network errors: %v, want 1", n)
	}
	for _, k := range []string{"timeout", "write_conflict", "other"} {
		if n := storeErrors(t, reg, k); n != 0 {
			t.Errorf("%s errors: %v, want 0 (the cancelled read is the caller's, not the store's)", k, n)
		}
	}
	if got := testutil.CollectAndCount(reg, "order_gateway_store_errors_total"); got != len(metrics.StoreErrorKinds) {
		t.Errorf("%d store error series, want one per kind (%d)", got, len(metrics.StoreErrorKinds))
	}
}

// With a tracer, each command the store sends under a span gets a client
// span, its child, named and attributed per the OTel database conventions,
// without the command's ids; a command under no span gets none.
func TestStoreCommandsAreTracedUnderASpan(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())
	tr := tracing.New(tp)
	uri := os.Getenv("MONGODB_URI")
	if uri == "" {
		m, err := embedded.StartMongo(t.TempDir(), "127.0.0.1:0", nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Close)
		uri = m.URI()
	}
	s, err := Open(uri, fmt.Sprintf("viewtest_%d", time.Now().UnixNano()), WithTracer(tr))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	defer func() { _ = s.db.Drop(ctx); _ = s.Close(ctx) }()
	if err := s.PutOrders(ctx, []OrderWrite{{Doc: testOrder("order-secret-1", 1)}}); err != nil {
		t.Fatal(err)
	}
	if n := len(exp.GetSpans()); n != 0 {
		t.Fatalf("%d spans for commands under no span", n)
	}
	parentCtx, parent := tr.Start(ctx, "query", trace.WithSpanKind(trace.SpanKindServer))
	if d, err := s.Order(parentCtx, "order-secret-1"); err != nil || d == nil {
		t.Fatalf("read: %+v %v", d, err)
	}
	parent.End()
	var find *tracetest.SpanStub
	for _, sp := range exp.GetSpans() {
		if sp.Name == "find orders" {
			find = &sp
		}
	}
	if find == nil {
		t.Fatalf("no span \"find orders\" among %v", exp.GetSpans())
	}
	if find.Parent.SpanID() != parent.SpanContext().SpanID() || find.SpanKind != trace.SpanKindClient {
		t.Errorf("the store's span is not the query span's child (kind %v)", find.SpanKind)
	}
	want := map[string]string{"db.system": "mongodb", "db.operation.name": "find", "db.collection.name": "orders", "db.namespace": s.db.Name(), "server.address": "127.0.0.1"}
	got := map[string]string{}
	for _, kv := range find.Attributes {
		got[string(kv.Key)] = kv.Value.Emit()
		if strings.Contains(kv.Value.Emit(), "order-secret") {
			t.Errorf("attribute %s names the order: %s", kv.Key, kv.Value.Emit())
		}
	}
	for k, v := range want {
		if os.Getenv("MONGODB_URI") != "" && k == "server.address" {
			continue
		}
		if got[k] != v {
			t.Errorf("attribute %s = %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
	if got["server.port"] == "" {
		t.Errorf("no server.port: %v", got)
	}
}
