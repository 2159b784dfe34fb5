package graph

import (
	"context"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/metrics"
)

// opMetrics is the extension that counts operations (metrics.GraphQL):
// every query and mutation once with its duration and outcome, every
// subscription once when it starts (or is refused), and every request
// refused before its operation ran (parse, validation, limits) once. A
// subscription's updates are counted by the transports that write them.
type opMetrics struct{ m *metrics.GraphQL }

// fieldObserver is the duration histogram of the operation's first root
// field, or nil. The document was validated against the schema, so the
// field names are the schema's: a bounded set.
func (x opMetrics) fieldObserver(op *ast.OperationDefinition) prometheus.Observer {
	if len(op.SelectionSet) == 0 {
		return nil
	}
	f, ok := op.SelectionSet[0].(*ast.Field)
	if !ok {
		return nil
	}
	return x.m.FieldObserver(string(op.Operation), f.Name)
}

var (
	_ graphql.HandlerExtension     = opMetrics{}
	_ graphql.OperationInterceptor = opMetrics{}
	_ graphql.ResponseInterceptor  = opMetrics{}
)

func (opMetrics) ExtensionName() string                   { return "Metrics" }
func (opMetrics) Validate(graphql.ExecutableSchema) error { return nil }

// opOutcome travels in a dispatched operation's context: the first
// userError's code of a mutation (send sets it), and the mark that the
// operation's responses are counted by InterceptOperation.
type opOutcome struct{ userCode string }

type opOutcomeKey struct{}

// outcomeCtx is a context carrying an opOutcome: one allocation for both.
type outcomeCtx struct {
	context.Context
	o opOutcome
}

func (c *outcomeCtx) Value(key any) any {
	if key == (opOutcomeKey{}) {
		return &c.o
	}
	return c.Context.Value(key)
}

// subscriptionOutcome marks a subscription's context (its updates are not
// requests).
var subscriptionOutcome = &opOutcome{}

// noteUserError records a mutation's userError for the metrics.
func noteUserError(ctx context.Context, code domain.Code) {
	if o, _ := ctx.Value(opOutcomeKey{}).(*opOutcome); o != nil && o != subscriptionOutcome && o.userCode == "" {
		o.userCode = string(code)
	}
}

func (x opMetrics) InterceptOperation(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	rc := graphql.GetOperationContext(ctx)
	if rc.Operation.Operation == ast.Subscription {
		h := next(context.WithValue(ctx, opOutcomeKey{}, subscriptionOutcome))
		if t := pullTargetFrom(ctx); t != nil && t.attached() {
			x.m.Request(metrics.OpSubscription, metrics.OutcomeOK, "")
			return h
		}
		// An error result (or a stream of its own): its first response
		// says which.
		counted := false
		return func(ctx context.Context) *graphql.Response {
			resp := h(ctx)
			if !counted {
				counted = true
				outcome, code := classify(resp, "")
				x.m.Request(metrics.OpSubscription, outcome, code)
			}
			return resp
		}
	}
	typ := metrics.OpQuery
	if rc.Operation.Operation == ast.Mutation {
		typ = metrics.OpMutation
	}
	start := rc.Stats.OperationStart
	if start.IsZero() {
		start = time.Now()
	}
	field := x.fieldObserver(rc.Operation)
	x.m.InFlight.Inc()
	oc := &outcomeCtx{Context: ctx}
	o := &oc.o
	h := next(oc)
	return func(ctx context.Context) *graphql.Response {
		defer x.m.InFlight.Dec()
		resp := h(ctx)
		outcome, code := classify(resp, o.userCode)
		x.m.Request(typ, outcome, code)
		took := time.Since(start)
		x.m.Observe(typ, took)
		if field != nil {
			field.Observe(took.Seconds())
		}
		return resp
	}
}

// InterceptResponse counts the responses of requests that were not
// dispatched: those refused before their operation ran.
func (x opMetrics) InterceptResponse(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
	resp := next(ctx)
	if ctx.Value(opOutcomeKey{}) != nil {
		return resp // counted by InterceptOperation
	}
	typ := metrics.OpUnknown
	if graphql.HasOperationContext(ctx) {
		if rc := graphql.GetOperationContext(ctx); rc.Operation != nil {
			typ = string(rc.Operation.Operation)
		}
	}
	outcome, code := classify(resp, "")
	x.m.Request(typ, outcome, code)
	return resp
}

// classify is a response's outcome and code: the first error's code, or
// the first userError's.
func classify(resp *graphql.Response, userCode string) (outcome, code string) {
	switch {
	case resp == nil:
		return metrics.OutcomeError, "CANCELLED" // the request's context ended
	case len(resp.Errors) > 0:
		code := errorCode(resp.Errors[0])
		switch domain.Code(code) {
		case domain.CodeUnavailable, domain.CodeCommandTimeout, domain.CodeInternal, "OTHER":
			return metrics.OutcomeError, code
		}
		return metrics.OutcomeUserError, code
	case userCode != "":
		return metrics.OutcomeUserError, userCode
	}
	return metrics.OutcomeOK, ""
}

// errorCode is e's extensions.code as a label: the codes are the server's
// constants (the error presenter gives every error one), so anything else
// (none, or not a short upper-case word) is OTHER.
func errorCode(e *gqlerror.Error) string {
	c, _ := e.Extensions["code"].(string)
	if c == "" || len(c) > 40 {
		return "OTHER"
	}
	for i := 0; i < len(c); i++ {
		if b := c[i]; (b < 'A' || b > 'Z') && b != '_' {
			return "OTHER"
		}
	}
	return c
}
