package command

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"

	"github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/kafka"
	"github.com/ordergateway/gateway/metrics"
)

// restoreTimeout bounds how long a restore may go without reading a record
// of a partition (its snapshots, or its events when it rebuilds) before it
// gives up and the session rejoins. A partition of any size restores as
// long as its records keep coming; only a broker that stops answering (or
// a transaction that neither fencing nor the broker ends) times out.
const restoreTimeout = 2 * time.Minute

// session is one consumer group generation of a Handler: the partitions it
// was assigned and their orders' states, the transactional producer, and
// the committer, one goroutine that takes the commands of all the
// session's partitions as they come, in batches, and commits each batch in
// one transaction. While a transaction is being committed the next batch
// gathers, so under load a transaction carries many commands and the
// broker's cost per command falls.
type session struct {
	h   *Handler
	ctx context.Context
	log *slog.Logger
	// prod and other are the committer's transactional producers, used in
	// turn (see producer); both nil when the session has no partitions.
	prod, other *txnProducer
	turn        int // 0: prod's turn; 1: other's
	meta        *sarama.ConsumerGroupMetadata
	orders      *workingSet
	// tallies are the tallies of the session's partitions (see tally),
	// changed with orders.
	tallies map[int32]tally
	// gap is set once a transaction of the session failed: its outcome is
	// unknown (it may have committed), so the local stores' checkpoints no
	// longer advance past the session's own records; the next restore
	// reads them from the changelog (see workingSet.committed).
	gap   bool
	inbox chan inbound
	done  chan struct{} // closed when the committer stopped
	err   error         // why it stopped, if it failed; read after done
	once  sync.Once

	mu    sync.Mutex
	next  map[int32]int64 // by partition, the offset of the next command to handle
	early earlyOffers     // offers ahead of their partition's next command

	// busySince is when the committer took the batch it has not yet
	// committed, in Unix nanoseconds; 0 while it waits for commands.
	busySince atomic.Int64
	traced    *batchTrace // the spans of the batch being committed (the committer's alone); nil: tracing off
}

// inbound is a command for the committer: fetched from its partition, or
// offered by the bus of this process right after writing it (local).
type inbound struct {
	m     *sarama.ConsumerMessage
	local bool
}

// startSession creates the session's transactional producers, restores its
// partitions and starts its committer.
func (h *Handler) startSession(gs sarama.ConsumerGroupSession) (*session, error) {
	parts := gs.Claims()[h.cfg.Topics.Commands]
	s := &session{h: h, ctx: gs.Context(), log: h.cfg.Logger.With("generation", gs.GenerationID()),
		meta:  sarama.NewConsumerGroupMetadataFromSession(gs, h.cfg.Group, nil),
		inbox: make(chan inbound, h.cfg.BatchSize), done: make(chan struct{}), next: map[int32]int64{}}
	h.local.keepOnly(parts) // the stores of partitions gone stay on disk, closed
	if len(parts) == 0 {
		close(s.done)
		return s, nil
	}
	prod, err := h.newTxnProducer()
	if err != nil {
		return nil, fmt.Errorf("transactional producer: %w", err)
	}
	other, err := h.newTxnProducerAt(1)
	if err != nil {
		_ = prod.Close()
		return nil, fmt.Errorf("transactional producer: %w", err)
	}
	s.prod, s.other = prod, other
	t0 := time.Now()
	if s.orders, err = h.restore(s.ctx, prod, parts); err != nil {
		_ = prod.Close()
		_ = other.Close()
		return nil, err
	}
	s.turn = 1 // the restore's last transaction was prod's
	var n int64
	s.tallies = make(map[int32]tally, len(parts))
	for p, ps := range s.orders.stores {
		n += ps.meta.Local.Orders
		s.tallies[p] = ps.meta.Local
	}
	h.cfg.Metrics.Restore.Observe(time.Since(t0).Seconds())
	s.log.Debug("command handler: partitions restored", "partitions", parts, "orders", n, "took", time.Since(t0))
	go s.run()
	return s, nil
}

// close waits for the committer to finish the batch it is committing and
// closes the producers. Later calls do nothing.
func (s *session) close() {
	s.once.Do(func() {
		<-s.done
		if s.prod != nil {
			_ = s.prod.Close()
			_ = s.other.Close()
		}
	})
}

