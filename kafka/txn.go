package kafka

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

// TxnProducer writes records and consumer offsets in Kafka transactions. It
// speaks the transaction protocol itself through sarama's request API
// instead of going through sarama's AsyncProducer, which sends a
// transaction's records in as many Produce and AddPartitionsToTxn requests
// as its flush timer cuts them into (two of each, on a loaded machine) and
// makes every step wait for the one before. Here a transaction is:
//
//  1. AddPartitionsToTxn, once, for every partition the records go to,
//     and AddOffsetsToTxn for the consumer group;
//  2. the records, in one Produce request per leader (more only past
//     Producer.MaxMessageBytes per partition), and without waiting for
//     them, TxnOffsetCommit;
//  3. EndTxn, once every produce has been acknowledged.
//
// Every request to a broker goes over the client's one connection to it,
// which the broker serves in order: the partition leader's verification of
// the transaction (KIP-890) answers a produce with NOT_ENOUGH_REPLICAS when
// it overlaps another verification of the same transactional id on that
// broker (a TxnOffsetCommit's) or a coordinator request still being
// written (AddPartitionsToTxn, AddOffsetsToTxn), so those come first, and
// a TxnOffsetCommit to a broker that is also a leader waits behind its
// produce there.
//
// Records are idempotent (producer id, epoch and a sequence per partition);
// a produce refused for a reason that can pass is sent again with the same
// sequences. A transaction that fails before its EndTxn is aborted (again
// before the next one if that fails), and the producer initialised again
// (InitProducerID bumps its epoch and restarts the sequences). A failed
// EndTxn(commit) is not aborted: the commit's outcome is unknown
// (ErrCommitUnknown). That, a fenced producer (another one took its
// transactional id) and one whose id the broker no longer knows are fatal:
// Fatal reports it and every later call returns its error.
//
// One transaction at a time; its methods may be called from any goroutine.
// Bounds: a transaction holds what its caller hands it (no buffering
// beyond its requests); each batch is at most Producer.MaxMessageBytes and
// each Produce request at most maxProduceRequest bytes; the sequences are
// one per partition written since the producer was initialised.
type TxnProducer struct {
	id      string
	conf    *sarama.Config
	client  sarama.Client
	timeout time.Duration
	onRetry func(request string)

	mu       sync.Mutex // one transaction at a time
	pid      int64
	epoch    int16
	seq      map[topicPartition]int32
	added    map[topicPartition]bool // partitions added to the open transaction
	open     bool
	begun    bool        // the coordinator may know of the open transaction (partitions or offsets asked to be added)
	abortDue bool        // a transaction the coordinator may know of was not ended: abort it before the next
	batches  []*outBatch // the open transaction's
	inflight []*produceCall
	failed   error // the open transaction's first failure: it can only be aborted
	needInit bool  // a transaction failed: initialise (bump the epoch) before the next
	fatal    error
}

type topicPartition struct {
	topic     string
	partition int32
}

// recordBatchOverhead is the size of a record batch's header.
const recordBatchOverhead = 61

// maxProduceRequest bounds the records of one Produce request (Kafka's
// socket.request.max.bytes is 100 MiB by default).
const maxProduceRequest = 16 << 20

// NewTxnProducer connects to the brokers and initialises the transactional
// id: the broker fences the id's previous producer and aborts a
// transaction it left open. conf is copied; its Producer.Transaction.Retry
// settings bound the retries of coordinator requests (CONCURRENT_TRANSACTIONS
// while the previous transaction's markers are written, a coordinator that
// moved or is loading); onRetry, if not nil, is told of each retry.
func NewTxnProducer(brokers []string, conf *sarama.Config, id string, timeout time.Duration, onRetry func(request string)) (*TxnProducer, error) {
	if id == "" {
		return nil, errors.New("transactional producer: empty transactional id")
	}
	c := *conf
	c.Producer.Idempotent = false // the producer id and sequences are set here
	c.Producer.Transaction.ID = ""
	c.Net.MaxOpenRequests = 5 // a TxnOffsetCommit may follow produces on a connection
	client, err := sarama.NewClient(brokers, &c)
	if err != nil {
		return nil, err
	}
	p := &TxnProducer{id: id, conf: &c, client: client, timeout: timeout, onRetry: onRetry, pid: -1, epoch: -1}
	if err := p.init(); err != nil {
		_ = p.Close()
		return nil, err
	}
	return p, nil
}

