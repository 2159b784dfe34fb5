package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/kafka"
	"github.com/ordergateway/gateway/projector"
	"github.com/ordergateway/gateway/view"
)

// The generations of the views: following the active one, and the views
// commands (rebuild, switch, drop, status) that a Main runs, in its own
// process (ViewsOnly) or in a serving gateway (the admin listener). See
// docs/design.md, "Rebuilding the views".

// DefaultMaxGap is the gap (records of the events topic not yet applied)
// below which a rebuild or a switch's catch-up counts as caught up.
const DefaultMaxGap = 100

// RebuildYieldLag is how far behind (in time) the active generation's
// projectors may be before a rebuild pauses to let them catch up.
const RebuildYieldLag = 2 * time.Second

// yieldProgress is how recently the serving generation's group must have
// committed for a rebuild to yield to it.
const yieldProgress = 5 * time.Second

// lagTracker keeps recent last stable offsets of the events topic, to tell
// how long a consumer group's commits have been behind them. It keeps at
// most lagSamples samples (one per 200 ms tick: a minute).
type lagTracker struct {
	samples []lsoSample
}

type lsoSample struct {
	at  time.Time
	lso map[int32]int64
}

const lagSamples = 300

func (l *lagTracker) add(at time.Time, lso map[int32]int64) {
	if len(l.samples) == lagSamples {
		l.samples = append(l.samples[:0], l.samples[1:]...)
	}
	l.samples = append(l.samples, lsoSample{at: at, lso: lso})
}

// behind is how long ago the oldest record committed (stable) but not yet
// committed by the group became stable, as far as the samples tell
// (at most their span); 0 when the group is at the last sample.
func (l *lagTracker) behind(now time.Time, committed map[int32]int64) time.Duration {
	var lag time.Duration
	for part, c := range committed {
		if c < 0 {
			continue // nothing committed: no measure
		}
		for _, s := range l.samples {
			// The record before the last stable offset is a commit marker.
			if lso, ok := s.lso[part]; ok && lso-1 > c {
				lag = max(lag, now.Sub(s.at))
				break
			}
		}
	}
	return lag
}

// progressEvery is how often a views command prints a progress line.
const progressEvery = 2 * time.Second

// handover is a caught-up projector of generation gen that a views command
// in this (serving) process hands to the Main at the switch, instead of the
// Main starting another projector in the same group beside it.
type handover struct {
	gen  int
	p    *projector.Projector
	done <-chan error // Run's result
}

// runViewsOnly is Run for ViewsOnly: the dependencies and the view store.
func (m *Main) runViewsOnly(ctx context.Context) error {
	security, err := m.Config.checkConnections()
	if err != nil {
		return err
	}
	m.security = security
	m.brokers, m.mongoURI = m.Config.KafkaBrokers, m.Config.MongoURI
	m.metrics = newGatewayMetrics()
	return m.startStores(ctx)
}

// ViewsGeneration is the generation of the views this gateway reads.
func (m *Main) ViewsGeneration() int { return m.store.Generation() }

// Store is the gateway's view store (it reads the active generation).
func (m *Main) Store() *view.Store { return m.store }

// CatchingUp is the projector of a views rebuild or switch running in this
// process, or nil (tests pause it).
func (m *Main) CatchingUp() *projector.Projector {
	m.projMu.Lock()
	defer m.projMu.Unlock()
	return m.catchingUp
}

// proj is the projector of the active generation (nil: none).
func (m *Main) proj() *projector.Projector {
	m.projMu.Lock()
	defer m.projMu.Unlock()
	return m.projector
}

