package live

import (
	"context"
	"sync"
	"time"

	"github.com/ordergateway/gateway/view"
)

// Snapshots reads the current view of an order for new subscriptions, with
// at most one store read per order in flight: callers that arrive while a
// read runs share the next one. Every caller has registered its
// subscription before it asks, and a read starts only after all the callers
// it serves have asked, so no change can fall between a subscriber's
// registration and its snapshot. A thousand subscribers to one order cost
// one or two reads, not a thousand.
type Snapshots struct {
	Store interface {
		Order(ctx context.Context, id string) (*view.OrderDoc, error)
	}

	mu     sync.Mutex
	orders map[string]*snapshotState
}

type snapshotState struct {
	running bool
	next    *snapshotRead // callers waiting for the next read
}

type snapshotRead struct {
	done chan struct{}
	doc  *view.OrderDoc
	err  error
}

// Order returns the order's view (nil if there is none), or ctx's error if
// ctx ends first.
func (s *Snapshots) Order(ctx context.Context, id string) (*view.OrderDoc, error) {
	s.mu.Lock()
	if s.orders == nil {
		s.orders = map[string]*snapshotState{}
	}
	st := s.orders[id]
	if st == nil {
		st = &snapshotState{}
		s.orders[id] = st
	}
	if st.next == nil {
		st.next = &snapshotRead{done: make(chan struct{})}
	}
	r := st.next
	if !st.running {
		st.running = true
		go s.run(id, st)
	}
	s.mu.Unlock()
	select {
	case <-r.done:
		return r.doc, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// run serves the waiting callers of one order, one read at a time, until
// none are left.
func (s *Snapshots) run(id string, st *snapshotState) {
	for {
		s.mu.Lock()
		r := st.next
		if r == nil {
			st.running = false
			delete(s.orders, id)
			s.mu.Unlock()
			return
		}
		st.next = nil
		s.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		r.doc, r.err = s.Store.Order(ctx, id)
		cancel()
		close(r.done)
	}
}
