// Package projector turns the events topic into the MongoDB views: one order
// document per order and one summary per customer. It is a consumer group
// of its own, reads read_committed, writes each order at most once per batch
// (all of the batch's events for it folded first; a batch waits Config.Linger
// for more events so that an order's quick succession of changes folds),
// guards every order write by version and counts every event in a customer
// summary once (by its offset), so that replays change nothing, and commits
// offsets only after the writes. A batch's order documents are written
// first and published to the views topic that feeds live subscriptions;
// its summaries are counted after, together with those of other batches
// and partitions, while the next batches go on (see ConsumeClaim).
package projector

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"

	"github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/kafka"
	"github.com/ordergateway/gateway/metrics"
	"github.com/ordergateway/gateway/tracing"
	"github.com/ordergateway/gateway/view"
)

// Config configures a Projector.
type Config struct {
	Brokers        []string
	Topics         kafka.Topics
	Group          string
	FetchWait      time.Duration
	SessionTimeout time.Duration
	BatchSize      int
	// Linger is how long a batch waits, after its first event, for more:
	// events of one order in one batch are folded into one write of its
	// view and one of its customer's summary.
	Linger time.Duration
	Logger *slog.Logger
	// OnProgress, if set, is called after each batch is written, with the
	// orders it touched. Read-your-writes waits are woken by it.
	OnProgress func(orderIDs []string)
	// Security is how the clients connect (TLS, SASL); nil: plaintext.
	Security *kafka.Security
	// Metrics counts the batches; nil: counted nowhere. Close releases it
	// (metrics.Projection.Release). The projection gap is
	// Projector.GapCollector's.
	Metrics *metrics.Projection
	// Tracer traces each traced event's projection and puts its context
	// in the view change's headers; nil: off.
	Tracer *tracing.Tracer
	// Durable, if set, returns once every write the store acknowledged
	// before the call is durable (the store on PostgreSQL commits
	// asynchronously: embedded.Mongo.Flush). The projector calls it before
	// it commits the offsets of what it wrote; a batch whose call fails is
	// committed with the next one that succeeds. Nil: the store's writes are
	// durable when acknowledged.
	Durable func(context.Context) error
	// Publish, if set, says whether to publish an order's view change to
	// the views topic, given the partition and offset of the order's last
	// event in the batch: a rebuild publishes only what the serving
	// generation may not have published (subscribers would get every old
	// state again). nil: always.
	Publish func(partition int32, offset int64) bool
}

// Projector consumes events and maintains the views.
type Projector struct {
	cfg      Config
	store    *view.Store
	client   sarama.Client
	group    sarama.ConsumerGroup
	producer sarama.SyncProducer // dead letters and view changes

	loop kafka.GroupLoop
	// customers serialises the summaries' read-modify-write across this
	// instance's partitions and merges what they wait to write (see
	// queueCustomers). The revision guard alone is not enough on FerretDB,
	// whose conditional replace is not atomic (it reads, then writes), so two
	// partitions updating one customer could lose a change.
	customers customerQueue
	// summaries are the customer summaries this instance wrote last, so a
	// summary write does not first read what this instance itself wrote.
	summaries   summaryCache
	legacyOnce  sync.Once // the warning about summaries in the first format
	closeOnce   sync.Once
	closeErr    error
	closing     chan struct{} // closed by Close
	durable     durability    // Config.Durable, coalesced
	sessions    atomic.Int64
	deadLetters atomic.Int64
	applied     atomic.Int64 // events (records) of the batches applied
	pauseMu     sync.Mutex
	resumed     chan struct{} // closed at the end of a pause (Pause); nil when not paused
	lastErr     atomic.Pointer[string]
	// failingSince is when the current run of failed batches began, in
	// Unix nanoseconds; 0 after a success.
	failingSince atomic.Int64
	// outSince is when the projector last left a session (or was
	// created), in Unix nanoseconds; 0 while it is in one.
	outSince atomic.Int64
	claims   claims   // where each claim is, for the projection gap
	traced   sync.Map // order id → the span context of its event being applied (tracing on)
}

// publishDelay is how long the views producer waits for more view changes
// before it writes a request: the claims publish their batches each on its
// own, and every request wakes each gateway's views fetch. On Apache Kafka
// + PostgreSQL at 32 clients it took the broker's produce requests per
// command transaction from about 8 to 6 and its fetches from 5.5 to 4; a
// change reaches subscribers at most this much later.
const publishDelay = 5 * time.Millisecond