// Fatal returns the error that made the producer unusable (fenced, its id
// unknown to the broker, or a commit of unknown outcome), or nil.
func (p *TxnProducer) Fatal() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fatal
}

// Run writes records and, for each of lasts, the consumer offset after it
// (with meta's group generation and metadata as the offsets' metadata) in
// one transaction. A failure before the commit aborts the transaction; a
// failed commit is ErrCommitUnknown (see Commit). Each record's Offset is
// set once the transaction is committed.
//
// The coordinator's requests come first (AddPartitionsToTxn, then
// AddOffsetsToTxn): a produce that meets one of them still being written
// is refused (the partition leader's verification of the transaction,
// KIP-890, reads CONCURRENT_TRANSACTIONS and answers NOT_ENOUGH_REPLICAS).
// The records and the offsets then go side by side, on the client's one
// connection to the broker, which serves them in turn: on two connections
// their verifications would fail each other (the broker keeps one per
// transactional id in flight, BENCHMARKS.md "Where the time goes").
func (p *TxnProducer) Run(records []*sarama.ProducerMessage, lasts []*sarama.ConsumerMessage, meta *sarama.ConsumerGroupMetadata, metadata *string) error {
	if err := p.Begin(); err != nil {
		return err
	}
	p.mu.Lock()
	err := p.sendLocked(records, lasts, meta)
	if err == nil && len(lasts) > 0 {
		err = p.commitOffsets(lasts, meta, metadata)
	}
	if err != nil {
		_ = p.fail(err)
		_ = p.abortLocked()
	}
	p.mu.Unlock()
	if err != nil {
		return err
	}
	return p.Commit()
}

// Begin opens a transaction.
func (p *TxnProducer) Begin() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fatal != nil {
		return p.fatal
	}
	if p.open {
		return errors.New("transactional producer: a transaction is already open")
	}
	if p.abortDue {
		// Initialising the id while its transaction is still open would
		// fence this producer (the coordinator bumps the epoch to abort
		// it, and the retry's epoch is then stale): end it first.
		if err := p.endTxn(false); err != nil && !errors.Is(err, sarama.ErrInvalidTxnState) {
			return fmt.Errorf("abort the previous transaction: %w", err)
		}
		p.abortDue = false
	}
	if p.needInit {
		if err := p.initLocked(); err != nil {
			return err
		}
	}
	p.open, p.begun, p.failed, p.added, p.batches = true, false, nil, map[topicPartition]bool{}, nil
	return nil
}

// Send adds the partitions of records to the open transaction and sends
// them; their acknowledgments are awaited by Commit (or Abort). A record
// larger than Producer.MaxMessageBytes is refused before anything is sent
// (sarama.ErrMessageSizeTooLarge).
func (p *TxnProducer) Send(records []*sarama.ProducerMessage) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.sendLocked(records, nil, nil); err != nil {
		return p.fail(err)
	}
	return nil
}

// sendLocked adds the partitions of records to the open transaction, and
// meta's group when there are lasts (offsets to commit), then sends the
// records.
func (p *TxnProducer) sendLocked(records []*sarama.ProducerMessage, lasts []*sarama.ConsumerMessage, meta *sarama.ConsumerGroupMetadata) error {
	if err := p.usable(); err != nil {
		return err
	}
	for _, m := range records {
		if n := m.ByteSize(2); n > p.conf.Producer.MaxMessageBytes {
			return fmt.Errorf("a record of %d bytes is larger than Producer.MaxMessageBytes (%d): %w", n, p.conf.Producer.MaxMessageBytes, sarama.ErrMessageSizeTooLarge)
		}
	}
	var fresh []topicPartition
	for _, m := range records {
		tp := topicPartition{m.Topic, m.Partition}
		if !p.added[tp] && !contains(fresh, tp) {
			fresh = append(fresh, tp)
		}
	}
	if len(fresh) > 0 {
		p.begun = true // even if the answer is lost, the coordinator may have added them
		if err := p.addPartitions(fresh); err != nil {
			return err
		}
		for _, tp := range fresh {
			p.added[tp] = true
		}
	}
	if len(lasts) > 0 {
		if err := p.addOffsets(meta); err != nil {
			return err
		}
	}
	return p.produce(records)
}