// run is the committer: it commits batch after batch until the session
// ends. A batch it cannot commit ends the session (Run rejoins, and the
// partitions restart from their committed offsets).
func (s *session) run() {
	defer close(s.done)
	for {
		batch, ok := s.nextBatch()
		if !ok {
			return
		}
		if len(batch) == 0 {
			continue
		}
		s.busySince.Store(time.Now().UnixNano())
		s.h.cfg.Metrics.BatchSize.Observe(float64(len(batch)))
		observeQueued(s.h.cfg.Metrics, batch)
		s.traced = s.h.traceBatch(batch)
		err := s.commit(batch)
		s.traced.end(err)
		s.traced = nil
		s.busySince.Store(0)
		if err != nil {
			if s.ctx.Err() != nil {
				return // the session ended under it; the next one takes over
			}
			s.err = err
			s.log.Error("command handler: batch not committed; rejoining", "err", err, "commands", len(batch))
			s.h.loop.Restart()
			return
		}
	}
}

// starting records where partition p's claim starts reading: the offset of
// the first command it will fetch (negative: not known until the first
// fetch).
func (s *session) starting(p int32, offset int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if offset >= 0 {
		s.next[p] = offset
	}
}

// offer hands the committer a command this process's bus has just written,
// unless it is busy: the claim fetches it anyway.
func (s *session) offer(m *sarama.ConsumerMessage) {
	select {
	case s.inbox <- inbound{m: m, local: true}:
	default:
	}
}

