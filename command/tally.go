package command

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"

	"github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/kafka"
)

// tallyKey is the key of each snapshots partition's tally, written in every
// transaction that changes the partition's orders.
const tallyKey = markerPrefix + "tally"

// tally counts a partition's orders and the sum of their versions, that is
// the partition's events (each event raises one order's version by one).
// Written with the snapshots in each transaction and compared with them at
// restore, it shows snapshots that went missing or fell behind (records
// lost by the snapshots topic: a broken compaction, a recreated topic, a
// retention set on it), which would otherwise let placeOrder succeed again
// for an existing order and write events the views drop.
type tally struct {
	Orders   int64 `json:"orders"`
	Versions int64 `json:"versions"`
}

func tallyOf(orders map[string]*orderState) tally {
	var t tally
	for _, s := range orders {
		t = t.with(nil, s)
	}
	return t
}

// with is t after an order's state went from old (nil: none) to new.
func (t tally) with(old, new *orderState) tally {
	if old != nil {
		t.Orders--
		t.Versions -= int64(old.Order.Version)
	}
	t.Orders++
	t.Versions += int64(new.Order.Version)
	return t
}

func (t tally) record(topic string, p int32) *sarama.ProducerMessage {
	v, _ := json.Marshal(t)
	return &sarama.ProducerMessage{Topic: topic, Partition: p, Key: sarama.StringEncoder(tallyKey), Value: sarama.ByteEncoder(v)}
}

// tallies is the tally of each partition after changed is applied to
// states, given the tallies before.
func tallies(before map[int32]tally, states partitionStates, changed map[int32]map[string]*orderState) map[int32]tally {
	after := make(map[int32]tally, len(changed))
	for p, orders := range changed {
		t := before[p]
		for id, s := range orders {
			t = t.with(states.get(p, id), s)
		}
		after[p] = t
	}
	return after
}

// verify checks partition p's local store (brought up to its marker by
// restorePartition) against its stored tally. When they disagree (or the
// store read an undecodable record), or when there are neither orders nor
// a tally but the partition has events, it rebuilds the orders from the
// events topic. It returns the records that make the snapshots agree with
// the orders again (the snapshots of rebuilt orders and the tally, also
// written when there was none, as after an upgrade from a version that
// wrote none) and the repair to apply to the store once they are committed
// (nil: none).
func (h *Handler) verify(ctx context.Context, prod *txnProducer, ps *partStore) ([]*sarama.ProducerMessage, *repair, error) {
	p, got, stored := ps.p, ps.meta.Local, ps.meta.Stored
	if ps.meta.Damaged {
		stored = &tally{Orders: -1} // no snapshots match it
	}
	switch {
	case stored != nil && *stored == got:
		return nil, nil, nil
	case stored == nil && got.Orders > 0:
		return []*sarama.ProducerMessage{got.record(h.cfg.Topics.Snapshots, p)}, &repair{p: p, tally: got}, nil
	case stored == nil:
		newest, err := h.client.GetOffset(h.cfg.Topics.Events, p, sarama.OffsetNewest)
		if err != nil {
			return nil, nil, fmt.Errorf("read the end offset of events partition %d: %w", p, err)
		}
		if newest == 0 {
			return []*sarama.ProducerMessage{got.record(h.cfg.Topics.Snapshots, p)}, &repair{p: p, tally: got}, nil
		}
		h.cfg.Logger.Error("command handler: partition has events but no snapshots; rebuilding its state from its events (the snapshots topic lost records)",
			"partition", p)
	default:
		h.cfg.Logger.Error("command handler: snapshots disagree with their tally; rebuilding the partition's state from its events (the snapshots topic lost records)",
			"partition", p, "orders", got.Orders, "tallied orders", stored.Orders, "versions", got.Versions, "tallied versions", stored.Versions, "damaged", ps.meta.Damaged)
	}
	t0 := time.Now()
	// The repair path holds the whole partition in memory: it runs only
	// when the snapshots topic lost records.
	orders, err := ps.all()
	if err != nil {
		return nil, nil, err
	}
	rebuilt, err := h.rebuildPartition(ctx, prod, p, orders)
	if err != nil {
		return nil, nil, err
	}
	var records []*sarama.ProducerMessage
	snaps := map[string][]byte{}
	for id, s := range rebuilt {
		v, err := encodeSnapshot(s)
		if err != nil {
			return nil, nil, fmt.Errorf("snapshot of rebuilt order %q: %w", id, err)
		}
		snaps[id] = v
		if old := orders[id]; old != nil && old.Order.Version == s.Order.Version {
			continue
		}
		records = append(records, &sarama.ProducerMessage{Topic: h.cfg.Topics.Snapshots, Partition: p, Key: sarama.StringEncoder(id), Value: sarama.ByteEncoder(v)})
	}
	fixed := tallyOf(rebuilt)
	h.cfg.Logger.Warn("command handler: partition rebuilt from its events", "partition", p, "orders", fixed.Orders, "events", fixed.Versions,
		"snapshots rewritten", len(records), "took", time.Since(t0).Round(time.Millisecond))
	return append(records, fixed.record(h.cfg.Topics.Snapshots, p)), &repair{p: p, tally: fixed, rebuilt: rebuilt, snapshots: snaps}, nil
}

