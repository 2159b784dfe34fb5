package kafka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

// The dead-letter topic's readers and its replayer (`deadletters list`,
// `show`, `replay`). A dead letter is named by its DeadLetterID. A replay
// writes the dead letter's record back to its source topic and partition and,
// in the same transaction, a replay mark to the dead letter's partition of
// the dead-letter topic: the mark is how any later process knows it was
// replayed (the dead-letter topic is kept 30 days, and a mark is younger than
// its dead letter, so it is kept as long). Replayers share one transactional
// id (ReplayTransactionalID): a replayer fences the ones before it, and reads
// the marks only after that, so two replays of one dead letter cannot both
// commit.

// DeadLetterID names a dead letter: its partition and offset in the
// dead-letter topic, written "partition/offset".
type DeadLetterID struct {
	Partition int32
	Offset    int64
}

func (id DeadLetterID) String() string { return fmt.Sprintf("%d/%d", id.Partition, id.Offset) }

// ParseDeadLetterID reads "partition/offset", or a bare "offset" (hasPartition
// false: the caller looks for the partition that holds it).
func ParseDeadLetterID(s string) (id DeadLetterID, hasPartition bool, err error) {
	ps, os, hasPartition := strings.Cut(s, "/")
	if !hasPartition {
		ps, os = "0", s
	}
	p, perr := strconv.ParseInt(ps, 10, 32)
	o, oerr := strconv.ParseInt(os, 10, 64)
	if perr != nil || oerr != nil || p < 0 || o < 0 {
		return id, false, fmt.Errorf("%q is not a dead letter's OFFSET or PARTITION/OFFSET (as `deadletters list` shows them)", cutText(s, 40))
	}
	return DeadLetterID{Partition: int32(p), Offset: o}, hasPartition, nil
}

// Replay marks. A mark has no dead-letter source header (every dead letter
// has one) and HeaderDLMark; its key starts with a NUL byte, which no order
// id has.
const (
	HeaderDLMark     = "dlq-mark"
	markReplayed     = "replayed"
	markScan         = "scan" // written by a replayer to read a partition up to it
	replayedKeyStart = "\x00replayed\x00"
	scanKeyStart     = "\x00scan\x00"
)

// ReplayMark records one replay of a dead letter: where its record was
// written back to, when, and whether the replay was forced (the dead letter
// had been replayed before).
type ReplayMark struct {
	Of        DeadLetterID `json:"-"`
	OfText    string       `json:"of"`
	Topic     string       `json:"topic"`
	Partition int32        `json:"partition"`
	Offset    int64        `json:"offset"`
	At        time.Time    `json:"at"`
	Forced    bool         `json:"forced,omitempty"`
}

// DeadLetterRecord is a record of the dead-letter topic that is a dead
// letter (not a mark).
type DeadLetterRecord struct {
	ID      DeadLetterID
	Time    time.Time // when it was set aside
	Key     []byte
	Value   []byte
	Headers []*sarama.RecordHeader
}

func (r *DeadLetterRecord) header(key string) string {
	for _, h := range r.Headers {
		if h != nil && string(h.Key) == key {
			return string(h.Value)
		}
	}
	return ""
}

// Source is where the record was read when it was set aside; partition and
// offset are -1 when the headers do not say.
func (r *DeadLetterRecord) Source() (topic string, partition int32, offset int64) {
	topic = r.header(HeaderDLTopic)
	p, err := strconv.ParseInt(r.header(HeaderDLPartition), 10, 32)
	if err != nil {
		p = -1
	}
	offset, err = strconv.ParseInt(r.header(HeaderDLOffset), 10, 64)
	if err != nil {
		offset = -1
	}
	return topic, int32(p), offset
}

// Reason is the dead letter's reason code (ReasonUnknown for one written
// before the codes existed).
func (r *DeadLetterRecord) Reason() string {
	if c := r.header(HeaderDLReason); c != "" {
		return c
	}
	return ReasonUnknown
}

// Error is why it was set aside (at most 1 KiB).
func (r *DeadLetterRecord) Error() string { return r.header(HeaderDLError) }

// ReplayOf is the dead letter this record's source record replayed, if it
// was a replay.
func (r *DeadLetterRecord) ReplayOf() (DeadLetterID, bool) {
	id, full, err := ParseDeadLetterID(r.header(HeaderDLReplayOf))
	return id, err == nil && full
}

