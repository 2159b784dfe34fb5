package command

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ordergateway/gateway/kafka"
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
	var refused atomic.Int32
	c.ControlKey(kmsg.ListOffsets.Int16(), func(r kmsg.Request) (kmsg.Response, error, bool) {
		if refused.Add(1) > 4 {
			return nil, nil, false // the leader is ready: the broker answers
		}
		c.KeepControl()
		req := r.(*kmsg.ListOffsetsRequest)
		resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewListOffsetsResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewListOffsetsResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.NotLeaderForPartition.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	b, err := NewBus(BusConfig{Brokers: c.ListenAddrs(), Topics: topics, Timeout: time.Second, FetchWait: 20 * time.Millisecond})
	if err != nil {
		t.Fatalf("NewBus while the leader was not ready: %v", err)
	}
	defer b.Close()
	if n := refused.Load(); n <= 4 {
		t.Fatalf("the broker was asked for offsets %d times: the test refused none of them", n)
	}
}
