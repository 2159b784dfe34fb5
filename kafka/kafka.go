// Package kafka holds what the write side and the read side share about
// Apache Kafka: topic names and settings, the sarama configuration, topic
// creation and the dead-letter writer. Only this package and the packages it
// serves (command, projector, view feed) import sarama.
package kafka

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	metrics "github.com/rcrowley/go-metrics"
)

func init() {
	// sarama records every request's latency and size in go-metrics
	// histograms and meters (a lock and a sample per request: 1.5–2.4% of
	// the process CPU in the bench's profiles). The gateway exports none of
	// them, so sarama gets the no-op metrics.
	metrics.UseNilMetrics = true
}

// Topics names the gateway's topics. See DESIGN.md for what each holds.
type Topics struct {
	Commands   string
	Events     string
	Snapshots  string
	Replies    string
	Views      string
	DeadLetter string
}

// NewTopics derives the topic names from a prefix such as "orders".
func NewTopics(prefix string) Topics {
	return Topics{
		Commands:   prefix + ".commands",
		Events:     prefix + ".events",
		Snapshots:  prefix + ".snapshots",
		Replies:    prefix + ".replies",
		Views:      prefix + ".views",
		DeadLetter: prefix + ".deadletter",
	}
}

// Version is the protocol version the clients speak: Apache Kafka 4.x only
// accepts recent request versions, and the embedded broker speaks them too.
var Version = sarama.V3_9_0_0

// Config returns the base sarama configuration every client of the gateway
// starts from: read_committed consumers, short fetch waits (a mutation waits
// on several hops; sarama's default 500 ms would dominate its latency), and
// bounded network timeouts so an unreachable broker fails fast.
func Config(clientID string, fetchWait time.Duration) *sarama.Config {
	c := sarama.NewConfig()
	c.Version = Version
	c.ClientID = clientID
	c.Net.DialTimeout = 3 * time.Second
	c.Net.ReadTimeout = 10 * time.Second
	c.Net.WriteTimeout = 10 * time.Second
	c.Metadata.Retry.Max = 2
	c.Metadata.Retry.Backoff = 200 * time.Millisecond
	c.Consumer.IsolationLevel = sarama.ReadCommitted
	c.Consumer.MaxWaitTime = fetchWait
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	c.Consumer.Return.Errors = true
	c.Consumer.Retry.Backoff = 250 * time.Millisecond
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Idempotent = true
	c.Net.MaxOpenRequests = 1 // the idempotent producer requires it
	c.Producer.Retry.Max = 5
	c.Producer.Retry.Backoff = 100 * time.Millisecond
	c.Producer.Return.Errors = true
	return c
}

// TopicSettings says how to create the topics.
type TopicSettings struct {
	Partitions        int32
	ReplicationFactor int16 // -1: the broker's default
	// Logger, if set, is told in one line when the commands, events and
	// snapshots topics have (or are given) another partition count than
	// Partitions.
	Logger *slog.Logger
}

