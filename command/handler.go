package command

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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

// markerPrefix starts the keys of the restore markers written to the
// snapshots topic; no order id can start with it (ids have no control
// characters).
const markerPrefix = "\x00restore\x00"

// HandlerConfig configures a Handler.
type HandlerConfig struct {
	Brokers        []string
	Topics         kafka.Topics
	Group          string        // consumer group id; every gateway instance uses the same
	FetchWait      time.Duration // Consumer.MaxWaitTime
	SessionTimeout time.Duration // consumer group session timeout
	BatchSize      int           // most commands per transaction
	Logger         *slog.Logger
	Now            func() time.Time
}

// Handler consumes the commands topic as a member of a consumer group. For
// each partition it owns it keeps the state of that partition's orders,
// restored from the snapshots topic when the partition is assigned, and
// handles each batch of commands in one Kafka transaction: events, snapshots,
// replies and the consumer offset commit together. Its transactional id is
// per partition, so a new owner fences any zombie of the previous one.
type Handler struct {
	cfg      HandlerConfig
	group    sarama.ConsumerGroup
	client   sarama.Client
	consumer sarama.Consumer
	replies  sarama.SyncProducer

	loop        kafka.GroupLoop
	sessions    atomic.Int64 // sessions started, for readiness
	closeOnce   sync.Once
	closeErr    error
	deadLetters atomic.Int64
}

// orderState is what the handler keeps per order and writes as its
// snapshot: the aggregate plus the outcomes of recent commands by
// idempotency key.
type orderState struct {
	Order    domain.Order `json:"order"`
	Outcomes []outcome    `json:"outcomes,omitempty"`
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

// NewHandler connects to the brokers and joins nothing yet: Run does.
func NewHandler(cfg HandlerConfig) (*Handler, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 100
	}
	sc := h0config(cfg)
	client, err := sarama.NewClient(cfg.Brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("command handler: %w", err)
	}
	group, err := sarama.NewConsumerGroupFromClient(cfg.Group, client)
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("command handler group: %w", err)
	}
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		group.Close()
		client.Close()
		return nil, fmt.Errorf("command handler consumer: %w", err)
	}
	// The reply producer has a client of its own: sarama sends one request at
	// a time per connection, and on the group's client a produce would queue
	// behind a fetch parked at the broker for up to the fetch wait.
	rc := kafka.Config("order-gateway-replies", cfg.FetchWait)
	rc.Producer.Partitioner = sarama.NewManualPartitioner // replies go to the partition the bus named
	rc.Producer.Return.Successes = true
	replies, err := sarama.NewSyncProducer(cfg.Brokers, rc)
	if err != nil {
		consumer.Close()
		group.Close()
		client.Close()
		return nil, fmt.Errorf("command handler reply producer: %w", err)
	}
	h := &Handler{cfg: cfg, group: group, client: client, consumer: consumer, replies: replies}
	go func() {
		for err := range group.Errors() {
			cfg.Logger.Warn("command handler", "err", err)
		}
	}()
	return h, nil
}

func h0config(cfg HandlerConfig) *sarama.Config {
	sc := kafka.Config("order-gateway-handler", cfg.FetchWait)
	sc.Consumer.Offsets.AutoCommit.Enable = false // offsets commit inside the transaction
	sc.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategySticky()}
	if cfg.SessionTimeout > 0 {
		sc.Consumer.Group.Session.Timeout = cfg.SessionTimeout
		sc.Consumer.Group.Heartbeat.Interval = cfg.SessionTimeout / 3
		// A member killed in the middle of a rebalance is only dropped after
		// the rebalance timeout (sarama's default is a minute); claims here
		// stop within one batch, so twice the session timeout is plenty.
		sc.Consumer.Group.Rebalance.Timeout = 2 * cfg.SessionTimeout
	}
	return sc
}

