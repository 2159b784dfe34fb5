package command

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/kafka/kafkatest"
)

func TestTallies(t *testing.T) {
	at := func(v int) *orderState { return &orderState{Order: domain.Order{Version: v}} }
	states := partitionStates{0: {"a": at(2), "b": at(1)}, 1: {"c": at(4)}}
	before := map[int32]tally{0: tallyOf(states[0]), 1: tallyOf(states[1])}
	if before[0] != (tally{Orders: 2, Versions: 3}) || before[1] != (tally{Orders: 1, Versions: 4}) {
		t.Fatalf("tallyOf: %+v", before)
	}
	after := tallies(before, states, map[int32]map[string]*orderState{0: {"a": at(3), "d": at(1)}})
	if len(after) != 1 || after[0] != (tally{Orders: 3, Versions: 5}) {
		t.Fatalf("after a changed order and a new one: %+v, want only partition 0 with 3 orders, 5 versions", after)
	}
}

// TestRestoreRebuildsPartitionsSideBySide: events with no snapshots at all
// (written straight to the events topic, as by a tool, or a snapshots topic
// lost whole) on several partitions: restore rebuilds every partition from
// its events. The partitions' rebuilds share the session's transactional
// producer; they once raced on it ("invalid transition attempted"), failed
// the session and did it all again, forever.
func TestRestoreRebuildsPartitionsSideBySide(t *testing.T) {
	const partitions = 6
	topics := testTopics(t, "rebuild", partitions)
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var msgs []*sarama.ProducerMessage
	for p := range int32(partitions) {
		for i := range 5 {
			id := fmt.Sprintf("ord-%d-%d", p, i)
			for v, data := range []domain.EventData{domain.OrderPlaced{CustomerID: "c", Currency: "USD", Items: []domain.Item{{SKU: "A", Name: "A", Quantity: 1, UnitPrice: 1}}}, domain.OrderConfirmed{}} {
				b, err := domain.MarshalEvent(domain.Event{OrderID: id, Version: v + 1, OccurredAt: at, Data: data})
				if err != nil {
					t.Fatal(err)
				}
				msgs = append(msgs, &sarama.ProducerMessage{Topic: topics.Events, Partition: p, Key: sarama.StringEncoder(id), Value: sarama.ByteEncoder(b)})
			}
		}
	}
	kafkatest.SendToPartitions(t, testBrokers, msgs...)

	h := fenceTestHandler(t, topics, topics.Commands+".group")
	tp, err := h.newTxnProducer()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tp.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	parts := make([]int32, partitions)
	for p := range parts {
		parts[p] = int32(p)
	}
	states, err := h.restore(ctx, tp, parts)
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	for p := range int32(partitions) {
		if got := tallyOf(restoredOrders(t, states, p)); got != (tally{Orders: 5, Versions: 10}) {
			t.Errorf("partition %d rebuilt to %+v, want 5 orders at version 2", p, got)
		}
	}
	// The rebuilt snapshots and tallies were written: a second restore
	// finds them and rebuilds nothing.
	again, err := h.restore(ctx, tp, parts)
	if err != nil {
		t.Fatalf("second restore: %v", err)
	}
	for p := range int32(partitions) {
		if o := restoredOrders(t, again, p)[fmt.Sprintf("ord-%d-0", p)]; o == nil || o.Order.Status != domain.StatusConfirmed {
			t.Errorf("partition %d after the second restore: %+v", p, o)
		}
	}
}