// SendOffsets adds, to the open transaction, the consumer offsets after
// each of lasts, with meta's group generation (a member whose generation
// is over is refused: kafka.IsFencedByGroup) and metadata as the offsets'
// metadata.
func (p *TxnProducer) SendOffsets(lasts []*sarama.ConsumerMessage, meta *sarama.ConsumerGroupMetadata, metadata *string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.usable(); err != nil {
		return err
	}
	if len(lasts) == 0 {
		return nil
	}
	err := p.addOffsets(meta)
	if err == nil {
		err = p.commitOffsets(lasts, meta, metadata)
	}
	if err != nil {
		return p.fail(err)
	}
	return nil
}

// ErrCommitUnknown is the error of a commit whose outcome the producer
// cannot know: EndTxn was sent, and its answer lost or a refusal after
// retries. The transaction may be committed; the producer is then
// unusable (Fatal), since only reading the topics back can tell.
var ErrCommitUnknown = errors.New("the transaction's commit was sent but its outcome is unknown")

// Commit waits for the open transaction's records to be acknowledged and
// commits it. If a record or the offsets failed, the transaction is
// aborted and the error returned. If EndTxn itself fails, nothing is
// aborted: the error wraps ErrCommitUnknown and the producer is fatal.
func (p *TxnProducer) Commit() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	err := p.usable()
	if err == nil {
		err = p.awaitProduces()
	}
	if err != nil {
		_ = p.fail(err)
		if p.open {
			_ = p.abortLocked()
		}
		return err
	}
	p.open = false
	if !p.begun {
		return nil // nothing was added: nothing to end
	}
	if err = p.endTxn(true); err != nil {
		// Retrying EndTxn(commit) is safe and was done; aborting now could
		// abort a transaction that is committing, and a caller that then
		// wrote the batch again would write it twice.
		_ = p.fail(err)
		if p.fatal == nil {
			p.fatal = fmt.Errorf("transactional producer %s: %w: %w", p.id, ErrCommitUnknown, err)
		}
		return p.fatal
	}
	return nil
}

// Abort aborts the open transaction, if any.
func (p *TxnProducer) Abort() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.open {
		return nil
	}
	return p.abortLocked()
}

// Close aborts the open transaction, if any, and closes the connections.
func (p *TxnProducer) Close() error {
	_ = p.Abort()
	return p.client.Close()
}

func (p *TxnProducer) usable() error {
	switch {
	case p.fatal != nil:
		return p.fatal
	case !p.open:
		return errors.New("transactional producer: no transaction is open")
	case p.failed != nil:
		return fmt.Errorf("transactional producer: the transaction failed and can only be aborted: %w", p.failed)
	}
	return nil
}

// fail records the open transaction's first failure (and a fatal one).
func (p *TxnProducer) fail(err error) error {
	if p.failed == nil {
		p.failed = err
	}
	if isFatalTxnError(err) && p.fatal == nil {
		p.fatal = fmt.Errorf("transactional producer %s: %w", p.id, err)
	}
	return err
}

// abortLocked waits for the produces in flight, then ends the transaction
// with an abort. If that fails, Begin tries again before the next
// transaction. Either way the producer is initialised again (its epoch
// bumped) before its next transaction: a failed produce leaves its
// partition's sequence unknown.
func (p *TxnProducer) abortLocked() error {
	for _, call := range p.inflight {
		<-call.done
	}
	p.inflight = p.inflight[:0]
	p.open, p.needInit = false, true
	if p.fatal != nil || !p.begun {
		return p.fatal
	}
	// INVALID_TXN_STATE: the coordinator holds no open transaction (the
	// request adding to it never took effect).
	if err := p.endTxn(false); err != nil && !errors.Is(err, sarama.ErrInvalidTxnState) {
		p.abortDue = true
		return err
	}
	return nil
}

// init initialises the transactional id (or bumps its epoch).
func (p *TxnProducer) init() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.initLocked()
}

func (p *TxnProducer) initLocked() error {
	id := p.id
	req := &sarama.InitProducerIDRequest{Version: 4, TransactionalID: &id, TransactionTimeout: p.timeout, ProducerID: p.pid, ProducerEpoch: p.epoch}
	var resp *sarama.InitProducerIDResponse
	err := p.coordinated("InitProducerId", func(b *sarama.Broker) (sarama.KError, error) {
		var err error
		resp, err = b.InitProducerID(req)
		if err != nil {
			return sarama.ErrNoError, err
		}
		return resp.Err, nil
	})
	if err != nil {
		return p.fail(err)
	}
	p.pid, p.epoch, p.seq, p.needInit = resp.ProducerID, resp.ProducerEpoch, map[topicPartition]int32{}, false
	return nil
}

