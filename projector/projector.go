// Package projector turns the events topic into the MongoDB views: one order
// document per order and one summary per customer. It is a consumer group
// of its own, reads read_committed, writes each order at most once per batch
// (all of the batch's events for it folded first; a batch waits Config.Linger
// for more events so that an order's quick succession of changes folds),
// guards every order write by version and counts every event in a customer
// summary once (by its offset), so that replays change nothing, and commits
// offsets only after the writes. A batch's summaries are written first, then
// its order documents, which it then publishes to the views topic that
// feeds live subscriptions (see ConsumeClaim).
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
	sessions    atomic.Int64
	deadLetters atomic.Int64
	lastErr     atomic.Pointer[string]
	// failingSince is when the current run of failed batches began, in
	// Unix nanoseconds; 0 after a success.
	failingSince atomic.Int64
	// outSince is when the projector last left a session (or was
	// created), in Unix nanoseconds; 0 while it is in one.
	outSince atomic.Int64
}

// New connects to the brokers. Run starts consuming.
func New(cfg Config, store *view.Store) (*Projector, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 500
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
	producer, err := sarama.NewSyncProducer(cfg.Brokers, sc)
	if err != nil {
		group.Close()
		client.Close()
		return nil, fmt.Errorf("projector producer: %w", err)
	}
	go func() {
		for err := range group.Errors() {
			cfg.Logger.Warn("projector", "err", err)
		}
	}()
	p := &Projector{cfg: cfg, store: store, client: client, group: group, producer: producer, summaries: summaryCache{max: summaryCacheEntries}}
	p.outSince.Store(time.Now().UnixNano())
	return p, nil
}

// Run projects until ctx ends or Close is called.
func (p *Projector) Run(ctx context.Context) error {
	return p.loop.Run(ctx, p.group, []string{p.cfg.Topics.Events}, p, p.cfg.Logger)
}

// Ready reports whether the projector has joined its group.
func (p *Projector) Ready() bool { return p.sessions.Load() > 0 }

// DeadLetters counts the events this projector moved to the dead-letter topic.
func (p *Projector) DeadLetters() int64 { return p.deadLetters.Load() }

// LastError is the error of the last failed batch since the last success,
// or "".
func (p *Projector) LastError() string {
	if s := p.lastErr.Load(); s != nil {
		return *s
	}
	return ""
}

