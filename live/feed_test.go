package live

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/ordergateway/gateway/kafka"
	"github.com/ordergateway/gateway/kafka/kafkatest"
)

// Just after the gateway creates its topics, Apache Kafka may answer a
// ListOffsets with NOT_LEADER_OR_FOLLOWER (seen at start on Apache Kafka
// 4.1, where it ended the gateway's start). NewFeed waits for the leader.
func TestNewFeedWaitsForAPartitionLeader(t *testing.T) {
	topics := kafka.NewTopics("feedtest")
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, topics.Views))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	refused := kafkatest.RefuseListOffsets(c, 4)
	f, err := NewFeed(FeedConfig{Brokers: c.ListenAddrs(), Topics: topics, FetchWait: 20 * time.Millisecond})
	if err != nil {
		t.Fatalf("NewFeed while the leader was not ready: %v", err)
	}
	defer f.Close()
	if n := refused.Load(); n <= 4 {
		t.Fatalf("the broker was asked for offsets %d times: the test refused none of them", n)
	}
}