func (p *TxnProducer) addPartitions(tps []topicPartition) error {
	req := &sarama.AddPartitionsToTxnRequest{Version: 3, TransactionalID: p.id, ProducerID: p.pid, ProducerEpoch: p.epoch,
		TopicPartitions: map[string][]int32{}}
	for _, tp := range tps {
		req.TopicPartitions[tp.topic] = append(req.TopicPartitions[tp.topic], tp.partition)
	}
	return p.coordinated("AddPartitionsToTxn", func(b *sarama.Broker) (sarama.KError, error) {
		resp, err := b.AddPartitionsToTxn(req)
		if err != nil {
			return sarama.ErrNoError, err
		}
		// The errors of the partitions are one error (the others read
		// OPERATION_NOT_ATTEMPTED): the first that is not.
		kerr := sarama.ErrNoError
		for _, errs := range resp.Errors {
			for _, pe := range errs {
				if pe.Err != sarama.ErrNoError && (kerr == sarama.ErrNoError || kerr == sarama.ErrOperationNotAttempted) {
					kerr = pe.Err
				}
			}
		}
		return kerr, nil
	})
}

// addOffsets adds meta's group (its offsets partition) to the open
// transaction.
func (p *TxnProducer) addOffsets(meta *sarama.ConsumerGroupMetadata) error {
	if meta == nil {
		return errors.New("transactional producer: offsets without their consumer group")
	}
	p.begun = true // even if the answer is lost, the coordinator may have added it
	return p.coordinated("AddOffsetsToTxn", func(b *sarama.Broker) (sarama.KError, error) {
		resp, err := b.AddOffsetsToTxn(&sarama.AddOffsetsToTxnRequest{Version: 3, TransactionalID: p.id, ProducerID: p.pid, ProducerEpoch: p.epoch, GroupID: meta.GroupID})
		if err != nil {
			return sarama.ErrNoError, err
		}
		return resp.Err, nil
	})
}

// commitOffsets commits the offsets after each of lasts in the open
// transaction, which must have meta's group (addOffsets).
func (p *TxnProducer) commitOffsets(lasts []*sarama.ConsumerMessage, meta *sarama.ConsumerGroupMetadata, metadata *string) error {
	req := &sarama.TxnOffsetCommitRequest{Version: 3, TransactionalID: p.id, GroupID: meta.GroupID, ProducerID: p.pid, ProducerEpoch: p.epoch,
		GenerationID: meta.GenerationID, MemberID: meta.MemberID, GroupInstanceID: meta.GroupInstanceID, Topics: map[string][]*sarama.PartitionOffsetMetadata{}}
	for _, m := range lasts {
		req.Topics[m.Topic] = append(req.Topics[m.Topic], &sarama.PartitionOffsetMetadata{Partition: m.Partition, Offset: m.Offset + 1, LeaderEpoch: -1, Metadata: metadata})
	}
	return p.retried("TxnOffsetCommit", func() (sarama.KError, error) {
		b, err := p.client.Coordinator(meta.GroupID)
		if err != nil {
			return sarama.ErrNoError, err
		}
		resp, err := b.TxnOffsetCommit(req)
		if err != nil {
			_ = b.Close()
			_ = p.client.RefreshCoordinator(meta.GroupID)
			return sarama.ErrNoError, err
		}
		for _, errs := range resp.Topics {
			for _, pe := range errs {
				if pe.Err != sarama.ErrNoError {
					if pe.Err == sarama.ErrNotCoordinatorForConsumer || pe.Err == sarama.ErrConsumerCoordinatorNotAvailable {
						_ = p.client.RefreshCoordinator(meta.GroupID)
					}
					return pe.Err, nil
				}
			}
		}
		return sarama.ErrNoError, nil
	})
}

func (p *TxnProducer) endTxn(commit bool) error {
	return p.coordinated("EndTxn", func(b *sarama.Broker) (sarama.KError, error) {
		resp, err := b.EndTxn(&sarama.EndTxnRequest{Version: 3, TransactionalID: p.id, ProducerID: p.pid, ProducerEpoch: p.epoch, TransactionResult: commit})
		if err != nil {
			return sarama.ErrNoError, err
		}
		return resp.Err, nil
	})
}

