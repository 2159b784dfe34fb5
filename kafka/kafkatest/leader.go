package kafkatest

import (
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// RefuseListOffsets has c answer its first n ListOffsets requests with
// NOT_LEADER_OR_FOLLOWER for every partition, as Apache Kafka does just
// after it created a topic, and then answer as usual. The counter it
// returns counts the ListOffsets requests c was sent.
func RefuseListOffsets(c *kfake.Cluster, n int32) *atomic.Int32 {
	var asked atomic.Int32
	c.ControlKey(kmsg.ListOffsets.Int16(), func(r kmsg.Request) (kmsg.Response, error, bool) {
		if asked.Add(1) > n {
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
	return &asked
}