// New connects to the brokers. Run starts consuming.
func New(cfg Config, store *view.Store) (*Projector, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 500
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewProjections(nil).Generation(0)
	}
	sc := cfg.Security.Config("order-gateway-projector", cfg.FetchWait)
	sc.Consumer.Offsets.AutoCommit.Enable = false
	sc.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategySticky()}
	if cfg.SessionTimeout > 0 {
		sc.Consumer.Group.Session.Timeout = cfg.SessionTimeout
		sc.Consumer.Group.Heartbeat.Interval = cfg.SessionTimeout / 3
		// A member killed in the middle of a rebalance is only dropped after
		// the rebalance timeout (sarama's default is a minute); claims here
		// stop within one batch, so twice the session timeout is plenty.
		sc.Consumer.Group.Rebalance.Timeout = 2 * cfg.SessionTimeout
	}
	sc.Producer.Return.Successes = true
	sc.Producer.Partitioner = sarama.NewHashPartitioner
	client, err := sarama.NewClient(cfg.Brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("projector: %w", err)
	}
	group, err := sarama.NewConsumerGroupFromClient(cfg.Group, client)
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("projector group: %w", err)
	}
	// The producer has its own client: sarama sends one request at a time
	// per connection, and behind the group's parked fetch every view change
	// would wait up to the fetch wait.
	pc := *sc
	pc.Producer.Flush.Frequency = publishDelay
	producer, err := sarama.NewSyncProducer(cfg.Brokers, &pc)
	if err != nil {
		group.Close()
		client.Close()
		return nil, fmt.Errorf("projector producer: %w", err)
	}
	go func() {
		for err := range group.Errors() {
			cfg.Metrics.Errors.Broker("consume", kafka.ErrorKind(err))
			cfg.Logger.Warn("projector", "err", err)
		}
	}()
	p := &Projector{cfg: cfg, store: store, client: client, group: group, producer: producer, summaries: summaryCache{max: summaryCacheEntries}, closing: make(chan struct{}),
		durable: durability{fn: cfg.Durable}}
	if cfg.Tracer != nil {
		p.producer = tracedProducer{SyncProducer: producer, views: cfg.Topics.Views, t: cfg.Tracer, traced: &p.traced}
	}
	p.outSince.Store(time.Now().UnixNano())
	return p, nil
}

// Run projects until ctx ends or Close is called.
func (p *Projector) Run(ctx context.Context) error {
	return p.loop.Run(ctx, p.group, []string{p.cfg.Topics.Events}, p, p.cfg.Logger)
}

// Ready reports whether the projector has joined its group.
func (p *Projector) Ready() bool { return p.sessions.Load() > 0 }

// Pause stops (true) or resumes (false) applying batches: each claim
// finishes the batch it is applying and waits before the next (its fetches
// stop once its buffer is full). A rebuild yields to the serving
// generation's projectors with it.
func (p *Projector) Pause(pause bool) {
	p.pauseMu.Lock()
	defer p.pauseMu.Unlock()
	switch {
	case pause && p.resumed == nil:
		p.resumed = make(chan struct{})
	case !pause && p.resumed != nil:
		close(p.resumed)
		p.resumed = nil
	}
}

// waitResumed returns once the projector is not paused, or false if ctx
// ends (or the projector closes) first.
func (p *Projector) waitResumed(ctx context.Context) bool {
	p.pauseMu.Lock()
	ch := p.resumed
	p.pauseMu.Unlock()
	if ch == nil {
		return true
	}
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		return false
	case <-p.closing:
		return false
	}
}

// Applied counts the records of the batches this projector applied.
func (p *Projector) Applied() int64 { return p.applied.Load() }

// Positions is, for each partition this projector holds a claim on, the
// offset after the last record it applied (or the claim's first).
func (p *Projector) Positions() map[int32]int64 {
	out := map[int32]int64{}
	for _, cp := range p.claims.snapshot() {
		next, _ := cp.get()
		out[cp.partition] = next
	}
	return out
}

// DeadLetters counts the events this projector moved to the dead-letter topic.
// A nil Projector has none.
func (p *Projector) DeadLetters() int64 {
	if p == nil {
		return 0
	}
	return p.deadLetters.Load()
}

