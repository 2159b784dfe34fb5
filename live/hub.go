package live

import (
	"sync"
	"sync/atomic"

	"github.com/ordergateway/gateway/view"
)

// DefaultBuffer is how many distinct orders a subscription holds for a
// subscriber that has not read them yet. Each holds only its newest state.
// A matching subscription that would need more is ended, TooSlow: it never
// forgets an order silently.
const DefaultBuffer = 256

// Hub fans changes out to subscriptions. Publish never blocks: every
// subscription has a bounded buffer that keeps only the newest state of each
// order, so a slow subscriber can fall behind but cannot hold anyone up.
type Hub struct {
	mu      sync.RWMutex
	byOrder map[string]map[*Subscription]struct{}
	all     map[*Subscription]struct{}
	closed  bool

	coalesced atomic.Int64 // states replaced by a newer one before the subscriber took them
	tooSlow   atomic.Int64 // subscriptions ended TooSlow
}

// NewHub returns an empty hub.
func NewHub() *Hub {
	return &Hub{byOrder: map[string]map[*Subscription]struct{}{}, all: map[*Subscription]struct{}{}}
}

// Subscription receives changes. Ready is signalled (or notify called) when
// Drain has something; Done is closed when the hub closes.
type Subscription struct {
	hub     *Hub
	orderID string
	match   func(view.OrderDoc) bool
	max     int
	notify  func()

	mu      sync.Mutex
	one     view.OrderDoc // the pending state of a one-order subscription
	hasOne  bool
	pending map[string]view.OrderDoc // the pending states of a matching subscription
	order   []string                 // ids in pending, oldest first
	tooSlow bool                     // ended because its buffer was full
	ready   chan struct{}
	done    chan struct{}
	closed  bool
}

// SubscribeOrder receives every change of one order.
//
// With notify nil the subscriber waits on Ready and Done. Otherwise notify is
// called instead, after each change is buffered and when the hub ends the
// subscription, from the publisher's goroutine with no lock of the
// subscription held; it must not block. A subscriber that waits without a
// goroutine of its own (the websocket transport) uses it.
func (h *Hub) SubscribeOrder(orderID string, notify func()) *Subscription {
	s := h.newSub(orderID, nil, notify)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		s.end()
		return s
	}
	set := h.byOrder[orderID]
	if set == nil {
		set = map[*Subscription]struct{}{}
		h.byOrder[orderID] = set
	}
	set[s] = struct{}{}
	return s
}

// SubscribeMatching receives the changes for which match holds for the new
// state, or for the previous status (an order leaving the filter).
// match is called with the new state, and with the new state carrying the
// previous status. notify is as for SubscribeOrder.
func (h *Hub) SubscribeMatching(match func(view.OrderDoc) bool, notify func()) *Subscription {
	s := h.newSub("", match, notify)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		s.end()
		return s
	}
	h.all[s] = struct{}{}
	return s
}

func (h *Hub) newSub(orderID string, match func(view.OrderDoc) bool, notify func()) *Subscription {
	s := &Subscription{hub: h, orderID: orderID, match: match, max: DefaultBuffer, notify: notify, done: make(chan struct{})}
	if match != nil {
		s.pending = map[string]view.OrderDoc{}
	}
	if notify == nil {
		s.ready = make(chan struct{}, 1)
	}
	return s
}

// Publish offers c to every interested subscription without blocking.
func (h *Hub) Publish(c view.Change) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for s := range h.byOrder[c.Order.ID] {
		s.offer(c.Order)
	}
	if len(h.all) == 0 {
		return
	}
	before := c.Order
	if c.PreviousStatus != "" {
		before.Status = c.PreviousStatus
	}
	for s := range h.all {
		if s.match(c.Order) || (c.PreviousStatus != "" && s.match(before)) {
			s.offer(c.Order)
		}
	}
}

// wants reports whether a change of orderID may interest a subscription:
// one of that order, or any matching one.
func (h *Hub) wants(orderID string) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.all) > 0 || len(h.byOrder[orderID]) > 0
}

