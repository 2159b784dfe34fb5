package command

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"

	"github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/kafka"
	"github.com/ordergateway/gateway/metrics"
	"github.com/ordergateway/gateway/tracing"
)

// markerPrefix starts the keys of the markers the handler writes to the
// snapshots and events topics (see kafka.MarkerPrefix).
const markerPrefix = kafka.MarkerPrefix

// HandlerConfig configures a Handler.
type HandlerConfig struct {
	Brokers        []string
	Topics         kafka.Topics
	Group          string        // consumer group id; every gateway instance uses the same
	FetchWait      time.Duration // Consumer.MaxWaitTime
	SessionTimeout time.Duration // consumer group session timeout
	// TransactionTimeout is how long the broker lets a transaction stay open
	// before it aborts it: after a crash, the partitions the crashed
	// instance owned stay behind its open transaction (if it had one) for
	// this long. Default: SessionTimeout, or 10 s.
	TransactionTimeout time.Duration
	BatchSize          int // most commands per transaction (default 500)
	Logger             *slog.Logger
	Now                func() time.Time
	// Local, if set, is the bus of this process: outcomes of the commands
	// it sent are handed to it directly instead of through the replies
	// topic.
	Local LocalBus
	// Security is how the clients connect (TLS, SASL); nil: plaintext.
	Security *kafka.Security
	// AuthDisabled (AUTH_DISABLED) lets commands without a principal
	// header be handled. Otherwise such a command, like one whose principal
	// header is not valid, is refused (FORBIDDEN) and set aside in the
	// dead-letter topic. A command with a principal is always checked
	// against its order (domain.Authorize).
	AuthDisabled bool
	// Metrics counts batches, transactions and restores; nil: counted
	// nowhere.
	Metrics *metrics.Handler
	// Tracer traces each command's handling and puts its context in the
	// events' headers; nil: off.
	Tracer *tracing.Tracer
	// StateDir is the folder of the handler's local state stores, one per
	// partition it owns, kept across restarts so that a restart or a
	// rebalance reads only the snapshots written since (see
	// docs/design.md). It must be this process's alone. "": a temporary
	// folder removed by Close (each start restores from the snapshots
	// topic).
	StateDir string
	// CacheOrders bounds the order states kept in memory (the working set;
	// the others are read from the local stores when needed); also bounded
	// to MaxCacheBytes of snapshots. 0: DefaultCacheOrders.
	CacheOrders int
}

// LocalBus is a bus in the handler's own process (*Bus implements it).
type LocalBus interface {
	InstanceID() string
	// Deliver hands r to the Send waiting for it; false if none is.
	Deliver(r Reply) bool
}

// maxPendingReplies bounds the batches of replies to other instances that
// wait to be sent; the committer waits when it is full.
const maxPendingReplies = 64

// Handler consumes the commands topic as a member of a consumer group. For
// each partition it owns it keeps the state of that partition's orders,
// restored from the snapshots topic when the partition is assigned. The
// commands of all its partitions are handled in batches, each in one Kafka
// transaction with the events, snapshots and consumer offsets it leads to
// (see session). The transactional id is the instance's own; a zombie (an
// instance that lost its partitions without knowing it) is fenced by its
// consumer group generation: its offset commit, and so its transaction,
// fails (KIP-447).
type Handler struct {
	cfg      HandlerConfig
	txnID    string
	group    sarama.ConsumerGroup
	client   sarama.Client
	consumer sarama.Consumer
	replies  sarama.SyncProducer
	remote   chan []*sarama.ProducerMessage // replies to other instances
	sent     chan struct{}                  // the reply sender finished

	local    *localStores
	loop     kafka.GroupLoop
	sess     atomic.Pointer[session]
	sessions atomic.Int64 // sessions started, for readiness
	// outSince is when the handler last left a session (or was created),
	// in Unix nanoseconds; 0 while it is in one.
	outSince  atomic.Int64
	closeOnce sync.Once
	closeErr  error
	// refused says why the handler refused to handle commands (data of a
	// newer schema version than this build reads); runCancel ends Run then.
	refused     atomic.Pointer[string]
	runCancel   atomic.Pointer[context.CancelCauseFunc]
	deadLetters atomic.Int64
}

