package embedded

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ordergateway/gateway/kafka"
)

// The broker is "killed" by copying its folder while it runs (kfake writes
// without buffering, so the copy is what a kill -9 at that moment leaves)
// and starting another broker on the copy.

// TestHalfWrittenCommitIsFinishedAfterAKill: a commit whose marker reached
// one of its two partitions when the broker died is finished on restart, so
// both records are visible; kfake alone (no journal) aborts the other one.
func TestHalfWrittenCommitIsFinishedAfterAKill(t *testing.T) {
	k, dir := startTestKafka(t)
	createTopic(t, k.Addr(), "t", 2)

	// EndTxn reaches the journal, then the test holds it unanswered and
	// writes the commit marker of partition 0 alone: the moment kfake's
	// EndTxn is between its two markers.
	held := make(chan *kmsg.EndTxnRequest, 1)
	k.cluster.ControlKey(kmsg.EndTxn.Int16(), func(r kmsg.Request) (kmsg.Response, error, bool) {
		k.cluster.KeepControl()
		select {
		case held <- r.(*kmsg.EndTxnRequest):
		default:
		}
		return nil, nil, true
	})
	producer := transactionalProducer(t, k.Addr())
	produceInTxn(t, producer, "t", map[int32]string{0: "a", 1: "b"})
	go func() { _ = producer.EndTransaction(context.Background(), kgo.TryCommit) }()
	var end *kmsg.EndTxnRequest
	select {
	case end = <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("EndTxn did not reach the broker")
	}
	writeMarker(t, k.Addr(), end.ProducerID, end.ProducerEpoch, true, "t", 0)

	killed := copyDir(t, dir)
	withoutJournal := copyDir(t, dir)
	if err := os.Remove(filepath.Join(withoutJournal, commitJournalName)); err != nil {
		t.Fatal(err)
	}

	if got := committedValues(t, killed, "t", 2); !slices.Equal(got[0], []string{"a"}) || !slices.Equal(got[1], []string{"b"}) {
		t.Errorf("after the kill, committed records are %v, want partition 0 [a] and partition 1 [b]", got)
	}
	// What the journal prevents: kfake alone aborts the partition whose
	// marker was not written.
	if got := committedValues(t, withoutJournal, "t", 2); !slices.Equal(got[0], []string{"a"}) || len(got[1]) != 0 {
		t.Errorf("without the journal, committed records are %v; expected kfake to abort partition 1's (if this changed, kfake may finish commits itself now)", got)
	}
}

// TestUncommittedTransactionIsAbortedAfterAKill: a transaction whose commit
// had not begun is aborted on restart, and the one committed before it
// stays. The producer is sarama's, as the command handler's: it keeps its
// producer id and epoch from one transaction to the next, so only the
// journal's record of the second one's start keeps the broker from taking
// its records for the first one's unfinished commit.
func TestUncommittedTransactionIsAbortedAfterAKill(t *testing.T) {
	k, dir := startTestKafka(t)
	createTopic(t, k.Addr(), "t", 2)
	producer := saramaTxnProducer(t, k.Addr())
	inSaramaTxn(t, producer, "committed-0", "committed-1")
	if err := producer.CommitTxn(); err != nil {
		t.Fatal(err)
	}
	inSaramaTxn(t, producer, "open-0", "open-1")

	got := committedValues(t, copyDir(t, dir), "t", 2)
	if !slices.Equal(got[0], []string{"committed-0"}) || !slices.Equal(got[1], []string{"committed-1"}) {
		t.Errorf("after the kill, committed records are %v, want only the first transaction's", got)
	}
}

// TestRecordWithoutItsIndexEntryStaysUncommittedAfterAKill: kfake writes a
// batch and then its index entry; a kill between the two leaves the last
// batch without an entry, which kfake alone would load as outside any
// transaction, making an uncommitted record visible.
func TestRecordWithoutItsIndexEntryStaysUncommittedAfterAKill(t *testing.T) {
	k, dir := startTestKafka(t)
	createTopic(t, k.Addr(), "t", 1)
	producer := saramaTxnProducer(t, k.Addr())
	inSaramaTxn(t, producer, "committed")
	if err := producer.CommitTxn(); err != nil {
		t.Fatal(err)
	}
	inSaramaTxn(t, producer, "open")

	killed := copyDir(t, dir)
	pdir := filepath.Join(killed, "partitions", "t-0")
	bases, err := segmentBases(pdir)
	if err != nil || len(bases) == 0 {
		t.Fatalf("segments of t-0: %v %v", bases, err)
	}
	idx := filepath.Join(pdir, fmt.Sprintf("%d.idx", bases[len(bases)-1]))
	info, err := os.Stat(idx)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(idx, info.Size()-indexEntrySize); err != nil { // the open record's entry
		t.Fatal(err)
	}
	if got := committedValues(t, killed, "t", 1); !slices.Equal(got[0], []string{"committed"}) {
		t.Errorf("after the kill, committed records are %v, want [committed]", got[0])
	}
}

func saramaTxnProducer(t *testing.T, addr string) sarama.SyncProducer {
	t.Helper()
	cfg := kafka.Config("test", 20*time.Millisecond)
	cfg.Producer.Transaction.ID = "test-txn"
	cfg.Producer.Return.Successes = true
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	producer, err := sarama.NewSyncProducer([]string{addr}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { producer.Close() })
	return producer
}