// EnsureTopics creates the missing topics, with s.Partitions partitions,
// except that a missing one of the commands, events and snapshots topics
// gets the partition count of those that exist: the design relies on their
// partition numbers lining up, and an existing topic keeps its count
// (Partitions is for the topics created here). Topics that exist with
// different counts, or names Kafka refuses, are a ConfigError (no retry
// helps); anything else (a broker not ready yet) is an error to retry.
func EnsureTopics(admin sarama.ClusterAdmin, t Topics, s TopicSettings) error {
	forever, week, hour, month := "-1", strconv.Itoa(7*24*3600*1000), strconv.Itoa(3600*1000), strconv.Itoa(30*24*3600*1000)
	compact := "compact"
	want := []struct {
		name    string
		configs map[string]*string
	}{
		{t.Commands, map[string]*string{"retention.ms": &week}},
		{t.Events, map[string]*string{"retention.ms": &forever, "retention.bytes": &forever}},
		{t.Snapshots, map[string]*string{"cleanup.policy": &compact}},
		{t.Replies, map[string]*string{"retention.ms": &hour}},
		{t.Views, map[string]*string{"cleanup.policy": &compact}},
		{t.DeadLetter, map[string]*string{"retention.ms": &month}},
	}
	aligned := []string{t.Commands, t.Events, t.Snapshots}
	existing, err := admin.ListTopics()
	if err != nil {
		return fmt.Errorf("list topics: %w", err)
	}
	counts := map[string]int32{}
	for _, n := range aligned {
		if d, ok := existing[n]; ok {
			if d.NumPartitions <= 0 {
				return fmt.Errorf("list topics: %s has no partitions yet", n)
			}
			counts[n] = d.NumPartitions
		}
	}
	if err := sameCounts(aligned, counts, s.Partitions); err != nil {
		return err
	}
	for _, w := range want {
		if _, ok := existing[w.name]; ok {
			continue
		}
		partitions := s.Partitions
		if slices.Contains(aligned, w.name) {
			for _, n := range counts {
				partitions = n // a missing sibling gets the count of those that exist
			}
		}
		err := admin.CreateTopic(w.name, &sarama.TopicDetail{
			NumPartitions: partitions, ReplicationFactor: s.ReplicationFactor, ConfigEntries: w.configs,
		}, false)
		switch {
		case errors.Is(err, sarama.ErrInvalidTopic):
			return &ConfigError{Setting: "TOPIC_PREFIX", Err: fmt.Errorf("Kafka refuses the topic name %s: %w", w.name, err)}
		case err != nil && !errors.Is(err, sarama.ErrTopicAlreadyExists):
			return fmt.Errorf("create topic %s: %w", w.name, err)
		}
	}
	if counts, err = partitionCounts(admin, aligned); err != nil {
		return err
	}
	if err := sameCounts(aligned, counts, s.Partitions); err != nil {
		return err
	}
	if n := counts[t.Commands]; n != s.Partitions && s.Logger != nil {
		s.Logger.Warn(fmt.Sprintf("kafka: topics %s have %d partitions, not PARTITIONS=%d: they keep their count (PARTITIONS is only for the topics the gateway creates)",
			strings.Join(aligned, ", "), n, s.Partitions))
	}
	return nil
}

// partitionCounts describes topics.
func partitionCounts(admin sarama.ClusterAdmin, topics []string) (map[string]int32, error) {
	counts := map[string]int32{}
	meta, err := admin.DescribeTopics(topics)
	if err != nil {
		return nil, fmt.Errorf("describe topics: %w", err)
	}
	for _, m := range meta {
		if m.Err != sarama.ErrNoError {
			return nil, fmt.Errorf("describe topic %s: %w", m.Name, m.Err)
		}
		if len(m.Partitions) == 0 {
			return nil, fmt.Errorf("describe topic %s: no partitions yet", m.Name)
		}
		counts[m.Name] = int32(len(m.Partitions))
	}
	return counts, nil
}

// sameCounts is a ConfigError naming each topic's count if the topics that
// have counts do not all have the same.
func sameCounts(topics []string, counts map[string]int32, partitions int32) error {
	var have []string
	first, same := int32(-1), true
	for _, n := range topics {
		c, ok := counts[n]
		if !ok {
			continue
		}
		have = append(have, fmt.Sprintf("%s %d", n, c))
		if first < 0 {
			first = c
		}
		same = same && c == first
	}
	if same {
		return nil
	}
	return &ConfigError{Setting: "PARTITIONS", Err: fmt.Errorf("topics %s must have the same partition count, and have %s (PARTITIONS=%d is only for the topics the gateway creates; recreate or repartition them alike)",
		strings.Join(topics, ", "), strings.Join(have, ", "), partitions)}
}

