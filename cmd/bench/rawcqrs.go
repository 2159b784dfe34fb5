package main

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/ordergateway/gateway/kafka"
	"github.com/ordergateway/gateway/view"
)

// rawProjector is the raw floor's read side: a consumer group on the raw
// events topic that, per batch of up to 500 events (lingering as the
// gateway's projector does, -projector-linger), writes one order document
// per order of the batch into the store and then one customer summary per
// customer of the batch (the gateway's two views), then commits the batch's
// offset. Documents it has not written before go in one unordered
// InsertMany per collection; the others are replaced by _id in unordered
// BulkWrites, on FerretDB in chunks of 16 (an update command holds a
// connection per replace of an existing document, and 500 at once wait on
// each other), as the view store sends them there. On FerretDB one write
// goes at a time. It is the least the gateway's read model costs on this
// broker and store: no decoding, no domain, no version guard, no views
// topic, summaries kept in memory and written in the same pass. Running it
// beside the raw hops shows what the floor becomes once every command also
// has to reach the views.
type rawProjector struct {
	group  *rawGroup
	client *mongo.Client
	coll   *mongo.Collection
	doc    view.OrderDoc // the shape written for every event, _id set per event
	chunk  int           // replaces per BulkWrite
	// oneWriter is held around each BulkWrite on FerretDB, which the view
	// store also writes to one write at a time (view/store.go writeTurn).
	oneWriter *sync.Mutex
	written   atomic.Int64
	failed    atomic.Int64
	logger    *slog.Logger

	// The customer summaries, kept in memory, and their collection. A
	// raw event names no customer: rawCustomer derives one from its key.
	customers *mongo.Collection
	sumMu     sync.Mutex // one summary writer for all partitions, as the gateway has
	summaries map[string]*view.CustomerDoc
	counted   map[string]view.Contribution // by order, what its customer's summary counts (under sumMu)
	stored    map[string]bool              // summaries written at least once (under sumMu)
	known     sync.Map                     // order ids written at least once

	// track, when set, records when each event was written (for lag).
	track *writeTimes
}

// writeTimes records, per order, when the raw read model finished writing
// each of its events: at[id][n-1] is when the order's n-th event was in
// both views.
type writeTimes struct {
	mu sync.Mutex
	at map[string][]time.Time
}

// of returns when order id's n-th event was written.
func (w *writeTimes) of(id string, n int) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if ts := w.at[id]; len(ts) >= n {
		return ts[n-1], true
	}
	return time.Time{}, false
}

// rawCustomers is how many customers the raw orders belong to (the
// throughput load's count: 64 workers with 10 customers each).
const rawCustomers = 640

func rawCustomer(key string) string {
	h := fnv.New32a()
	h.Write([]byte(key))
	return fmt.Sprintf("raw-c-%03d", h.Sum32()%rawCustomers)
}

// startRawProjector projects the raw events topic of prefix into the
// database prefix's orders collection (created with the view indexes).
// With trackWrites it records when each event was written (rawProjector.track).
func startRawProjector(ctx context.Context, e *env, prefix string, trackWrites bool) (*rawProjector, error) {
	c, coll, ferret, err := openRawOrders(ctx, e, prefix)
	if err != nil {
		return nil, err
	}
	var oneWriter *sync.Mutex
	if ferret {
		oneWriter = &sync.Mutex{}
	}
	_, docs := projEvents(1)
	p := &rawProjector{client: c, coll: coll, doc: docs[0], chunk: replaceChunk(ferret), oneWriter: oneWriter, logger: e.logger,
		customers: c.Database(prefix).Collection("customers"), summaries: map[string]*view.CustomerDoc{}, stored: map[string]bool{}}
	if trackWrites {
		p.track = &writeTimes{at: map[string][]time.Time{}}
	}
	topics := kafka.NewTopics(prefix)
	if p.group, err = startRawGroup(e.brokers, "bench-raw-projector", prefix+".raw-projector", topics.Events, p.consumeClaim, e.logger); err != nil {
		c.Disconnect(context.Background())
		return nil, fmt.Errorf("raw projector: %w", err)
	}
	return p, nil
}

