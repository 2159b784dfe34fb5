package projector

import (
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ordergateway/gateway/metrics"
)

// claimProgress is where one claim of this instance's projector is: the
// next offset of its partition to apply and the broker timestamp of the
// newest event it applied.
type claimProgress struct {
	partition int32
	mu        sync.Mutex
	next      int64     // the offset after the last record applied (or the claim's first)
	newest    time.Time // the newest applied event's timestamp; the claim's start before one
}

// claims are the claims this instance's projector holds.
type claims struct {
	mu sync.Mutex
	m  map[int32]*claimProgress
}

func (c *claims) start(partition int32, initial int64) *claimProgress {
	cp := &claimProgress{partition: partition, next: max(initial, 0), newest: time.Now()}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[int32]*claimProgress{}
	}
	c.m[partition] = cp
	return cp
}

func (c *claims) end(cp *claimProgress) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m[cp.partition] == cp {
		delete(c.m, cp.partition)
	}
}

func (c *claims) snapshot() []*claimProgress {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*claimProgress, 0, len(c.m))
	for _, cp := range c.m {
		out = append(out, cp)
	}
	return out
}

// applied records a batch applied.
func (cp *claimProgress) applied(batch []*sarama.ConsumerMessage) {
	last := batch[len(batch)-1]
	ts := last.Timestamp
	if ts.IsZero() {
		ts = time.Now()
	}
	cp.mu.Lock()
	cp.next = last.Offset + 1
	cp.newest = ts
	cp.mu.Unlock()
}

func (cp *claimProgress) get() (int64, time.Time) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return cp.next, cp.newest
}

var (
	gapSecondsDesc = prometheus.NewDesc(metrics.Namespace+"_projection_gap_seconds",
		"How far the views are behind the events, per partition of the events topic this instance projects: 0 when every committed event is applied, else the age of the newest event applied (the events waiting are all younger), or the time since the claim started if none was applied yet.",
		[]string{"partition"}, nil)
	gapEventsDesc = prometheus.NewDesc(metrics.Namespace+"_projection_records_behind",
		"Committed records of the events topic not yet applied, per partition this instance projects: the partition's last stable offset (ListOffsets, read_committed; not the high watermark) less the offset after the last record applied, less the last transaction's commit marker. The events waiting, plus the commit marker of each transaction before the last that they came in (and any aborted records among them); 0 exactly when every committed event is applied.",
		[]string{"partition"}, nil)
	gapErrorsDesc = prometheus.NewDesc(metrics.Namespace+"_projection_gap_errors_total",
		"Scrapes whose last stable offsets could not be read (the gap series are then left out).", nil, nil)
)

// gapCollector collects the projection gap when scraped: one ListOffsets
// request (read_committed, so the answer is the last stable offset, not
// the high watermark) per broker leading a claimed partition.
type gapCollector struct {
	p      *Projector
	mu     sync.Mutex
	errors float64
}

// GapCollector is the collector of this projector's projection gap.
func (p *Projector) GapCollector() prometheus.Collector { return &gapCollector{p: p} }

func (g *gapCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- gapSecondsDesc
	ch <- gapEventsDesc
	ch <- gapErrorsDesc
}

func (g *gapCollector) Collect(ch chan<- prometheus.Metric) {
	cps := g.p.claims.snapshot()
	var failed bool
	if len(cps) > 0 {
		stable, err := g.p.lastStableOffsets(cps)
		if err != nil {
			failed = true
			g.p.cfg.Logger.Debug("projector: last stable offsets not read", "err", err)
		}
		now := time.Now()
		for _, cp := range cps {
			lso, ok := stable[cp.partition]
			if !ok {
				continue
			}
			next, newest := cp.get()
			// The record before the last stable offset is the commit
			// marker of the last transaction that wrote to the partition
			// (only the handler's transactions write to it).
			behind := max(lso-next-1, 0)
			var age float64
			if behind > 0 {
				age = max(now.Sub(newest).Seconds(), 0)
			}
			label := metrics.Partition(cp.partition)
			ch <- prometheus.MustNewConstMetric(gapSecondsDesc, prometheus.GaugeValue, age, label)
			ch <- prometheus.MustNewConstMetric(gapEventsDesc, prometheus.GaugeValue, float64(behind), label)
		}
	}
	g.mu.Lock()
	if failed {
		g.errors++
	}
	n := g.errors
	g.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(gapErrorsDesc, prometheus.CounterValue, n)
}

// lastStableOffsets asks the partitions' leaders for their last stable
// offsets. Partitions whose leader did not answer are left out.
func (p *Projector) lastStableOffsets(cps []*claimProgress) (map[int32]int64, error) {
	topic := p.cfg.Topics.Events
	reqs := map[*sarama.Broker]*sarama.OffsetRequest{}
	var firstErr error
	for _, cp := range cps {
		b, err := p.client.Leader(topic, cp.partition)
		if err != nil {
			firstErr = err
			continue
		}
		r := reqs[b]
		if r == nil {
			r = sarama.NewOffsetRequest(p.client.Config().Version)
			r.IsolationLevel = sarama.ReadCommitted
			reqs[b] = r
		}
		r.AddBlock(topic, cp.partition, sarama.OffsetNewest, 1)
	}
	out := map[int32]int64{}
	for b, r := range reqs {
		resp, err := b.GetAvailableOffsets(r)
		if err != nil {
			firstErr = err
			continue
		}
		for _, cp := range cps {
			block := resp.GetBlock(topic, cp.partition)
			if block == nil || block.Err != sarama.ErrNoError {
				continue
			}
			if len(block.Offsets) > 0 {
				out[cp.partition] = block.Offsets[0]
			}
		}
	}
	return out, firstErr
}