// repair is what verify found for a partition's store, applied once its
// records are committed: the partition's tally and, after a rebuild, its
// rebuilt orders.
type repair struct {
	p         int32
	tally     tally
	rebuilt   map[string]*orderState
	snapshots map[string][]byte
}

func (r repair) apply(ps *partStore) error {
	w := ps.writer()
	for id, s := range r.rebuilt {
		if err := w.put(id, s.Order.Version, r.snapshots[id]); err != nil {
			w.b.Close()
			return err
		}
	}
	t := r.tally
	w.meta.Stored, w.meta.Damaged = &t, false
	return w.commit(0)
}

// rebuildPartition folds the events of partition p, read from its start to
// a marker it writes, into order states. An order keeps the idempotency
// outcomes of its snapshot in snapshots (those of commands whose outcome is
// lost with the snapshot are handled anew if retried); an order whose
// snapshot is ahead of its events (which the events topic, kept forever,
// should never be) keeps its snapshot.
func (h *Handler) rebuildPartition(ctx context.Context, prod *txnProducer, p int32, snapshots map[string]*orderState) (map[string]*orderState, error) {
	marker := markerPrefix + newID("")
	if err := prod.runTxn([]*sarama.ProducerMessage{{Topic: h.cfg.Topics.Events, Partition: p, Key: sarama.StringEncoder(marker)}}, nil, nil); err != nil {
		return nil, fmt.Errorf("write rebuild marker to events partition %d: %w", p, err)
	}
	pc, err := h.consumer.ConsumePartition(h.cfg.Topics.Events, p, sarama.OffsetOldest)
	if err != nil {
		return nil, fmt.Errorf("read events of partition %d: %w", p, err)
	}
	defer pc.Close()
	states := map[string]*orderState{}
	skipped := 0
	timeout := time.NewTimer(restoreTimeout)
	defer timeout.Stop()
	for done := false; !done; {
		select {
		case m, ok := <-pc.Messages():
			if !ok {
				return nil, fmt.Errorf("read events of partition %d: the consumer closed", p)
			}
			timeout.Reset(restoreTimeout)
			if string(m.Key) == marker {
				done = true
				break
			}
			if kafka.IsMarker(m.Key) {
				continue
			}
			e, err := domain.UnmarshalEvent(m.Value)
			var newer *domain.SchemaVersionError
			if errors.As(err, &newer) { // skipping it would rebuild the order wrong
				return nil, fmt.Errorf("event of order %q (partition %d, offset %d): %w", m.Key, p, m.Offset, err)
			}
			s := states[string(m.Key)]
			if s == nil {
				s = &orderState{}
			}
			if err != nil || e.OrderID != string(m.Key) || e.Version != s.Order.Version+1 {
				skipped++ // not an event of ours, or out of sequence: the projector dead-letters it too
				continue
			}
			s.Order = domain.Evolve(s.Order, e)
			states[e.OrderID] = s
		case err := <-pc.Errors():
			return nil, fmt.Errorf("read events of partition %d: %w", p, err)
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timeout.C:
			return nil, fmt.Errorf("rebuild of partition %d: no event for %s before its marker", p, restoreTimeout)
		}
	}
	if skipped > 0 {
		h.cfg.Logger.Warn("command handler: rebuild skipped records that are not events in sequence", "partition", p, "skipped", skipped)
	}
	for id, snap := range snapshots {
		s := states[id]
		switch {
		case s == nil || snap.Order.Version > s.Order.Version:
			states[id] = snap
		default:
			s.Outcomes = snap.Outcomes
		}
	}
	return states, nil
}
