package view

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/ordergateway/gateway/metrics"
	"github.com/ordergateway/gateway/tracing"
)

// WithErrors counts the errors the store returns by kind (ErrorKind) in e.
func WithErrors(e *metrics.Errors) Option { return func(s *Store) { s.errs = e } }

// WithTracer gives each command the store sends on behalf of a traced
// operation (a context holding a span: a GraphQL query's) a client span,
// its child, per the OpenTelemetry database conventions: named
// "{command} {collection}" ("find orders"), with db.system=mongodb,
// db.operation.name, db.collection.name, db.namespace, server.address and
// server.port, never the command's filter or documents (they hold order
// and customer ids). Commands under no span (the projector's writes, pings)
// get none. With t nil (tracing off) no command monitor is installed: the
// driver does not even build the events.
func WithTracer(t *tracing.Tracer) Option { return func(s *Store) { s.tracer = t } }

// ErrorKind names the kind of a store error for the errors-by-kind metric
// (metrics.StoreErrorKinds): duplicate_key, network (unreachable, no
// server selected, disconnected), timeout, write_conflict or other; "" for
// nil and for a cancelled context (the caller gave up).
func ErrorKind(err error) string {
	var sse topology.ServerSelectionError
	switch {
	case err == nil || errors.Is(err, context.Canceled):
		return ""
	case mongo.IsDuplicateKeyError(err):
		return "duplicate_key"
	case errors.As(err, &sse) || mongo.IsNetworkError(err) || errors.Is(err, mongo.ErrClientDisconnected):
		return "network"
	case mongo.IsTimeout(err):
		return "timeout"
	}
	if se := mongo.ServerError(nil); errors.As(err, &se) && (se.HasErrorCode(112) || se.HasErrorLabel("TransientTransactionError")) {
		return "write_conflict" // WriteConflict
	}
	return "other"
}

// commandSpans is the command monitor that traces the store's commands.
// It holds the span of each command in flight, at most the driver's
// connection pool (100 per server by default): the driver ends every
// started command with Succeeded or Failed.
type commandSpans struct {
	t     *tracing.Tracer
	mu    sync.Mutex
	spans map[commandKey]trace.Span
}

type commandKey struct {
	conn string
	id   int64
}

func (c *commandSpans) monitor() *event.CommandMonitor {
	return &event.CommandMonitor{Started: c.started, Succeeded: c.succeeded, Failed: c.failed}
}

func (c *commandSpans) started(ctx context.Context, e *event.CommandStartedEvent) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	name := e.CommandName
	attrs := []attribute.KeyValue{semconv.DBSystemMongoDB, attribute.String("db.operation.name", e.CommandName), attribute.String("db.namespace", e.DatabaseName)}
	if coll := collectionOf(e.Command, e.CommandName); coll != "" {
		name += " " + coll
		attrs = append(attrs, attribute.String("db.collection.name", coll))
	}
	if host, port, err := net.SplitHostPort(serverOf(e.ConnectionID)); err == nil {
		attrs = append(attrs, semconv.ServerAddress(host))
		if p, err := strconv.Atoi(port); err == nil {
			attrs = append(attrs, semconv.ServerPort(p))
		}
	}
	_, span := c.t.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	c.mu.Lock()
	c.spans[commandKey{e.ConnectionID, e.RequestID}] = span
	c.mu.Unlock()
}

func (c *commandSpans) end(e event.CommandFinishedEvent) trace.Span {
	k := commandKey{e.ConnectionID, e.RequestID}
	c.mu.Lock()
	span, ok := c.spans[k]
	delete(c.spans, k)
	c.mu.Unlock()
	if !ok {
		return nil
	}
	return span
}

func (c *commandSpans) succeeded(_ context.Context, e *event.CommandSucceededEvent) {
	if span := c.end(e.CommandFinishedEvent); span != nil {
		span.End()
	}
}

func (c *commandSpans) failed(_ context.Context, e *event.CommandFailedEvent) {
	if span := c.end(e.CommandFinishedEvent); span != nil {
		// The kind, not the driver's text: it can quote a key (an id).
		kind := ErrorKind(e.Failure)
		span.SetAttributes(attribute.String("error.type", kind))
		span.SetStatus(codes.Error, kind)
		span.End()
	}
}

// collectionOf is the collection a command names: the value of its first
// element for find, insert, update, delete, aggregate, count and the like,
// the collection field of getMore; "" for database commands.
func collectionOf(cmd bson.Raw, name string) string {
	if name == "getMore" {
		if v, err := cmd.LookupErr("collection"); err == nil {
			s, _ := v.StringValueOK()
			return s
		}
		return ""
	}
	first, err := cmd.IndexErr(0)
	if err != nil || first.Key() != name {
		return ""
	}
	s, _ := first.Value().StringValueOK()
	return s
}

// serverOf is the host:port of a driver connection id
// ("127.0.0.1:27017[-3]").
func serverOf(connID string) string {
	if i := strings.LastIndexByte(connID, '['); i >= 0 {
		return connID[:i]
	}
	return connID
}
