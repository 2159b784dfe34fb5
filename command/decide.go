package command

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/IBM/sarama"

	"github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/kafka"
)

// MaxRecordedOutcomes bounds the idempotency outcomes kept per order; a key
// older than the newest MaxRecordedOutcomes commands of its order is
// forgotten and a retry with it is handled as a new command. Fewer are kept
// when they would make the order's snapshot larger than MaxSnapshotBytes.
const MaxRecordedOutcomes = 1000

// MaxSnapshotBytes bounds an order's encoded snapshot, well below the 1 MB
// a Kafka message may have by default. The input limits keep an order itself
// under about 200 KB; the oldest idempotency outcomes are forgotten when
// more would not fit. A command that would still make a larger snapshot is
// refused with LIMIT_EXCEEDED.
const MaxSnapshotBytes = 512 << 10

// errSnapshotTooLarge refuses a command whose order's snapshot would be
// over MaxSnapshotBytes even with a single idempotency outcome.
var errSnapshotTooLarge = fmt.Errorf("the order's snapshot would be larger than %d bytes", MaxSnapshotBytes)

// orderState is what the handler keeps per order and writes as its
// snapshot: the aggregate plus the outcomes of recent commands by
// idempotency key.
type orderState struct {
	// SchemaVersion is the version of Order's shape in a snapshot
	// (domain.OrderVersion when written; absent in version 1).
	SchemaVersion int          `json:"schemaVersion,omitempty"`
	Order         domain.Order `json:"order"`
	Outcomes      []outcome    `json:"outcomes,omitempty"`
}

// decodeSnapshot decodes a snapshot of any schema version up to
// domain.OrderVersion, its order upcast to today's shape, as read from the
// snapshots topic or a local store (the one place snapshots are decoded). A
// newer version is a *domain.SchemaVersionError: the handler refuses to
// start on it.
func decodeSnapshot(b []byte) (*orderState, error) {
	var wire struct {
		SchemaVersion int             `json:"schemaVersion"`
		Order         json.RawMessage `json:"order"`
		Outcomes      []outcome       `json:"outcomes"`
	}
	if err := json.Unmarshal(b, &wire); err != nil {
		return nil, fmt.Errorf("snapshot is not valid JSON: %w", err)
	}
	o, err := domain.UnmarshalOrder(wire.SchemaVersion, wire.Order)
	if err != nil {
		return nil, err
	}
	return &orderState{SchemaVersion: domain.OrderVersion, Order: o, Outcomes: wire.Outcomes}, nil
}

type outcome struct {
	Key       string        `json:"key"`
	Hash      string        `json:"hash"`
	CommandID string        `json:"commandId"`
	Version   int           `json:"version"`
	Error     *domain.Error `json:"error,omitempty"`
}

func (s *orderState) find(key string) *outcome {
	for i := len(s.Outcomes) - 1; i >= 0; i-- {
		if s.Outcomes[i].Key == key {
			return &s.Outcomes[i]
		}
	}
	return nil
}

// orderSource gives the state of an order of a partition (nil: no such
// order). A failure is the local store's (see workingSet).
type orderSource interface {
	order(p int32, orderID string) (*orderState, error)
}

// partitionStates is order states by partition and order id, all in
// memory.
type partitionStates map[int32]map[string]*orderState

func (ps partitionStates) get(p int32, orderID string) *orderState { return ps[p][orderID] }

func (ps partitionStates) order(p int32, orderID string) (*orderState, error) {
	return ps[p][orderID], nil
}

// addressedReply is a command's outcome and where it goes: the bus
// instance that sent the command and the replies partition it reads.
type addressedReply struct {
	to        string
	partition int32
	reply     Reply
}

// decided is what a batch of commands leads to: the records of its
// transaction, the replies to send once it is committed, and the order
// states to keep.
type decided struct {
	records []*sarama.ProducerMessage
	replies []addressedReply
	changed map[int32]map[string]*orderState
	// before is the state of each changed order before the batch (nil:
	// none), snapshots its encoded snapshot after.
	before    partitionStates
	snapshots map[int32]map[string][]byte
	dead      int64
}