// Close leaves the group and closes the connections. Later calls do nothing.
func (p *Projector) Close() error {
	p.closeOnce.Do(func() {
		p.closeErr = p.group.Close()
		p.producer.Close()
		p.client.Close()
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

// ConsumeClaim projects one partition for the length of a session. A batch
// that cannot be written (the store is down) is retried with backoff; its
// offsets are committed, and read-your-writes waiters woken, once it is
// written.
//
// A batch's customer summaries are written before its order documents: a
// summary counts each event once, by its offset (view.CustomerDoc.Count),
// and an order document is never ahead of the summaries, so a replay (after
// a crash before the commit) folds every event the summaries may lack from
// an order document at or behind them, and counts exactly those the
// summaries lack. An order view with a consistencyToken's version thus
// implies a summary that includes it.
func (p *Projector) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	ctx := sess.Context()
	// The views this claim wrote last: while the claim lasts no one else
	// writes its orders, so an order confirmed just after it was placed is not
	// read back. A stale entry (a zombie claim) fails the write's version
	// guard, and the retry reads the store.
	cache := &docCache{max: 5000}
	for {
		batch, ok := kafka.NextBatchWithin(ctx, claim.Messages(), p.cfg.BatchSize, p.cfg.Linger)
		if !ok {
			return nil
		}
		backoff := 100 * time.Millisecond
		var ids []string
		for {
			var err error
			ids, err = p.apply(ctx, claim.Partition(), batch, cache)
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
		if p.cfg.OnProgress != nil {
			p.cfg.OnProgress(ids)
		}
		sess.MarkMessage(batch[len(batch)-1], "")
		sess.Commit()
	}
}

func (p *Projector) noteError(what string, partition int32, offset int64, backoff time.Duration, err error) {
	msg := err.Error()
	p.lastErr.Store(&msg)
	p.failingSince.CompareAndSwap(0, time.Now().UnixNano())
	p.cfg.Logger.Warn(what, "partition", partition, "offset", offset, "in", backoff, "err", err)
}

// apply writes the summaries and the order views for one batch, publishes
// the views and returns the batch's orders. It is idempotent: re-applying a
// batch (after a crash before the offset commit) changes nothing.
func (p *Projector) apply(ctx context.Context, partition int32, batch []*sarama.ConsumerMessage, cache *docCache) ([]string, error) {
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
			dead = append(dead, kafka.DeadLetter(p.cfg.Topics.DeadLetter, m, err))
			continue
		}
		if _, ok := byOrder[e.OrderID]; !ok {
			order = append(order, e.OrderID)
		}
		byOrder[e.OrderID] = append(byOrder[e.OrderID], e)
		source[e.OrderID] = append(source[e.OrderID], m)
	}

	var (
		final    map[string]view.OrderDoc
		previous map[string]string
		err      error
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
		final, previous, gaps, err = p.write(ctx, partition, order, byOrder, source, trusted)
		if err == nil {
			dead = append(dead, gaps...)
			break
		}
		cache.clear()
		if !errors.Is(err, view.ErrConflict) || attempt == 5 {
			return nil, err
		}
	}
	cache.put(final)
	if len(dead) > 0 {
		if err := p.producer.SendMessages(dead); err != nil {
			return nil, fmt.Errorf("dead-letter %d events: %w", len(dead), err)
		}
		p.deadLetters.Add(int64(len(dead)))
		for _, d := range dead {
			p.cfg.Logger.Error("projector: dead-lettered event", "err", headerValue(d, kafka.HeaderDLError))
		}
	}
	if err := p.publish(final, previous, order); err != nil {
		return nil, err
	}
	return order, nil
}

// write folds each order's events onto its stored view, writes the
// customer summaries the events change, then the orders that moved forward.
// It returns the resulting view of every order in the batch, the status
// each had before, and dead letters for events that would leave a gap in
// an order's versions. With a cache, orders whose first event is version 1
// are not read (they have no view yet), nor are those in the cache.
func (p *Projector) write(ctx context.Context, partition int32, ids []string, byOrder map[string][]domain.Event, source map[string][]*sarama.ConsumerMessage, cache *docCache) (map[string]view.OrderDoc, map[string]string, []*sarama.ProducerMessage, error) {
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
		return nil, nil, nil, err
	}
	for id, d := range cached {
		stored[id] = d
	}
	previous := make(map[string]string, len(stored))
	for id, d := range stored {
		previous[id] = statusBefore(d, byOrder[id])
	}
	var gaps []*sarama.ProducerMessage
	final := make(map[string]view.OrderDoc, len(ids))
	transitions := map[string][]view.Transition{} // by customer, in offset order per order
	var changed []string
	for _, id := range ids {
		doc, exists := stored[id]
		state := doc.ToOrder()
		if !exists {
			state = domain.Order{}
		}
		moved := false
		for i, e := range byOrder[id] {
			switch {
			case e.Version <= state.Version: // already in the view, so in the summaries too
			case e.Version == state.Version+1:
				from := view.ContributionOf(state)
				state = domain.Evolve(state, e)
				transitions[state.CustomerID] = append(transitions[state.CustomerID],
					view.Transition{Partition: partition, Offset: source[id][i].Offset, From: from, To: view.ContributionOf(state)})
				moved = true
			default:
				gaps = append(gaps, kafka.DeadLetter(p.cfg.Topics.DeadLetter, source[id][i], fmt.Errorf(
					"view of order %q is at version %d, event version %d would leave a gap; rebuild the views from the start of the events topic",
					id, state.Version, e.Version)))
			}
		}
		if moved {
			final[id] = view.FromOrder(state)
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
	if err := <-p.queueCustomers(transitions); err != nil {
		return nil, nil, nil, err
	}
	writes := make([]view.OrderWrite, len(changed))
	for i, id := range changed {
		writes[i] = view.OrderWrite{Doc: final[id], Prev: stored[id].Version}
	}
	if err := p.store.PutOrders(ctx, writes); err != nil {
		return nil, nil, nil, err
	}
	return final, previous, gaps, nil
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
// summaries and returns a channel that gets the result of the write that
// carries them (on error the caller queues them again; Count makes that
// harmless).
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

// flushCustomers writes what is queued until nothing is.
func (p *Projector) flushCustomers() {
	q := &p.customers
	for {
		q.mu.Lock()
		pending, waiters := q.pending, q.waiters
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
		for _, w := range waiters {
			w <- err
		}
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
					"but events replayed since the last committed offsets may be counted twice: rebuild the views to be exact (README, Limits)")
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
// summary's revision only growing: views dropped for a rebuild while the
// instance runs could bring a summary back to a cached revision with other
// counts, so stop the instances to rebuild.
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
func (p *Projector) publish(final map[string]view.OrderDoc, previous map[string]string, ids []string) error {
	msgs := make([]*sarama.ProducerMessage, 0, len(ids))
	for _, id := range ids {
		d, ok := final[id]
		if !ok {
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