// inSaramaTxn begins a transaction and sends values[i] to partition i of t.
func inSaramaTxn(t *testing.T, producer sarama.SyncProducer, values ...string) {
	t.Helper()
	if err := producer.BeginTxn(); err != nil {
		t.Fatal(err)
	}
	for p, v := range values {
		if _, _, err := producer.SendMessage(&sarama.ProducerMessage{Topic: "t", Partition: int32(p), Value: sarama.StringEncoder(v)}); err != nil {
			t.Fatalf("produce %s: %v", v, err)
		}
	}
}

// TestCommitJournalForgetsACommitOnceTheNextTransactionBegins covers what
// the kill tests cannot force: a client that keeps its epoch between
// transactions (as sarama does) has a finished commit and its next, open,
// transaction under the same producer id and epoch.
func TestCommitJournalForgetsACommitOnceTheNextTransactionBegins(t *testing.T) {
	path := filepath.Join(t.TempDir(), commitJournalName)
	j, err := openCommitJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	steps := []struct {
		name string
		do   func() error
		want []int64 // producers pending after the step
	}{
		{"producer 7 commits", func() error { return j.endTxn(7, 0, true) }, []int64{7}},
		{"producer 9 commits", func() error { return j.endTxn(9, 3, true) }, []int64{7, 9}},
		{"producer 7 begins its next transaction", func() error { return j.addPartitions(7, 0) }, []int64{9}},
		{"producer 7 adds more partitions", func() error { return j.addPartitions(7, 0) }, []int64{9}},
		{"producer 9 aborts", func() error { return j.endTxn(9, 3, false) }, nil},
		{"producer 7 commits again", func() error { return j.endTxn(7, 0, true) }, []int64{7}},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		pending, err := readCommitJournal(path)
		if err != nil {
			t.Fatal(err)
		}
		var ids []int64
		for _, p := range pending {
			ids = append(ids, p.producerID)
		}
		slices.Sort(ids)
		if !slices.Equal(ids, s.want) {
			t.Errorf("after %s: pending %v, want %v", s.name, ids, s.want)
		}
	}
	if info, err := os.Stat(path); err != nil || info.Size() != 2*slotSize {
		t.Errorf("journal of two producers: size %v (%v), want %d bytes", info.Size(), err, 2*slotSize)
	}
}

func startTestKafka(t *testing.T) (*Kafka, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "kafka")
	k, err := StartKafka(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	return k, dir
}

func createTopic(t *testing.T, addr, topic string, partitions int32) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = topic, partitions, 1
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(context.Background(), cl)
	if err == nil {
		err = kerr.ErrorForCode(resp.Topics[0].ErrorCode)
	}
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
}

func transactionalProducer(t *testing.T, addr string) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.TransactionalID("test-txn"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func produceInTxn(t *testing.T, cl *kgo.Client, topic string, values map[int32]string) {
	t.Helper()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for p, v := range values {
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Partition: p, Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatalf("produce %s to %s/%d: %v", v, topic, p, err)
		}
	}
}

func writeMarker(t *testing.T, addr string, producerID int64, epoch int16, commit bool, topic string, partition int32) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	req := kmsg.NewPtrWriteTxnMarkersRequest()
	m := kmsg.NewWriteTxnMarkersRequestMarker()
	m.ProducerID, m.ProducerEpoch, m.Committed = producerID, epoch, commit
	mt := kmsg.NewWriteTxnMarkersRequestMarkerTopic()
	mt.Topic, mt.Partitions = topic, []int32{partition}
	m.Topics = append(m.Topics, mt)
	req.Markers = append(req.Markers, m)
	resp, err := req.RequestWith(context.Background(), cl)
	if err == nil {
		err = kerr.ErrorForCode(resp.Markers[0].Topics[0].Partitions[0].ErrorCode)
	}
	if err != nil {
		t.Fatalf("write marker: %v", err)
	}
}

// copyDir copies the broker folder dir into a new temporary folder.
func copyDir(t *testing.T, dir string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "kafka")
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// committedValues starts a broker on dir and returns the values a
// read_committed consumer sees on each partition of topic. It writes an
// end record to each partition and reads up to it.
func committedValues(t *testing.T, dir, topic string, partitions int32) map[int32][]string {
	t.Helper()
	k, err := StartKafka(dir, 0)
	if err != nil {
		t.Fatalf("restart on the killed broker's folder: %v", err)
	}
	defer k.Close()
	producer, err := kgo.NewClient(kgo.SeedBrokers(k.Addr()), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	offsets := map[int32]kgo.Offset{}
	for p := range partitions {
		if err := producer.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Partition: p, Value: []byte("end")}).FirstErr(); err != nil {
			t.Fatalf("produce the end record: %v", err)
		}
		offsets[p] = kgo.NewOffset().AtStart()
	}
	consumer, err := kgo.NewClient(kgo.SeedBrokers(k.Addr()), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got := map[int32][]string{}
	for ended := 0; ended < int(partitions); {
		fetches := consumer.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading %s: %d of %d partitions read to their end record (got %v)", topic, ended, partitions, got)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			if string(r.Value) == "end" {
				ended++
				return
			}
			got[r.Partition] = append(got[r.Partition], string(r.Value))
		})
	}
	return got
}
