package projector

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/kafka"
	"github.com/ordergateway/gateway/kafka/kafkatest"
)

// A wait is answered by a run that started after it, and one run answers
// every wait queued before it started.
func TestDurabilityWaitsForARunThatStartedAfterIt(t *testing.T) {
	var runs atomic.Int32
	release := make(chan struct{})
	var started sync.WaitGroup
	started.Add(1)
	d := &durability{fn: func(context.Context) error {
		if runs.Add(1) == 1 {
			started.Done()
			<-release // the first run is slow
		}
		return nil
	}}
	ctx := context.Background()
	first := make(chan error, 1)
	go func() { first <- d.wait(ctx) }()
	started.Wait()
	// Three waits while the first run is under way: that run started
	// before them, so none of them may be answered by it.
	var later sync.WaitGroup
	answered := make(chan int32, 3)
	for range 3 {
		later.Add(1)
		go func() {
			defer later.Done()
			if err := d.wait(ctx); err != nil {
				t.Error(err)
			}
			answered <- runs.Load()
		}()
	}
	time.Sleep(50 * time.Millisecond) // let them queue
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	later.Wait()
	close(answered)
	for n := range answered {
		if n < 2 {
			t.Errorf("a wait queued during the first run was answered after %d run(s)", n)
		}
	}
	if n := runs.Load(); n != 2 {
		t.Errorf("%d runs; want 2 (the three queued waits share the second)", n)
	}

	failing := &durability{fn: func(context.Context) error { return errors.New("flush failed") }}
	if err := failing.wait(ctx); err == nil {
		t.Error("a failed run answered nil")
	}
	if err := (&durability{}).wait(ctx); err != nil {
		t.Errorf("no Durable: %v", err)
	}
}

// The projector commits the offsets of what it wrote only once
// Config.Durable says the store has made those writes durable: while it
// fails, the views are written but nothing is committed (a restart would
// replay those events); once it works, the next batch's commit covers the
// earlier ones. Embedded broker and store.
func TestOffsetsAreCommittedOnlyOnceTheStoreIsDurable(t *testing.T) {
	store, ctx := embeddedStore(t)
	broker := kafkatest.Start(t, false)
	brokers := []string{broker.Addr}
	topics := kafka.NewTopics("durabletest")
	admin, err := sarama.NewClusterAdmin(brokers, kafka.Config("durable-test-admin", 20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := kafka.EnsureTopics(admin, topics, kafka.TopicSettings{Partitions: 1, ReplicationFactor: -1}); err != nil {
		t.Fatal(err)
	}
	pc := kafka.Config("durable-test-producer", 20*time.Millisecond)
	pc.Producer.Return.Successes = true
	producer, err := sarama.NewSyncProducer(brokers, pc)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	produce := func(evs ...domain.Event) int64 {
		t.Helper()
		var last int64
		for _, e := range evs {
			v, err := domain.MarshalEvent(e)
			if err != nil {
				t.Fatal(err)
			}
			_, last, err = producer.SendMessage(&sarama.ProducerMessage{Topic: topics.Events, Key: sarama.StringEncoder(e.OrderID), Value: sarama.ByteEncoder(v)})
			if err != nil {
				t.Fatal(err)
			}
		}
		return last
	}

	var failing atomic.Bool
	failing.Store(true)
	var calls atomic.Int32
	p, err := New(Config{Brokers: brokers, Topics: topics, Group: "durabletest.projector", FetchWait: 20 * time.Millisecond,
		SessionTimeout: 6 * time.Second, Durable: func(context.Context) error {
			calls.Add(1)
			if failing.Load() {
				return errors.New("flush failed")
			}
			return nil
		}}, store)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	running := make(chan error, 1)
	go func() { running <- p.Run(runCtx) }()
	defer func() {
		stop()
		_ = p.Close()
		<-running
	}()

	committed := func() int64 {
		t.Helper()
		r, err := admin.ListConsumerGroupOffsets("durabletest.projector", map[string][]int32{topics.Events: {0}})
		if err != nil {
			t.Fatal(err)
		}
		if b := r.GetBlock(topics.Events, 0); b != nil {
			return b.Offset
		}
		return -1
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("not within 20 s: %s", what)
			}
		}
	}

	placed := history(t, domain.PlaceOrder{OrderID: "o1", CustomerID: "c1", Currency: "EUR", Items: []domain.ItemInput{{SKU: "A", Name: "a", Quantity: 1, UnitPrice: "1.00"}}},
		domain.ConfirmOrder{OrderID: "o1"})
	produce(placed[0])
	waitFor("the placed order in the views", func() bool { d, err := store.Order(ctx, "o1"); return err == nil && d != nil })
	waitFor("a call of Durable", func() bool { return calls.Load() > 0 })
	time.Sleep(200 * time.Millisecond) // a commit, if one were to come, would have come
	if at := committed(); at > 0 {
		t.Fatalf("committed offset %d while Durable fails; want none", at)
	}

	failing.Store(false)
	last := produce(placed[1])
	waitFor("the offset after the confirmation committed", func() bool { return committed() == last+1 })
}
