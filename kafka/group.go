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
			level := slog.LevelWarn
			if errors.Is(err, context.Canceled) || ctx.Err() != nil {
				level = slog.LevelDebug // ended on purpose: a Restart or a stop (whose cause was logged) or a Close
			}
			logger.Log(ctx, level, "consumer group session ended; rejoining", "topics", topics, "err", err)
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

// NextBatch waits for one message, then takes what else is already waiting,
// up to max in all: a batch never waits for more messages. ok is false when
// the channel closed or ctx ended before the first message.
func NextBatch(ctx context.Context, msgs <-chan *sarama.ConsumerMessage, max int) (batch []*sarama.ConsumerMessage, ok bool) {
	select {
	case m, open := <-msgs:
		if !open {
			return nil, false
		}
		batch = append(batch, m)
	case <-ctx.Done():
		return nil, false
	}
	for len(batch) < max {
		select {
		case m, open := <-msgs:
			if !open {
				return batch, true
			}
			batch = append(batch, m)
		default:
			return batch, true
		}
	}
	return batch, true
}

// NextBatchWithin is NextBatch that, after the first message, also waits up
// to linger for more, up to max in all: fewer, larger batches for a consumer
// whose cost is per batch rather than per message. With linger 0 it is
// NextBatch.
func NextBatchWithin(ctx context.Context, msgs <-chan *sarama.ConsumerMessage, max int, linger time.Duration) (batch []*sarama.ConsumerMessage, ok bool) {
	batch, ok = NextBatch(ctx, msgs, max)
	if !ok || linger <= 0 || len(batch) >= max {
		return batch, ok
	}
	t := time.NewTimer(linger)
	defer t.Stop()
	for len(batch) < max {
		select {
		case m, open := <-msgs:
			if !open {
				return batch, true
			}
			batch = append(batch, m)
		case <-t.C:
			return batch, true
		case <-ctx.Done():
			return batch, true
		}
	}
	return batch, true
}
