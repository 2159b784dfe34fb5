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
// under it, so a mutation's command carries it to the handler. Only added
// when tracing is on.
type opTracing struct{ t *tracing.Tracer }

var (
	_ graphql.HandlerExtension     = opTracing{}
	_ graphql.OperationInterceptor = opTracing{}
)

func (opTracing) ExtensionName() string                   { return "Tracing" }
func (opTracing) Validate(graphql.ExecutableSchema) error { return nil }

func (x opTracing) InterceptOperation(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	rc := graphql.GetOperationContext(ctx)
	if rc.Operation.Operation == ast.Subscription {
		return next(ctx)
	}
	typ := string(rc.Operation.Operation)
	attrs := []attribute.KeyValue{attribute.String("graphql.operation.type", typ)}
	if rc.OperationName != "" {
		attrs = append(attrs, attribute.String("graphql.operation.name", rc.OperationName))
	} else if rc.Operation.Name != "" {
		attrs = append(attrs, attribute.String("graphql.operation.name", rc.Operation.Name))
	}
	ctx, span := x.t.Start(ctx, typ, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
	h := next(ctx)
	return func(ctx context.Context) *graphql.Response {
		defer span.End()
		resp := h(ctx)
		if outcome, code := classify(resp, ""); outcome != "ok" {
			span.SetStatus(codes.Error, code)
		}
		return resp
	}
}
