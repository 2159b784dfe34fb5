package graph

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/graph/model"
	"github.com/ordergateway/gateway/live"
	"github.com/ordergateway/gateway/view"
)

// Live is where subscriptions register; *live.Hub implements it.
// notify is nil or a callback, as in live.Hub.
type Live interface {
	SubscribeOrder(orderID string, notify func()) *live.Subscription
	SubscribeMatching(match func(view.OrderDoc) bool, notify func()) *live.Subscription
}

// maxTrackedOrders bounds the per-subscription memory of the versions sent
// for ordersUpdated; past it the memory is reset (a rare redelivery of an
// old version may then pass).
const maxTrackedOrders = 10000

type connSubsKey struct{}

// WithSubscriptionLimit marks ctx as one connection that may hold at most
// max subscriptions at once (the websocket transport's init hook calls it).
func WithSubscriptionLimit(ctx context.Context, max int) context.Context {
	return context.WithValue(ctx, connSubsKey{}, &connSubs{max: int32(max)})
}

type connSubs struct {
	max int32
	n   atomic.Int32
}

// acquire takes one of the connection's subscription slots; release gives it
// back.
func acquire(ctx context.Context) (release func(), err error) {
	c, _ := ctx.Value(connSubsKey{}).(*connSubs)
	if c == nil {
		return func() {}, nil
	}
	if c.n.Add(1) > c.max {
		c.n.Add(-1)
		return nil, &domain.Error{Code: domain.CodeInvalidInput, Message: fmt.Sprintf("a connection may hold at most %d subscriptions", c.max)}
	}
	return func() { c.n.Add(-1) }, nil
}

// subscribeOrder registers for the order's changes before it reads the
// current state, so no change falls between the two; it then sends the
// state and after it only higher versions. With owner set (a customer's
// subscription) it sends only states of an order of that customer's:
// another customer's order looks like one that does not exist.
func (r *Resolver) subscribeOrder(ctx context.Context, id, owner string) (<-chan *model.Order, error) {
	release, err := acquire(ctx)
	if err != nil {
		return nil, err
	}
	st := &orderStream{release: release, target: pullTargetFrom(ctx)}
	st.sub = r.Live.SubscribeOrder(id, st.notify())
	current, err := r.snapshot(ctx, id)
	if err != nil {
		st.close()
		return nil, r.internal(ctx, err)
	}
	last := 0
	if current != nil && (owner == "" || current.CustomerID == owner) {
		st.first, last = current, current.Version
	}
	st.fresh = func(d view.OrderDoc) bool {
		if d.Version <= last || owner != "" && d.CustomerID != owner {
			return false
		}
		last = d.Version
		return true
	}
	return st.start(ctx), nil
}

// snapshot reads an order's current view for a new subscription, through
// the shared reader when there is one.
func (r *Resolver) snapshot(ctx context.Context, id string) (*view.OrderDoc, error) {
	if r.Snapshots != nil {
		return r.Snapshots.Order(ctx, id)
	}
	return r.Views.Order(ctx, id)
}

// subscribeOrders sends every change that matches the filter, and the change
// that makes an order leave it. With owner set (a customer's subscription),
// only that customer's orders match, whatever customerID says.
func (r *Resolver) subscribeOrders(ctx context.Context, customerID, owner string, statuses []model.OrderStatus) (<-chan *model.Order, error) {
	release, err := acquire(ctx)
	if err != nil {
		return nil, err
	}
	st := &orderStream{release: release, target: pullTargetFrom(ctx)}
	st.sub = r.Live.SubscribeMatching(func(d view.OrderDoc) bool {
		return (customerID == "" || d.CustomerID == customerID) && (owner == "" || d.CustomerID == owner) &&
			(len(statuses) == 0 || slices.Contains(statuses, model.OrderStatus(d.Status)))
	}, st.notify())
	sent := map[string]int{}
	st.fresh = func(d view.OrderDoc) bool {
		if d.Version <= sent[d.ID] {
			return false
		}
		if len(sent) >= maxTrackedOrders {
			clear(sent)
		}
		sent[d.ID] = d.Version
		return true
	}
	return st.start(ctx), nil
}

// pullTarget is a transport that delivers a subscription's updates without
// a goroutine per subscription: the resolver attaches its stream, the hub
// calls wake when the stream has something, and the transport then pulls.
// The websocket transport puts one in the context of each subscription.
type pullTarget interface {
	attach(s pullStream)
	// attached reports whether a stream is attached.
	attached() bool
	wake()
}

