package projector

import (
	"context"
	"sync"
	"time"
)

// durableTimeout bounds one run of Config.Durable.
const durableTimeout = 10 * time.Second

// durability coalesces the claims' waits for Config.Durable: a wait returns
// the result of a run that started after the wait did, and one run answers
// every wait that came before it started, so the store is flushed at most
// once at a time however many partitions commit. Its waiters are the
// claims' committers, one wait each at a time: at most one per partition
// this instance projects.
type durability struct {
	fn      func(context.Context) error // nil: every write is durable when acknowledged
	mu      sync.Mutex
	running bool
	waiters []chan error
}

// wait returns once the writes acknowledged before the call are durable, or
// with the error of the run that was to make them so, or ctx's.
func (d *durability) wait(ctx context.Context) error {
	if d.fn == nil {
		return nil
	}
	done := make(chan error, 1)
	d.mu.Lock()
	d.waiters = append(d.waiters, done)
	if !d.running {
		d.running = true
		go d.run()
	}
	d.mu.Unlock()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (d *durability) run() {
	for {
		d.mu.Lock()
		waiters := d.waiters
		d.waiters = nil
		if len(waiters) == 0 {
			d.running = false
			d.mu.Unlock()
			return
		}
		d.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), durableTimeout)
		err := d.fn(ctx)
		cancel()
		for _, w := range waiters {
			w <- err
		}
	}
}