// LastError is the error of the last failed batch since the last success,
// or "".
func (p *Projector) LastError() string {
	if s := p.lastErr.Load(); s != nil {
		return *s
	}
	return ""
}

// Close leaves the group, closes the connections and releases the
// metrics. Later calls do nothing.
func (p *Projector) Close() error {
	p.closeOnce.Do(func() {
		close(p.closing)
		p.closeErr = p.group.Close()
		p.producer.Close()
		p.client.Close()
		p.cfg.Metrics.Release() // its generation's series go with the last projector of it here
	})
	return p.closeErr
}

// Setup is part of sarama.ConsumerGroupHandler.
func (p *Projector) Setup(sarama.ConsumerGroupSession) error {
	p.sessions.Add(1)
	p.outSince.Store(0)
	return nil
}

// Cleanup is part of sarama.ConsumerGroupHandler.
func (p *Projector) Cleanup(sarama.ConsumerGroupSession) error {
	p.outSince.CompareAndSwap(0, time.Now().UnixNano())
	return nil
}

// Stalled says why the projector has made no progress for longer than
// after, or returns "": its writes have failed (and are being retried)
// that long, or it has been out of a consumer group session that long.
func (p *Projector) Stalled(after time.Duration) string {
	now := time.Now()
	if f := p.failingSince.Load(); f != 0 && now.Sub(time.Unix(0, f)) > after {
		return fmt.Sprintf("stalled: writes failing for %s", now.Sub(time.Unix(0, f)).Round(time.Second))
	}
	if out := p.outSince.Load(); out != 0 && now.Sub(time.Unix(0, out)) > after {
		return fmt.Sprintf("not projecting: out of its consumer group session for %s", now.Sub(time.Unix(0, out)).Round(time.Second))
	}
	return ""
}

// summaryCacheEntries bounds the summary cache (summaries of at most a few
// hundred bytes each).
const summaryCacheEntries = 100_000

// maxUnflushedBatches bounds the batches of one claim whose order views
// are written but whose summaries are not yet counted: past it the claim
// waits for the summaries.
const maxUnflushedBatches = 8

// ConsumeClaim projects one partition for the length of a session. A batch
// that cannot be written (the store is down) is retried with backoff; its
// offsets are committed once its order views are written and its summaries
// counted.
//
// A batch's order views are written first (read-your-writes waiters are
// woken and subscribers told at once), then its transitions are queued for
// the customer summaries, which one writer counts for all partitions of
// the instance, many batches in one write (see queueCustomers). Each order
// view carries the transitions its customer's summary may not count yet
// (view.OrderDoc.Uncounted): those after the offset up to which this claim
// knows every summary is counted. A replay (after a crash between the two
// writes, or a claim moved to another instance) finds the events it folds
// already in the view and counts them from there; Count makes counting
// twice harmless. The offsets are committed only once the summaries count
// the batch, so every uncounted event is replayed.
func (p *Projector) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	ctx := sess.Context()
	// The views this claim wrote last: while the claim lasts no one else
	// writes its orders, so an order confirmed just after it was placed is not
	// read back. A stale entry (a zombie claim) fails the write's version
	// guard, and the retry reads the store.
	cache := &docCache{max: 5000}
	c := &claimCounts{unflushed: make(chan unflushed, maxUnflushedBatches), done: make(chan struct{}), durable: &p.durable,
		noteError: func(offset int64, err error) {
			p.noteError("projector: store not flushed; offsets committed later", claim.Partition(), offset, 0, err)
		}}
	go c.commit(ctx, sess)
	defer c.close()
	progress := p.claims.start(claim.Partition(), claim.InitialOffset())
	defer p.claims.end(progress)
	p.cfg.Metrics.Partitions.Inc()
	defer p.cfg.Metrics.Partitions.Dec()
	first := true
	for {
		batch, ok := kafka.NextBatchWithin(ctx, claim.Messages(), p.cfg.BatchSize, p.cfg.Linger)
		if !ok {
			return nil
		}
		if !p.waitResumed(ctx) {
			return nil
		}
		if first {
			// The claim starts at the committed offset: the summaries count
			// every event before it.
			c.counted.Store(batch[0].Offset - 1)
			first = false
		}
		backoff := 100 * time.Millisecond
		started := time.Now()
		var (
			ids     []string
			flushed <-chan error
		)
		for {
			var err error
			traced := p.traceBatch(batch)
			ids, flushed, err = p.apply(ctx, claim.Partition(), batch, cache, c.counted.Load())
			traced.end(err)
			if err == nil {
				p.lastErr.Store(nil)
				p.failingSince.Store(0)
				break
			}
			if ctx.Err() != nil {
				return nil // the session ended (a rebalance, a shutdown): not the store's fault
			}
			p.noteError("projector: batch not written; retrying", claim.Partition(), batch[0].Offset, backoff, err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 5*time.Second)
		}
		progress.applied(batch)
		p.applied.Add(int64(len(batch)))
		p.cfg.Metrics.Write.Observe(time.Since(started).Seconds())
		p.cfg.Metrics.BatchSize.Observe(float64(len(batch)))
		p.cfg.Metrics.Events.Add(float64(len(batch)))
		if p.cfg.OnProgress != nil {
			p.cfg.OnProgress(ids)
		}
		select {
		case c.unflushed <- unflushed{last: batch[len(batch)-1], flushed: flushed}:
		case <-c.done:
			return nil // the projector is closing
		case <-ctx.Done():
			return nil
		}
	}
}