// coordinated sends a request to the transaction coordinator, retrying as
// retried does; a coordinator that cannot be reached or says it is not the
// coordinator any more is looked up again.
func (p *TxnProducer) coordinated(what string, call func(*sarama.Broker) (sarama.KError, error)) error {
	return p.retried(what, func() (sarama.KError, error) {
		b, err := p.client.TransactionCoordinator(p.id)
		if err != nil {
			return sarama.ErrNoError, err
		}
		kerr, err := call(b)
		if err != nil {
			// sarama keeps a connection that failed a read open; a closed
			// one is opened again on its next use.
			_ = b.Close()
		}
		if err != nil || kerr == sarama.ErrNotCoordinatorForConsumer || kerr == sarama.ErrConsumerCoordinatorNotAvailable {
			_ = p.client.RefreshTransactionCoordinator(p.id)
		}
		return kerr, err
	})
}

// retried runs call until it succeeds, fails for good, or has been retried
// Producer.Transaction.Retry.Max times: a network error and the broker's
// retriable errors (CONCURRENT_TRANSACTIONS, a coordinator loading or
// moving) are retried after the configured backoff.
func (p *TxnProducer) retried(what string, call func() (sarama.KError, error)) error {
	retry := p.conf.Producer.Transaction.Retry
	for attempt := 0; ; attempt++ {
		kerr, err := call()
		if err == nil && kerr == sarama.ErrNoError {
			return nil
		}
		if err == nil {
			err = kerr
		}
		if (!lostConnection(err) && !isRetriableTxnError(kerr)) || attempt >= retry.Max {
			return fmt.Errorf("%s: %w", what, err)
		}
		if p.onRetry != nil {
			p.onRetry(what)
		}
		backoff := retry.Backoff
		if retry.BackoffFunc != nil {
			backoff = retry.BackoffFunc(attempt, retry.Max)
		}
		time.Sleep(backoff)
	}
}

// isRetriableTxnError reports whether a coordinator's answer means the
// same request may succeed later.
func isRetriableTxnError(kerr sarama.KError) bool {
	switch kerr {
	case sarama.ErrConcurrentTransactions, sarama.ErrOffsetsLoadInProgress, sarama.ErrNotCoordinatorForConsumer,
		sarama.ErrConsumerCoordinatorNotAvailable, sarama.ErrUnknownTopicOrPartition, sarama.ErrRequestTimedOut,
		sarama.ErrNotEnoughReplicas, sarama.ErrNotEnoughReplicasAfterAppend, sarama.ErrKafkaStorageError,
		sarama.ErrNetworkException, sarama.ErrUnstableOffsetCommit:
		return true
	}
	return false
}

// isFatalTxnError reports whether err leaves the producer unusable: another
// producer took its transactional id, or the broker no longer knows it.
func isFatalTxnError(err error) bool {
	return errors.Is(err, sarama.ErrProducerFenced) || errors.Is(err, sarama.ErrInvalidProducerEpoch) ||
		errors.Is(err, sarama.ErrInvalidProducerIDMapping) || errors.Is(err, sarama.ErrTransactionalIDAuthorizationFailed) ||
		errors.Is(err, sarama.ErrClusterAuthorizationFailed)
}

// outBatch is a batch of the open transaction's records to one partition.
type outBatch struct {
	tp      topicPartition
	batch   *sarama.RecordBatch
	records []*sarama.ProducerMessage
	bytes   int
	err     error // of its last send; nil once acknowledged
}

// produceCall is one Produce request in flight and the batches it carries.
type produceCall struct {
	broker  *sarama.Broker
	done    chan struct{}
	resp    *sarama.ProduceResponse
	err     error
	batches []*outBatch
}

// produce makes the batches of records (grouped by partition, in their
// order, each at most Producer.MaxMessageBytes) and sends them without
// waiting for the answers.
func (p *TxnProducer) produce(records []*sarama.ProducerMessage) error {
	byPartition := map[topicPartition][]*sarama.ProducerMessage{}
	var order []topicPartition
	for _, m := range records {
		tp := topicPartition{m.Topic, m.Partition}
		if _, ok := byPartition[tp]; !ok {
			order = append(order, tp)
		}
		byPartition[tp] = append(byPartition[tp], m)
	}
	var made []*outBatch
	for _, tp := range order {
		for ms := byPartition[tp]; len(ms) > 0; {
			n, size := 0, recordBatchOverhead
			for n < len(ms) {
				next := ms[n].ByteSize(2)
				if n > 0 && size+next > p.conf.Producer.MaxMessageBytes {
					break
				}
				size += next
				n++
			}
			b, err := p.batch(tp, ms[:n])
			if err != nil {
				return err
			}
			made = append(made, &outBatch{tp: tp, batch: b, records: ms[:n], bytes: size})
			ms = ms[n:]
		}
	}
	p.batches = append(p.batches, made...)
	return p.send(made)
}