// newProjector makes a projector of generation gen's views (its consumer
// group and its metrics' series are the generation's). publish, if set,
// gates its view changes.
func (m *Main) newProjector(gen int, publish func(partition int32, offset int64) bool) (*projector.Projector, error) {
	c := m.Config
	pm := m.metrics.projection.Generation(gen)
	p, err := projector.New(projector.Config{Brokers: m.brokers, Topics: m.topics, Group: m.projectorGroup(gen),
		FetchWait: c.FetchWait, SessionTimeout: c.SessionTimeout, Linger: c.ProjectorLinger, Logger: m.Logger, Security: m.security,
		Metrics: pm, Tracer: m.tracer, Durable: m.storeFlush(), Publish: publish}, m.store.At(gen))
	if err != nil {
		pm.Release() // Close would have
	}
	return p, err
}

// switched follows a change of the active generation (view.Store.Follow
// has already moved the queries to it): consistency waits look at the
// store again, and the projector moves to the new generation's group.
func (m *Main) switched(from, to int) {
	m.Logger.Info("views: the active generation changed", "from", from, "to", to)
	m.metrics.views.Generation.Set(float64(to))
	m.metrics.views.Switches.Inc()
	m.feed.WakeAll()
	if m.WithoutProjector {
		return
	}
	m.projMu.Lock()
	h := m.handover
	if h != nil && h.gen == to {
		m.handover = nil
	} else {
		h = nil
	}
	m.projMu.Unlock()
	var next *projector.Projector
	if h != nil {
		next = h.p // already running, caught up
		m.goRun(func() error { return <-h.done })
	} else {
		for {
			p, err := m.newProjector(to, nil)
			if err == nil {
				next = p
				break
			}
			m.Logger.Error("views: projector of the new generation not started; retrying", "generation", to, "err", err)
			select {
			case <-m.runCtx.Done():
				return
			case <-time.After(time.Second):
			}
		}
		m.goRun(func() error { return next.Run(m.runCtx) })
	}
	m.projMu.Lock()
	if m.projClosed {
		m.projMu.Unlock()
		next.Close()
		return
	}
	old := m.projector
	m.projector = next
	m.deadLettersBefore += old.DeadLetters()
	m.projMu.Unlock()
	if old != nil {
		old.Close() // commits what it wrote (up to its commit grace)
	}
}

// currentGap collects the projection gap of whichever projector is the
// active generation's when scraped.
type currentGap struct {
	m        *Main
	describe prometheus.Collector
}

func (g *currentGap) Describe(ch chan<- *prometheus.Desc) { g.describe.Describe(ch) }
func (g *currentGap) Collect(ch chan<- prometheus.Metric) {
	if p := g.m.proj(); p != nil {
		p.GapCollector().Collect(ch)
	}
}

// rebuildStatus is the views command running in this process, for /readyz
// and the metrics.
type rebuildStatus struct {
	mu      sync.Mutex
	what    string // "rebuild" or "switch"
	gen     int
	state   string
	applied int64
	behind  int64
}

func (r *rebuildStatus) set(what string, gen int, state string, applied, behind int64) {
	r.mu.Lock()
	r.what, r.gen, r.state, r.applied, r.behind = what, gen, state, applied, behind
	r.mu.Unlock()
}

// String is "" when none runs.
func (r *rebuildStatus) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gen == 0 {
		return ""
	}
	return fmt.Sprintf("%s of generation %d: %s, %d events applied, %d behind", r.what, r.gen, r.state, r.applied, r.behind)
}

// RebuildViews builds a new generation of the views from the start of the
// events topic and switches to it once caught up (its gap at most maxGap),
// printing progress lines to out. It returns the new generation.
func (m *Main) RebuildViews(ctx context.Context, out io.Writer, maxGap int64) (int, error) {
	if !m.viewsBusy.TryLock() {
		return 0, errViewsBusy
	}
	defer m.viewsBusy.Unlock()
	gen, err := m.store.NewGeneration(ctx)
	if err != nil {
		return 0, err
	}
	fmt.Fprintf(out, "views rebuild: generation %d (collections %s), from the start of %s, consumer group %s\n",
		gen, collectionNames(gen), m.topics.Events, m.projectorGroup(gen))
	return gen, m.catchUpAndSwitch(ctx, out, "rebuild", gen, maxGap)
}

