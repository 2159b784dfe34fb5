package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/ordergateway/gateway/app"
)

// startTraced starts a gateway whose spans go to an in-memory exporter.
func startTraced(t *testing.T) (*gateway, *tracetest.InMemoryExporter, app.Config) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	cfg := testConfig(t)
	g := startMain(t, &app.Main{Config: cfg, TracerProvider: tp})
	waitReady(t, g)
	return g, exp, cfg
}

// spanNamed waits for the span of trace id named name.
func spanNamed(t *testing.T, exp *tracetest.InMemoryExporter, id trace.TraceID, name string) tracetest.SpanStub {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		for _, s := range exp.GetSpans() {
			if s.Name == name && (!id.IsValid() || s.SpanContext.TraceID() == id) {
				return s
			}
		}
		if time.Now().After(deadline) {
			var names []string
			for _, s := range exp.GetSpans() {
				names = append(names, s.Name+" "+s.SpanContext.TraceID().String())
			}
			t.Fatalf("no span %q in trace %s; spans: %v", name, id, names)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func attr(s tracetest.SpanStub, key string) attribute.Value {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key {
			return kv.Value
		}
	}
	return attribute.Value{}
}

func linked(s tracetest.SpanStub, to trace.SpanContext) bool {
	for _, l := range s.Links {
		if l.SpanContext.SpanID() == to.SpanID() && l.SpanContext.TraceID() == to.TraceID() {
			return true
		}
	}
	return false
}

// TestTraceOfAMutation: one placeOrder is one trace from its GraphQL span
// through the command's producer span to the handler's consumer span (linked
// with its batch's transaction span), to the projector's span of its event
// and the span of the subscription update it caused.
func TestTraceOfAMutation(t *testing.T) {
	g, exp, cfg := startTraced(t)
	// A subscriber of the customer's orders, over SSE, before the mutation.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stream := sseAs(t, ctx, g, staffToken, `subscription { ordersUpdated(customerId: "c-trace") { id version } }`, nil)
	events := readSSE(stream.Body)
	waitSubscribers(t, g, 1)
	var out struct{ M Payload }
	g.data(t, `mutation Place($input: PlaceOrderInput!) { m: placeOrder(input: $input) { `+payloadFields+` } }`,
		map[string]any{"input": placeInput("c-trace", item("A", 1, "1.00"))}, &out)
	if out.M.Order == nil {
		t.Fatalf("placeOrder: %+v", out.M.UserErrors)
	}

	gql := spanNamed(t, exp, trace.TraceID{}, "mutation")
	id := gql.SpanContext.TraceID()
	if gql.SpanKind != trace.SpanKindServer || attr(gql, "graphql.operation.type").AsString() != "mutation" ||
		attr(gql, "graphql.operation.name").AsString() != "Place" {
		t.Errorf("GraphQL span: kind %v, attributes %v", gql.SpanKind, gql.Attributes)
	}
	send := spanNamed(t, exp, id, "send "+cfg.TopicPrefix+".commands")
	if send.Parent.SpanID() != gql.SpanContext.SpanID() || send.SpanKind != trace.SpanKindProducer {
		t.Errorf("the producer span is not the GraphQL span's child (kind %v)", send.SpanKind)
	}
	if attr(send, "messaging.system").AsString() != "kafka" || attr(send, "messaging.destination.name").AsString() != cfg.TopicPrefix+".commands" ||
		attr(send, "messaging.destination.partition.id").AsString() == "" || attr(send, "messaging.kafka.offset").Type() != attribute.INT64 {
		t.Errorf("producer span attributes: %v", send.Attributes)
	}
	process := spanNamed(t, exp, id, "process "+cfg.TopicPrefix+".commands")
	if process.Parent.SpanID() != send.SpanContext.SpanID() || process.SpanKind != trace.SpanKindConsumer {
		t.Errorf("the handler's span is not the producer span's child (kind %v)", process.SpanKind)
	}
	if attr(process, "messaging.kafka.offset") != attr(send, "messaging.kafka.offset") {
		t.Errorf("the handler processed offset %v, the bus sent %v", attr(process, "messaging.kafka.offset"), attr(send, "messaging.kafka.offset"))
	}
	// The batch's transaction span ends just after its commands' spans:
	// wait for it.
	var txn tracetest.SpanStub
	for deadline := time.Now().Add(15 * time.Second); !txn.SpanContext.IsValid() && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, s := range exp.GetSpans() {
			if s.Name == "commit "+cfg.TopicPrefix+".events" && linked(s, process.SpanContext) {
				txn = s
			}
		}
	}
	if !txn.SpanContext.IsValid() || !linked(process, txn.SpanContext) {
		t.Errorf("the handler's span and its transaction's are not linked both ways")
	}
	project := spanNamed(t, exp, id, "process "+cfg.TopicPrefix+".events")
	if project.Parent.SpanID() != process.SpanContext.SpanID() || project.SpanKind != trace.SpanKindConsumer ||
		attr(project, "messaging.destination.name").AsString() != cfg.TopicPrefix+".events" {
		t.Errorf("the projector's span is not the handler span's child (kind %v, attributes %v)", project.SpanKind, project.Attributes)
	}
	select {
	case ev := <-events:
		if ev.event != "next" || !strings.Contains(ev.data, out.M.Order.ID) {
			t.Fatalf("the subscriber got %q %s", ev.event, ev.data)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the subscriber got no update")
	}
	// The subscription's start has a server span of its own (its trace,
	// not the mutation's).
	sub := spanNamed(t, exp, trace.TraceID{}, "subscription")
	if sub.SpanKind != trace.SpanKindServer || attr(sub, "graphql.operation.type").AsString() != "subscription" || sub.SpanContext.TraceID() == id {
		t.Errorf("subscription span: kind %v, attributes %v, in the mutation's trace %v", sub.SpanKind, sub.Attributes, sub.SpanContext.TraceID() == id)
	}
	push := spanNamed(t, exp, id, "push subscription update")
	if push.Parent.SpanID() != project.SpanContext.SpanID() || attr(push, "network.protocol.name").AsString() != "sse" {
		t.Errorf("the subscription update's span is not the projector span's child (attributes %v)", push.Attributes)
	}
	for _, s := range []tracetest.SpanStub{gql, send, process, txn, project, sub, push} {
		if s.Status.Code != 0 && s.Status.Code != 1 { // unset or ok
			t.Errorf("%s: status %v", s.Name, s.Status)
		}
	}
}

// waitSubscribers waits until the gateway's hub holds n subscriptions.
func waitSubscribers(t *testing.T, g *gateway, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for g.Hub().Count() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d subscriptions, want %d", g.Hub().Count(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTraceOfAQuery: a query's server span has the store's command under
// it as a client span, named and attributed per the OTel database
// conventions, without the order's id.
func TestTraceOfAQuery(t *testing.T) {
	g, exp, _ := startTraced(t)
	placed := g.mustMutate(t, "placeOrder", placeInput("c-trace-q", item("A", 1, "1.00")))
	var out struct{ Order *Order }
	// With the placement's consistency token the query waits for the view.
	g.data(t, `query Read($id: ID!, $t: String) { order(id: $id, consistencyToken: $t) { id version } }`,
		map[string]any{"id": placed.ID, "t": consistencyTokenFor(placed.ID, 1)}, &out)
	if out.Order == nil {
		t.Fatal("the order was not found")
	}
	var query tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		if s.Name == "query" && attr(s, "graphql.operation.name").AsString() == "Read" {
			query = s
		}
	}
	if !query.SpanContext.IsValid() {
		t.Fatal("no span of the query Read")
	}
	find := spanNamed(t, exp, query.SpanContext.TraceID(), "find orders")
	if find.Parent.SpanID() != query.SpanContext.SpanID() || find.SpanKind != trace.SpanKindClient {
		t.Errorf("the store's span is not the query span's child (kind %v)", find.SpanKind)
	}
	for k, want := range map[string]string{"db.system": "mongodb", "db.operation.name": "find", "db.collection.name": "orders"} {
		if got := attr(find, k).AsString(); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	for _, kv := range find.Attributes {
		if strings.Contains(kv.Value.Emit(), placed.ID) {
			t.Errorf("attribute %s names the order", kv.Key)
		}
	}
}