// send sends batches in as few Produce requests as the limits allow: one
// per leader unless a partition has more than one batch (a request holds
// one batch per partition; the later ones go in later requests, which the
// broker serves in order on the connection) or a request would pass
// maxProduceRequest.
func (p *TxnProducer) send(batches []*outBatch) error {
	type request struct {
		req   *sarama.ProduceRequest
		bytes int
		call  *produceCall
	}
	perLeader := map[int32][]*request{}
	leaders := map[int32]*sarama.Broker{}
	var leaderOrder []int32
	lastRequest := map[topicPartition]int{} // of each partition, the request its latest batch went in
	for _, ob := range batches {
		b, err := p.client.Leader(ob.tp.topic, ob.tp.partition)
		if err != nil {
			return fmt.Errorf("leader of %s/%d: %w", ob.tp.topic, ob.tp.partition, err)
		}
		if _, ok := leaders[b.ID()]; !ok {
			leaders[b.ID()] = b
			leaderOrder = append(leaderOrder, b.ID())
		}
		reqs := perLeader[b.ID()]
		j := 0
		if last, ok := lastRequest[ob.tp]; ok {
			j = last + 1
		}
		for j < len(reqs) && reqs[j].bytes+ob.bytes > maxProduceRequest {
			j++
		}
		if j >= len(reqs) {
			reqs = append(reqs, &request{req: p.newProduceRequest(), call: &produceCall{broker: b, done: make(chan struct{})}})
			j = len(reqs) - 1
		}
		reqs[j].req.AddBatch(ob.tp.topic, ob.tp.partition, ob.batch)
		reqs[j].bytes += ob.bytes
		reqs[j].call.batches = append(reqs[j].call.batches, ob)
		lastRequest[ob.tp] = j
		perLeader[b.ID()] = reqs
		ob.err = errNotSent
	}
	for _, id := range leaderOrder {
		for _, r := range perLeader[id] {
			call := r.call
			err := leaders[id].AsyncProduce(r.req, func(resp *sarama.ProduceResponse, err error) {
				call.resp, call.err = resp, err
				close(call.done)
			})
			if err != nil {
				call.err = err
				close(call.done)
			}
			p.inflight = append(p.inflight, call)
		}
	}
	return nil
}

var errNotSent = errors.New("not sent")

func (p *TxnProducer) newProduceRequest() *sarama.ProduceRequest {
	id := p.id
	// The broker's own timeout comes before the connection's read
	// deadline, so that a slow acknowledgment is an answer, not a lost
	// connection.
	timeout := min(p.conf.Producer.Timeout, p.conf.Net.ReadTimeout/2)
	return &sarama.ProduceRequest{Version: 10, TransactionalID: &id, RequiredAcks: sarama.WaitForAll,
		Timeout: int32(timeout / time.Millisecond)}
}

// batch makes the record batch of ms, the next records of partition tp,
// and moves the partition's sequence past them.
func (p *TxnProducer) batch(tp topicPartition, ms []*sarama.ProducerMessage) (*sarama.RecordBatch, error) {
	now := time.Now().Truncate(time.Millisecond)
	first := ms[0].Timestamp.Truncate(time.Millisecond)
	if first.IsZero() {
		first = now
	}
	b := &sarama.RecordBatch{Version: 2, Codec: p.conf.Producer.Compression, CompressionLevel: p.conf.Producer.CompressionLevel,
		FirstTimestamp: first, MaxTimestamp: first, ProducerID: p.pid, ProducerEpoch: p.epoch, FirstSequence: p.seq[tp],
		IsTransactional: true, LastOffsetDelta: int32(len(ms) - 1), Records: make([]*sarama.Record, len(ms))}
	for i, m := range ms {
		ts := m.Timestamp.Truncate(time.Millisecond)
		if ts.IsZero() {
			ts = now
		}
		r := &sarama.Record{TimestampDelta: ts.Sub(first), OffsetDelta: int64(i)}
		if ts.After(b.MaxTimestamp) {
			b.MaxTimestamp = ts
		}
		var err error
		if m.Key != nil {
			if r.Key, err = m.Key.Encode(); err != nil {
				return nil, fmt.Errorf("encode a record's key: %w", err)
			}
		}
		if m.Value != nil {
			if r.Value, err = m.Value.Encode(); err != nil {
				return nil, fmt.Errorf("encode a record's value: %w", err)
			}
		}
		if len(m.Headers) > 0 {
			r.Headers = make([]*sarama.RecordHeader, len(m.Headers))
			for h := range m.Headers {
				r.Headers[h] = &m.Headers[h]
			}
		}
		b.Records[i] = r
	}
	// Sequences wrap around to 0 after the largest int32, as Kafka's do.
	p.seq[tp] = int32((int64(p.seq[tp]) + int64(len(ms))) % (1 << 31))
	return b, nil
}