// claimCounts follows the summary writes of one claim's batches, in order,
// and commits each batch's offset once its summaries are written.
type claimCounts struct {
	// counted is the offset up to which the summaries count every event of
	// the partition (as far as this claim knows).
	counted   atomic.Int64
	unflushed chan unflushed
	done      chan struct{} // closed when commit returns
	durable   *durability
	noteError func(offset int64, err error)
}

// unflushed is a batch whose order views are written: last is its last
// message, flushed gets the result of the summary write that counts it.
type unflushed struct {
	last    *sarama.ConsumerMessage
	flushed <-chan error
}

// commitGrace is how long a claim whose session ended (a rebalance, a
// shutdown) still waits for the summaries of the batches it wrote, to
// commit their offsets: without it every clean stop left the last batches
// uncommitted, and the next owner replayed them.
const commitGrace = 2 * time.Second

// commit marks and commits each batch's offset once its summaries are
// written, until the claim ends (then for at most commitGrace more) or a
// summary write fails (the projector is closing).
func (c *claimCounts) commit(ctx context.Context, sess sarama.ConsumerGroupSession) {
	defer close(c.done)
	var grace <-chan time.Time
	for u := range c.unflushed {
		var err error
		select {
		case err = <-u.flushed:
		case <-ctx.Done():
			if grace == nil {
				grace = time.After(commitGrace)
			}
			select {
			case err = <-u.flushed:
			case <-grace:
				return
			}
		}
		if err != nil {
			return
		}
		c.counted.Store(u.last.Offset)
		// Not the session's context: the grace after it ends is for this.
		flushCtx, cancel := context.WithTimeout(context.Background(), durableTimeout)
		err = c.durable.wait(flushCtx)
		cancel()
		if err != nil {
			// The next batch's commit, after a flush that works, covers
			// this one; until then a restart replays it.
			c.noteError(u.last.Offset, err)
			continue
		}
		sess.MarkMessage(u.last, "")
		sess.Commit()
	}
}

// close ends commit once the batches queued so far are committed (or the
// session ends) and waits for it.
func (c *claimCounts) close() {
	close(c.unflushed)
	<-c.done
}

func (p *Projector) noteError(what string, partition int32, offset int64, backoff time.Duration, err error) {
	msg := err.Error()
	p.lastErr.Store(&msg)
	p.failingSince.CompareAndSwap(0, time.Now().UnixNano())
	p.cfg.Logger.Warn(what, "partition", partition, "offset", offset, "in", backoff, "err", err)
}