// pullStream is a subscription the transport pulls from. Only one
// goroutine at a time calls next and load.
type pullStream interface {
	// next returns the next state to send. When there is none, ended
	// reports whether the subscription is over (the hub closed).
	next() (d view.OrderDoc, ok, ended bool)
	// buffered reports whether next has a state without going to the
	// hub's buffer.
	buffered() bool
	// load puts d into the channel the resolver returned, for the
	// executor to read and marshal at once.
	load(d view.OrderDoc)
	// close unregisters the subscription and frees its slot; it is safe
	// to call more than once and at the same time as next.
	close()
	// endErr is why an ended subscription ended, if not normally: the
	// transport sends it instead of complete.
	endErr() *gqlerror.Error
}

// CodeSubscriberTooSlow ends a subscription whose subscriber fell too far
// behind the changes it asked for.
const CodeSubscriberTooSlow = "SUBSCRIBER_TOO_SLOW"

type pullTargetKey struct{}

func withPullTarget(ctx context.Context, t pullTarget) context.Context {
	return context.WithValue(ctx, pullTargetKey{}, t)
}

func pullTargetFrom(ctx context.Context) pullTarget {
	t, _ := ctx.Value(pullTargetKey{}).(pullTarget)
	return t
}

// orderStream is one subscription's state: the hub subscription, the first
// state to send, and which later states are fresh (fresh records what it
// accepts). Without a pull target it runs a goroutine that pushes into out;
// with one, the transport pulls through next.
type orderStream struct {
	sub     *live.Subscription
	first   *view.OrderDoc
	fresh   func(view.OrderDoc) bool
	release func()
	target  pullTarget
	out     chan *model.Order
	queue   []view.OrderDoc // drained from sub; those from head on are not yet taken
	head    int

	closeOnce sync.Once
}

// notify is the hub callback: nil (wait on the subscription's channels)
// unless a transport pulls.
func (st *orderStream) notify() func() {
	if st.target == nil {
		return nil
	}
	return st.target.wake
}

func (st *orderStream) close() {
	st.closeOnce.Do(func() {
		st.sub.Close()
		st.release()
	})
}

// start hands the stream to its pull target, or starts its goroutine.
func (st *orderStream) start(ctx context.Context) <-chan *model.Order {
	st.out = make(chan *model.Order, 1)
	if st.target != nil {
		st.target.attach(st)
		return st.out
	}
	go func() {
		defer st.close()
		defer close(st.out)
		if st.first != nil && !send(ctx, st.out, *st.first) {
			return
		}
		st.first = nil
		pump(ctx, st.sub, st.out, st.fresh)
	}()
	return st.out
}

func (st *orderStream) next() (view.OrderDoc, bool, bool) {
	d, ok := st.take()
	if !ok {
		return d, false, st.sub.Closed()
	}
	return d, true, false
}

func (st *orderStream) endErr() *gqlerror.Error {
	if !st.sub.TooSlow() {
		return nil
	}
	return &gqlerror.Error{Message: fmt.Sprintf("the subscriber fell more than %d orders behind; read the orders again and subscribe again", live.DefaultBuffer),
		Extensions: map[string]any{"code": CodeSubscriberTooSlow}}
}

func (st *orderStream) buffered() bool { return st.first != nil || st.head < len(st.queue) }

func (st *orderStream) load(d view.OrderDoc) {
	select { // empty a value the executor left when its context ended
	case <-st.out:
	default:
	}
	st.out <- orderModel(d)
}

// take returns the next state to send: the first one, then the fresh
// states in the hub's buffer.
func (st *orderStream) take() (view.OrderDoc, bool) {
	if d := st.first; d != nil {
		st.first = nil
		return *d, true
	}
	for {
		if st.head == len(st.queue) {
			clear(st.queue) // let go of the states already sent
			st.queue, st.head = st.sub.DrainTo(st.queue[:0]), 0
			if len(st.queue) == 0 {
				return view.OrderDoc{}, false
			}
		}
		d := st.queue[st.head]
		st.head++
		if st.fresh(d) {
			return d, true
		}
	}
}

// pump sends the subscription's changes that fresh accepts (fresh records
// what it accepts) until the subscriber or the hub goes away.
func pump(ctx context.Context, sub *live.Subscription, out chan<- *model.Order, fresh func(view.OrderDoc) bool) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-sub.Done():
			return
		case <-sub.Ready():
			for _, d := range sub.Drain() {
				if fresh(d) && !send(ctx, out, d) {
					return
				}
			}
		}
	}
}

// send hands one order to the transport, or gives up when the subscriber
// has gone. While it waits on a slow subscriber, newer states coalesce in
// the subscription's buffer.
func send(ctx context.Context, out chan<- *model.Order, d view.OrderDoc) bool {
	select {
	case out <- orderModel(d):
		return true
	case <-ctx.Done():
		return false
	}
}
