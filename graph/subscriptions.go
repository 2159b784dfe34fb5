package graph

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/graph/model"
	"github.com/ordergateway/gateway/live"
	"github.com/ordergateway/gateway/view"
)

// Live is where subscriptions register; *live.Hub implements it.
type Live interface {
	SubscribeOrder(orderID string) *live.Subscription
	SubscribeMatching(match func(view.OrderDoc) bool) *live.Subscription
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
// state and after it only higher versions.
func (r *Resolver) subscribeOrder(ctx context.Context, id string) (<-chan *model.Order, error) {
	release, err := acquire(ctx)
	if err != nil {
		return nil, err
	}
	sub := r.Live.SubscribeOrder(id)
	current, err := r.snapshot(ctx, id)
	if err != nil {
		sub.Close()
		release()
		return nil, r.internal(ctx, err)
	}
	out := make(chan *model.Order, 1)
	go func() {
		defer release()
		defer sub.Close()
		defer close(out)
		last := 0
		if current != nil {
			if !send(ctx, out, *current) {
				return
			}
			last = current.Version
		}
		pump(ctx, sub, out, func(d view.OrderDoc) bool {
			if d.Version <= last {
				return false
			}
			last = d.Version
			return true
		})
	}()
	return out, nil
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
// that makes an order leave it.
func (r *Resolver) subscribeOrders(ctx context.Context, customerID string, statuses []model.OrderStatus) (<-chan *model.Order, error) {
	release, err := acquire(ctx)
	if err != nil {
		return nil, err
	}
	sub := r.Live.SubscribeMatching(func(d view.OrderDoc) bool {
		return (customerID == "" || d.CustomerID == customerID) &&
			(len(statuses) == 0 || slices.Contains(statuses, model.OrderStatus(d.Status)))
	})
	out := make(chan *model.Order, 1)
	go func() {
		defer release()
		defer sub.Close()
		defer close(out)
		sent := map[string]int{}
		pump(ctx, sub, out, func(d view.OrderDoc) bool {
			if d.Version <= sent[d.ID] {
				return false
			}
			if len(sent) >= maxTrackedOrders {
				clear(sent)
			}
			sent[d.ID] = d.Version
			return true
		})
	}()
	return out, nil
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