// nextBatch waits for a command, takes what else is waiting (up to the
// batch size), and keeps, in order, the commands that are next in their
// partitions: a fetched command unless it was already handled as offered,
// an offered one once it is the very next. The bus's sends answer in any
// order, so an offer often comes before the one ahead of it: it is kept
// aside (see early) until that one is taken, offered or fetched, instead of
// waiting for its own fetch. ok is false when the session ended.
func (s *session) nextBatch() (batch []*sarama.ConsumerMessage, ok bool) {
	var in []inbound
	select {
	case i := <-s.inbox:
		in = append(in, i)
	case <-s.ctx.Done():
		return nil, false
	}
more:
	for len(in) < s.h.cfg.BatchSize {
		select {
		case i := <-s.inbox:
			in = append(in, i)
		default:
			break more
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, i := range in {
		p := i.m.Partition
		next, known := s.next[p]
		switch {
		case i.local && (!known || i.m.Offset > next):
			s.early.keep(i.m, next, known)
			continue
		case known && i.m.Offset < next:
			continue // taken already, as offered or as fetched
		}
		batch = append(batch, i.m)
		s.next[p] = i.m.Offset + 1
		batch = s.early.release(p, s.next, batch, s.h.cfg.BatchSize)
	}
	return batch, true
}

// maxEarlyOffers bounds the offers a session keeps aside, over all its
// partitions. An offer past it is dropped: the claim fetches the command.
const maxEarlyOffers = 1024

// earlyOffers are commands the bus offered before the one ahead of them in
// their partition was taken, by partition and offset. Only nextBatch uses
// it (under the session's mu). Every entry is past its partition's next
// offset: release takes them as that offset reaches them and drops those a
// fetch took first.
type earlyOffers struct {
	n  int
	by map[int32]map[int64]*sarama.ConsumerMessage
}

// keep sets m aside, unless its partition is past it already or the bound
// is reached.
func (e *earlyOffers) keep(m *sarama.ConsumerMessage, next int64, known bool) {
	if (known && m.Offset < next) || e.n >= maxEarlyOffers {
		return
	}
	if e.by == nil {
		e.by = map[int32]map[int64]*sarama.ConsumerMessage{}
	}
	if e.by[m.Partition] == nil {
		e.by[m.Partition] = map[int64]*sarama.ConsumerMessage{}
	}
	if _, dup := e.by[m.Partition][m.Offset]; !dup {
		e.n++
	}
	e.by[m.Partition][m.Offset] = m
}

// release appends to batch the offers of partition p that follow on from
// next[p], advancing it, while the batch has fewer than max commands, and
// drops those next[p] has passed. One left for want of room stays aside:
// the claim's fetch brings the partition's next command in its turn, and
// the kept ones follow it, or their own fetched copies are taken and they
// are dropped; none is lost.
func (e *earlyOffers) release(p int32, next map[int32]int64, batch []*sarama.ConsumerMessage, max int) []*sarama.ConsumerMessage {
	kept := e.by[p]
	if len(kept) == 0 {
		return batch
	}
	for len(batch) < max {
		m, ok := kept[next[p]]
		if !ok {
			break
		}
		delete(kept, m.Offset)
		e.n--
		batch = append(batch, m)
		next[p] = m.Offset + 1
	}
	for o := range kept {
		if o < next[p] {
			delete(kept, o)
			e.n--
		}
	}
	return batch
}

// commit decides batch and commits it in one transaction. The states change
// only after the commit. When the records are refused for what they are
// (too large for the broker; see refused), the commands are committed one
// at a time, and the one whose records are refused is set aside: it goes to
// the dead-letter topic and its mutation is answered, so one request can
// never stop a partition. Other failures are retried a few times and then
// returned.
func (s *session) commit(batch []*sarama.ConsumerMessage) error {
	err := s.tryBatch(batch)
	if !refused(err) {
		return err
	}
	if len(batch) > 1 {
		s.log.Warn("command handler: batch refused; committing its commands one at a time", "commands", len(batch), "err", err)
		for i := range batch {
			if err := s.commit(batch[i : i+1]); err != nil {
				return err
			}
		}
		return nil
	}
	return s.setAside(batch[0], err)
}

// producer is the transactional producer of the committer's next
// transaction. The committer's transactions follow one another (each
// begins once the one before it has committed), on two transactional ids
// in turn: a transactional id's next transaction cannot begin until the
// broker has written the markers of its last one (CONCURRENT_TRANSACTIONS,
// sent again after a backoff of 2 ms), which on Apache Kafka held up 30-40%
// of the committer's transactions; the other id's last transaction ended a
// whole transaction earlier. A transaction that fails is retried on
// the same producer (which aborted it, or ends it in its next Begin when
// the abort failed), so that two are never open at once.
func (s *session) producer() *txnProducer {
	if s.turn == 1 {
		return s.other
	}
	return s.prod
}

// runTxn commits records and the offsets after each of lasts in one
// transaction of producer(), and passes the turn to the other producer
// once it is committed.
func (s *session) runTxn(records []*sarama.ProducerMessage, lasts []*sarama.ConsumerMessage) error {
	err := s.producer().runTxn(records, lasts, s.meta)
	if err == nil {
		s.turn ^= 1
	}
	return err
}

// refused reports whether a batch failed for what its records are, so that
// committing it again can never succeed.
func refused(err error) bool {
	return errors.Is(err, errSnapshotTooLarge) || kafka.IsRefused(err)
}

// tryBatch decides batch and commits it in one transaction, retrying a
// failed transaction a few times unless it is fenced or refused.
func (s *session) tryBatch(batch []*sarama.ConsumerMessage) error {
	var err error
	for attempt := 1; attempt <= 5; attempt++ {
		d, derr := s.h.decideBatch(s.orders, batch)
		if derr != nil {
			return derr
		}
		s.traced.inject(d.records, s.h.cfg.Topics.Events)
		after := tallies(s.tallies, d.before, d.changed)
		for p, t := range after {
			d.records = append(d.records, t.record(s.h.cfg.Topics.Snapshots, p))
		}
		local, remote := s.h.splitReplies(d.replies)
		d.records = append(d.records, remote...)
		prod := s.producer()
		if err = s.runTxn(d.records, lastOfEachPartition(batch)); err == nil {
			for p, t := range after {
				s.tallies[p] = t
			}
			s.h.deadLetters.Add(d.dead)
			s.h.deliver(local) // the others were in the transaction
			// The transaction is committed: the local stores may reflect it.
			// If that fails, the session ends, and the next restore reads
			// the transaction back from the changelog.
			if err := s.orders.committed(d, after, s.checkpoints(d.records)); err != nil {
				return fmt.Errorf("the transaction committed, but the handler's local state store failed: %w", err)
			}
			return nil
		}
		s.gap = true
		if prod.Fatal() != nil || refused(err) || kafka.IsFencedByGroup(err) || s.ctx.Err() != nil {
			return err
		}
		s.log.Warn("command handler: transaction failed; retrying", "attempt", attempt, "err", err)
		select {
		case <-s.ctx.Done():
			return s.ctx.Err()
		case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
		}
	}
	return err
}

// checkpoints is, for each snapshots partition written in a committed
// transaction, the offset after its last record there: every committed
// record before it is then in the local store (the session's restore read
// those before its marker, and the session's own transactions are applied
// as they commit). None while the session has a gap (a transaction whose
// outcome is unknown), and none for a record whose offset the producer did
// not learn (sarama leaves it 0).
func (s *session) checkpoints(records []*sarama.ProducerMessage) map[int32]int64 {
	out := map[int32]int64{}
	if s.gap {
		return out
	}
	for _, r := range records {
		if r.Topic == s.h.cfg.Topics.Snapshots && r.Offset > 0 {
			out[r.Partition] = max(out[r.Partition], r.Offset+1)
		}
	}
	return out
}

// lastOfEachPartition is the last command of each partition in batch: the
// offsets the transaction commits.
func lastOfEachPartition(batch []*sarama.ConsumerMessage) []*sarama.ConsumerMessage {
	last := map[int32]int{}
	var out []*sarama.ConsumerMessage
	for _, m := range batch {
		if i, ok := last[m.Partition]; ok {
			out[i] = m
			continue
		}
		last[m.Partition] = len(out)
		out = append(out, m)
	}
	return out
}

// setAside commits command m as handled without handling it: its copy goes
// to the dead-letter topic with why (in the transaction, with the consumer
// offset) and its mutation is answered with LIMIT_EXCEEDED when its records
// were too large, INTERNAL_SERVER_ERROR otherwise. The order's state does
// not change and no outcome is recorded, so a retry meets the same answer.
// If even the dead-letter copy is refused, it goes without its value (the
// headers name the command's topic, partition and offset).
func (s *session) setAside(m *sarama.ConsumerMessage, why error) error {
	log := s.log.With("partition", m.Partition, "offset", m.Offset)
	answer := domain.Errorf(domain.CodeInternal, "the command could not be processed and was set aside")
	code := kafka.ReasonRefused
	if errors.Is(why, errSnapshotTooLarge) || kafka.IsTooLarge(why) {
		answer = domain.Errorf(domain.CodeLimitExceeded, "the order would be larger than the broker accepts; the command was not applied")
		code = kafka.ReasonTooLarge
	}
	dead := kafka.DeadLetter(s.h.cfg.Topics.DeadLetter, m, kafka.Reason(code, why))
	last := []*sarama.ConsumerMessage{m}
	err := s.runTxn([]*sarama.ProducerMessage{dead}, last)
	if refused(err) {
		log.Warn("command handler: dead-letter copy refused; setting it aside without its value", "err", err)
		dead.Value = nil
		err = s.runTxn([]*sarama.ProducerMessage{dead}, last)
	}
	if err != nil {
		s.gap = true
		return fmt.Errorf("set aside the command at offset %d of partition %d: %w", m.Offset, m.Partition, err)
	}
	log.Error("command handler: command set aside in the dead-letter topic", "code", answer.Code, "err", why)
	s.h.deadLetters.Add(1)
	if a, ok := replyTo(m, Reply{CommandID: kafka.Header(m, HeaderCommandID), OrderID: string(m.Key), Error: answer}); ok {
		s.h.deliver([]addressedReply{a})
	}
	return nil
}

// txnProducer is one of the instance's transactional producers
// (kafka.TxnProducer) with the handler's metrics.
type txnProducer struct {
	*kafka.TxnProducer
	id      string     // its transactional id, recorded with the offsets it commits (see fencePreviousOwner)
	txn     sync.Mutex // one transaction at a time: restore's partitions run side by side
	metrics *metrics.Handler
}

// newTxnProducer creates the instance's first transactional producer
// (newTxnProducerAt(0)).
func (h *Handler) newTxnProducer() (*txnProducer, error) { return h.newTxnProducerAt(0) }

// newTxnProducerAt creates the instance's transactional producer i (0 or
// 1; see txnIDs). Creating it aborts a transaction that producer i of the
// instance's previous session left open.
func (h *Handler) newTxnProducerAt(i int) (*txnProducer, error) {
	sc := h.cfg.Security.Config("order-gateway-handler", h.cfg.FetchWait)
	// A transaction begun while the broker still writes the previous one's
	// markers is refused with CONCURRENT_TRANSACTIONS and retried: sarama's
	// 100 ms would stall the next batch, and the markers take a few
	// milliseconds. The backoff doubles from 2 ms.
	sc.Producer.Transaction.Retry.Max = 50
	sc.Producer.Transaction.Retry.BackoffFunc = func(retries, _ int) time.Duration {
		return min(2*time.Millisecond<<min(retries, 7), 250*time.Millisecond)
	}
	retried := func(string) {}
	if r := h.cfg.Metrics.Retried; r != nil {
		retried = func(request string) { r.WithLabelValues(request).Inc() }
	}
	id := txnIDs(h.txnID)[i]
	p, err := kafka.NewTxnProducer(h.cfg.Brokers, sc, id, h.cfg.TransactionTimeout, retried)
	if err != nil {
		return nil, err
	}
	return &txnProducer{TxnProducer: p, id: id, metrics: h.cfg.Metrics}, nil
}

// runTxn writes msgs and the consumer offsets after each of lasts in one
// transaction. On failure the transaction is aborted.
func (tp *txnProducer) runTxn(msgs []*sarama.ProducerMessage, lasts []*sarama.ConsumerMessage, meta *sarama.ConsumerGroupMetadata) error {
	tp.txn.Lock()
	defer tp.txn.Unlock()
	start := time.Now()
	defer func() { tp.metrics.Transaction.Observe(time.Since(start).Seconds()) }()
	if err := tp.Run(msgs, lasts, meta, &tp.id); err != nil {
		tp.metrics.Aborted.Inc()
		tp.metrics.Errors.Broker("transaction", kafka.ErrorKind(err))
		if errors.Is(err, sarama.ErrProducerFenced) {
			return fmt.Errorf("commit transaction: fenced: a newer producer with this transactional id took over (%w)", err)
		}
		return fmt.Errorf("commit transaction: %w", err)
	}
	tp.metrics.Committed.Inc()
	return nil
}

// restore writes a marker to each of the partitions' snapshots in one
// transaction and brings each partition's local store up to its marker:
// it reads the partition from the store's checkpoint (from its start for a
// new store) to the marker, and every snapshot committed before is then in
// the store. A transaction that another producer (a previous owner) left
// open on a partition holds its reading up until that transaction ends (at
// most the transaction timeout after its producer died). Each partition's
// store is then checked against its tally and the partition rebuilt from
// its events if they disagree (see verify). It returns the working set of
// the partitions: their stores and an empty cache.
func (h *Handler) restore(ctx context.Context, prod *txnProducer, parts []int32) (*workingSet, error) {
	markers := make(map[int32]string, len(parts))
	msgs := make([]*sarama.ProducerMessage, 0, len(parts))
	for _, p := range parts {
		markers[p] = markerPrefix + newID("")
		msgs = append(msgs, &sarama.ProducerMessage{Topic: h.cfg.Topics.Snapshots, Partition: p, Key: sarama.StringEncoder(markers[p])})
	}
	if err := prod.runTxn(msgs, nil, nil); err != nil {
		return nil, fmt.Errorf("write restore markers: %w", err)
	}
	cluster, topicID, err := h.identity()
	if err != nil {
		return nil, fmt.Errorf("identify the snapshots topic: %w", err)
	}
	var (
		mu      sync.Mutex
		ws      = &workingSet{stores: map[int32]*partStore{}, cache: newOrderCache(h.cfg.CacheOrders, MaxCacheBytes), local: h.local}
		errs    []error
		fixes   []*sarama.ProducerMessage // records that make snapshots and tallies agree
		repairs []repair
		wg      sync.WaitGroup
	)
	for _, p := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ps, err := h.restorePartition(ctx, p, markers[p], cluster, topicID)
			var fix []*sarama.ProducerMessage
			var r *repair
			if err == nil {
				fix, r, err = h.verify(ctx, prod, ps)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			ws.stores[p] = ps
			fixes = append(fixes, fix...)
			if r != nil {
				repairs = append(repairs, *r)
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	// The tallies come last, after the snapshots they count.
	for len(fixes) > 0 {
		n := min(len(fixes), 200)
		if err := prod.runTxn(fixes[:n], nil, nil); err != nil {
			return nil, fmt.Errorf("write rebuilt snapshots and tallies: %w", err)
		}
		fixes = fixes[n:]
	}
	// Committed: the stores may reflect them (their records, after the
	// checkpoint, are read again at the next restore, to no effect).
	for _, r := range repairs {
		if err := r.apply(ws.stores[r.p]); err != nil {
			h.local.discard(r.p, err.Error())
			return nil, err
		}
	}
	return ws, nil
}

// restoreBatchBytes bounds the values a restore writes to a local store in
// one batch; each batch also moves the store's checkpoint, so a restore cut
// short (a rebalance, a crash) resumes from there.
var restoreBatchBytes = 4 << 20

// restorePartition brings partition p's local store up to marker, reading
// the snapshots partition from the store's checkpoint, and returns the
// store. Its tally is the last read (see localMeta). A record it cannot
// decode is left out and the store marked damaged, so that verify rebuilds
// the partition from its events. There is no limit on the time a restore
// takes, only on the time without a record (restoreTimeout); and as the
// checkpoint moves with each batch, a restore that gives up resumes where it
// was.
func (h *Handler) restorePartition(ctx context.Context, p int32, marker, cluster, topicID string) (*partStore, error) {
	ps, err := h.local.get(p, cluster, topicID)
	if err != nil {
		return nil, err
	}
	oldest, err := h.client.GetOffset(h.cfg.Topics.Snapshots, p, sarama.OffsetOldest)
	if err != nil {
		return nil, fmt.Errorf("read the start offset of snapshots partition %d: %w", p, err)
	}
	newest, err := h.client.GetOffset(h.cfg.Topics.Snapshots, p, sarama.OffsetNewest)
	if err != nil {
		return nil, fmt.Errorf("read the end offset of snapshots partition %d: %w", p, err)
	}
	if ps.state.Checkpoint > newest {
		h.local.discard(p, fmt.Sprintf("its checkpoint %d is past the end of the changelog (%d)", ps.state.Checkpoint, newest))
		if ps, err = h.local.get(p, cluster, topicID); err != nil {
			return nil, err
		}
	}
	from := max(ps.state.Checkpoint, oldest)
	pc, err := h.consumer.ConsumePartition(h.cfg.Topics.Snapshots, p, from)
	if err != nil {
		return nil, fmt.Errorf("read snapshots of partition %d: %w", p, err)
	}
	defer pc.Close()
	fail := func(err error) (*partStore, error) {
		h.local.discard(p, err.Error())
		return nil, err
	}
	w := ps.writer()
	defer func() { w.b.Close() }()
	read := 0
	timeout := time.NewTimer(restoreTimeout)
	defer timeout.Stop()
	held := time.NewTimer(fenceAfter)
	defer held.Stop()
	for {
		select {
		case <-held.C:
			h.fencePreviousOwner(p)
		case m, ok := <-pc.Messages():
			if !ok {
				return nil, fmt.Errorf("read snapshots of partition %d: the consumer closed", p)
			}
			held.Reset(fenceAfter) // records flow: nothing holds the reading up
			timeout.Reset(restoreTimeout)
			key := string(m.Key)
			switch {
			case key == marker:
				if err := w.commit(m.Offset + 1); err != nil {
					return fail(err)
				}
				h.cfg.Metrics.OrdersRestored.Add(float64(read))
				h.cfg.Logger.Debug("command handler: local state caught up", "partition", p, "from", from, "to", m.Offset+1, "snapshots", read)
				return ps, nil
			case key == tallyKey:
				var t tally
				if err := json.Unmarshal(m.Value, &t); err != nil {
					h.cfg.Logger.Error("command handler: undecodable tally", "partition", p, "offset", m.Offset, "err", err)
					w.meta.Damaged = true
					continue
				}
				w.meta.Stored = &t
			case strings.HasPrefix(key, markerPrefix):
			case m.Value == nil:
				if err := w.del(key); err != nil {
					return fail(err)
				}
			default:
				read++
				s, err := decodeSnapshot(m.Value)
				var newer *domain.SchemaVersionError
				if errors.As(err, &newer) {
					return nil, fmt.Errorf("snapshot of order %q (partition %d, offset %d): %w", key, p, m.Offset, err)
				}
				if err != nil {
					h.cfg.Logger.Error("command handler: undecodable snapshot", "partition", p, "offset", m.Offset, "err", err)
					w.meta.Damaged = true
					if err := w.del(key); err != nil {
						return fail(err)
					}
					continue
				}
				if err := w.put(key, s.Order.Version, m.Value); err != nil {
					return fail(err)
				}
			}
			if w.b.Size() >= restoreBatchBytes {
				if err := w.commit(m.Offset + 1); err != nil {
					return fail(err)
				}
				w = ps.writer()
			}
		case err := <-pc.Errors():
			return nil, fmt.Errorf("read snapshots of partition %d: %w", p, err)
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timeout.C:
			return nil, fmt.Errorf("restore of partition %d: no record for %s before its marker", p, restoreTimeout)
		}
	}
}
