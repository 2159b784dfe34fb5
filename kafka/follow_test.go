package kafka_test

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"context"

	"github.com/IBM/sarama"

	"github.com/ordergateway/gateway/embedded"
	"github.com/ordergateway/gateway/kafka"
)

// TestFollowerOutlivesARecreatedTopic: the topic a follower reads is
// deleted and created again. sarama gives the partition up (its offset is
// now past the end of the new log, ErrOffsetOutOfRange); the follower
// starts again from the newest offset and reads what is written after.
// Before, the bus's replies reader and the views feed stopped for good
// there: every remote reply, every live update lost.
func TestFollowerOutlivesARecreatedTopic(t *testing.T) {
	brokers := strings.Split(os.Getenv("KAFKA_BROKERS"), ",")
	if brokers[0] == "" {
		k, err := embedded.StartKafka(t.TempDir(), 0)
		if err != nil {
			t.Fatal(err)
		}
		defer k.Close()
		brokers = []string{k.Addr()}
	}
	topic := fmt.Sprintf("follow%d", time.Now().UnixNano()%1e9)
	admin, err := sarama.NewClusterAdmin(brokers, kafka.Config("test-admin", 20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	create := func() {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1}, false)
			if err == nil || time.Now().After(deadline) {
				if err != nil {
					t.Fatalf("create %s: %v", topic, err)
				}
				return
			}
			time.Sleep(200 * time.Millisecond) // Apache Kafka deletes topics asynchronously
		}
	}
	create()
	pc := kafka.Config("test-producer", 20*time.Millisecond)
	pc.Producer.Return.Successes = true
	pc.Producer.Idempotent = false // its sequence numbers would not survive the topic's recreation
	pc.Net.MaxOpenRequests = 5
	prod, err := sarama.NewSyncProducer(brokers, pc)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	send := func(v string) {
		t.Helper()
		if _, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder(v)}); err != nil {
			t.Fatalf("send %s: %v", v, err)
		}
	}
	for i := range 5 {
		send(fmt.Sprintf("old-%d", i))
	}

	consumer, err := sarama.NewConsumer(brokers, kafka.Config("test-follower", 20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	var (
		mu   sync.Mutex
		seen []string
	)
	f := &kafka.Follower{Consumer: consumer, Topic: topic, Partition: 0, Logger: slog.New(slog.DiscardHandler),
		Handle: func(m *sarama.ConsumerMessage) { mu.Lock(); seen = append(seen, string(m.Value)); mu.Unlock() }}
	first, err := consumer.ConsumePartition(topic, 0, sarama.OffsetOldest)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.Run(ctx, first) }()
	defer func() { cancel(); <-done }()
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				mu.Lock()
				defer mu.Unlock()
				t.Fatalf("%s: seen %v, restarts %d", what, seen, f.Restarts.Load())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor("the old records", func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) == 5 })

	if err := admin.DeleteTopic(topic); err != nil {
		t.Fatalf("delete %s: %v", topic, err)
	}
	create()
	// The follower notices once its offset (5) is past the new log's end;
	// writes that go in while it restarts are not read, so keep writing.
	t0 := time.Now()
	for i := 0; f.Restarts.Load() == 0 || !func() bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.HasPrefix(seen[len(seen)-1], "new-")
	}(); i++ {
		if time.Since(t0) > 60*time.Second {
			mu.Lock()
			t.Fatalf("the follower did not read the recreated topic: seen %v, restarts %d", seen, f.Restarts.Load())
		}
		send(fmt.Sprintf("new-%d", i))
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("restarted %d time(s), reading the recreated topic %v after its deletion", f.Restarts.Load(), time.Since(t0).Round(time.Millisecond))
}