// replyTo addresses r to the bus that sent command m; ok is false when m
// names no reply destination.
func replyTo(m *sarama.ConsumerMessage, r Reply) (addressedReply, bool) {
	to := kafka.Header(m, HeaderReplyTo)
	if to == "" {
		return addressedReply{}, false
	}
	part, _ := strconv.Atoi(kafka.Header(m, HeaderReplyPartition))
	return addressedReply{to: to, partition: int32(part), reply: r}, true
}

// decideBatch turns commands into the records of one transaction and the
// order states they lead to. It does not modify states. It fails with
// errSnapshotTooLarge when an order's snapshot would be too large. Events
// and snapshots go to the partition of the command they come from, so that
// the commands, events and snapshots of an order share a partition number.
func (h *Handler) decideBatch(states orderSource, batch []*sarama.ConsumerMessage) (decided, error) {
	d := decided{changed: map[int32]map[string]*orderState{}, before: partitionStates{}, snapshots: map[int32]map[string][]byte{}}
	reply := func(m *sarama.ConsumerMessage, r Reply) {
		if a, ok := replyTo(m, r); ok {
			d.replies = append(d.replies, a)
		}
	}
	for _, m := range batch {
		p := m.Partition
		env, cmd, err := decodeCommand(m)
		if err == nil && env.OrderID != string(m.Key) {
			err = fmt.Errorf("command for order %q was keyed %q", env.OrderID, m.Key)
		}
		if err != nil {
			err = kafka.Reason(kafka.ReasonUndecodable, err)
		}
		var events []domain.Event
		var state *orderState
		if err == nil {
			state = d.changed[p][env.OrderID]
			if state == nil {
				old, err := states.order(p, env.OrderID)
				if err != nil {
					return decided{}, fmt.Errorf("state of order %q: %w", env.OrderID, err)
				}
				state = cloneState(old)
				if d.before[p] == nil {
					d.before[p] = map[string]*orderState{}
				}
				d.before[p][env.OrderID] = old
			}
			var refused *domain.Error
			if refused, err = h.authorize(m, env, cmd, state.Order); refused != nil {
				// Nothing is applied or recorded: a refusal is not an outcome
				// of the order's (a retry is checked again).
				reply(m, Reply{CommandID: env.CommandID, OrderID: env.OrderID, Error: refused})
				continue
			}
			if err == nil {
				var r Reply
				r, events, err = h.handle(state, env, cmd)
				if err == nil {
					reply(m, r)
				}
			}
		}
		if err != nil {
			d.dead++
			answer := domain.Errorf(domain.CodeInternal, "the command could not be processed and was set aside")
			var pe *principalError
			if errors.As(err, &pe) {
				h.cfg.Logger.Warn("command handler: dead-lettering a command without a valid principal", "partition", p, "offset", m.Offset, "err", err)
				answer = domain.Errorf(domain.CodeForbidden, "the command carries no valid principal; it was set aside")
				err = kafka.Reason(kafka.ReasonPrincipal, err)
			} else {
				h.cfg.Logger.Error("command handler: dead-lettering command", "partition", p, "offset", m.Offset, "err", err)
			}
			d.records = append(d.records, kafka.DeadLetter(h.cfg.Topics.DeadLetter, m, err))
			reply(m, Reply{CommandID: kafka.Header(m, HeaderCommandID), OrderID: string(m.Key), Error: answer})
			continue
		}
		for _, e := range events {
			v, err := domain.MarshalEvent(e)
			if err != nil { // cannot happen for the gateway's own event types
				panic(err)
			}
			d.records = append(d.records, &sarama.ProducerMessage{Topic: h.cfg.Topics.Events, Partition: p, Key: sarama.StringEncoder(e.OrderID), Value: sarama.ByteEncoder(v),
				Headers: []sarama.RecordHeader{{Key: []byte(HeaderCommandID), Value: []byte(env.CommandID)}, {Key: []byte("event-type"), Value: []byte(e.Data.EventType())}}})
		}
		if state.Order.Exists() {
			if d.changed[p] == nil {
				d.changed[p] = map[string]*orderState{}
			}
			d.changed[p][env.OrderID] = state
		}
	}
	for p, orders := range d.changed {
		for id, s := range orders {
			v, err := encodeSnapshot(s)
			if err != nil {
				return decided{}, err
			}
			if d.snapshots[p] == nil {
				d.snapshots[p] = map[string][]byte{}
			}
			d.snapshots[p][id] = v
			d.records = append(d.records, &sarama.ProducerMessage{Topic: h.cfg.Topics.Snapshots, Partition: p, Key: sarama.StringEncoder(id), Value: sarama.ByteEncoder(v)})
		}
	}
	return d, nil
}

