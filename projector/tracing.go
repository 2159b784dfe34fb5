package projector

import (
	"context"
	"sync"

	"github.com/IBM/sarama"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/ordergateway/gateway/kafka"
	"github.com/ordergateway/gateway/tracing"
)

// batchTrace is the consumer spans of one attempt at a batch when tracing
// is on: one per event that carries a trace context (the handler's span of
// its command), a child of it. The view change an order's events lead to
// carries the span of its newest event in its headers (tracedProducer).
// nil when tracing is off.
type batchTrace struct {
	p      *Projector
	spans  []trace.Span
	orders []string
}

func (p *Projector) traceBatch(batch []*sarama.ConsumerMessage) *batchTrace {
	t := p.cfg.Tracer
	if t == nil {
		return nil
	}
	bt := &batchTrace{p: p}
	for _, m := range batch {
		if kafka.IsMarker(m.Key) {
			continue
		}
		parent := t.Extract(context.Background(), m.Headers)
		if !trace.SpanContextFromContext(parent).IsValid() {
			continue
		}
		ctx, span := t.Start(parent, "process "+m.Topic, trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(tracing.Kafka("process", m.Topic, m.Partition, m.Offset)...))
		bt.spans = append(bt.spans, span)
		bt.orders = append(bt.orders, string(m.Key))
		p.traced.Store(string(m.Key), ctx)
	}
	return bt
}

// end ends the spans, failed if err is not nil.
func (bt *batchTrace) end(err error) {
	if bt == nil {
		return
	}
	for _, s := range bt.spans {
		if err != nil {
			s.SetStatus(codes.Error, err.Error())
		}
		s.End()
	}
	for _, id := range bt.orders {
		bt.p.traced.Delete(id)
	}
}

// tracedProducer puts the trace context of the batch being applied in the
// headers of the view changes it publishes.
type tracedProducer struct {
	sarama.SyncProducer
	views  string
	t      *tracing.Tracer
	traced *sync.Map
}

func (tp tracedProducer) SendMessages(msgs []*sarama.ProducerMessage) error {
	for _, m := range msgs {
		if m.Topic != tp.views {
			continue
		}
		if key, err := m.Key.Encode(); err == nil {
			if ctx, ok := tp.traced.Load(string(key)); ok {
				tp.t.Inject(ctx.(context.Context), &m.Headers)
			}
		}
	}
	return tp.SyncProducer.SendMessages(msgs)
}
