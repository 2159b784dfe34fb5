package graph

import (
	"context"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/ordergateway/gateway/tracing"
)

// opTracing is the extension that gives each query and mutation a server
// span (OTel GraphQL semantic conventions: named by the operation type,
// graphql.operation.type and graphql.operation.name). Its resolvers run
// under it, so a mutation's command carries it to the handler. A
// subscription's span covers its start: until its root resolver has
// subscribed (authorization, the hub's registration, the read of the
// order's current state); its updates get spans of their own, in the traces
// of the mutations that caused them (pushTracer). Only added when tracing is
// on.
type opTracing struct{ t *tracing.Tracer }

var (
	_ graphql.HandlerExtension     = opTracing{}
	_ graphql.OperationInterceptor = opTracing{}
)

func (opTracing) ExtensionName() string                   { return "Tracing" }
func (opTracing) Validate(graphql.ExecutableSchema) error { return nil }

func (x opTracing) InterceptOperation(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	rc := graphql.GetOperationContext(ctx)
	typ := string(rc.Operation.Operation)
	attrs := []attribute.KeyValue{attribute.String("graphql.operation.type", typ)}
	if rc.OperationName != "" {
		attrs = append(attrs, attribute.String("graphql.operation.name", rc.OperationName))
	} else if rc.Operation.Name != "" {
		attrs = append(attrs, attribute.String("graphql.operation.name", rc.Operation.Name))
	}
	ctx, span := x.t.Start(ctx, typ, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
	h := next(ctx)
	if rc.Operation.Operation == ast.Subscription {
		// The root resolver ran in next: the subscription has started (or
		// failed; its error is the first response, not a span status).
		span.End()
		return h
	}
	return func(ctx context.Context) *graphql.Response {
		defer span.End()
		resp := h(ctx)
		if outcome, code := classify(resp, ""); outcome != "ok" {
			span.SetStatus(codes.Error, code)
		}
		return resp
	}
}

// TraceSource gives the trace context a view change carried (*live.Feed
// implements it).
type TraceSource interface {
	TraceOf(orderID string, version int) (trace.SpanContext, bool)
}

// pushTracer gives each subscription update written a span, a child of the
// span of the view change it shows (the projector's span of the order's
// event: the mutation's trace). Its zero value is off.
type pushTracer struct {
	t       *tracing.Tracer
	sources TraceSource
}

// start starts the span of an update of orderID at version written over
// transport; it does nothing when tracing is off or the change carried no
// trace context.
func (p pushTracer) start(orderID string, version int, transport string) trace.Span {
	if p.t == nil || p.sources == nil {
		return noSpan
	}
	sc, ok := p.sources.TraceOf(orderID, version)
	if !ok {
		return noSpan
	}
	_, span := p.t.Start(trace.ContextWithRemoteSpanContext(context.Background(), sc), "push subscription update",
		trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(
			attribute.String("graphql.operation.type", "subscription"),
			attribute.String("network.protocol.name", transport),
			attribute.Int("order.version", version)))
	return span
}

var noSpan = trace.SpanFromContext(context.Background())
