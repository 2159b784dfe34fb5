package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"

	"github.com/ordergateway/gateway/command"
	"github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/kafka"
)

// snapState mirrors the JSON of command.orderState (unexported), the value
// the handler writes to and restores from the snapshots topic.
type snapState struct {
	SchemaVersion int           `json:"schemaVersion,omitempty"`
	Order         domain.Order  `json:"order"`
	Outcomes      []snapOutcome `json:"outcomes,omitempty"`
}

// snapWire is snapState as the handler's restore decodes it: the order is
// upcast from the snapshot's schema version (domain.UnmarshalOrder).
type snapWire struct {
	SchemaVersion int             `json:"schemaVersion"`
	Order         json.RawMessage `json:"order"`
	Outcomes      []snapOutcome   `json:"outcomes,omitempty"`
}

type snapOutcome struct {
	Key       string        `json:"key"`
	Hash      string        `json:"hash"`
	CommandID string        `json:"commandId"`
	Version   int           `json:"version"`
	Error     *domain.Error `json:"error,omitempty"`
}

// restore writes N snapshot records (one PENDING order each, one recorded
// outcome, as the handler leaves them after a placeOrder), then:
//   - baseline: reads the snapshots topic to its end with a raw sarama
//     consumer (all partitions at once), without and with JSON decoding;
//   - gateway: starts a fresh command.Handler (its group has no members, so it
//     is assigned all partitions, restores each from the snapshots topic as it
//     does on every assignment: fence, marker, read to the marker) and sends one
//     confirmOrder per partition through a command.Bus, each for an order that
//     only the restored state knows. The figure is the time from handler.Run
//     to the last of those answers (group join + fencing + restore + one hop).
func (b *bench) restore(ctx context.Context) error {
	n := b.o.orders
	name := b.env.name("restore")
	if err := ensureTopics(b.env.brokers, name); err != nil {
		return err
	}
	topics := kafka.NewTopics(name)

	// Write the snapshots.
	sc := kafka.Config("bench-snapshots", fetchWait)
	sc.Producer.Partitioner = sarama.NewHashPartitioner
	sc.Producer.Return.Successes = true
	sc.Producer.Flush.Frequency = 5 * time.Millisecond
	prod, err := sarama.NewAsyncProducer(b.env.brokers, sc)
	if err != nil {
		return fmt.Errorf("snapshot writer: %w", err)
	}
	var acked, failed atomic.Int64
	var firstErr atomic.Pointer[error]
	var pwg sync.WaitGroup
	pwg.Add(2)
	go func() {
		defer pwg.Done()
		for range prod.Successes() {
			acked.Add(1)
		}
	}()
	go func() {
		defer pwg.Done()
		for e := range prod.Errors() {
			failed.Add(1)
			err := e.Err
			firstErr.CompareAndSwap(nil, &err)
		}
	}()
	part := sarama.NewHashPartitioner(topics.Snapshots)
	probe := map[int32][]string{} // per partition: two order ids (probe, warm hop)
	base := time.Now().UTC().Truncate(time.Millisecond)
	wstart := time.Now()
	for i := range n {
		id := fmt.Sprintf("ord_r%07d", i)
		o := domain.Order{ID: id, CustomerID: fmt.Sprintf("c-%03d", i%100), Status: domain.StatusPending, Currency: "EUR",
			Items:   []domain.Item{{SKU: "TEA-1", Name: "Green tea", Quantity: 2, UnitPrice: 450}, {SKU: "MUG-2", Name: "Mug", Quantity: 1, UnitPrice: 1200}},
			History: []domain.StatusChange{{Status: domain.StatusPending, At: base}}, Version: 1, CreatedAt: base, UpdatedAt: base}
		v, _ := json.Marshal(snapState{SchemaVersion: domain.OrderVersion, Order: o, Outcomes: []snapOutcome{{Key: "key-" + id, Hash: "0123456789abcdef0123456789abcdef", CommandID: "cmd_" + id, Version: 1}}})
		msg := &sarama.ProducerMessage{Topic: topics.Snapshots, Key: sarama.StringEncoder(id), Value: sarama.ByteEncoder(v)}
		if p, err := part.Partition(msg, partitions); err == nil && len(probe[p]) < 2 {
			probe[p] = append(probe[p], id)
		}
		select {
		case prod.Input() <- msg:
		case <-ctx.Done():
			prod.AsyncClose()
			pwg.Wait()
			return ctx.Err()
		}
	}
	prod.AsyncClose()
	pwg.Wait()
	writeTook := time.Since(wstart)
	if f := failed.Load(); f > 0 {
		return fmt.Errorf("%d of %d snapshots not written: %v", f, n, *firstErr.Load())
	}
	if len(probe) != partitions {
		return fmt.Errorf("snapshots cover %d of %d partitions; use more -orders", len(probe), partitions)
	}
	b.note("restore: writing %d snapshot records (%d acked) took %s", n, acked.Load(), writeTook.Round(time.Millisecond))

	// Baselines.
	rawRead, count, err := readSnapshots(ctx, b.env.brokers, topics.Snapshots, false)
	if err != nil {
		return fmt.Errorf("raw read: %w", err)
	}
	if count != n {
		return fmt.Errorf("raw read saw %d snapshot records, want %d", count, n)
	}
	rawDecode, _, err := readSnapshots(ctx, b.env.brokers, topics.Snapshots, true)
	if err != nil {
		return fmt.Errorf("raw read+decode: %w", err)
	}

	// The handler's restore, measured through its first commands.
	bus, err := command.NewBus(command.BusConfig{Brokers: b.env.brokers, Topics: topics, Timeout: 5 * time.Minute, FetchWait: fetchWait, Logger: b.env.logger})
	if err != nil {
		return err
	}
	defer bus.Close()
	h, err := command.NewHandler(command.HandlerConfig{Brokers: b.env.brokers, Topics: topics, Group: name + ".command-handler",
		FetchWait: fetchWait, SessionTimeout: sessionTimeout, Logger: b.env.logger})
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	defer func() {
		cancel()
		h.Close()
		<-runDone
	}()
	one := 1
	ctx = domain.WithPrincipal(ctx, benchStaff) // the handler checks each command's principal
	start := time.Now()
	go func() { defer close(runDone); _ = h.Run(runCtx) }()
	joined := make(chan time.Duration, 1)
	go func() {
		for !h.Ready() && runCtx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
		joined <- time.Since(start)
	}()
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		slowest time.Duration
		fastest = time.Duration(1 << 62)
		errs    []error
	)
	for p := range int32(partitions) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := bus.Send(ctx, domain.ConfirmOrder{OrderID: probe[p][0], ExpectedVersion: &one}, "")
			took := time.Since(start)
			mu.Lock()
			defer mu.Unlock()
			if err == nil && (r.Error != nil || r.Version != 2) {
				err = fmt.Errorf("confirmOrder of restored order %s: version %d, error %v (state not restored?)", probe[p][0], r.Version, r.Error)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("partition %d: %w", p, err))
				return
			}
			slowest, fastest = max(slowest, took), min(fastest, took)
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	var join time.Duration
	select {
	case join = <-joined:
	default:
	}
	// One warm command, for reference: what the same first command costs
	// once the partition is restored.
	t := time.Now()
	r, err := bus.Send(ctx, domain.ConfirmOrder{OrderID: probe[0][1], ExpectedVersion: &one}, "")
	warm := time.Since(t)
	if err == nil && r.Error != nil {
		err = r.Error
	}
	if err != nil {
		return fmt.Errorf("warm command: %w", err)
	}
	scen := fmt.Sprintf("restore, %d orders, %d partitions", n, partitions)
	b.add(row{scen, "fresh handler: Run → all partitions restored and a confirmOrder answered on each", secs(slowest),
		"raw consumer reads the snapshots topic to its end (no decoding)", secs(rawRead), ratio(float64(slowest), float64(rawRead))})
	b.add(row{scen, "  of which: group join (handler.Ready) / first partition answered / warm command after", ms(join) + " / " + ms(fastest) + " / " + ms(warm),
		"raw consumer read + JSON decode into a map", secs(rawDecode), ratio(float64(slowest), float64(rawDecode))})
	if n >= 100000 {
		b.target(fmt.Sprintf("restore of %d orders < 5 s", n), secs(slowest)+" (join + fencing + restore + one hop)", slowest < 5*time.Second)
	} else {
		b.notMeasured("restore of 100,000 orders < 5 s", fmt.Sprintf("only %d orders in this run: %s", n, secs(slowest)))
	}
	return nil
}

