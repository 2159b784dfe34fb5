package command

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/ordergateway/gateway/kafka"
)

// The transactional producer (kafka.TxnProducer) against the test broker:
// what read_committed readers and the group's committed offsets show after
// committed, aborted and failed transactions.

func newTestTxnProducer(t *testing.T, id string, change func(*sarama.Config)) *kafka.TxnProducer {
	t.Helper()
	conf := kafka.Config("txn-test", 20*time.Millisecond)
	conf.Producer.Transaction.Retry.Max = 50
	conf.Producer.Transaction.Retry.BackoffFunc = func(retries, _ int) time.Duration {
		return min(2*time.Millisecond<<min(retries, 7), 250*time.Millisecond)
	}
	if change != nil {
		change(conf)
	}
	p, err := kafka.NewTxnProducer(testBrokers, conf, id, 10*time.Second, nil)
	if err != nil {
		t.Fatalf("transactional producer: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// keyed is a record keyed key to partition 0 of topic.
func keyed(topic, key string) *sarama.ProducerMessage {
	return &sarama.ProducerMessage{Topic: topic, Partition: 0, Key: sarama.StringEncoder(key)}
}

// committedKeys is what read_committed readers see in partition p of
// topic: the records' keys, comma-separated.
func committedKeys(t *testing.T, topic string, p int32) string {
	t.Helper()
	var keys []string
	for _, m := range readPartition(t, topic, p, sarama.ReadCommitted, time.Second) {
		keys = append(keys, string(m.Key))
	}
	return strings.Join(keys, ",")
}

func committedOffsets(t *testing.T, group, topic string, parts []int32) map[int32]int64 {
	t.Helper()
	admin, err := sarama.NewClusterAdmin(testBrokers, kafka.Config("test-admin", 20*time.Millisecond))
	if err != nil {
		t.Fatalf("admin: %v", err)
	}
	defer admin.Close()
	offs, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: parts})
	if err != nil {
		t.Fatalf("committed offsets: %v", err)
	}
	out := map[int32]int64{}
	for _, p := range parts {
		if b := offs.GetBlock(topic, p); b != nil && b.Err == sarama.ErrNoError {
			out[p] = b.Offset
		}
	}
	return out
}

// Many transactions over three partitions of two topics, with the consumer
// offsets of a third: every committed record is read back in order, at the
// offset the producer reported, the group's offsets are the last ones
// committed, and an aborted transaction's records and offsets are not seen.
func TestTxnProducerCommitsRecordsAndOffsets(t *testing.T) {
	topics := testTopics(t, "txn", 3)
	group := topics.Commands + ".group"
	meta := sarama.NewConsumerGroupMetadata(group)
	p := newTestTxnProducer(t, topics.Commands+".txn", nil)

	type sent struct{ topic, key string }
	want := map[string]map[int32][]sent{topics.Events: {}, topics.Snapshots: {}}
	var reported []*sarama.ProducerMessage
	next := int64(0)
	for txn := 0; txn < 30; txn++ {
		var records []*sarama.ProducerMessage
		for i := 0; i < 1+txn%4; i++ {
			for _, topic := range []string{topics.Events, topics.Snapshots} {
				part := int32((txn + i) % 3)
				key := fmt.Sprintf("t%d-%d", txn, i)
				records = append(records, &sarama.ProducerMessage{Topic: topic, Partition: part, Key: sarama.StringEncoder(key),
					Value: sarama.ByteEncoder(strings.Repeat("v", txn*10)), Headers: []sarama.RecordHeader{{Key: []byte("h"), Value: []byte(key)}}})
				want[topic][part] = append(want[topic][part], sent{topic, key})
			}
		}
		var lasts []*sarama.ConsumerMessage
		for part := int32(0); part < 3; part++ {
			lasts = append(lasts, &sarama.ConsumerMessage{Topic: topics.Commands, Partition: part, Offset: next})
		}
		next++
		if err := p.Run(records, lasts, meta, nil); err != nil {
			t.Fatalf("transaction %d: %v", txn, err)
		}
		reported = append(reported, records...)
		if txn == 10 {
			// An aborted transaction in the middle: its records and offsets vanish.
			if err := p.Begin(); err != nil {
				t.Fatal(err)
			}
			aborted := []*sarama.ProducerMessage{{Topic: topics.Events, Partition: 1, Key: sarama.StringEncoder("aborted")}}
			if err := p.Send(aborted); err != nil {
				t.Fatal(err)
			}
			if err := p.SendOffsets([]*sarama.ConsumerMessage{{Topic: topics.Commands, Partition: 1, Offset: 1000}}, meta, nil); err != nil {
				t.Fatal(err)
			}
			if err := p.Abort(); err != nil {
				t.Fatalf("abort: %v", err)
			}
		}
	}

	offsetOf := map[string]int64{}
	for _, m := range reported {
		k, _ := m.Key.Encode()
		offsetOf[m.Topic+"/"+string(k)] = m.Offset
	}
	for topic, parts := range want {
		for part, records := range parts {
			got := readPartition(t, topic, part, sarama.ReadCommitted, time.Second)
			if len(got) != len(records) {
				t.Errorf("%s/%d: read %d records, committed %d", topic, part, len(got), len(records))
				continue
			}
			for i, m := range got {
				if string(m.Key) != records[i].key {
					t.Errorf("%s/%d: record %d is %q, want %q", topic, part, i, m.Key, records[i].key)
					break
				}
				if off := offsetOf[topic+"/"+string(m.Key)]; off != m.Offset {
					t.Errorf("%s/%d: %q read at offset %d, the producer reported %d", topic, part, m.Key, m.Offset, off)
					break
				}
				if len(m.Headers) != 1 || string(m.Headers[0].Value) != string(m.Key) {
					t.Errorf("%s/%d: %q has headers %v", topic, part, m.Key, m.Headers)
					break
				}
			}
		}
	}
	if got := committedOffsets(t, group, topics.Commands, []int32{0, 1, 2}); got[0] != next || got[1] != next || got[2] != next {
		t.Errorf("committed offsets %v, want %d each", got, next)
	}
}

// A transaction whose partition's records exceed Producer.MaxMessageBytes
// goes in several batches and requests, in order; a record larger than it
// is refused before anything is sent, and the next transaction commits.
func TestTxnProducerSplitsLargeTransactions(t *testing.T) {
	topics := testTopics(t, "txnsplit", 2)
	p := newTestTxnProducer(t, topics.Commands+".txn", func(c *sarama.Config) { c.Producer.MaxMessageBytes = 16 << 10 })
	var records []*sarama.ProducerMessage
	for i := 0; i < 40; i++ {
		records = append(records, &sarama.ProducerMessage{Topic: topics.Events, Partition: int32(i % 2),
			Key: sarama.StringEncoder(fmt.Sprintf("k%02d", i)), Value: sarama.ByteEncoder(strings.Repeat("x", 2<<10))})
	}
	if err := p.Run(records, nil, nil, nil); err != nil {
		t.Fatalf("large transaction: %v", err)
	}

	huge := &sarama.ProducerMessage{Topic: topics.Events, Partition: 0, Key: sarama.StringEncoder("huge"), Value: sarama.ByteEncoder(make([]byte, 17<<10))}
	err := p.Run([]*sarama.ProducerMessage{{Topic: topics.Events, Partition: 1, Key: sarama.StringEncoder("with-huge")}, huge}, nil, nil, nil)
	if err == nil || !kafka.IsTooLarge(err) || !kafka.IsRefused(err) {
		t.Fatalf("a record over MaxMessageBytes: %v, want a refusal for its size", err)
	}
	if err := p.Run([]*sarama.ProducerMessage{{Topic: topics.Events, Partition: 1, Key: sarama.StringEncoder("after")}}, nil, nil, nil); err != nil {
		t.Fatalf("the transaction after the refusal: %v", err)
	}

	for part := int32(0); part < 2; part++ {
		var wantKeys []string
		for i := int(part); i < 40; i += 2 {
			wantKeys = append(wantKeys, fmt.Sprintf("k%02d", i))
		}
		if part == 1 {
			wantKeys = append(wantKeys, "after")
		}
		if got, want := committedKeys(t, topics.Events, part), strings.Join(wantKeys, ","); got != want {
			t.Errorf("events/%d: read %s, want %s", part, got, want)
		}
	}
}

// A failed transaction (a partition that does not exist) is aborted, and
// the producer, initialised again, commits the next one; nothing of the
// failed one is seen.
func TestTxnProducerRecoversAfterAFailedTransaction(t *testing.T) {
	topics := testTopics(t, "txnfail", 1)
	p := newTestTxnProducer(t, topics.Commands+".txn", func(c *sarama.Config) { c.Producer.Transaction.Retry.Max = 2 })
	if err := p.Run([]*sarama.ProducerMessage{keyed(topics.Events, "first")}, nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	err := p.Run([]*sarama.ProducerMessage{
		{Topic: topics.Events, Partition: 0, Key: sarama.StringEncoder("failed")},
		{Topic: topics.Events, Partition: 7, Key: sarama.StringEncoder("nowhere")},
	}, nil, nil, nil)
	if err == nil {
		t.Fatal("a transaction with a partition that does not exist committed")
	}
	t.Logf("failed transaction: %v", err)
	if p.Fatal() != nil {
		t.Fatalf("a failed transaction made the producer unusable: %v", p.Fatal())
	}
	if err := p.Run([]*sarama.ProducerMessage{keyed(topics.Events, "second")}, nil, nil, nil); err != nil {
		t.Fatalf("the transaction after a failed one: %v", err)
	}
	if got := committedKeys(t, topics.Events, 0); got != "first,second" {
		t.Errorf("read_committed: %s, want first,second", got)
	}
}

// A second producer with the same transactional id fences the first: its
// transaction fails, the failure is fatal, and it refuses to begin another.
func TestTxnProducerIsFencedByItsSuccessor(t *testing.T) {
	topics := testTopics(t, "txnfence", 1)
	id := topics.Commands + ".txn"
	old := newTestTxnProducer(t, id, nil)
	if err := old.Run([]*sarama.ProducerMessage{keyed(topics.Events, "old")}, nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	successor := newTestTxnProducer(t, id, nil)
	err := old.Run([]*sarama.ProducerMessage{keyed(topics.Events, "zombie")}, nil, nil, nil)
	if err == nil {
		t.Fatal("the fenced producer committed")
	}
	if !errors.Is(err, sarama.ErrProducerFenced) && !errors.Is(err, sarama.ErrInvalidProducerEpoch) {
		t.Errorf("the fenced producer's error: %v, want PRODUCER_FENCED or INVALID_PRODUCER_EPOCH", err)
	}
	if old.Fatal() == nil {
		t.Error("the fenced producer does not report itself unusable")
	}
	if err := old.Begin(); err == nil {
		t.Error("the fenced producer began another transaction")
	}
	if err := successor.Run([]*sarama.ProducerMessage{keyed(topics.Events, "new")}, nil, nil, nil); err != nil {
		t.Fatalf("the successor: %v", err)
	}
	if got := committedKeys(t, topics.Events, 0); got != "old,new" {
		t.Errorf("read_committed: %s, want old,new", got)
	}
}

// lostEndTxnDialer connects sarama to the broker and, once armed, closes a
// connection right after it carries an EndTxn request: the broker gets the
// request, the producer never gets its answer.
type lostEndTxnDialer struct {
	net.Dialer
	armed atomic.Bool
}

func (d *lostEndTxnDialer) Dial(network, addr string) (net.Conn, error) {
	c, err := d.Dialer.Dial(network, addr)
	if err != nil {
		return nil, err
	}
	return &lostEndTxnConn{Conn: c, d: d}, nil
}

type lostEndTxnConn struct {
	net.Conn
	d *lostEndTxnDialer
}

const apiKeyEndTxn = 26

func (c *lostEndTxnConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	// sarama writes each request whole: its size, then its API key.
	if c.d.armed.Load() && len(b) >= 6 && binary.BigEndian.Uint16(b[4:6]) == apiKeyEndTxn {
		_ = c.Conn.Close()
	}
	return n, err
}

// A commit whose EndTxn answer never comes is not aborted and not retried
// by the caller: it fails with ErrCommitUnknown and the producer is fatal
// (the session then ends and restores from the topics, as after a crash).
func TestTxnProducerCommitWithoutAnswer(t *testing.T) {
	topics := testTopics(t, "txnlost", 1)
	dialer := &lostEndTxnDialer{Dialer: net.Dialer{Timeout: 3 * time.Second}}
	p := newTestTxnProducer(t, topics.Commands+".txn", func(c *sarama.Config) {
		c.Net.Proxy.Enable, c.Net.Proxy.Dialer = true, dialer
		c.Producer.Transaction.Retry.Max = 2
	})
	if err := p.Run([]*sarama.ProducerMessage{keyed(topics.Events, "answered")}, nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	dialer.armed.Store(true)
	err := p.Run([]*sarama.ProducerMessage{keyed(topics.Events, "unanswered")}, nil, nil, nil)
	t.Logf("commit without an answer: %v", err)
	if !errors.Is(err, kafka.ErrCommitUnknown) {
		t.Fatalf("commit without an answer: %v, want ErrCommitUnknown", err)
	}
	if !errors.Is(p.Fatal(), kafka.ErrCommitUnknown) {
		t.Errorf("the producer goes on after a commit of unknown outcome (Fatal: %v)", p.Fatal())
	}
	if err := p.Begin(); err == nil {
		t.Error("the producer began another transaction after a commit of unknown outcome")
	}
}