// apply writes the order views of one batch, publishes them, queues the
// batch's transitions for the customer summaries and returns the batch's
// orders and the channel that gets the result of the summary write. counted
// is the offset up to which the summaries count every event of the
// partition. It is idempotent: re-applying a batch (after a crash before the
// offset commit) changes nothing.
func (p *Projector) apply(ctx context.Context, partition int32, batch []*sarama.ConsumerMessage, cache *docCache, counted int64) ([]string, <-chan error, error) {
	var (
		dead    []*sarama.ProducerMessage
		byOrder = map[string][]domain.Event{}
		order   []string // order ids in first-seen order
		source  = map[string][]*sarama.ConsumerMessage{}
	)
	for _, m := range batch {
		if kafka.IsMarker(m.Key) {
			continue // the command handler's, not an event
		}
		e, err := domain.UnmarshalEvent(m.Value)
		if err == nil && e.OrderID != string(m.Key) {
			err = fmt.Errorf("event for order %q was keyed %q", e.OrderID, m.Key)
		}
		if err != nil {
			reason := kafka.ReasonUndecodable
			if newer := (*domain.SchemaVersionError)(nil); errors.As(err, &newer) {
				reason = kafka.ReasonNewerSchema // a newer build's event: replay it once this build reads it
			}
			dead = append(dead, kafka.DeadLetter(p.cfg.Topics.DeadLetter, m, kafka.Reason(reason, err)))
			continue
		}
		if _, ok := byOrder[e.OrderID]; !ok {
			order = append(order, e.OrderID)
		}
		byOrder[e.OrderID] = append(byOrder[e.OrderID], e)
		source[e.OrderID] = append(source[e.OrderID], m)
	}

	var (
		final       map[string]view.OrderDoc
		previous    map[string]string
		transitions map[string][]view.Transition
		flushed     <-chan error
		err         error
	)
	for attempt := 1; ; attempt++ {
		var gaps []*sarama.ProducerMessage
		// The first attempt trusts that an order whose batch starts at
		// version 1 has no view yet, and the cache for the others; a replayed
		// batch then conflicts on insert (a stale entry on its guard), and
		// the next attempt reads everything from the store.
		var trusted *docCache
		if attempt == 1 {
			trusted = cache
		}
		final, previous, transitions, flushed, gaps, err = p.write(ctx, partition, order, byOrder, source, trusted, counted)
		if err == nil {
			dead = append(dead, gaps...)
			break
		}
		cache.clear()
		if !errors.Is(err, view.ErrConflict) || attempt == 5 {
			return nil, nil, err
		}
		p.cfg.Metrics.OrdersConflicts.Inc()
	}
	cache.put(final)
	if flushed == nil {
		// The views carry the transitions: a crash from here on replays them
		// from there.
		flushed = p.queueCustomers(transitions)
	}
	if len(dead) > 0 {
		if err := p.producer.SendMessages(dead); err != nil {
			p.cfg.Metrics.Errors.Broker("produce", kafka.ErrorKind(err))
			return nil, nil, fmt.Errorf("dead-letter %d events: %w", len(dead), err)
		}
		p.deadLetters.Add(int64(len(dead)))
		for _, d := range dead {
			p.cfg.Logger.Error("projector: dead-lettered event", "err", headerValue(d, kafka.HeaderDLError))
		}
	}
	if err := p.publish(final, previous, order, partition, source); err != nil {
		return nil, nil, err
	}
	return order, flushed, nil
}

