package kafka

import (
	"context"
	"fmt"
	"net"
	"slices"
	"syscall"
	"testing"

	"github.com/IBM/sarama"

	"github.com/ordergateway/gateway/metrics"
)

func TestErrorKind(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{context.Canceled, ""},
		{fmt.Errorf("commit transaction: %w", context.DeadlineExceeded), "timeout"},
		{sarama.ErrRequestTimedOut, "timeout"},
		{&net.OpError{Op: "dial", Err: timeoutErr{}}, "timeout"},
		{fmt.Errorf("send: %w", sarama.ErrOutOfBrokers), "network"},
		{&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, "network"},
		{sarama.ErrNotLeaderForPartition, "not_leader"},
		{sarama.ErrConsumerCoordinatorNotAvailable, "not_leader"},
		{fmt.Errorf("commit transaction: fenced: (%w)", sarama.ErrProducerFenced), "fenced"},
		{sarama.ErrIllegalGeneration, "fenced"},
		{sarama.ErrMessageSizeTooLarge, "refused"},
		{sarama.ProducerErrors{{Err: sarama.ErrInvalidRecord}}, "refused"},
		{sarama.ErrTopicAuthorizationFailed, "authorization"},
		{sarama.ErrConcurrentTransactions, "other"},
		{fmt.Errorf("something else"), "other"},
	} {
		got := ErrorKind(c.err)
		if got != c.want {
			t.Errorf("ErrorKind(%v) = %q, want %q", c.err, got, c.want)
		}
		if got != "" && !slices.Contains(metrics.BrokerErrorKinds, got) {
			t.Errorf("ErrorKind(%v) = %q, not one of metrics.BrokerErrorKinds", c.err, got)
		}
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }
