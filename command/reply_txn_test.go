package command

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/ordergateway/gateway/kafka"
)

// A reply to another instance's bus goes in the handler's transaction, so
// a handler that dies after its commit cannot leave that instance's
// mutation waiting for a reply that never comes (TestTakeoverAfterKill saw
// one on Apache Kafka). Here the handler's producer for anything sent after
// the commit writes to a broker that is gone: the bus of another instance
// still gets its reply.
func TestRepliesToOtherInstancesAreInTheTransaction(t *testing.T) {
	topics := fenceTestTopics(t, "txnreply")
	bus, err := NewBus(BusConfig{Brokers: testBrokers, Topics: topics, Timeout: 20 * time.Second, FetchWait: 20 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	h := fenceTestHandlerConfig(t, topics, topics.Commands+".handler", func(c *HandlerConfig) { c.AuthDisabled = true })

	gone, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topics.Replies))
	if err != nil {
		t.Fatal(err)
	}
	sc := kafka.Config("gone", 20*time.Millisecond)
	sc.Producer.Return.Successes = true
	sc.Producer.Retry.Max = 1
	sc.Metadata.Retry.Max = 0
	sc.Producer.Partitioner = sarama.NewManualPartitioner
	afterCommit, err := sarama.NewSyncProducer(gone.ListenAddrs(), sc)
	if err != nil {
		t.Fatal(err)
	}
	gone.Close()
	h.replies = afterCommit // sendRemoteReplies can no longer deliver anything

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	defer func() { cancel(); h.Close(); <-done }()

	reply, err := bus.Send(context.Background(), placeOrder("ord_txnreply"), "")
	if err != nil {
		t.Fatalf("the other instance's bus got no reply: %v", err)
	}
	if reply.Error != nil || reply.Order == nil || reply.Order.Version != 1 {
		t.Fatalf("reply: %+v", reply)
	}
}
