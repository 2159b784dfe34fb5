package command

import (
	"context"
	"time"

	"github.com/IBM/sarama"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/ordergateway/gateway/kafka"
	"github.com/ordergateway/gateway/metrics"
	"github.com/ordergateway/gateway/tracing"
)

// batchTrace is the spans of one batch when tracing is on: a span for the
// batch's transaction, and for each command a consumer span, a child of the
// span that sent it (its traceparent header: the mutation's trace), linked
// with the transaction's. The events a command leads to carry its span's
// context in their headers. nil when tracing is off.
type batchTrace struct {
	t         *tracing.Tracer
	txn       trace.Span
	commands  []trace.Span
	byCommand map[string]context.Context // command id → its span's context
}

func (h *Handler) traceBatch(batch []*sarama.ConsumerMessage) *batchTrace {
	t := h.cfg.Tracer
	if t == nil {
		return nil
	}
	txnCtx, txn := t.Start(context.Background(), "commit "+h.cfg.Topics.Events,
		trace.WithAttributes(attribute.Int("messaging.batch.message_count", len(batch))))
	bt := &batchTrace{t: t, txn: txn, byCommand: make(map[string]context.Context, len(batch))}
	for _, m := range batch {
		parent := t.Extract(context.Background(), m.Headers)
		ctx, span := t.Start(parent, "process "+m.Topic, trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithLinks(trace.LinkFromContext(txnCtx)),
			trace.WithAttributes(tracing.Kafka("process", m.Topic, m.Partition, m.Offset)...))
		txn.AddLink(trace.LinkFromContext(ctx))
		bt.commands = append(bt.commands, span)
		bt.byCommand[kafka.Header(m, HeaderCommandID)] = ctx
	}
	return bt
}

// inject puts the context of each event's command span in the event's
// headers.
func (bt *batchTrace) inject(records []*sarama.ProducerMessage, eventsTopic string) {
	if bt == nil {
		return
	}
	for _, r := range records {
		if r.Topic != eventsTopic {
			continue
		}
		for _, h := range r.Headers {
			if string(h.Key) == HeaderCommandID {
				if ctx, ok := bt.byCommand[string(h.Value)]; ok {
					bt.t.Inject(ctx, &r.Headers)
				}
				break
			}
		}
	}
}

// observeQueued records how long each command of batch waited for it.
func observeQueued(m *metrics.Handler, batch []*sarama.ConsumerMessage) {
	now := time.Now()
	for _, c := range batch {
		if !c.Timestamp.IsZero() {
			m.Queued.Observe(max(now.Sub(c.Timestamp), 0).Seconds())
		}
	}
}

// end ends the batch's spans, marking them failed if err is not nil.
func (bt *batchTrace) end(err error) {
	if bt == nil {
		return
	}
	for _, s := range append(bt.commands, bt.txn) {
		if err != nil {
			s.SetStatus(codes.Error, err.Error())
		}
		s.End()
	}
}
