// Package live follows the views topic: every gateway instance reads all of
// its partitions (no consumer group, from the end at start) and fans each
// order document out in process, to read-your-writes waits and to GraphQL
// subscriptions. A change made through any instance reaches every instance.
package live

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"go.opentelemetry.io/otel/trace"

	"github.com/ordergateway/gateway/kafka"
	"github.com/ordergateway/gateway/tracing"
	"github.com/ordergateway/gateway/view"
)

// Feed consumes the views topic and dispatches order documents.
type Feed struct {
	logger    *slog.Logger
	client    sarama.Client
	consumer  sarama.Consumer
	followers []*kafka.Follower
	stop      context.CancelFunc
	wg        sync.WaitGroup

	mu      sync.Mutex
	waiters map[string]map[chan struct{}]struct{} // order id → waiters to wake on any change
	hub     *Hub
	tracer  *tracing.Tracer
	traces  traces // tracing on: the trace context of recent changes
}

// FeedConfig configures a Feed.
type FeedConfig struct {
	Brokers   []string
	Topics    kafka.Topics
	FetchWait time.Duration
	Logger    *slog.Logger
	// Security is how the clients connect (TLS, SASL); nil: plaintext.
	Security *kafka.Security
	// Tracer, if set, keeps the trace context each view change carries
	// for the subscription updates it leads to (TraceOf); nil: off.
	Tracer *tracing.Tracer
}

// NewFeed starts following the views topic from its current end.
func NewFeed(cfg FeedConfig) (*Feed, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	sc := cfg.Security.Config("order-gateway-feed", cfg.FetchWait)
	client, err := sarama.NewClient(cfg.Brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("views feed: %w", err)
	}
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("views feed: %w", err)
	}
	f := &Feed{logger: cfg.Logger, client: client, consumer: consumer, waiters: map[string]map[chan struct{}]struct{}{}, hub: NewHub(), tracer: cfg.Tracer}
	parts, err := consumer.Partitions(cfg.Topics.Views)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("views feed: partitions of %s: %w", cfg.Topics.Views, err)
	}
	firsts := make([]sarama.PartitionConsumer, 0, len(parts))
	for _, p := range parts {
		pc, err := kafka.ConsumeWhenLed(client, consumer, cfg.Topics.Views, p, sarama.OffsetNewest)
		if err != nil {
			for _, pc := range firsts {
				pc.AsyncClose()
			}
			f.Close()
			return nil, fmt.Errorf("views feed: partition %d: %w", p, err)
		}
		firsts = append(firsts, pc)
	}
	ctx, stop := context.WithCancel(context.Background())
	f.stop = stop
	for i, p := range parts {
		fl := &kafka.Follower{Consumer: consumer, Topic: cfg.Topics.Views, Partition: p, Handle: f.read, Logger: cfg.Logger.With("component", "views feed")}
		f.followers = append(f.followers, fl)
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			fl.Run(ctx, firsts[i])
		}()
	}
	return f, nil
}

// Restarts counts the times a partition's consumer stopped and was started
// again (see kafka.Follower).
func (f *Feed) Restarts() int64 {
	var n int64
	for _, fl := range f.followers {
		n += fl.Restarts.Load()
	}
	return n
}

// Hub is where subscriptions register.
func (f *Feed) Hub() *Hub { return f.hub }

// read takes one message of the views topic.
func (f *Feed) read(m *sarama.ConsumerMessage) {
	// Most changes interest no one in this instance (no subscription, no
	// read-your-writes wait): they are not decoded. A wait or a one-order
	// subscription that registers after this check reads the store next,
	// which already holds the change (the projector writes a view before it
	// publishes it); for a matching subscription, a change it missed that
	// way is one made before it began.
	if f.tracer == nil && len(m.Key) > 0 && !f.hub.wants(string(m.Key)) && !f.waited(string(m.Key)) {
		return
	}
	var c view.Change
	if err := json.Unmarshal(m.Value, &c); err != nil || c.Order.ID == "" {
		f.logger.Warn("views feed: undecodable view change", "partition", m.Partition, "offset", m.Offset, "err", err)
		return
	}
	if f.tracer != nil {
		f.traces.put(c.Order.ID, c.Order.Version, trace.SpanContextFromContext(f.tracer.Extract(context.Background(), m.Headers)))
	}
	f.wake(c.Order.ID)
	f.hub.Publish(c)
}

// waited reports whether a read-your-writes wait is on orderID.
func (f *Feed) waited(orderID string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.waiters[orderID]) > 0
}

func (f *Feed) wake(orderID string) {
	f.mu.Lock()
	ws := f.waiters[orderID]
	delete(f.waiters, orderID)
	f.mu.Unlock()
	for ch := range ws {
		close(ch)
	}
}

// WakeAll wakes every read-your-writes wait, to look at the store again:
// after a switch of the views' generation, a wait may be satisfied by the
// new generation without a change to come.
func (f *Feed) WakeAll() {
	f.mu.Lock()
	all := f.waiters
	f.waiters = map[string]map[chan struct{}]struct{}{}
	f.mu.Unlock()
	for _, ws := range all {
		for ch := range ws {
			close(ch)
		}
	}
}

// Changed returns a channel closed at the next change of orderID, and a
// function to call if the caller stops waiting first.
func (f *Feed) Changed(orderID string) (<-chan struct{}, func()) {
	ch := make(chan struct{})
	f.mu.Lock()
	ws := f.waiters[orderID]
	if ws == nil {
		ws = map[chan struct{}]struct{}{}
		f.waiters[orderID] = ws
	}
	ws[ch] = struct{}{}
	f.mu.Unlock()
	return ch, func() {
		f.mu.Lock()
		if ws := f.waiters[orderID]; ws != nil {
			delete(ws, ch)
			if len(ws) == 0 {
				delete(f.waiters, orderID)
			}
		}
		f.mu.Unlock()
	}
}

// Close stops following the topic and ends every subscription.
func (f *Feed) Close() error {
	if f.stop != nil {
		f.stop()
	}
	f.wg.Wait()
	f.hub.Close()
	f.consumer.Close()
	return f.client.Close()
}

// Waiter implements read-your-writes waits on top of a Feed and the store.
type Waiter struct {
	Feed  *Feed
	Store interface {
		Order(ctx context.Context, id string) (*view.OrderDoc, error)
	}
}

// WaitForOrder returns true once the stored view of orderID is at version or
// later, false if ctx ends first. It is woken by the views topic: it
// registers for the next change before each look at the store, so no change
// slips between the look and the wait.
func (w Waiter) WaitForOrder(ctx context.Context, orderID string, version int) bool {
	for {
		changed, stop := w.Feed.Changed(orderID)
		view.Repin(ctx) // the active generation, pinned for the caller's read after (view.Pin)
		d, err := w.Store.Order(ctx, orderID)
		if err == nil && d != nil && d.Version >= version {
			stop()
			return true
		}
		select {
		case <-changed:
		case <-ctx.Done():
			stop()
			return false
		}
	}
}