// SwitchViews makes generation gen the active one (a switch back), after
// catching it up from its consumer group's committed offsets.
func (m *Main) SwitchViews(ctx context.Context, out io.Writer, gen int, maxGap int64) error {
	if !m.viewsBusy.TryLock() {
		return errViewsBusy
	}
	defer m.viewsBusy.Unlock()
	g, ok, err := m.store.GenerationInfo(ctx, gen)
	switch {
	case err != nil:
		return err
	case !ok:
		return &domain.Error{Code: domain.CodeInvalidInput, Message: fmt.Sprintf("there is no generation %d of the views", gen)}
	case g.Active:
		fmt.Fprintf(out, "views switch: generation %d is already the active one\n", gen)
		return nil
	case g.State == view.StateDropped:
		return &domain.Error{Code: domain.CodeInvalidInput, Message: fmt.Sprintf("generation %d was dropped: rebuild instead", gen)}
	case g.State == view.StateBuilding && time.Since(g.Updated) < view.RebuildHeartbeat:
		return &domain.Error{Code: domain.CodeInvalidInput, Message: fmt.Sprintf("generation %d is being rebuilt; its rebuild switches to it when it has caught up", gen)}
	}
	fmt.Fprintf(out, "views switch: catching generation %d up from the committed offsets of %s\n", gen, m.projectorGroup(gen))
	return m.catchUpAndSwitch(ctx, out, "switch", gen, maxGap)
}

var errViewsBusy = &domain.Error{Code: domain.CodeInvalidInput, Message: "another views rebuild or switch is running in this process"}

func collectionNames(gen int) string {
	o, c := view.CollectionNames(gen)
	return o + ", " + c
}