// awaitProduces waits for the open transaction's produces. A batch refused
// for a reason that can pass (a leader moving, a broker not reachable, the
// leader's check of the transaction meeting another: NOT_ENOUGH_REPLICAS)
// is sent again with those after it to its partition (same sequences: the
// broker keeps one copy), up to Producer.Retry.Max times after
// Producer.Retry.Backoff. Then every record's Offset is set, or the first
// failure returned.
func (p *TxnProducer) awaitProduces() error {
	for attempt := 0; ; attempt++ {
		closed := map[*sarama.Broker]bool{}
		for _, call := range p.inflight {
			<-call.done
			if call.err != nil && !closed[call.broker] {
				// sarama keeps a connection that failed a read open; a
				// closed one is opened again on its next use.
				_ = call.broker.Close()
				closed[call.broker] = true
			}
			for _, ob := range call.batches {
				ob.err = call.err
				if call.err != nil {
					continue
				}
				blk := call.resp.GetBlock(ob.tp.topic, ob.tp.partition)
				switch {
				case blk == nil:
					ob.err = fmt.Errorf("no answer for the partition")
				case blk.Err == sarama.ErrNoError:
					for i, m := range ob.records {
						m.Offset = blk.Offset + int64(i)
					}
				case blk.Err == sarama.ErrDuplicateSequenceNumber:
					// a copy sent before was written; its offset is not told
				default:
					ob.err = blk.Err
				}
			}
		}
		p.inflight = p.inflight[:0]
		var resend []*outBatch
		failed := map[topicPartition]bool{}
		for _, ob := range p.batches {
			if ob.err == nil {
				continue
			}
			// A batch after a failed one of its partition is refused out
			// of sequence: it goes again with it.
			if !failed[ob.tp] && !retriableProduceError(ob.err) || attempt >= p.conf.Producer.Retry.Max {
				return p.fail(fmt.Errorf("produce to %s/%d: %w", ob.tp.topic, ob.tp.partition, ob.err))
			}
			failed[ob.tp] = true
			resend = append(resend, ob)
		}
		if len(resend) == 0 {
			return nil
		}
		if p.onRetry != nil {
			p.onRetry("Produce")
		}
		_ = p.client.RefreshMetadata()
		time.Sleep(p.conf.Producer.Retry.Backoff)
		if err := p.send(resend); err != nil {
			return p.fail(err)
		}
	}
}

// retriableProduceError reports whether a produce refused with err may be
// taken when sent again.
func retriableProduceError(err error) bool {
	return lostConnection(err) || errors.Is(err, sarama.ErrNotLeaderForPartition) || errors.Is(err, sarama.ErrLeaderNotAvailable) ||
		errors.Is(err, sarama.ErrUnknownTopicOrPartition) || errors.Is(err, sarama.ErrNotEnoughReplicas) ||
		errors.Is(err, sarama.ErrNotEnoughReplicasAfterAppend) || errors.Is(err, sarama.ErrRequestTimedOut) ||
		errors.Is(err, sarama.ErrKafkaStorageError) || errors.Is(err, sarama.ErrNetworkException)
}

// lostConnection reports whether err means the request's connection failed
// (the broker may be back, or the partition's leader elsewhere).
func lostConnection(err error) bool {
	return IsUnavailable(err) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

func contains(tps []topicPartition, tp topicPartition) bool {
	for _, x := range tps {
		if x == tp {
			return true
		}
	}
	return false
}
