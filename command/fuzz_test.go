package command

import (
	"log/slog"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/kafka"
)

// FuzzDecideBatch feeds arbitrary records of the commands topic (what
// anyone with write access to it, or a future version, could put there) to
// the handler's decision, twice in a row on the state the first leads to:
// it never panics; every record is either answered or dead-lettered; every
// event it writes decodes and follows its order's version; no snapshot is
// over MaxSnapshotBytes.
func FuzzDecideBatch(f *testing.F) {
	f.Add([]byte("ord-1"), []byte(`{"commandId":"c1","type":"PlaceOrder","orderId":"ord-1","idempotencyKey":"k","data":{"orderId":"ord-1","customerId":"c","currency":"USD","items":[{"sku":"A","name":"A","quantity":1,"unitPrice":"1"}]}}`))
	f.Add([]byte("ord-1"), []byte(`{"commandId":"c2","type":"ConfirmOrder","orderId":"ord-1","data":{"orderId":"ord-1"}}`))
	f.Add([]byte("x"), []byte(`{"commandId":"c3","type":"CancelOrder","orderId":"ord-1","data":{"orderId":"ord-1"}}`))
	f.Add([]byte(""), []byte(`null`))
	f.Add([]byte("o"), []byte(`{"commandId":"c","type":"PlaceOrder","orderId":"o","idempotencyKey":"\u0000","data":{}}`))
	// AuthDisabled: the decisions on any record, not only the refusal of
	// records without a principal (TestHandlerAuthorizes).
	h := &Handler{cfg: HandlerConfig{Topics: kafka.NewTopics("fuzz"), Logger: slog.New(slog.DiscardHandler), AuthDisabled: true,
		Now: func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }}}
	f.Fuzz(func(t *testing.T, key, value []byte) {
		states := partitionStates{}
		for round := range 2 {
			m := &sarama.ConsumerMessage{Topic: h.cfg.Topics.Commands, Partition: 0, Offset: int64(round), Key: key, Value: value,
				Headers: []*sarama.RecordHeader{{Key: []byte(HeaderReplyTo), Value: []byte("bus")}, {Key: []byte(HeaderReplyPartition), Value: []byte("0")}}}
			d, err := h.decideBatch(states, []*sarama.ConsumerMessage{m})
			if err != nil {
				if err == errSnapshotTooLarge {
					return
				}
				t.Fatalf("round %d: %v", round, err)
			}
			if len(d.replies) != 1 {
				t.Fatalf("round %d: %d replies, want 1 (dead letters %d)", round, len(d.replies), d.dead)
			}
			for _, r := range d.records {
				switch r.Topic {
				case h.cfg.Topics.Events:
					v, _ := r.Value.Encode()
					e, err := domain.UnmarshalEvent(v)
					if err != nil {
						t.Fatalf("round %d: written event does not decode: %v", round, err)
					}
					before := states.get(0, e.OrderID)
					if before == nil {
						before = &orderState{}
					}
					if after := d.changed[0][e.OrderID]; after == nil || e.Version <= before.Order.Version || e.Version > after.Order.Version {
						t.Fatalf("round %d: event version %d outside (%d, new state]", round, e.Version, before.Order.Version)
					}
				case h.cfg.Topics.Snapshots:
					if r.Value.Length() > MaxSnapshotBytes {
						t.Fatalf("round %d: snapshot of %d bytes", round, r.Value.Length())
					}
				}
			}
			for id, s := range d.changed[0] {
				if states[0] == nil {
					states[0] = map[string]*orderState{}
				}
				states[0][id] = s
			}
		}
	})
}