// readSnapshots reads every partition of topic from the oldest offset to the
// high-water mark observed at the start, concurrently, and returns the time
// and the number of records. With decode, each value is decoded into a map
// by key, as a restore does.
func readSnapshots(ctx context.Context, brokers []string, topic string, decode bool) (time.Duration, int, error) {
	sc := kafka.Config("bench-snapshot-reader", fetchWait)
	client, err := sarama.NewClient(brokers, sc)
	if err != nil {
		return 0, 0, err
	}
	defer client.Close()
	cons, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return 0, 0, err
	}
	defer cons.Close()
	parts, err := client.Partitions(topic)
	if err != nil {
		return 0, 0, err
	}
	hwm := map[int32]int64{}
	for _, p := range parts {
		if hwm[p], err = client.GetOffset(topic, p, sarama.OffsetNewest); err != nil {
			return 0, 0, err
		}
	}
	var (
		wg    sync.WaitGroup
		total atomic.Int64
		mu    sync.Mutex
		errs  []error
	)
	start := time.Now()
	for _, p := range parts {
		if hwm[p] == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			fail := func(err error) {
				mu.Lock()
				errs = append(errs, fmt.Errorf("partition %d: %w", p, err))
				mu.Unlock()
			}
			pc, err := cons.ConsumePartition(topic, p, sarama.OffsetOldest)
			if err != nil {
				fail(err)
				return
			}
			defer pc.Close()
			states := map[string]*snapState{}
			timeout := time.After(5 * time.Minute)
			for {
				select {
				case m := <-pc.Messages():
					total.Add(1)
					if decode {
						var w snapWire
						if err := json.Unmarshal(m.Value, &w); err != nil {
							fail(err)
							return
						}
						o, err := domain.UnmarshalOrder(w.SchemaVersion, w.Order)
						if err != nil {
							fail(err)
							return
						}
						states[string(m.Key)] = &snapState{SchemaVersion: domain.OrderVersion, Order: o, Outcomes: w.Outcomes}
					}
					if m.Offset >= hwm[p]-1 {
						return
					}
				case err := <-pc.Errors():
					fail(err)
					return
				case <-ctx.Done():
					fail(ctx.Err())
					return
				case <-timeout:
					fail(errors.New("not read to its end within 5 min"))
					return
				}
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	if len(errs) > 0 {
		return 0, 0, errors.Join(errs...)
	}
	return took, int(total.Load()), nil
}
