package kafka

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
)

// Follower reads one partition for as long as it runs. When sarama gives
// the partition up (it closes the consumer on ErrOffsetOutOfRange, after
// the log was truncated or the topic deleted and created again), the
// follower starts again from the newest offset a second later, and says so
// in the log: a follower never stops for good while the process runs. What
// was written while it was not reading is not read.
type Follower struct {
	Consumer  sarama.Consumer
	Topic     string
	Partition int32
	Handle    func(*sarama.ConsumerMessage) // called for each message, in order
	Logger    *slog.Logger
	// Restarts counts the times the follower started again.
	Restarts atomic.Int64
}

// Run reads from first, an open consumer of the partition, until ctx ends;
// it then closes the consumer it is reading.
func (f *Follower) Run(ctx context.Context, first sarama.PartitionConsumer) {
	pc := first
	for {
		err := f.read(ctx, pc)
		if ctx.Err() != nil {
			return
		}
		f.Restarts.Add(1)
		f.Logger.Warn("consumer stopped; following again from the newest offset", "topic", f.Topic, "partition", f.Partition, "err", err)
		for pc = nil; pc == nil; {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			if pc, err = f.Consumer.ConsumePartition(f.Topic, f.Partition, sarama.OffsetNewest); err != nil {
				f.Logger.Warn("consumer not restarted; retrying", "topic", f.Topic, "partition", f.Partition, "err", err)
			}
		}
	}
}

// read hands pc's messages to Handle until pc closes (it returns the last
// error pc reported) or ctx ends (it closes pc).
func (f *Follower) read(ctx context.Context, pc sarama.PartitionConsumer) error {
	msgs, errs := pc.Messages(), pc.Errors()
	var last error
	for msgs != nil {
		select {
		case m, ok := <-msgs:
			if !ok {
				msgs = nil
				continue
			}
			f.Handle(m)
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			last = err
			f.Logger.Warn("consumer error", "topic", f.Topic, "partition", f.Partition, "err", err)
		case <-ctx.Done():
			pc.AsyncClose()
			for range msgs {
			}
			return ctx.Err()
		}
	}
	_ = pc.Close()
	return last
}