// Dead-letter headers: why a message was set aside and where it came from.
// A dead letter keeps the original record's key, value and headers, and
// adds these (HeaderDLReason since the dead-letter tools came; a record
// without it reads as ReasonUnknown). The record's timestamp is when it was
// set aside.
const (
	HeaderDLError     = "dlq-error"
	HeaderDLReason    = "dlq-reason"
	HeaderDLTopic     = "dlq-source-topic"
	HeaderDLPartition = "dlq-source-partition"
	HeaderDLOffset    = "dlq-source-offset"
	// HeaderDLReplayOf is on a record `deadletters replay` wrote back to
	// its source topic: the dead letter it replays ("partition/offset" in
	// the dead-letter topic). A replay that is set aside again keeps it, so
	// its new dead letter points back at the old one.
	HeaderDLReplayOf = "dlq-replay-of"
	// headerDLPrefix starts every dead-letter header: DeadLetter drops the
	// original record's (but HeaderDLReplayOf) before adding its own.
	headerDLPrefix = "dlq-"
)

// Reason codes of dead letters (HeaderDLReason): short, stable words for
// `deadletters list` and alerts; HeaderDLError says more.
const (
	ReasonUndecodable   = "undecodable"   // not a record of the gateway's format, or keyed by another order
	ReasonPrincipal     = "principal"     // a command without a valid principal header (authentication on)
	ReasonUnprocessable = "unprocessable" // decoded, but handling it failed (a panic, an unexpected error)
	ReasonTooLarge      = "too-large"     // its records would be larger than the broker accepts
	ReasonRefused       = "refused"       // the broker refused its records for what they are
	ReasonGap           = "gap"           // an event whose order's view is behind it: the views need a rebuild
	ReasonNewerSchema   = "newer-schema"  // an event of a schema version newer than this build reads: replay it once a build that reads it runs
	ReasonUnknown       = "unknown"       // a dead letter without HeaderDLReason (written before it existed)
)

// ReasonError is why a record goes to the dead-letter topic: a reason code
// and the error.
type ReasonError struct {
	Code string
	Err  error
}

func (e *ReasonError) Error() string { return e.Err.Error() }
func (e *ReasonError) Unwrap() error { return e.Err }

// Reason gives err a reason code for DeadLetter.
func Reason(code string, err error) error { return &ReasonError{Code: code, Err: err} }

// maxDeadLetterReason bounds the dlq-error header: reasons can quote what
// they failed on.
const maxDeadLetterReason = 1024

// DeadLetter builds the dead-letter copy of msg with the reason in headers
// (the error cut to 1 KiB; its code from a ReasonError in reason, else
// ReasonUnprocessable). The original key, value and headers are kept, but
// for dead-letter headers of its own (other than HeaderDLReplayOf).
func DeadLetter(topic string, msg *sarama.ConsumerMessage, reason error) *sarama.ProducerMessage {
	headers := make([]sarama.RecordHeader, 0, len(msg.Headers)+5)
	for _, h := range msg.Headers {
		if h != nil && (!strings.HasPrefix(string(h.Key), headerDLPrefix) || string(h.Key) == HeaderDLReplayOf) {
			headers = append(headers, *h)
		}
	}
	why := reason.Error()
	if len(why) > maxDeadLetterReason {
		why = strings.ToValidUTF8(why[:maxDeadLetterReason], "") + "…"
	}
	code := ReasonUnprocessable
	if re := (*ReasonError)(nil); errors.As(reason, &re) {
		code = re.Code
	}
	headers = append(headers,
		sarama.RecordHeader{Key: []byte(HeaderDLError), Value: []byte(why)},
		sarama.RecordHeader{Key: []byte(HeaderDLReason), Value: []byte(code)},
		sarama.RecordHeader{Key: []byte(HeaderDLTopic), Value: []byte(msg.Topic)},
		sarama.RecordHeader{Key: []byte(HeaderDLPartition), Value: []byte(strconv.Itoa(int(msg.Partition)))},
		sarama.RecordHeader{Key: []byte(HeaderDLOffset), Value: []byte(strconv.FormatInt(msg.Offset, 10))},
	)
	var key, value sarama.Encoder
	if msg.Key != nil {
		key = sarama.ByteEncoder(msg.Key)
	}
	if msg.Value != nil {
		value = sarama.ByteEncoder(msg.Value)
	}
	return &sarama.ProducerMessage{Topic: topic, Key: key, Value: value, Headers: headers}
}

// Header returns the value of the first header named key, or "".
func Header(msg *sarama.ConsumerMessage, key string) string {
	for _, h := range msg.Headers {
		if h != nil && string(h.Key) == key {
			return string(h.Value)
		}
	}
	return ""
}

// IsTooLarge reports whether err is a refusal for size: a record over the
// producer's Producer.MaxMessageBytes (sarama refuses it before sending) or
// over the topic's max.message.bytes (the broker's MESSAGE_TOO_LARGE or
// RECORD_LIST_TOO_LARGE). Sending the same records again fails the same way.
func IsTooLarge(err error) bool {
	if err == nil {
		return false
	}
	var ce sarama.ConfigurationError
	return errors.Is(err, sarama.ErrMessageSizeTooLarge) || errors.Is(err, sarama.ErrMessageSetSizeTooLarge) ||
		(errors.As(err, &ce) && strings.Contains(string(ce), "MaxMessageBytes"))
}

// IsRefused reports whether the broker (or the client, before sending)
// refused records for what they are, so that sending them again can never
// succeed: IsTooLarge, or an invalid record, timestamp or format.
func IsRefused(err error) bool {
	return IsTooLarge(err) || errors.Is(err, sarama.ErrInvalidRecord) || errors.Is(err, sarama.ErrInvalidTimestamp) ||
		errors.Is(err, sarama.ErrUnsupportedForMessageFormat) || errors.Is(err, sarama.ErrUnsupportedCompressionType)
}

// IsFencedByGroup reports whether a transactional offset commit was refused
// because the member's consumer group generation is over (KIP-447): the
// partitions may have another owner now, so the transaction must not be
// committed, nor retried in this generation.
func IsFencedByGroup(err error) bool {
	return errors.Is(err, sarama.ErrIllegalGeneration) || errors.Is(err, sarama.ErrUnknownMemberId) ||
		errors.Is(err, sarama.ErrFencedInstancedId) || errors.Is(err, sarama.ErrRebalanceInProgress)
}

// IsUnavailable reports whether err means the broker cannot be reached (as
// opposed to a request the broker rejected).
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	var netErr net.Error
	return errors.Is(err, sarama.ErrOutOfBrokers) || errors.Is(err, sarama.ErrNotConnected) ||
		errors.Is(err, sarama.ErrClosedClient) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, sarama.ErrLeaderNotAvailable) || errors.Is(err, sarama.ErrNotLeaderForPartition) ||
		errors.As(err, &netErr) || strings.Contains(err.Error(), "connection refused")
}

// TopicIdentity is the id of the cluster client talks to and the id of
// topic in it ("" for what the broker does not name): a topic deleted and
// created again under the same name has another id.
func TopicIdentity(client sarama.Client, topic string) (cluster, topicID string, err error) {
	b := client.LeastLoadedBroker()
	if b == nil {
		return "", "", errors.New("no broker to ask for the topic's id")
	}
	resp, err := b.GetMetadata(sarama.NewMetadataRequest(Version, []string{topic}))
	if err != nil {
		return "", "", fmt.Errorf("metadata of topic %s: %w", topic, err)
	}
	if resp.ClusterID != nil {
		cluster = *resp.ClusterID
	}
	for _, t := range resp.Topics {
		if t.Name != topic {
			continue
		}
		if t.Err != sarama.ErrNoError {
			return "", "", fmt.Errorf("metadata of topic %s: %w", topic, t.Err)
		}
		if t.Uuid != (sarama.Uuid{}) {
			topicID = t.Uuid.String()
		}
	}
	return cluster, topicID, nil
}