// NewHandler connects to the brokers and joins nothing yet: Run does.
func NewHandler(cfg HandlerConfig) (*Handler, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewHandler(nil)
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 500
	}
	if cfg.CacheOrders <= 0 {
		cfg.CacheOrders = DefaultCacheOrders
	}
	if cfg.TransactionTimeout <= 0 {
		cfg.TransactionTimeout = cfg.SessionTimeout
		if cfg.TransactionTimeout <= 0 {
			cfg.TransactionTimeout = 10 * time.Second
		}
	}
	local, err := newLocalStores(cfg.StateDir, cfg.Group, cfg.Topics.Snapshots, cfg.Logger)
	if err != nil {
		return nil, err
	}
	sc := h0config(cfg)
	client, err := sarama.NewClient(cfg.Brokers, sc)
	if err != nil {
		local.close()
		return nil, fmt.Errorf("command handler: %w", err)
	}
	group, err := sarama.NewConsumerGroupFromClient(cfg.Group, client)
	if err != nil {
		client.Close()
		local.close()
		return nil, fmt.Errorf("command handler group: %w", err)
	}
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		group.Close()
		client.Close()
		local.close()
		return nil, fmt.Errorf("command handler consumer: %w", err)
	}
	// The reply producer has a client of its own: sarama sends one request at
	// a time per connection, and on the group's client a produce would queue
	// behind a fetch parked at the broker for up to the fetch wait.
	rc := cfg.Security.Config("order-gateway-replies", cfg.FetchWait)
	rc.Producer.Partitioner = sarama.NewManualPartitioner // replies go to the partition the bus named
	rc.Producer.Return.Successes = true
	replies, err := sarama.NewSyncProducer(cfg.Brokers, rc)
	if err != nil {
		consumer.Close()
		group.Close()
		client.Close()
		local.close()
		return nil, fmt.Errorf("command handler reply producer: %w", err)
	}
	h := &Handler{cfg: cfg, local: local, txnID: cfg.Topics.Commands + ".handler." + newID(""), group: group, client: client, consumer: consumer, replies: replies,
		remote: make(chan []*sarama.ProducerMessage, maxPendingReplies), sent: make(chan struct{})}
	go func() {
		for err := range group.Errors() {
			cfg.Metrics.Errors.Broker("consume", kafka.ErrorKind(err))
			cfg.Logger.Warn("command handler", "err", err)
		}
	}()
	h.outSince.Store(time.Now().UnixNano())
	go h.sendRemoteReplies()
	return h, nil
}

func h0config(cfg HandlerConfig) *sarama.Config {
	sc := cfg.Security.Config("order-gateway-handler", cfg.FetchWait)
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
//
// When the snapshots (or, rebuilding, the events) of a partition it is
// given are of a newer schema version than this build reads, it refuses:
// Run returns the *domain.SchemaVersionError, Ready is false and Refused
// says why. The handler then leaves the group, its partitions to the
// other members (a build that reads them), instead of misreading or
// rejoining.
func (h *Handler) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	h.runCancel.Store(&cancel)
	err := h.loop.Run(ctx, h.group, []string{h.cfg.Topics.Commands}, h, h.cfg.Logger)
	var newer *domain.SchemaVersionError
	if cause := context.Cause(ctx); errors.As(cause, &newer) {
		// Leave the group now: the other members (a build that reads the
		// data) take the partitions at once, not after the session timeout.
		if err := h.group.Close(); err != nil {
			h.cfg.Logger.Warn("command handler: leaving the group", "err", err)
		}
		return cause
	}
	return err
}

// Ready reports whether the handler has joined its group at least once and
// has not refused to handle commands.
func (h *Handler) Ready() bool { return h.sessions.Load() > 0 && h.refused.Load() == nil }

// Refused is why the handler refused to handle commands, or "". It names
// no order and quotes nothing unbounded (it goes to /readyz).
func (h *Handler) Refused() string {
	if r := h.refused.Load(); r != nil {
		return *r
	}
	return ""
}

// refuse stops Run for good when err is (or wraps) a
// *domain.SchemaVersionError, and reports whether it did.
func (h *Handler) refuse(err error) bool {
	var newer *domain.SchemaVersionError
	if !errors.As(err, &newer) {
		return false
	}
	why := fmt.Sprintf("refused: %s of schema version %d, newer than this build reads (1 to %d); run a newer build", newer.What, newer.Version, newer.Known)
	h.refused.Store(&why)
	h.cfg.Logger.Error("command handler: refusing to handle commands: the data is of a newer schema version than this build reads; run a newer build", "err", err)
	if c := h.runCancel.Load(); c != nil {
		(*c)(err)
	}
	return true
}

// DeadLetters counts the commands this handler moved to the dead-letter topic.
func (h *Handler) DeadLetters() int64 { return h.deadLetters.Load() }

// Close leaves the group (committed work stays committed) and closes the
// connections. Later calls do nothing.
func (h *Handler) Close() error {
	h.closeOnce.Do(func() {
		h.closeErr = h.group.Close()
		if s := h.sess.Load(); s != nil {
			s.close() // its committer may still be delivering replies
		}
		close(h.remote)
		<-h.sent
		h.replies.Close()
		h.consumer.Close()
		h.client.Close()
		h.local.close()
	})
	return h.closeErr
}

// Setup is part of sarama.ConsumerGroupHandler: it restores the state of
// the partitions the session was assigned and starts its committer.
func (h *Handler) Setup(gs sarama.ConsumerGroupSession) error {
	s, err := h.startSession(gs)
	if err != nil && h.refuse(err) {
		return err
	}
	if err != nil {
		level := slog.LevelError
		if gs.Context().Err() != nil {
			level = slog.LevelDebug // the session ended while it started (a rebalance or a Close): nothing failed
		}
		h.cfg.Logger.Log(context.Background(), level, "command handler: session not started; rejoining", "err", err)
		return err
	}
	h.sess.Store(s)
	h.cfg.Metrics.Partitions.Set(float64(len(gs.Claims()[h.cfg.Topics.Commands])))
	h.sessions.Add(1)
	h.outSince.Store(0)
	return nil
}

