package command

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/ordergateway/gateway/kafka"
	"github.com/ordergateway/gateway/kafka/kafkatest"
)

// Just after the gateway creates its topics, Apache Kafka 4.1 answered the
// bus's ListOffsets of the replies topic with NOT_LEADER_OR_FOLLOWER, which
// ended the start (TestTakeoverAfterKill on Apache Kafka). NewBus waits
// for the leader.
func TestNewBusWaitsForAPartitionLeader(t *testing.T) {
	topics := kafka.NewTopics("bustest")
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, topics.Commands, topics.Replies))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	refused := kafkatest.RefuseListOffsets(c, 4)
	b, err := NewBus(BusConfig{Brokers: c.ListenAddrs(), Topics: topics, Timeout: time.Second, FetchWait: 20 * time.Millisecond})
	if err != nil {
		t.Fatalf("NewBus while the leader was not ready: %v", err)
	}
	defer b.Close()
	if n := refused.Load(); n <= 4 {
		t.Fatalf("the broker was asked for offsets %d times: the test refused none of them", n)
	}
}