// write folds each order's events onto its stored view and writes the
// orders that moved forward, each with the transitions its customer's
// summary may not count yet (those after counted: view.OrderDoc.Uncounted).
// It returns the resulting view of every order in the batch, the status
// each had before, the transitions to count (by customer, in offset order,
// including those of events already in a view that it may not count yet),
// and dead letters for events that would leave a gap in an order's
// versions. If an order would carry more than view.MaxUncounted
// transitions, it counts the transitions first and writes the views
// without any, and returns the summary write's result as flushed (nil
// otherwise: the caller queues the transitions). With a cache, orders whose
// first event is version 1 are not read (they have no view yet), nor are
// those in the cache.
func (p *Projector) write(ctx context.Context, partition int32, ids []string, byOrder map[string][]domain.Event, source map[string][]*sarama.ConsumerMessage, cache *docCache, counted int64) (
	final map[string]view.OrderDoc, previous map[string]string, transitions map[string][]view.Transition, flushed <-chan error, gaps []*sarama.ProducerMessage, err error) {
	read := ids
	cached := map[string]view.OrderDoc{}
	if cache != nil {
		read = make([]string, 0, len(ids))
		for _, id := range ids {
			if d, ok := cache.get(id); ok {
				cached[id] = d
			} else if byOrder[id][0].Version != 1 {
				read = append(read, id)
			}
		}
	}
	stored, err := p.store.OrdersByID(ctx, read)
	if err != nil {
		return nil, nil, nil, nil, nil, err
	}
	for id, d := range cached {
		stored[id] = d
	}
	previous = make(map[string]string, len(stored))
	for id, d := range stored {
		previous[id] = statusBefore(d, byOrder[id])
	}
	final = make(map[string]view.OrderDoc, len(ids))
	transitions = map[string][]view.Transition{} // by customer
	var changed []string
	countFirst := false
	for _, id := range ids {
		doc, exists := stored[id]
		state := doc.ToOrder()
		if !exists {
			state = domain.Order{}
		}
		// What the summary may lack of the view as stored: the transitions
		// after counted (the others are counted).
		uncounted := slices.DeleteFunc(slices.Clone(doc.Uncounted), func(t view.Transition) bool {
			return t.Partition != partition || t.Offset <= counted
		})
		moved := false
		for i, e := range byOrder[id] {
			offset := source[id][i].Offset
			switch {
			case e.Version <= state.Version: // already in the view
				// A replay: count it from the view, unless counted.
				if j := slices.IndexFunc(uncounted, func(t view.Transition) bool { return t.Offset == offset }); j >= 0 {
					transitions[state.CustomerID] = append(transitions[state.CustomerID], uncounted[j])
				}
			case e.Version == state.Version+1:
				from := view.ContributionOf(state)
				state = domain.Evolve(state, e)
				t := view.Transition{Partition: partition, Offset: offset, From: from, To: view.ContributionOf(state)}
				transitions[state.CustomerID] = append(transitions[state.CustomerID], t)
				uncounted = append(uncounted, t)
				moved = true
			default:
				gaps = append(gaps, kafka.DeadLetter(p.cfg.Topics.DeadLetter, source[id][i], kafka.Reason(kafka.ReasonGap, fmt.Errorf(
					"view of order %q is at version %d, event version %d would leave a gap; rebuild the views (views rebuild)",
					id, state.Version, e.Version))))
			}
		}
		if moved {
			d := view.FromOrder(state)
			d.Uncounted = uncounted
			countFirst = countFirst || len(uncounted) > view.MaxUncounted
			final[id] = d
			changed = append(changed, id)
		} else if exists {
			final[id] = doc
		}
	}
	// A customer's transitions must be counted in offset order: the
	// batch's orders were folded one after the other.
	for _, ts := range transitions {
		slices.SortFunc(ts, func(a, b view.Transition) int { return cmp.Compare(a.Offset, b.Offset) })
	}
	if countFirst {
		// Too much to carry: count first, as summaries are written in
		// order, this counts every earlier batch's transitions too, and the
		// views need carry none.
		done := make(chan error, 1)
		if err := <-p.queueCustomers(transitions); err != nil {
			return nil, nil, nil, nil, nil, err
		}
		done <- nil
		flushed = done
		for _, id := range changed {
			d := final[id]
			d.Uncounted = nil
			final[id] = d
		}
	}
	writes := make([]view.OrderWrite, len(changed))
	for i, id := range changed {
		writes[i] = view.OrderWrite{Doc: final[id], Prev: stored[id].Version}
	}
	if err := p.store.PutOrders(ctx, writes); err != nil {
		return nil, nil, nil, nil, nil, err
	}
	return final, previous, transitions, flushed, gaps, nil
}

// statusBefore is the status the order had before the first of events (its
// batch, in version order), given its stored view d: d.Status, unless d
// already holds some of events (a retry after a partial write, or a replay
// after a crash before the commit), in which case it is read back from d's
// history, one entry per status change. "" is an order that did not exist.
// Without it a retried batch would report the order's new status as the old
// one, and a subscriber filtering on the old status would never learn that
// the order left it.
func statusBefore(d view.OrderDoc, events []domain.Event) string {
	if len(events) == 0 || d.Version < events[0].Version || d.Version > events[len(events)-1].Version {
		// Nothing of the batch is in d yet; or d is past the whole batch (a
		// replay of a batch written long ago): no change to report.
		return d.Status
	}
	i := len(d.History) - 1
	for _, e := range events {
		if e.Version <= d.Version && domain.ChangesStatus(e) {
			i--
		}
	}
	if i < 0 {
		return ""
	}
	return d.History[i].Status
}

// docCache holds the last written view of up to max orders; when full it
// starts over (a miss only costs a read).
type docCache struct {
	max  int
	docs map[string]view.OrderDoc
}

func (c *docCache) get(id string) (view.OrderDoc, bool) {
	d, ok := c.docs[id]
	return d, ok
}

