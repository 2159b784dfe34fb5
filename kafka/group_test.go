package kafka

import (
	"context"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

func sendAll(ch chan<- *sarama.ConsumerMessage, n int) {
	for i := range n {
		ch <- &sarama.ConsumerMessage{Offset: int64(i)}
	}
}

func TestNextBatchWithin(t *testing.T) {
	ctx := context.Background()

	t.Run("takes what arrives during the linger, up to max", func(t *testing.T) {
		ch := make(chan *sarama.ConsumerMessage, 10)
		sendAll(ch, 1)
		go func() {
			time.Sleep(5 * time.Millisecond)
			sendAll(ch, 2)
		}()
		// The linger is far longer than the test: the batch ends because
		// it reached max, with the two late messages in it.
		batch, ok := NextBatchWithin(ctx, ch, 3, time.Hour)
		if !ok || len(batch) != 3 {
			t.Fatalf("got %d messages (ok %v), want 3", len(batch), ok)
		}
	})
	t.Run("ends when the linger has passed", func(t *testing.T) {
		ch := make(chan *sarama.ConsumerMessage, 10)
		sendAll(ch, 2)
		batch, ok := NextBatchWithin(ctx, ch, 10, 20*time.Millisecond)
		if !ok || len(batch) != 2 {
			t.Fatalf("got %d messages (ok %v), want the 2 waiting", len(batch), ok)
		}
	})
	t.Run("no linger takes only what is waiting", func(t *testing.T) {
		ch := make(chan *sarama.ConsumerMessage, 10)
		sendAll(ch, 2)
		batch, ok := NextBatchWithin(ctx, ch, 10, 0)
		if !ok || len(batch) != 2 {
			t.Fatalf("got %d messages (ok %v), want 2", len(batch), ok)
		}
	})
	t.Run("a channel closed during the linger ends the batch", func(t *testing.T) {
		ch := make(chan *sarama.ConsumerMessage, 10)
		sendAll(ch, 1)
		close(ch)
		batch, ok := NextBatchWithin(ctx, ch, 10, time.Hour)
		if !ok || len(batch) != 1 {
			t.Fatalf("got %d messages (ok %v), want 1", len(batch), ok)
		}
	})
	t.Run("a context ended during the linger ends the batch", func(t *testing.T) {
		ch := make(chan *sarama.ConsumerMessage, 10)
		sendAll(ch, 1)
		cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		defer cancel()
		batch, ok := NextBatchWithin(cctx, ch, 10, time.Hour)
		if !ok || len(batch) != 1 {
			t.Fatalf("got %d messages (ok %v), want 1", len(batch), ok)
		}
	})
	t.Run("nothing before the context ends", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if batch, ok := NextBatchWithin(cctx, make(chan *sarama.ConsumerMessage), 10, time.Hour); ok || len(batch) != 0 {
			t.Fatalf("got %d messages (ok %v), want none and not ok", len(batch), ok)
		}
	})
}
