package kafka

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

// GroupLoop keeps a consumer group member in its group: Run consumes session
// after session until ctx ends or the group is closed, and Restart ends the
// current session so that the member rejoins and its partitions start again
// from their committed offsets.
type GroupLoop struct {
	mu     sync.Mutex
	cancel context.CancelFunc
}

// Run consumes topics with h until ctx ends or group is closed. A session
// that ends with an error is logged and rejoined after a second.
func (l *GroupLoop) Run(ctx context.Context, group sarama.ConsumerGroup, topics []string, h sarama.ConsumerGroupHandler, logger *slog.Logger) error {
	for ctx.Err() == nil {
		sctx, cancel := context.WithCancel(ctx)
		l.mu.Lock()
		l.cancel = cancel
		l.mu.Unlock()
		err := group.Consume(sctx, topics, h)
		cancel()
		if errors.Is(err, sarama.ErrClosedConsumerGroup) {
			return nil
		}
		if err != nil {
			logger.Warn("consumer group session ended; rejoining", "topics", topics, "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
	return nil
}

// Restart ends the current session; Run rejoins.
func (l *GroupLoop) Restart() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cancel != nil {
		l.cancel()
	}
}
