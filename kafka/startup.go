package kafka

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/IBM/sarama"
)

// ConfigError is a refusal that no retry can change: the gateway's setting
// it names (or the cluster) must change first. A start gives up on it at
// once instead of retrying it as an unreachable broker.
type ConfigError struct {
	Setting string // the environment variable, e.g. "SESSION_TIMEOUT"
	Err     error
}

func (e *ConfigError) Error() string { return e.Setting + ": " + e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// MaxTopicName is the longest topic name Apache Kafka accepts.
const MaxTopicName = 249

// longestSuffix is the longest of the suffixes NewTopics adds to the prefix.
const longestSuffix = len(".deadletter")

// MaxTopicPrefix is the longest prefix whose topic names Kafka accepts.
const MaxTopicPrefix = MaxTopicName - longestSuffix

// CheckTopicPrefix reports a prefix whose topic names Kafka would refuse:
// empty, longer than MaxTopicPrefix, or with a character other than ASCII
// letters, digits, '.', '_' and '-'. The error quotes the prefix (cut to 40
// characters) and says what is wrong, without naming the setting.
func CheckTopicPrefix(prefix string) error {
	shown := prefix
	if len(shown) > 40 {
		shown = shown[:40] + "…"
	}
	if prefix == "" {
		return errors.New("is empty; topic names need a prefix")
	}
	for _, r := range prefix {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("%q has %q: Kafka's topic names may hold only ASCII letters, digits, '.', '_' and '-'", shown, r)
		}
	}
	if len(prefix) > MaxTopicPrefix {
		return fmt.Errorf("%q is %d characters, at most %d are allowed (Kafka's topic names have at most %d, and %q is the longest suffix)",
			shown, len(prefix), MaxTopicPrefix, MaxTopicName, ".deadletter")
	}
	return nil
}

// CheckSessionTimeout asks the coordinator of group whether it accepts
// timeout as a consumer group session timeout, as the first JoinGroup of a
// member does. Apache Kafka refuses one outside its
// group.min.session.timeout.ms and group.max.session.timeout.ms (6 s and 30
// min by default), and sarama's consumer group would then try to join
// forever. The check joins as a new member, which the coordinator answers
// with MEMBER_ID_REQUIRED (a pending member, which starts no rebalance), and
// leaves again at once.
//
// A refused timeout is a ConfigError naming SESSION_TIMEOUT. An unreachable
// or not yet ready coordinator is an error to retry. Other refusals are the
// group's own join's to report: nil.
func CheckSessionTimeout(client sarama.Client, group string, topics []string, timeout time.Duration) error {
	ms := timeout / time.Millisecond
	if ms < 1 || ms > math.MaxInt32 {
		return &ConfigError{Setting: "SESSION_TIMEOUT", Err: fmt.Errorf("%s is not a session timeout Kafka can be sent (1ms to %s)", timeout, time.Duration(math.MaxInt32)*time.Millisecond)}
	}
	coordinator, err := client.Coordinator(group)
	if err != nil {
		return fmt.Errorf("coordinator of group %s: %w", group, err)
	}
	req := sarama.NewJoinGroupRequest(client.Config().Version)
	req.GroupId = group
	req.SessionTimeout = int32(ms)
	req.RebalanceTimeout = int32(ms)
	req.ProtocolType = "consumer"
	strategy := sarama.NewBalanceStrategySticky().Name()
	if err := req.AddGroupProtocolMetadata(strategy, &sarama.ConsumerGroupMemberMetadata{Topics: topics}); err != nil {
		return err
	}
	resp, err := coordinator.JoinGroup(req)
	if err != nil {
		return fmt.Errorf("join group %s: %w", group, err)
	}
	switch resp.Err {
	case sarama.ErrInvalidSessionTimeout:
		return &ConfigError{Setting: "SESSION_TIMEOUT", Err: fmt.Errorf("the Kafka broker refuses %s as the session timeout of consumer group %s: it must be within the broker's group.min.session.timeout.ms and group.max.session.timeout.ms (6s and 30m by default on Apache Kafka)", timeout, group)}
	case sarama.ErrNoError, sarama.ErrMemberIdRequired:
		leave := &sarama.LeaveGroupRequest{Version: 3, GroupId: group, Members: []sarama.MemberIdentity{{MemberId: resp.MemberId}}}
		if client.Config().Version.IsAtLeast(sarama.V3_2_0_0) {
			reason := "the gateway checked its session timeout"
			leave.Version, leave.Members[0].Reason = 5, &reason
		}
		_, _ = coordinator.LeaveGroup(leave) // a pending member left behind expires after the timeout
		return nil
	case sarama.ErrOffsetsLoadInProgress, sarama.ErrConsumerCoordinatorNotAvailable, sarama.ErrNotCoordinatorForConsumer:
		return fmt.Errorf("join group %s: %w", group, resp.Err)
	default:
		return nil
	}
}