// Cleanup is part of sarama.ConsumerGroupHandler: it waits for the
// committer to finish the batch it is committing and closes the session.
func (h *Handler) Cleanup(sarama.ConsumerGroupSession) error {
	h.outSince.CompareAndSwap(0, time.Now().UnixNano())
	h.cfg.Metrics.Partitions.Set(0)
	if s := h.sess.Swap(nil); s != nil {
		s.close()
	}
	return nil
}

// Stalled says why the handler has made no progress for longer than after,
// or returns "": it has been out of a consumer group session (rejoining,
// restoring, or failing to start one) that long, or it has had commands to
// commit and committed none that long.
func (h *Handler) Stalled(after time.Duration) string {
	now := time.Now()
	if out := h.outSince.Load(); out != 0 && now.Sub(time.Unix(0, out)) > after {
		return fmt.Sprintf("not handling commands: out of its consumer group session for %s", now.Sub(time.Unix(0, out)).Round(time.Second))
	}
	if s := h.sess.Load(); s != nil {
		if busy := s.busySince.Load(); busy != 0 && now.Sub(time.Unix(0, busy)) > after {
			return fmt.Sprintf("stalled: commands waiting and none committed for %s", now.Sub(time.Unix(0, busy)).Round(time.Second))
		}
	}
	return ""
}

// ConsumeClaim hands one partition's commands to the session's committer
// until the session ends, or ends it when the committer stopped.
func (h *Handler) ConsumeClaim(gs sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	s := h.sess.Load()
	if s == nil {
		return fmt.Errorf("command handler: no session for partition %d", claim.Partition())
	}
	s.starting(claim.Partition(), claim.InitialOffset())
	for {
		select {
		case m, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			select {
			case s.inbox <- inbound{m: m}:
			case <-s.done:
				return s.err
			case <-gs.Context().Done():
				return nil
			}
		case <-s.done:
			return s.err
		case <-gs.Context().Done():
			return nil
		}
	}
}

// Offer implements LocalHandler: the bus of this process hands over a
// command it has just written, so that the handler, if it owns the
// command's partition and has handled all before it, handles it without
// waiting to fetch it. The fetched copy is then skipped.
func (h *Handler) Offer(m *sarama.ConsumerMessage) {
	if s := h.sess.Load(); s != nil && s.prod != nil {
		s.offer(m)
	}
}

// deliver hands committed outcomes to their buses: directly to the bus of
// this process, through the replies topic to the others. Replies go
// outside the transaction, after it: an outcome is never visible before
// its events are, and a waiting mutation sees it at once (consumers reading
// read_committed learn of a transaction's commit only at their next fetch).
// If the gateway dies between the commit and this, the mutation times out
// and its retry with the same idempotency key returns the recorded outcome.
// splitReplies separates the replies to this instance's bus from those to
// other instances, which it returns as records of the replies topic: the
// committer puts them in the transaction, so that a reply is exactly as
// durable as the outcome it reports (a handler that dies after its commit
// can no longer leave another instance's mutation waiting for a reply
// that never comes), and the buses read them read_committed.
func (h *Handler) splitReplies(replies []addressedReply) (local []addressedReply, remote []*sarama.ProducerMessage) {
	self := ""
	if h.cfg.Local != nil {
		self = h.cfg.Local.InstanceID()
	}
	for _, a := range replies {
		if a.to == self {
			local = append(local, a)
			continue
		}
		v, _ := json.Marshal(a.reply)
		remote = append(remote, &sarama.ProducerMessage{Topic: h.cfg.Topics.Replies, Partition: a.partition, Key: sarama.StringEncoder(a.to), Value: sarama.ByteEncoder(v)})
	}
	return local, remote
}

// deliver hands replies to this instance's bus (one whose Send gave up
// waiting is dropped: no other bus waits for it) and sends the others
// through the replies topic, after a commit: for replies that could not go
// in a transaction (a command set aside).
func (h *Handler) deliver(replies []addressedReply) {
	local, remote := h.splitReplies(replies)
	for _, a := range local {
		h.cfg.Local.Deliver(a.reply)
	}
	if len(remote) > 0 {
		h.remote <- remote
	}
}

// sendRemoteReplies sends the replies to other instances, one batch at a
// time, until Close.
func (h *Handler) sendRemoteReplies() {
	defer close(h.sent)
	for batch := range h.remote {
		if err := h.replies.SendMessages(batch); err != nil {
			h.cfg.Metrics.Errors.Broker("produce", kafka.ErrorKind(err))
			h.cfg.Logger.Warn("command handler: replies not sent; their mutations will time out and can be retried", "count", len(batch), "err", err)
		}
	}
}