// principalError is a command whose principal header is missing (with
// auth on) or not a valid principal: it did not come from a gateway that
// checks tokens, so it is set aside in the dead-letter topic.
type principalError struct{ reason string }

func (e *principalError) Error() string { return e.reason }

// authorize applies domain.Authorize to the command's principal and the
// order's state, before anything else looks at the order (its recorded
// outcomes included). refused is the answer to a principal that may not
// act: FORBIDDEN, or, for a customer and another customer's order, what a
// missing order would get (NOT_FOUND; placing an order whose id is taken
// gets "already exists" as its owner would), so ids cannot be probed.
// err is a *principalError for a command without a valid principal.
func (h *Handler) authorize(m *sarama.ConsumerMessage, env envelope, cmd domain.Command, state domain.Order) (refused *domain.Error, err error) {
	header := kafkaHeaderBytes(m, HeaderPrincipal)
	if header == nil {
		if h.cfg.AuthDisabled {
			return nil, nil
		}
		return nil, &principalError{"the command has no principal header (authentication is on)"}
	}
	p, perr := domain.UnmarshalPrincipal(header)
	if perr != nil {
		return nil, &principalError{"the command's principal header is not valid: " + perr.Error()}
	}
	aerr := domain.Authorize(p, cmd, state)
	if aerr == nil {
		return nil, nil
	}
	refused = &domain.Error{Code: domain.CodeForbidden, Message: aerr.Error()}
	if de, ok := aerr.(*domain.Error); ok {
		refused = de
	}
	if p.Role == domain.RoleCustomer && state.Exists() && state.CustomerID != p.CustomerID && !domain.StaffOnly(cmd) {
		if _, place := cmd.(domain.PlaceOrder); place && refused.Field == nil {
			refused = domain.AlreadyExists(env.OrderID)
		} else if !place {
			refused = domain.NotFound(env.OrderID)
		}
	}
	level := slog.LevelWarn // the gateway refuses these before it sends them
	if refused.Code != domain.CodeForbidden {
		level = slog.LevelDebug // a customer naming another's order: the gateway cannot know
	}
	h.cfg.Logger.Log(context.Background(), level, "command handler: refused a command its principal may not send",
		"principal", p.String(), "order_id", env.OrderID, "type", env.Type, "code", refused.Code)
	return refused, nil
}

// kafkaHeaderBytes is the value of m's header key, or nil when there is
// none.
func kafkaHeaderBytes(m *sarama.ConsumerMessage, key string) []byte {
	for _, h := range m.Headers {
		if h != nil && string(h.Key) == key {
			if h.Value == nil {
				return []byte{}
			}
			return h.Value
		}
	}
	return nil
}

