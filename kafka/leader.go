package kafka

import (
	"errors"
	"time"

	"github.com/IBM/sarama"
)

// LeaderWait bounds how long ConsumeWhenLed waits for a partition's
// leader: just after the gateway creates its topics, Apache Kafka may name
// a leader in its metadata that does not act as one yet
// (NOT_LEADER_OR_FOLLOWER), which ended the start.
const LeaderWait = 30 * time.Second

// ConsumeWhenLed starts consuming partition p of topic at offset, waiting
// up to LeaderWait while the partition's leader is not ready (refreshing
// client's metadata between attempts). Other errors return at once.
func ConsumeWhenLed(client sarama.Client, consumer sarama.Consumer, topic string, p int32, offset int64) (sarama.PartitionConsumer, error) {
	deadline := time.Now().Add(LeaderWait)
	backoff := 50 * time.Millisecond
	for {
		pc, err := consumer.ConsumePartition(topic, p, offset)
		if err == nil || !leaderNotReady(err) || time.Now().After(deadline) {
			return pc, err
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, time.Second)
		_ = client.RefreshMetadata(topic) // the next attempt reports what is still wrong
	}
}

func leaderNotReady(err error) bool {
	return errors.Is(err, sarama.ErrNotLeaderForPartition) || errors.Is(err, sarama.ErrLeaderNotAvailable) ||
		errors.Is(err, sarama.ErrUnknownTopicOrPartition) || errors.Is(err, sarama.ErrOffsetsLoadInProgress)
}