// catchUpAndSwitch projects generation gen in its own consumer group until
// its gap is at most maxGap, then writes the active generation document.
// It publishes to the views topic only the changes of events the active
// generation's group had not committed when it last looked (that group
// publishes before it commits): every event is published by one of the
// two, and subscribers miss nothing across the switch. The projector is
// handed to this Main if it serves, else closed at once.
func (m *Main) catchUpAndSwitch(ctx context.Context, out io.Writer, what string, gen int, maxGap int64) (err error) {
	defer func() {
		m.rebuild.set("", 0, "", 0, 0)
		m.metrics.views.RebuildGen.Set(0)
		m.metrics.views.RebuildApplied.Set(0)
		m.metrics.views.RebuildBehind.Set(0)
	}()
	m.metrics.views.RebuildGen.Set(float64(gen))
	rebuilding := what == "rebuild"
	defer func() {
		if err != nil && rebuilding {
			// Left for a later switch to resume, or a drop: its heartbeat
			// stops, so drop takes it after view.RebuildHeartbeat.
			fmt.Fprintf(out, "views %s: generation %d not switched to: %v\n", what, gen, err)
		}
	}()
	gs := m.store.At(gen)
	if err := m.retry(ctx, m.Config.StartupTimeout, "the views store", gs.EnsureIndexes); err != nil {
		return err
	}
	client, err := sarama.NewClient(m.brokers, m.security.Config("order-gateway-views", m.Config.FetchWait))
	if err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	defer client.Close()
	parts, err := client.Partitions(m.topics.Events)
	if err != nil {
		return fmt.Errorf("kafka: partitions of %s: %w", m.topics.Events, err)
	}
	active, err := m.store.ActiveGeneration(ctx)
	if err != nil {
		return err
	}
	activeGroup := m.projectorGroup(active)
	// published is the active generation's committed offsets, as last read:
	// it published every event before them. It only grows, so a stale copy
	// makes gen publish more, never less.
	var published atomic.Pointer[map[int32]int64]
	readPublished := func() (map[int32]int64, error) {
		c, err := kafka.CommittedOffsets(client, activeGroup, m.topics.Events, parts)
		if err == nil {
			published.Store(&c)
		}
		return c, err
	}
	if err := m.retry(ctx, m.Config.StartupTimeout, "the committed offsets of "+activeGroup, func(context.Context) error {
		_, err := readPublished()
		return err
	}); err != nil {
		return err
	}
	// switching: from the switch on gen publishes everything, to wake the
	// consistency waits that read it (the serving generation's changes woke
	// them when they were still reading that one).
	var switching atomic.Bool
	publish := func(partition int32, offset int64) bool {
		if switching.Load() {
			return true
		}
		c, ok := (*published.Load())[partition]
		return !ok || offset >= c
	}
	p, err := m.newProjector(gen, publish)
	if err != nil {
		return err
	}
	m.projMu.Lock()
	m.catchingUp = p
	m.projMu.Unlock()
	defer func() {
		m.projMu.Lock()
		m.catchingUp = nil
		m.projMu.Unlock()
	}()
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()
	keep := false
	defer func() {
		if !keep {
			stop()
			p.Close()
			<-done
		}
	}()
	// behind is the records of the events topic gen has not applied, and
	// whether its projector holds every partition (else it is not known);
	// activeLag how long the active generation's commits have been behind.
	var (
		lags          lagTracker
		lastCommitted int64 = -1
		lastCommit    time.Time
	)
	behind := func(yield bool) (int64, bool, time.Duration) {
		lso, err := kafka.LastStableOffsets(client, m.topics.Events, parts)
		if err != nil {
			return 0, false, 0
		}
		var activeLag time.Duration
		now := time.Now()
		lags.add(now, lso)
		if committed, err := readPublished(); err == nil && yield {
			var sum int64
			for _, c := range committed {
				sum += c
			}
			if sum != lastCommitted {
				lastCommitted, lastCommit = sum, now
			}
			// Yield only to projectors that make progress: a stalled
			// serving generation (its store failing, no gateway running)
			// would hold the rebuild forever, and gains nothing from it.
			if now.Sub(lastCommit) < yieldProgress {
				activeLag = lags.behind(now, committed)
			}
		}
		pos := p.Positions()
		var n int64
		for _, part := range parts {
			l, ok := lso[part]
			next, held := pos[part]
			if !ok || !held {
				return 0, false, activeLag
			}
			// The record before the last stable offset is the commit
			// marker of the last transaction (events come in transactions).
			n += max(l-next-1, 0)
		}
		return n, true, activeLag
	}
	started := time.Now()
	var (
		lastLine    time.Time
		lastApplied int64
		lastAt      = started
		rate        float64
		paused      bool
	)
	state := "catching up"
	progress := func(b int64, known bool, activeLag time.Duration) {
		applied := p.Applied()
		st := state
		if paused {
			st = fmt.Sprintf("paused: generation %d is %s behind", active, activeLag.Round(100*time.Millisecond))
		}
		m.rebuild.set(what, gen, st, applied, b)
		m.metrics.views.RebuildApplied.Set(float64(applied))
		m.metrics.views.RebuildBehind.Set(float64(b))
		if time.Since(lastLine) < progressEvery {
			return
		}
		now := time.Now()
		if d := now.Sub(lastAt).Seconds(); d > 0 {
			r := float64(applied-lastApplied) / d
			if rate == 0 {
				rate = r
			} else {
				rate = 0.5*rate + 0.5*r
			}
		}
		lastApplied, lastAt, lastLine = applied, now, now
		eta := "unknown"
		if !known {
			eta = "unknown (joining the group)"
		} else if rate > 0 {
			eta = (time.Duration(float64(b) / rate * float64(time.Second))).Round(time.Second).String()
		}
		line := fmt.Sprintf("views %s: generation %d: %d events applied, %.0f/s, %d behind, ETA %s (%s)",
			what, gen, applied, rate, b, eta, time.Since(started).Round(time.Second))
		if paused {
			line += "; " + st
		}
		fmt.Fprintln(out, line)
		if rebuilding {
			_ = m.store.SetGenerationState(ctx, gen, view.StateBuilding, applied) // the heartbeat drop looks at
		}
	}
	// caughtUp waits until gen's gap is at most maxGap. With yield, gen's
	// projector pauses while the active generation's projectors are more
	// than RebuildYieldLag behind: the rebuild takes what the store has to
	// spare, not the serving generation's share.
	caughtUp := func(yield bool) error {
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		defer func() {
			if paused {
				p.Pause(false)
				paused = false
			}
		}()
		for {
			b, known, activeLag := behind(yield)
			if pause := yield && activeLag > RebuildYieldLag; pause || paused {
				p.Pause(pause) // again each time: a claim taken since starts unpaused
				paused = pause
			}
			progress(b, known, activeLag)
			if known && b <= maxGap {
				return nil
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case err := <-done:
				return fmt.Errorf("the projector of generation %d stopped: %v", gen, err)
			case <-tick.C:
			}
		}
	}
	if err := caughtUp(active != gen); err != nil {
		return err
	}
	state = "switching"
	// In a serving gateway its follower adopts this projector at the
	// switch: offered before the write, which the follower may see at once.
	inProcess := !m.ViewsOnly && !m.WithoutProjector
	if inProcess {
		m.projMu.Lock()
		if !m.projClosed {
			m.handover, keep = &handover{gen: gen, p: p, done: done}, true
		}
		m.projMu.Unlock()
		if !keep {
			return errors.New("the gateway is closing")
		}
	}
	switching.Store(true) // before the write: a change after it is published
	if err := m.store.SetActive(ctx, gen); err != nil {
		if inProcess {
			m.projMu.Lock()
			if m.handover != nil && m.handover.p == p {
				m.handover, keep = nil, false // not taken: closed by the deferred call
			}
			m.projMu.Unlock()
		}
		return err
	}
	applied := p.Applied()
	if rebuilding {
		if err := m.store.SetGenerationState(ctx, gen, view.StateBuilt, applied); err != nil {
			m.Logger.Warn("views: generation's state not recorded", "generation", gen, "err", err)
		}
	}
	fmt.Fprintf(out, "views %s: switched to generation %d (from %d) after %s: %d events applied\n",
		what, gen, active, time.Since(started).Round(time.Millisecond), applied)
	// Else it leaves gen's group now (the deferred Close, which commits
	// what it wrote), so that the gateways, which see the switch within
	// view.FollowInterval, join an empty group: staying while they join
	// would cost them two rebalances instead of none.
	return nil
}