func (p *rawProjector) consumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	ctx := sess.Context()
	for {
		batch, ok := kafka.NextBatchWithin(ctx, claim.Messages(), 500, projectorLinger)
		if !ok {
			return nil
		}
		// One write per order of the batch, as the gateway's projector folds
		// an order's events. The raw events carry no state to fold; the
		// document's version is its last event's offset, so that every write
		// changes the stored document (a replacement equal to it is not
		// written at all, by FerretDB or MongoDB).
		last := make(map[string]int64, len(batch))
		var keys []string
		for _, m := range batch {
			k := string(m.Key)
			if _, ok := last[k]; !ok {
				keys = append(keys, k)
			}
			last[k] = m.Offset
		}
		var (
			inserts  []any
			replaces []mongo.WriteModel
		)
		docs := make([]view.OrderDoc, len(keys))
		for i, k := range keys {
			d := p.doc
			d.ID, d.Version, d.CustomerID = k, int(last[k])+1, rawCustomer(k)
			docs[i] = d
			if _, seen := p.known.Load(k); seen {
				replaces = append(replaces, mongo.NewReplaceOneModel().SetFilter(bson.D{{Key: "_id", Value: d.ID}}).SetReplacement(d))
			} else {
				inserts = append(inserts, d)
			}
		}
		err := p.write(ctx, p.coll, inserts, replaces)
		if err == nil {
			for _, k := range keys {
				p.known.Store(k, true)
			}
			err = p.writeSummaries(ctx, docs)
		}
		failed := err != nil
		if failed {
			if ctx.Err() != nil {
				return nil // closed with a backlog: not a failure
			}
			// The floor does not retry: a failure is counted and shown (the
			// first one logged).
			if p.failed.Load() == 0 {
				p.logger.Warn("raw projector: write failed", "err", err)
			}
		}
		if !failed && p.track != nil {
			now := time.Now()
			p.track.mu.Lock()
			for _, m := range batch {
				p.track.at[string(m.Key)] = append(p.track.at[string(m.Key)], now)
			}
			p.track.mu.Unlock()
		}
		// Counted in events, as the hops are.
		if failed {
			p.failed.Add(int64(len(batch)))
		} else {
			p.written.Add(int64(len(batch)))
		}
		sess.MarkMessage(batch[len(batch)-1], "")
		sess.Commit()
	}
}

// write inserts docs in one InsertMany and sends the replaces in chunks of
// p.chunk, one writer at a time on FerretDB; it goes on after a failed
// write and returns the first error.
func (p *rawProjector) write(ctx context.Context, coll *mongo.Collection, docs []any, models []mongo.WriteModel) error {
	var first error
	if len(docs) > 0 {
		if p.oneWriter != nil {
			p.oneWriter.Lock()
		}
		_, first = coll.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
		if p.oneWriter != nil {
			p.oneWriter.Unlock()
		}
	}
	for len(models) > 0 {
		n := min(len(models), p.chunk)
		if p.oneWriter != nil {
			p.oneWriter.Lock()
		}
		_, err := coll.BulkWrite(ctx, models[:n], options.BulkWrite().SetOrdered(false))
		if p.oneWriter != nil {
			p.oneWriter.Unlock()
		}
		if first == nil {
			first = err
		}
		models = models[n:]
	}
	return first
}

// writeSummaries applies a batch's order documents to their customers'
// summaries and writes the summaries that changed (inserting those not
// written before), one customer write for all of the batch's orders of
// that customer.
func (p *rawProjector) writeSummaries(ctx context.Context, docs []view.OrderDoc) error {
	p.sumMu.Lock()
	defer p.sumMu.Unlock()
	var changed []string
	seen := map[string]bool{}
	for _, d := range docs {
		s := p.summaries[d.CustomerID]
		if s == nil {
			s = &view.CustomerDoc{ID: d.CustomerID}
			p.summaries[d.CustomerID] = s
		}
		if p.counted == nil {
			p.counted = map[string]view.Contribution{}
		}
		counted := countOrder(s, p.counted[d.ID], d)
		p.counted[d.ID] = view.ContributionOf(d.ToOrder())
		if counted && !seen[d.CustomerID] {
			seen[d.CustomerID] = true
			changed = append(changed, d.CustomerID)
		}
	}
	var (
		inserts  []any
		replaces []mongo.WriteModel
	)
	for _, cid := range changed {
		if p.stored[cid] {
			replaces = append(replaces, mongo.NewReplaceOneModel().SetFilter(bson.D{{Key: "_id", Value: cid}}).SetReplacement(*p.summaries[cid]))
		} else {
			inserts = append(inserts, *p.summaries[cid])
		}
	}
	if err := p.write(ctx, p.customers, inserts, replaces); err != nil {
		return err
	}
	for _, cid := range changed {
		p.stored[cid] = true
	}
	return nil
}

// waitFor waits until n events have been written (or failed), for at most
// timeout.
func (p *rawProjector) waitFor(ctx context.Context, n int64, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for p.written.Load()+p.failed.Load() < n {
		select {
		case <-ctx.Done():
			return fmt.Errorf("raw projector wrote %d of %d events: %w", p.written.Load(), n, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

func (p *rawProjector) Close() {
	p.group.Close()
	p.client.Disconnect(context.Background())
}