// encodeSnapshot encodes s, first forgetting its oldest idempotency
// outcomes (in s too, so memory and snapshot agree) if the snapshot would
// otherwise be over MaxSnapshotBytes. The newest outcome is always kept; if
// that is still too large, it returns errSnapshotTooLarge.
func encodeSnapshot(s *orderState) ([]byte, error) {
	s.SchemaVersion = domain.OrderVersion
	v, err := json.Marshal(s)
	if err != nil || len(v) <= MaxSnapshotBytes {
		return v, err
	}
	excess, drop := len(v)-MaxSnapshotBytes, 0
	for ; excess > 0 && drop < len(s.Outcomes)-1; drop++ {
		o, _ := json.Marshal(s.Outcomes[drop])
		excess -= len(o) + 1 // and its comma
	}
	s.Outcomes = append([]outcome(nil), s.Outcomes[drop:]...)
	if v, err = json.Marshal(s); err == nil && len(v) > MaxSnapshotBytes {
		err = errSnapshotTooLarge
	}
	return v, err
}

// handle decides one command against state and updates state. The error is
// for commands that cannot be processed at all (they go to the dead-letter
// topic); business rejections are in the Reply.
func (h *Handler) handle(state *orderState, env envelope, cmd domain.Command) (r Reply, events []domain.Event, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic while deciding %s: %v", env.Type, p)
		}
	}()
	r = Reply{CommandID: env.CommandID, OrderID: env.OrderID}
	if err := domain.CheckIdempotencyKey(env.IdempotencyKey); err != nil {
		// The gateway refuses such keys before sending; a command from
		// elsewhere is refused here, without recording its outcome.
		r.Version, r.Error = state.Order.Version, err.(*domain.Error)
		return r, nil, nil
	}
	hash := env.payloadHash()
	if prev := state.find(env.IdempotencyKey); prev != nil {
		if prev.Hash != hash {
			r.Version = state.Order.Version
			r.Error = domain.Errorf(domain.CodeIdempotencyKeyReused,
				"the idempotency key was already used with a different request on order %q", env.OrderID)
			return r, nil, nil
		}
		r.Version, r.Error, r.Replayed = prev.Version, prev.Error, true
		if state.Order.Exists() {
			o := state.Order
			r.Order = &o
		}
		return r, nil, nil
	}
	// Milliseconds: the precision MongoDB keeps, so views equal the write side.
	events, derr := domain.Decide(state.Order, cmd, h.cfg.Now().UTC().Truncate(time.Millisecond))
	if derr != nil {
		var de *domain.Error
		if !errors.As(derr, &de) {
			return r, nil, derr
		}
		r.Error = de
	}
	for i := range events {
		events[i].CommandID = env.CommandID
		state.Order = domain.Evolve(state.Order, events[i])
	}
	r.Version = state.Order.Version
	if state.Order.Exists() {
		o := state.Order
		r.Order = &o
		state.Outcomes = append(state.Outcomes, outcome{Key: env.IdempotencyKey, Hash: hash, CommandID: env.CommandID, Version: r.Version, Error: r.Error})
		if n := len(state.Outcomes); n > MaxRecordedOutcomes {
			state.Outcomes = state.Outcomes[n-MaxRecordedOutcomes:]
		}
	}
	return r, events, nil
}

func cloneState(s *orderState) *orderState {
	if s == nil {
		return &orderState{}
	}
	c := *s
	c.Outcomes = append([]outcome(nil), s.Outcomes...)
	return &c
}

func decodeCommand(m *sarama.ConsumerMessage) (envelope, domain.Command, error) {
	var env envelope
	if err := json.Unmarshal(m.Value, &env); err != nil {
		return env, nil, fmt.Errorf("command envelope is not valid JSON: %w", err)
	}
	if env.CommandID == "" || env.OrderID == "" {
		return env, nil, errors.New("command envelope lacks commandId or orderId")
	}
	cmd, err := domain.UnmarshalCommand(env.Type, env.Data)
	if err != nil {
		return env, nil, err
	}
	if cmd.TargetOrderID() != env.OrderID {
		return env, nil, fmt.Errorf("command data addresses order %q, envelope %q", cmd.TargetOrderID(), env.OrderID)
	}
	return env, cmd, nil
}