// Close ends every subscription.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for _, set := range h.byOrder {
		for s := range set {
			s.end()
		}
	}
	for s := range h.all {
		s.end()
	}
	h.byOrder, h.all = map[string]map[*Subscription]struct{}{}, map[*Subscription]struct{}{}
}

// end closes s from the hub's side and tells its subscriber.
func (s *Subscription) end() {
	if s.close() && s.notify != nil {
		s.notify()
	}
}

// Counts is the number of live subscriptions of one order (SubscribeOrder)
// and of the matching ones (SubscribeMatching).
func (h *Hub) Counts() (oneOrder, matching int) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, set := range h.byOrder {
		oneOrder += len(set)
	}
	return oneOrder, len(h.all)
}

// Coalesced is how many states were replaced by a newer state of the same
// order before their subscriber took them.
func (h *Hub) Coalesced() int64 { return h.coalesced.Load() }

// TooSlow is how many subscriptions were ended because their subscriber
// fell too far behind.
func (h *Hub) TooSlow() int64 { return h.tooSlow.Load() }

// Count is the number of live subscriptions.
func (h *Hub) Count() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	n := len(h.all)
	for _, set := range h.byOrder {
		n += len(set)
	}
	return n
}

func (s *Subscription) offer(d view.OrderDoc) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	if s.match == nil { // one order: one slot
		if !s.hasOne || d.Version > s.one.Version {
			if s.hasOne {
				s.hub.coalesced.Add(1)
			}
			s.one, s.hasOne = d, true
		}
	} else if cur, ok := s.pending[d.ID]; ok {
		if d.Version > cur.Version {
			s.pending[d.ID] = d // coalesce: the newest state replaces the older one
			s.hub.coalesced.Add(1)
		}
	} else {
		if len(s.order) >= s.max { // too far behind: end it rather than forget an order
			s.tooSlow = true
			s.hub.tooSlow.Add(1)
			s.mu.Unlock()
			s.end() // the subscriber unregisters it (Close) when it sees it ended
			return
		}
		s.pending[d.ID] = d
		s.order = append(s.order, d.ID)
	}
	s.mu.Unlock()
	s.signal()
}

func (s *Subscription) signal() {
	if s.notify != nil {
		s.notify()
		return
	}
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

// Ready is signalled when Drain has changes to return (nil for a
// subscription with a notify function).
func (s *Subscription) Ready() <-chan struct{} { return s.ready }

// Closed reports whether the subscription has ended.
func (s *Subscription) Closed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Done is closed when the subscription ends from the hub's side.
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Drain returns the pending changes, oldest order first, and empties the
// buffer.
func (s *Subscription) Drain() []view.OrderDoc { return s.DrainTo(nil) }

// DrainTo is Drain appending to out, so a caller can reuse its slice.
func (s *Subscription) DrainTo(out []view.OrderDoc) []view.OrderDoc {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hasOne {
		out = append(out, s.one)
		s.one, s.hasOne = view.OrderDoc{}, false
	}
	for _, id := range s.order {
		out = append(out, s.pending[id])
	}
	clear(s.pending)
	s.order = s.order[:0]
	return out
}

// TooSlow reports whether the hub ended the subscription because its
// subscriber fell DefaultBuffer orders behind.
func (s *Subscription) TooSlow() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tooSlow
}

// Close unregisters the subscription and frees its buffer.
func (s *Subscription) Close() {
	h := s.hub
	h.mu.Lock()
	if set := h.byOrder[s.orderID]; set != nil {
		delete(set, s)
		if len(set) == 0 {
			delete(h.byOrder, s.orderID)
		}
	}
	delete(h.all, s)
	h.mu.Unlock()
	s.close()
}

// close ends the subscription; the hub's side also notifies the subscriber.
func (s *Subscription) close() (first bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.done)
		s.pending, s.order, s.one, s.hasOne = nil, nil, view.OrderDoc{}, false
		return true
	}
	return false
}