// decodeRecord sorts a consumed record into a dead letter or a mark (both
// nil for a scan mark or a mark it cannot read).
func decodeRecord(m *sarama.ConsumerMessage) (*DeadLetterRecord, *ReplayMark) {
	if Header(m, HeaderDLTopic) == "" && Header(m, HeaderDLMark) != "" {
		if Header(m, HeaderDLMark) != markReplayed {
			return nil, nil
		}
		var mark ReplayMark
		if json.Unmarshal(m.Value, &mark) != nil {
			return nil, nil
		}
		id, full, err := ParseDeadLetterID(mark.OfText)
		if err != nil || !full || id.Partition != m.Partition {
			return nil, nil
		}
		mark.Of = id
		return nil, &mark
	}
	return &DeadLetterRecord{ID: DeadLetterID{Partition: m.Partition, Offset: m.Offset}, Time: m.Timestamp, Key: m.Key, Value: m.Value, Headers: m.Headers}, nil
}

// ErrNoDeadLetter is an id that names no dead letter.
var ErrNoDeadLetter = errors.New("no such dead letter")

// DeadLetterReader reads the dead-letter topic (read_committed).
type DeadLetterReader struct {
	Client sarama.Client
	Topic  string
	// Idle is how long a partition's reading may go without a record,
	// once the broker's high watermark is at the end taken at the start,
	// before it counts as read to its end (the end offset may be a
	// transaction's commit marker, which readers never see). Default 300 ms.
	Idle time.Duration
}

// stuckAfter bounds how long reading a partition may go without a record
// before it fails.
const stuckAfter = 30 * time.Second

// Partitions are the dead-letter topic's partitions; an error wrapping
// sarama.ErrUnknownTopicOrPartition when it does not exist.
func (r *DeadLetterReader) Partitions() ([]int32, error) {
	if err := r.Client.RefreshMetadata(r.Topic); err != nil {
		return nil, err
	}
	return r.Client.Partitions(r.Topic)
}