// DropViews drops generation gen's collections and its consumer group. It
// refuses the active generation and one being rebuilt.
func (m *Main) DropViews(ctx context.Context, gen int) error {
	g, ok, err := m.store.GenerationInfo(ctx, gen)
	switch {
	case err != nil:
		return err
	case !ok:
		return &domain.Error{Code: domain.CodeInvalidInput, Message: fmt.Sprintf("there is no generation %d of the views", gen)}
	case g.Active:
		return &domain.Error{Code: domain.CodeInvalidInput, Message: fmt.Sprintf("generation %d is the active one: switch to another first", gen)}
	}
	admin, err := sarama.NewClusterAdmin(m.brokers, m.security.Config("order-gateway-views", m.Config.FetchWait))
	if err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	defer admin.Close()
	if err := admin.DeleteConsumerGroup(m.projectorGroup(gen)); err != nil && !errors.Is(err, sarama.ErrGroupIDNotFound) {
		if errors.Is(err, sarama.ErrNonEmptyGroup) {
			return &domain.Error{Code: domain.CodeInvalidInput, Message: fmt.Sprintf("generation %d is still projected (its consumer group %s has members)", gen, m.projectorGroup(gen))}
		}
		return fmt.Errorf("kafka: delete consumer group %s: %w", m.projectorGroup(gen), err)
	}
	return m.store.DropGeneration(ctx, gen)
}

// ViewsStatus lists the generations of the views.
func (m *Main) ViewsStatus(ctx context.Context) ([]view.GenerationDoc, error) {
	return m.store.Generations(ctx)
}