// Run handles commands until ctx ends or Close is called. A failed
// transaction ends the session; Run then rejoins, and the partitions restart
// from their last committed offset with state restored from snapshots.
func (h *Handler) Run(ctx context.Context) error {
	return h.loop.Run(ctx, h.group, []string{h.cfg.Topics.Commands}, h, h.cfg.Logger)
}

// Ready reports whether the handler has joined its group at least once.
func (h *Handler) Ready() bool { return h.sessions.Load() > 0 }

// DeadLetters counts the commands this handler moved to the dead-letter topic.
func (h *Handler) DeadLetters() int64 { return h.deadLetters.Load() }

// Close leaves the group (committed work stays committed) and closes the
// connections. Later calls do nothing.
func (h *Handler) Close() error {
	h.closeOnce.Do(func() {
		h.closeErr = h.group.Close()
		h.replies.Close()
		h.consumer.Close()
		h.client.Close()
	})
	return h.closeErr
}

// Setup is part of sarama.ConsumerGroupHandler.
func (h *Handler) Setup(sarama.ConsumerGroupSession) error {
	h.sessions.Add(1)
	return nil
}

// Cleanup is part of sarama.ConsumerGroupHandler.
func (h *Handler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

// ConsumeClaim handles one partition for the length of a session.
func (h *Handler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	p := claim.Partition()
	log := h.cfg.Logger.With("partition", p)
	prod, err := h.newTxnProducer(p)
	if err != nil {
		log.Error("command handler: transactional producer", "err", err)
		h.loop.Restart()
		return err
	}
	defer prod.Close()
	states, err := h.restore(sess.Context(), prod, p)
	if err != nil {
		log.Error("command handler: restore", "err", err)
		h.loop.Restart()
		return err
	}
	log.Debug("command handler: partition restored", "orders", len(states), "from", claim.InitialOffset())
	meta := sarama.NewConsumerGroupMetadataFromSession(sess, h.cfg.Group, nil)
	for {
		batch, ok := kafka.NextBatch(sess.Context(), claim.Messages(), h.cfg.BatchSize)
		if !ok {
			return nil
		}
		if err := h.commitBatch(sess.Context(), prod, p, meta, states, batch); err != nil {
			log.Error("command handler: batch not committed; rejoining", "err", err, "first_offset", batch[0].Offset)
			h.loop.Restart()
			return err
		}
	}
}

// txnProducer wraps a transactional producer and collects its errors.
type txnProducer struct {
	sarama.AsyncProducer
	mu      sync.Mutex
	lastErr error
	done    chan struct{}
}

func (h *Handler) newTxnProducer(p int32) (*txnProducer, error) {
	sc := kafka.Config("order-gateway-handler", h.cfg.FetchWait)
	sc.Producer.Transaction.ID = h.cfg.Topics.Commands + ".handler." + strconv.Itoa(int(p))
	sc.Producer.Partitioner = sarama.NewManualPartitioner
	sc.Producer.Return.Successes = false
	ap, err := sarama.NewAsyncProducer(h.cfg.Brokers, sc)
	if err != nil {
		return nil, err
	}
	tp := &txnProducer{AsyncProducer: ap, done: make(chan struct{})}
	go func() {
		defer close(tp.done)
		for e := range ap.Errors() {
			tp.mu.Lock()
			tp.lastErr = e.Err
			tp.mu.Unlock()
		}
	}()
	return tp, nil
}

func (tp *txnProducer) Close() error {
	if tp.TxnStatus()&sarama.ProducerTxnFlagInTransaction != 0 {
		_ = tp.AbortTxn()
	}
	err := tp.AsyncProducer.Close()
	<-tp.done
	return err
}

// runTxn writes msgs and, when last is not nil, the consumer offset after
// last, in one transaction. On failure the transaction is aborted.
func (tp *txnProducer) runTxn(msgs []*sarama.ProducerMessage, last *sarama.ConsumerMessage, meta *sarama.ConsumerGroupMetadata) error {
	if err := tp.BeginTxn(); err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	for _, m := range msgs {
		tp.Input() <- m
	}
	var err error
	if last != nil {
		err = tp.AddMessageToTxnWithGroupMetadata(last, meta, nil)
	}
	if err == nil {
		err = tp.CommitTxn()
	}
	if err != nil {
		if tp.TxnStatus()&sarama.ProducerTxnFlagAbortableError != 0 {
			_ = tp.AbortTxn()
		}
		tp.mu.Lock()
		if tp.lastErr != nil {
			err = fmt.Errorf("%w (last produce error: %v)", err, tp.lastErr)
			tp.lastErr = nil
		}
		tp.mu.Unlock()
		if errors.Is(err, sarama.ErrProducerFenced) {
			return fmt.Errorf("commit transaction: fenced: a newer owner of this partition took over (%w)", err)
		}
		return fmt.Errorf("commit transaction: %w", err)
	}
	return nil
}

// restore fences earlier owners of partition p (creating the producer did),
// writes a marker to the snapshots partition and reads the partition up to
// that marker: every snapshot committed before is then known.
func (h *Handler) restore(ctx context.Context, prod *txnProducer, p int32) (map[string]*orderState, error) {
	marker := markerPrefix + newID("")
	err := prod.runTxn([]*sarama.ProducerMessage{{Topic: h.cfg.Topics.Snapshots, Partition: p, Key: sarama.StringEncoder(marker)}}, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("write restore marker: %w", err)
	}
	pc, err := h.consumer.ConsumePartition(h.cfg.Topics.Snapshots, p, sarama.OffsetOldest)
	if err != nil {
		return nil, fmt.Errorf("read snapshots: %w", err)
	}
	defer pc.Close()
	states := map[string]*orderState{}
	timeout := time.NewTimer(2 * time.Minute)
	defer timeout.Stop()
	for {
		select {
		case m := <-pc.Messages():
			key := string(m.Key)
			switch {
			case key == marker:
				return states, nil
			case strings.HasPrefix(key, markerPrefix):
			case m.Value == nil:
				delete(states, key)
			default:
				var s orderState
				if err := json.Unmarshal(m.Value, &s); err != nil {
					return nil, fmt.Errorf("snapshot of order %q at offset %d: %w", key, m.Offset, err)
				}
				states[key] = &s
			}
		case err := <-pc.Errors():
			return nil, fmt.Errorf("read snapshots: %w", err)
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timeout.C:
			return nil, fmt.Errorf("restore of partition %d did not reach its marker within 2m", p)
		}
	}
}

// commitBatch decides every command of batch and commits the outcome in one
// transaction. states changes only after a commit. When the records are
// refused for what they are (too large for the broker; see refused), the
// commands are committed one at a time, and the one whose records are
// refused is set aside: it goes to the dead-letter topic and its mutation is
// answered, so one request can never stop a partition. Other failures are
// retried a few times and then returned (the session restarts).
func (h *Handler) commitBatch(ctx context.Context, prod *txnProducer, p int32, meta *sarama.ConsumerGroupMetadata, states map[string]*orderState, batch []*sarama.ConsumerMessage) error {
	err := h.tryBatch(ctx, prod, p, meta, states, batch)
	if !refused(err) {
		return err
	}
	if len(batch) > 1 {
		h.cfg.Logger.Warn("command handler: batch refused; committing its commands one at a time", "partition", p, "first_offset", batch[0].Offset, "commands", len(batch), "err", err)
		for i := range batch {
			if err := h.commitBatch(ctx, prod, p, meta, states, batch[i:i+1]); err != nil {
				return err
			}
		}
		return nil
	}
	return h.setAside(ctx, prod, p, meta, batch[0], err)
}

// refused reports whether a batch failed for what its records are, so that
// committing it again can never succeed.
func refused(err error) bool {
	return errors.Is(err, errSnapshotTooLarge) || kafka.IsRefused(err)
}

// tryBatch decides batch and commits it in one transaction, retrying a
// failed transaction a few times unless it is fenced or refused.
func (h *Handler) tryBatch(ctx context.Context, prod *txnProducer, p int32, meta *sarama.ConsumerGroupMetadata, states map[string]*orderState, batch []*sarama.ConsumerMessage) error {
	var err error
	for attempt := 1; attempt <= 5; attempt++ {
		msgs, changed, dead, derr := h.decideBatch(p, states, batch)
		if derr != nil {
			return derr
		}
		msgs, replies := splitReplies(msgs, h.cfg.Topics.Replies)
		if err = prod.runTxn(msgs, batch[len(batch)-1], meta); err == nil {
			for id, s := range changed {
				states[id] = s
			}
			h.deadLetters.Add(dead)
			h.sendReplies(replies)
			return nil
		}
		if prod.TxnStatus()&sarama.ProducerTxnFlagFatalError != 0 || refused(err) {
			return err
		}
		h.cfg.Logger.Warn("command handler: transaction failed; retrying", "partition", p, "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
		}
	}
	return err
}

// setAside commits command m as handled without handling it: its copy goes
// to the dead-letter topic with why (in the transaction, with the consumer
// offset) and its mutation is answered with LIMIT_EXCEEDED when its records
// were too large, INTERNAL_SERVER_ERROR otherwise. The order's state does
// not change and no outcome is recorded, so a retry meets the same answer.
// If even the dead-letter copy is refused, it goes without its value (the
// headers name the command's topic, partition and offset).
func (h *Handler) setAside(ctx context.Context, prod *txnProducer, p int32, meta *sarama.ConsumerGroupMetadata, m *sarama.ConsumerMessage, why error) error {
	log := h.cfg.Logger.With("partition", p, "offset", m.Offset)
	answer := domain.Errorf(domain.CodeInternal, "the command could not be processed and was set aside")
	if errors.Is(why, errSnapshotTooLarge) || kafka.IsTooLarge(why) {
		answer = domain.Errorf(domain.CodeLimitExceeded, "the order would be larger than the broker accepts; the command was not applied")
	}
	dead := kafka.DeadLetter(h.cfg.Topics.DeadLetter, m, why)
	err := prod.runTxn([]*sarama.ProducerMessage{dead}, m, meta)
	if refused(err) {
		log.Warn("command handler: dead-letter copy refused; setting it aside without its value", "err", err)
		dead.Value = nil
		err = prod.runTxn([]*sarama.ProducerMessage{dead}, m, meta)
	}
	if err != nil {
		return fmt.Errorf("set aside the command at offset %d: %w", m.Offset, err)
	}
	log.Error("command handler: command set aside in the dead-letter topic", "code", answer.Code, "err", why)
	h.deadLetters.Add(1)
	if msg := h.replyMessage(m, Reply{CommandID: kafka.Header(m, HeaderCommandID), OrderID: string(m.Key), Error: answer}); msg != nil {
		h.sendReplies([]*sarama.ProducerMessage{msg})
	}
	return nil
}

// replyMessage addresses r to the bus that sent command m, or returns nil
// when m names no reply destination.
func (h *Handler) replyMessage(m *sarama.ConsumerMessage, r Reply) *sarama.ProducerMessage {
	replyTo := kafka.Header(m, HeaderReplyTo)
	if replyTo == "" {
		return nil
	}
	replyPart, _ := strconv.Atoi(kafka.Header(m, HeaderReplyPartition))
	v, _ := json.Marshal(r)
	return &sarama.ProducerMessage{Topic: h.cfg.Topics.Replies, Partition: int32(replyPart), Key: sarama.StringEncoder(replyTo), Value: sarama.ByteEncoder(v)}
}

// splitReplies separates the replies from the records of the transaction.
func splitReplies(msgs []*sarama.ProducerMessage, repliesTopic string) (txn, replies []*sarama.ProducerMessage) {
	txn = msgs[:0:0]
	for _, m := range msgs {
		if m.Topic == repliesTopic {
			replies = append(replies, m)
		} else {
			txn = append(txn, m)
		}
	}
	return txn, replies
}

// sendReplies publishes the outcomes of a committed batch. They go outside
// the transaction, after it: an outcome is never visible before its events
// are, and a waiting mutation sees it at once (consumers reading
// read_committed learn of a transaction's commit only at their next fetch,
// which would add a whole fetch wait to every mutation). If the gateway dies
// between the commit and this send, the mutation times out and its retry
// with the same idempotency key returns the recorded outcome.
func (h *Handler) sendReplies(replies []*sarama.ProducerMessage) {
	if len(replies) == 0 {
		return
	}
	if err := h.replies.SendMessages(replies); err != nil {
		h.cfg.Logger.Warn("command handler: replies not sent; their mutations will time out and can be retried", "count", len(replies), "err", err)
	}
}

// decideBatch turns commands into the messages of one transaction and the
// order states they lead to. It does not modify states. It fails with
// errSnapshotTooLarge when an order's snapshot would be too large.
func (h *Handler) decideBatch(p int32, states map[string]*orderState, batch []*sarama.ConsumerMessage) ([]*sarama.ProducerMessage, map[string]*orderState, int64, error) {
	var (
		msgs    []*sarama.ProducerMessage
		changed = map[string]*orderState{}
		dead    int64
	)
	for _, m := range batch {
		reply := func(r Reply) {
			if msg := h.replyMessage(m, r); msg != nil {
				msgs = append(msgs, msg)
			}
		}
		env, cmd, err := decodeCommand(m)
		if err == nil && env.OrderID != string(m.Key) {
			err = fmt.Errorf("command for order %q was keyed %q", env.OrderID, m.Key)
		}
		var events []domain.Event
		var state *orderState
		if err == nil {
			state = changed[env.OrderID]
			if state == nil {
				state = cloneState(states[env.OrderID])
			}
			var r Reply
			r, events, err = h.handle(state, env, cmd)
			if err == nil {
				reply(r)
			}
		}
		if err != nil {
			dead++
			h.cfg.Logger.Error("command handler: dead-lettering command", "partition", m.Partition, "offset", m.Offset, "err", err)
			msgs = append(msgs, kafka.DeadLetter(h.cfg.Topics.DeadLetter, m, err))
			reply(Reply{CommandID: kafka.Header(m, HeaderCommandID), OrderID: string(m.Key),
				Error: domain.Errorf(domain.CodeInternal, "the command could not be processed and was set aside")})
			continue
		}
		for _, e := range events {
			v, err := domain.MarshalEvent(e)
			if err != nil { // cannot happen for the gateway's own event types
				panic(err)
			}
			msgs = append(msgs, &sarama.ProducerMessage{Topic: h.cfg.Topics.Events, Partition: p, Key: sarama.StringEncoder(e.OrderID), Value: sarama.ByteEncoder(v),
				Headers: []sarama.RecordHeader{{Key: []byte(HeaderCommandID), Value: []byte(env.CommandID)}, {Key: []byte("event-type"), Value: []byte(e.Data.EventType())}}})
		}
		if state.Order.Exists() {
			changed[env.OrderID] = state
		}
	}
	for id, s := range changed {
		v, err := encodeSnapshot(s)
		if err != nil {
			return nil, nil, 0, err
		}
		msgs = append(msgs, &sarama.ProducerMessage{Topic: h.cfg.Topics.Snapshots, Partition: p, Key: sarama.StringEncoder(id), Value: sarama.ByteEncoder(v)})
	}
	return msgs, changed, dead, nil
}

// encodeSnapshot encodes s, first forgetting its oldest idempotency
// outcomes (in s too, so memory and snapshot agree) if the snapshot would
// otherwise be over MaxSnapshotBytes. The newest outcome is always kept; if
// that is still too large, it returns errSnapshotTooLarge.
func encodeSnapshot(s *orderState) ([]byte, error) {
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