// Scan reads partitions from their oldest record and calls fn, one call at
// a time, for each dead letter (rec) and replay mark (mark), in offset
// order within a partition. Without until, a partition is read up to its
// last stable offset when Scan starts; with until[p], partition p is read
// up to the record keyed until[p] (a scan mark, see Replayer.Fence). fn's
// error ends the scan.
func (r *DeadLetterReader) Scan(ctx context.Context, partitions []int32, until map[int32]string, fn func(rec *DeadLetterRecord, mark *ReplayMark) error) error {
	consumer, err := sarama.NewConsumerFromClient(r.Client)
	if err != nil {
		return err
	}
	defer consumer.Close()
	ends, err := LastStableOffsets(r.Client, r.Topic, partitions)
	if err != nil {
		return fmt.Errorf("end offsets of %s: %w", r.Topic, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu   sync.Mutex // one fn at a time
		wg   sync.WaitGroup
		errs = make([]error, len(partitions))
	)
	for i, p := range partitions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = r.scanPartition(ctx, consumer, p, ends[p], until[p], func(m *sarama.ConsumerMessage) error {
				rec, mark := decodeRecord(m)
				if rec == nil && mark == nil {
					return nil
				}
				mu.Lock()
				defer mu.Unlock()
				return fn(rec, mark)
			})
			if errs[i] != nil {
				cancel()
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
	}
	return errors.Join(errs...)
}

func (r *DeadLetterReader) scanPartition(ctx context.Context, consumer sarama.Consumer, p int32, end int64, until string, handle func(*sarama.ConsumerMessage) error) error {
	if until == "" {
		low, err := r.Client.GetOffset(r.Topic, p, sarama.OffsetOldest)
		if err != nil {
			return fmt.Errorf("oldest offset of %s/%d: %w", r.Topic, p, err)
		}
		if end <= low {
			return nil // empty
		}
	}
	pc, err := ConsumeWhenLed(r.Client, consumer, r.Topic, p, sarama.OffsetOldest)
	if err != nil {
		return fmt.Errorf("read %s/%d: %w", r.Topic, p, err)
	}
	defer pc.Close()
	idle := r.Idle
	if idle <= 0 {
		idle = 300 * time.Millisecond
	}
	tick := time.NewTicker(idle / 3)
	defer tick.Stop()
	last := time.Now()
	for {
		select {
		case m := <-pc.Messages():
			last = time.Now()
			if until != "" && string(m.Key) == until {
				return nil
			}
			if until == "" && m.Offset >= end {
				return nil // written after the scan started
			}
			if err := handle(m); err != nil {
				return err
			}
			if until == "" && m.Offset >= end-1 {
				return nil
			}
		case err := <-pc.Errors():
			return fmt.Errorf("read %s/%d: %w", r.Topic, p, err)
		case <-tick.C:
			quiet := time.Since(last)
			if until == "" && quiet >= idle && pc.HighWaterMarkOffset() >= end {
				return nil
			}
			if quiet > stuckAfter {
				return fmt.Errorf("read %s/%d: no record for %s before its end", r.Topic, p, stuckAfter)
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Get reads the dead letter id; ErrNoDeadLetter if there is none there (a
// mark, an offset out of the partition's range, a record that expired).
func (r *DeadLetterReader) Get(ctx context.Context, id DeadLetterID) (*DeadLetterRecord, error) {
	low, err := r.Client.GetOffset(r.Topic, id.Partition, sarama.OffsetOldest)
	if err != nil {
		return nil, fmt.Errorf("oldest offset of %s/%d: %w", r.Topic, id.Partition, err)
	}
	ends, err := LastStableOffsets(r.Client, r.Topic, []int32{id.Partition})
	if err != nil {
		return nil, fmt.Errorf("end offset of %s/%d: %w", r.Topic, id.Partition, err)
	}
	if id.Offset < low || id.Offset >= ends[id.Partition] {
		return nil, ErrNoDeadLetter
	}
	consumer, err := sarama.NewConsumerFromClient(r.Client)
	if err != nil {
		return nil, err
	}
	defer consumer.Close()
	pc, err := ConsumeWhenLed(r.Client, consumer, r.Topic, id.Partition, id.Offset)
	if err != nil {
		return nil, fmt.Errorf("read %s/%d: %w", r.Topic, id.Partition, err)
	}
	defer pc.Close()
	wait := time.NewTimer(5 * time.Second) // the offset may be an aborted record's, with nothing after it
	defer wait.Stop()
	select {
	case m := <-pc.Messages():
		if m.Offset != id.Offset {
			return nil, ErrNoDeadLetter
		}
		if rec, _ := decodeRecord(m); rec != nil {
			return rec, nil
		}
		return nil, ErrNoDeadLetter
	case err := <-pc.Errors():
		return nil, fmt.Errorf("read %s/%d: %w", r.Topic, id.Partition, err)
	case <-wait.C:
		return nil, ErrNoDeadLetter
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Locate finds the partition of a bare offset: the one partition whose
// offsets hold it. It fails naming the candidates when several do.
func (r *DeadLetterReader) Locate(offset int64) (DeadLetterID, error) {
	parts, err := r.Partitions()
	if err != nil {
		return DeadLetterID{}, err
	}
	var found []int32
	for _, p := range parts {
		low, err1 := r.Client.GetOffset(r.Topic, p, sarama.OffsetOldest)
		high, err2 := r.Client.GetOffset(r.Topic, p, sarama.OffsetNewest)
		if err := errors.Join(err1, err2); err != nil {
			return DeadLetterID{}, fmt.Errorf("offsets of %s/%d: %w", r.Topic, p, err)
		}
		if offset >= low && offset < high {
			found = append(found, p)
		}
	}
	switch len(found) {
	case 0:
		return DeadLetterID{}, ErrNoDeadLetter
	case 1:
		return DeadLetterID{Partition: found[0], Offset: offset}, nil
	}
	names := make([]string, len(found))
	for i, p := range found {
		names[i] = DeadLetterID{Partition: p, Offset: offset}.String()
	}
	return DeadLetterID{}, fmt.Errorf("offset %d is in %d partitions of %s: name one of %s", offset, len(found), r.Topic, strings.Join(names, ", "))
}

// ReplayTransactionalID is the transactional id every replayer of the
// topics with prefix uses: a replayer fences those before it.
func ReplayTransactionalID(prefix string) string { return prefix + ".deadletters.replay" }

// Replayer writes dead letters back to their source topics, each with its
// replay mark in one transaction.
type Replayer struct {
	producer sarama.SyncProducer
	topic    string // the dead-letter topic
}

// NewReplayer starts the transactional producer, which fences any replayer
// of the same id before it (its open transaction is aborted). cfg is the
// base configuration (Security.Config).
func NewReplayer(brokers []string, cfg *sarama.Config, deadLetterTopic, transactionalID string) (*Replayer, error) {
	cfg.Producer.Transaction.ID = transactionalID
	// A replayer killed in a transaction holds the source partition's
	// readers (read_committed) until the broker aborts it, or the next
	// replayer fences it.
	cfg.Producer.Transaction.Timeout = 10 * time.Second
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	cfg.Producer.Return.Successes = true
	p, err := sarama.NewSyncProducer(brokers, cfg)
	if err != nil {
		return nil, err
	}
	return &Replayer{producer: p, topic: deadLetterTopic}, nil
}

// Close closes the producer.
func (r *Replayer) Close() error { return r.producer.Close() }

// Fence writes a scan mark to each of partitions in one transaction and
// returns their keys, for Scan's until: every mark committed before this
// replayer started is before its scan mark.
func (r *Replayer) Fence(partitions []int32) (map[int32]string, error) {
	keys := map[int32]string{}
	var msgs []*sarama.ProducerMessage
	stamp := strconv.FormatInt(time.Now().UnixNano(), 36)
	for _, p := range partitions {
		keys[p] = scanKeyStart + stamp
		msgs = append(msgs, &sarama.ProducerMessage{Topic: r.topic, Partition: p, Key: sarama.StringEncoder(keys[p]),
			Headers: []sarama.RecordHeader{{Key: []byte(HeaderDLMark), Value: []byte(markScan)}}})
	}
	return keys, r.txn(func() error { return r.producer.SendMessages(msgs) })
}

// Replay writes msg (rec's record, as ReplayMessage makes it) and rec's
// replay mark in one transaction.
func (r *Replayer) Replay(rec *DeadLetterRecord, msg *sarama.ProducerMessage, forced bool) (ReplayMark, error) {
	mark := ReplayMark{Of: rec.ID, OfText: rec.ID.String(), Topic: msg.Topic, Forced: forced}
	err := r.txn(func() error {
		p, o, err := r.producer.SendMessage(msg)
		if err != nil {
			return err
		}
		mark.Partition, mark.Offset, mark.At = p, o, time.Now().UTC().Truncate(time.Millisecond)
		v, _ := json.Marshal(mark)
		_, _, err = r.producer.SendMessage(&sarama.ProducerMessage{Topic: r.topic, Partition: rec.ID.Partition,
			Key: sarama.StringEncoder(replayedKeyStart + rec.ID.String()), Value: sarama.ByteEncoder(v),
			Headers: []sarama.RecordHeader{{Key: []byte(HeaderDLMark), Value: []byte(markReplayed)}}})
		return err
	})
	return mark, err
}

func (r *Replayer) txn(f func() error) error {
	if err := r.producer.BeginTxn(); err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	err := f()
	if err == nil {
		err = r.producer.CommitTxn()
	}
	if err != nil {
		if r.producer.TxnStatus()&sarama.ProducerTxnFlagAbortableError != 0 || r.producer.TxnStatus()&sarama.ProducerTxnFlagInTransaction != 0 {
			_ = r.producer.AbortTxn()
		}
		if errors.Is(err, sarama.ErrProducerFenced) {
			return errors.New("another `deadletters replay` started meanwhile (this one was fenced); nothing was replayed by this transaction")
		}
		return fmt.Errorf("commit transaction: %w", err)
	}
	return nil
}

// ReplayMessage is the record a replay of rec writes: rec's key, value and
// headers (without its dead-letter headers, with HeaderDLReplayOf naming
// rec), to its source topic and partition, which must be one of topics.
func ReplayMessage(rec *DeadLetterRecord, topics []string) (*sarama.ProducerMessage, error) {
	topic, partition, _ := rec.Source()
	ok := false
	for _, t := range topics {
		ok = ok || t == topic
	}
	switch {
	case !ok:
		return nil, fmt.Errorf("dead letter %s came from %q, not from %s: it cannot be replayed", rec.ID, cutText(topic, 60), strings.Join(topics, " or "))
	case partition < 0:
		return nil, fmt.Errorf("dead letter %s does not say which partition of %s it came from", rec.ID, topic)
	case rec.Value == nil:
		_, _, offset := rec.Source()
		return nil, fmt.Errorf("dead letter %s has no value (its copy was too large for the dead-letter topic): the original is at %s/%d/%d while that topic keeps it", rec.ID, topic, partition, offset)
	}
	headers := make([]sarama.RecordHeader, 0, len(rec.Headers)+1)
	for _, h := range rec.Headers {
		if h != nil && !strings.HasPrefix(string(h.Key), headerDLPrefix) {
			headers = append(headers, *h)
		}
	}
	headers = append(headers, sarama.RecordHeader{Key: []byte(HeaderDLReplayOf), Value: []byte(rec.ID.String())})
	var key sarama.Encoder
	if rec.Key != nil {
		key = sarama.ByteEncoder(rec.Key)
	}
	return &sarama.ProducerMessage{Topic: topic, Partition: partition, Key: key, Value: sarama.ByteEncoder(rec.Value), Headers: headers}, nil
}

func cutText(s string, n int) string {
	if len(s) > n {
		return strings.ToValidUTF8(s[:n], "") + "…"
	}
	return s
}
