// Package tracing is the gateway's OpenTelemetry tracing: the tracer
// provider the standard OTEL_* variables choose (off unless
// OTEL_TRACES_EXPORTER names an exporter), and the W3C trace context in
// Kafka record headers (traceparent, tracestate).
//
// A nil *Tracer is off: every method does nothing and allocates nothing, so
// the parts call it unconditionally and tracing costs nothing when off.
package tracing

import (
	"context"
	"os"

	"github.com/IBM/sarama"
	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
)

// DefaultServiceName is the service.name of the spans unless
// OTEL_SERVICE_NAME says otherwise.
const DefaultServiceName = "order-gateway"

// FromEnv returns the tracer provider the OTEL_* environment variables
// choose, and its shutdown (which flushes the spans): nil when
// OTEL_TRACES_EXPORTER is unset or "none" (tracing off). Otherwise the
// exporter is autoexport's (otlp, console), the sampler OTEL_TRACES_SAMPLER's
// (default: parent-based always-on), the resource OTEL_RESOURCE_ATTRIBUTES'
// with service.name OTEL_SERVICE_NAME or order-gateway.
func FromEnv(ctx context.Context) (*sdktrace.TracerProvider, error) {
	switch os.Getenv("OTEL_TRACES_EXPORTER") {
	case "", "none":
		return nil, nil
	}
	exp, err := autoexport.NewSpanExporter(ctx)
	if err != nil {
		return nil, err
	}
	res, err := resource.New(ctx, resource.WithFromEnv(), resource.WithTelemetrySDK(),
		resource.WithAttributes(semconv.ServiceName(DefaultServiceName)))
	if err != nil {
		return nil, err
	}
	if name := os.Getenv("OTEL_SERVICE_NAME"); name != "" {
		res, _ = resource.Merge(res, resource.NewSchemaless(semconv.ServiceName(name)))
	}
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res)), nil
}

// Tracer starts the gateway's spans; nil is off.
type Tracer struct {
	t trace.Tracer
}

// New returns a Tracer of tp, or nil (off) for a nil tp.
func New(tp trace.TracerProvider) *Tracer {
	if tp == nil {
		return nil
	}
	return &Tracer{t: tp.Tracer("github.com/ordergateway/gateway")}
}

// Start starts a span; with t nil it returns ctx and a span that does
// nothing.
func (t *Tracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if t == nil {
		return ctx, noSpan
	}
	return t.t.Start(ctx, name, opts...)
}

var noSpan = trace.SpanFromContext(context.Background()) // a non-recording span

var propagator = propagation.TraceContext{}

// StartProducer starts the producer span of a record to topic, and puts
// its context in the record's headers. With t nil it does nothing.
func (t *Tracer) StartProducer(ctx context.Context, headers *[]sarama.RecordHeader, topic, messageID string) trace.Span {
	if t == nil {
		return noSpan
	}
	ctx, span := t.t.Start(ctx, "send "+topic, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(semconv.MessagingSystemKafka, attribute.String("messaging.operation.type", "send"),
			semconv.MessagingDestinationName(topic), semconv.MessagingMessageID(messageID)))
	t.Inject(ctx, headers)
	return span
}

// Inject writes the span context of ctx into headers (traceparent and, if
// any, tracestate). With t nil, or no span in ctx, it writes nothing.
func (t *Tracer) Inject(ctx context.Context, headers *[]sarama.RecordHeader) {
	if t == nil || !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	propagator.Inject(ctx, producerCarrier{headers})
}

// Extract returns ctx with the remote span context the headers carry.
func (t *Tracer) Extract(ctx context.Context, headers []*sarama.RecordHeader) context.Context {
	if t == nil {
		return ctx
	}
	return propagator.Extract(ctx, consumerCarrier(headers))
}

// Kafka returns the messaging attributes of a Kafka record (OTel messaging
// semantic conventions).
func Kafka(operation, topic string, partition int32, offset int64) []attribute.KeyValue {
	return []attribute.KeyValue{
		semconv.MessagingSystemKafka,
		attribute.String("messaging.operation.type", operation),
		semconv.MessagingDestinationName(topic),
		attribute.String("messaging.destination.partition.id", itoa(int64(partition))),
		attribute.Int64("messaging.kafka.offset", offset),
	}
}

func itoa(n int64) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	neg := n < 0
	if neg {
		n = -n
	}
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}

type producerCarrier struct{ h *[]sarama.RecordHeader }

func (c producerCarrier) Get(key string) string {
	for _, h := range *c.h {
		if string(h.Key) == key {
			return string(h.Value)
		}
	}
	return ""
}

func (c producerCarrier) Set(key, value string) {
	for i, h := range *c.h {
		if string(h.Key) == key {
			(*c.h)[i].Value = []byte(value)
			return
		}
	}
	*c.h = append(*c.h, sarama.RecordHeader{Key: []byte(key), Value: []byte(value)})
}

func (c producerCarrier) Keys() []string {
	out := make([]string, len(*c.h))
	for i, h := range *c.h {
		out[i] = string(h.Key)
	}
	return out
}

type consumerCarrier []*sarama.RecordHeader

func (c consumerCarrier) Get(key string) string {
	for _, h := range c {
		if h != nil && string(h.Key) == key {
			return string(h.Value)
		}
	}
	return ""
}

func (c consumerCarrier) Set(string, string) {}

func (c consumerCarrier) Keys() []string {
	out := make([]string, 0, len(c))
	for _, h := range c {
		if h != nil {
			out = append(out, string(h.Key))
		}
	}
	return out
}