func (c *docCache) put(docs map[string]view.OrderDoc) {
	if c.docs == nil || len(c.docs)+len(docs) > c.max {
		c.docs = make(map[string]view.OrderDoc, min(c.max, 2*len(docs)))
	}
	for id, d := range docs {
		c.docs[id] = d
	}
}

func (c *docCache) clear() { c.docs = nil }

// customerQueue merges the summary updates of concurrent batches: while one
// write of the summaries runs, the batches that arrive wait for the next,
// which writes each customer once for all of them. Partitions of one busy
// store thus share a customer's read and write instead of queueing one each.
type customerQueue struct {
	mu      sync.Mutex
	pending map[string][]view.Transition
	waiters []chan error
	running bool
}

// queueCustomers queues transitions (by customer) for their customers'
// summaries and returns a channel that gets nil once a write has counted
// them, or errClosed if the projector closes first. A failed write is
// retried, with what was queued meanwhile behind it, until it succeeds:
// summaries are counted in the order their transitions were queued, which
// for each partition is offset order.
func (p *Projector) queueCustomers(transitions map[string][]view.Transition) <-chan error {
	done := make(chan error, 1)
	if len(transitions) == 0 {
		done <- nil
		return done
	}
	q := &p.customers
	q.mu.Lock()
	if q.pending == nil {
		q.pending = map[string][]view.Transition{}
	}
	for cid, ts := range transitions {
		q.pending[cid] = append(q.pending[cid], ts...)
	}
	q.waiters = append(q.waiters, done)
	if !q.running {
		q.running = true
		go p.flushCustomers()
	}
	q.mu.Unlock()
	return done
}

// errClosed answers the summary writes still queued when the projector
// closes.
var errClosed = errors.New("projector closed")

// summaryInterval is the least time between the starts of two summary
// writes: what is queued meanwhile goes in the next one, so a busy
// customer's summary is written at most 10 times a second however many
// batches change it.
const summaryInterval = 100 * time.Millisecond

