package kafka

import (
	"context"
	"errors"
	"net"

	"github.com/IBM/sarama"
)

// ErrorKind names the kind of a broker error for the errors-by-kind metric
// (metrics.BrokerErrorKinds): timeout, network, not_leader, fenced, refused,
// authorization or other; "" for nil and for a cancelled context (the
// caller gave up: not the broker's error). Of a batch's errors
// (sarama.ProducerErrors) the first one's.
func ErrorKind(err error) string {
	if err == nil || errors.Is(err, context.Canceled) {
		return ""
	}
	var pe sarama.ProducerErrors
	if errors.As(err, &pe) && len(pe) > 0 && pe[0] != nil {
		err = pe[0].Err
	}
	var netErr net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, sarama.ErrRequestTimedOut) ||
		errors.Is(err, sarama.ErrNotEnoughReplicasAfterAppend) || (errors.As(err, &netErr) && netErr.Timeout()):
		return "timeout"
	case errors.Is(err, sarama.ErrNotLeaderForPartition) || errors.Is(err, sarama.ErrLeaderNotAvailable) ||
		errors.Is(err, sarama.ErrNotCoordinatorForConsumer) || errors.Is(err, sarama.ErrConsumerCoordinatorNotAvailable) ||
		errors.Is(err, sarama.ErrOffsetsLoadInProgress) || errors.Is(err, sarama.ErrNotEnoughReplicas) ||
		errors.Is(err, sarama.ErrUnknownTopicOrPartition) || errors.Is(err, sarama.ErrFencedLeaderEpoch) ||
		errors.Is(err, sarama.ErrUnknownLeaderEpoch):
		return "not_leader"
	case errors.Is(err, sarama.ErrProducerFenced) || errors.Is(err, sarama.ErrInvalidProducerEpoch) || IsFencedByGroup(err):
		return "fenced"
	case IsRefused(err):
		return "refused"
	case errors.Is(err, sarama.ErrTopicAuthorizationFailed) || errors.Is(err, sarama.ErrGroupAuthorizationFailed) ||
		errors.Is(err, sarama.ErrClusterAuthorizationFailed) || errors.Is(err, sarama.ErrTransactionalIDAuthorizationFailed) ||
		errors.Is(err, sarama.ErrSASLAuthenticationFailed) || errors.Is(err, sarama.ErrIllegalSASLState):
		return "authorization"
	case IsUnavailable(err):
		return "network"
	}
	return "other"
}
