package live

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/ordergateway/gateway/kafka"
	"github.com/ordergateway/gateway/kafka/kafkatest"
	"github.com/ordergateway/gateway/view"
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

// TestFeedDecodesOnlyWhatIsWatched: a change no subscription and no wait
// in this instance watches is not even decoded (an undecodable one is not
// reported); one that a wait, a one-order subscription or a matching
// subscription watches is delivered.
func TestFeedDecodesOnlyWhatIsWatched(t *testing.T) {
	var logs bytes.Buffer
	f := &Feed{logger: slog.New(slog.NewTextHandler(&logs, nil)), waiters: map[string]map[chan struct{}]struct{}{}, hub: NewHub()}
	msg := func(id string, version int) *sarama.ConsumerMessage {
		v, err := json.Marshal(view.Change{Order: view.OrderDoc{ID: id, CustomerID: "c-1", Status: "PENDING", Version: version}})
		if err != nil {
			t.Fatal(err)
		}
		return &sarama.ConsumerMessage{Key: []byte(id), Value: v}
	}
	f.read(&sarama.ConsumerMessage{Key: []byte("o-0"), Value: []byte("not json")})
	if logs.Len() != 0 {
		t.Fatalf("a change no one watches was decoded: %s", logs.String())
	}
	changed, stop := f.Changed("o-1")
	defer stop()
	f.read(msg("o-1", 2))
	select {
	case <-changed:
	default:
		t.Fatal("a read-your-writes wait on o-1 was not woken by its change")
	}
	one := f.hub.SubscribeOrder("o-2", nil)
	f.read(&sarama.ConsumerMessage{Key: []byte("o-2"), Value: []byte("not json")})
	if !strings.Contains(logs.String(), "undecodable") {
		t.Fatalf("a change of a watched order was not decoded: %q", logs.String())
	}
	f.read(msg("o-2", 3))
	if got := one.Drain(); len(got) != 1 || got[0].Version != 3 {
		t.Fatalf("the subscription of o-2 got %+v, want version 3", got)
	}
	all := f.hub.SubscribeMatching(func(view.OrderDoc) bool { return true }, nil)
	f.read(msg("o-3", 1))
	if got := all.Drain(); len(got) != 1 || got[0].ID != "o-3" {
		t.Fatalf("the matching subscription got %+v, want o-3", got)
	}
}