// flushCustomers writes what is queued until nothing is, retrying a failed
// write with backoff until it succeeds or the projector closes.
func (p *Projector) flushCustomers() {
	q := &p.customers
	backoff := 100 * time.Millisecond
	var pending map[string][]view.Transition
	var waiters []chan error
	var started time.Time
	for {
		if wait := time.Until(started.Add(summaryInterval)); wait > 0 {
			select {
			case <-p.closing:
			case <-time.After(wait):
			}
		}
		started = time.Now()
		q.mu.Lock()
		// What was queued since goes behind what failed.
		for cid, ts := range q.pending {
			if pending == nil {
				pending = map[string][]view.Transition{}
			}
			pending[cid] = append(pending[cid], ts...)
		}
		waiters = append(waiters, q.waiters...)
		q.pending, q.waiters = nil, nil
		if len(waiters) == 0 {
			q.running = false
			q.mu.Unlock()
			return
		}
		q.mu.Unlock()
		// Not a waiter's context: the write is shared, and one waiter
		// leaving (its partition revoked) must not fail it for the others.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := p.putCustomers(ctx, pending)
		cancel()
		if err == nil {
			for _, w := range waiters {
				w <- nil
			}
			pending, waiters, backoff = nil, nil, 100*time.Millisecond
			continue
		}
		p.noteError("projector: customer summaries not written; retrying", -1, -1, backoff, err)
		select {
		case <-p.closing:
			for _, w := range waiters {
				w <- errClosed
			}
			pending, waiters = nil, nil
			q.mu.Lock()
			for _, w := range q.waiters {
				w <- errClosed
			}
			q.pending, q.waiters, q.running = nil, nil, false
			q.mu.Unlock()
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// putCustomers counts transitions in their customers' stored summaries and
// writes the summaries that changed. The first attempt starts from the
// summaries this instance wrote last (p.summaries) and reads only the
// others; if one of those was changed meanwhile by another instance, its
// write's guard refuses it (ErrConflict), and the second attempt reads every
// summary from the store. Count makes the re-application harmless.
func (p *Projector) putCustomers(ctx context.Context, transitions map[string][]view.Transition) error {
	for attempt := 1; ; attempt++ {
		trusted := attempt == 1
		written, err := p.writeCustomers(ctx, transitions, trusted)
		if err == nil {
			p.summaries.put(written)
			return nil
		}
		p.summaries.clear()
		if !trusted || !errors.Is(err, view.ErrConflict) {
			return err
		}
		p.cfg.Metrics.CustomersConflicts.Inc()
	}
}

// writeCustomers is one attempt of putCustomers; with trusted, the cached
// summaries stand in for the stored ones. It returns the summaries written.
func (p *Projector) writeCustomers(ctx context.Context, transitions map[string][]view.Transition, trusted bool) ([]view.CustomerDoc, error) {
	customers := make([]string, 0, len(transitions))
	for cid := range transitions {
		customers = append(customers, cid)
	}
	slices.Sort(customers)
	read := customers
	cached := map[string]view.CustomerDoc{}
	if trusted {
		read = make([]string, 0, len(customers))
		for _, cid := range customers {
			if c, ok := p.summaries.get(cid); ok {
				cached[cid] = c
			} else {
				read = append(read, cid)
			}
		}
	}
	stored, err := p.store.CustomersByID(ctx, read)
	if err != nil {
		return nil, err
	}
	for cid, c := range cached {
		stored[cid] = c
	}
	var writes []view.CustomerWrite
	for _, cid := range customers {
		c, ok := stored[cid]
		if !ok {
			c = view.CustomerDoc{ID: cid}
		}
		if c.IsLegacy() {
			p.legacyOnce.Do(func() {
				p.cfg.Logger.Warn("projector: customer summaries in the first format (a list of every order) were found; their counts carry over, " +
					"but events replayed since the last committed offsets may be counted twice: rebuild the views to be exact (views rebuild)")
			})
		}
		prev := c.Rev
		c = c.Clone()
		counted := false
		for _, t := range transitions[cid] {
			counted = c.Count(t) || counted
		}
		if counted {
			writes = append(writes, view.CustomerWrite{Doc: c, Prev: prev})
		}
	}
	if err := p.store.PutCustomers(ctx, writes); err != nil {
		return nil, err
	}
	written := make([]view.CustomerDoc, len(writes))
	for i, w := range writes {
		written[i] = w.Doc
	}
	return written, nil
}

// summaryCache holds the customer summaries this instance wrote last, up to
// max of them; when full it starts over (a miss only costs a read). Only
// flushCustomers, which runs one at a time, uses it. It relies on a
// summary's revision only growing, which holds within a generation of the
// views (a rebuild writes new collections, with a projector of its own).
type summaryCache struct {
	max  int
	docs map[string]view.CustomerDoc
}

func (c *summaryCache) get(id string) (view.CustomerDoc, bool) {
	d, ok := c.docs[id]
	return d, ok
}

func (c *summaryCache) put(docs []view.CustomerDoc) {
	if c.docs == nil || len(c.docs)+len(docs) > cmp.Or(c.max, summaryCacheEntries) {
		c.docs = make(map[string]view.CustomerDoc, len(docs))
	}
	for _, d := range docs {
		c.docs[d.ID] = d
	}
}

func (c *summaryCache) clear() { c.docs = nil }

// publish sends the current view of each order in the batch to the views
// topic. A redelivered document is harmless: readers keep the highest version.
func (p *Projector) publish(final map[string]view.OrderDoc, previous map[string]string, ids []string, partition int32, source map[string][]*sarama.ConsumerMessage) error {
	msgs := make([]*sarama.ProducerMessage, 0, len(ids))
	for _, id := range ids {
		d, ok := final[id]
		if !ok {
			continue
		}
		if src := source[id]; p.cfg.Publish != nil && len(src) > 0 && !p.cfg.Publish(partition, src[len(src)-1].Offset) {
			continue
		}
		v, err := json.Marshal(view.Change{Order: d, PreviousStatus: previous[id]})
		if err != nil {
			return err
		}
		msgs = append(msgs, &sarama.ProducerMessage{Topic: p.cfg.Topics.Views, Key: sarama.StringEncoder(id), Value: sarama.ByteEncoder(v)})
	}
	if len(msgs) == 0 {
		return nil
	}
	if err := p.producer.SendMessages(msgs); err != nil {
		p.cfg.Metrics.Errors.Broker("produce", kafka.ErrorKind(err))
		return fmt.Errorf("publish %d view changes: %w", len(msgs), err)
	}
	return nil
}

func headerValue(m *sarama.ProducerMessage, key string) string {
	for _, h := range m.Headers {
		if string(h.Key) == key {
			return string(h.Value)
		}
	}
	return ""
}
