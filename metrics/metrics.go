// Package metrics holds the gateway's Prometheus metrics: one registry per
// gateway (so several gateways in one process, as in the tests, count
// apart), and a set of collectors for each part of it. Every name starts
// with order_gateway_ and says its unit; no label carries an order or
// customer id.
//
// The parts take their set in their configuration; one left nil gets a set
// registered nowhere (New*(nil)), so the code that counts never checks.
// Counting is an atomic add on a child resolved at construction wherever
// the labels are known in advance.
package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every metric of the gateway.
const Namespace = "order_gateway"

// Registry is a gateway's registry, with the Go runtime and process
// collectors in it.
type Registry struct {
	*prometheus.Registry
}

// NewRegistry returns a registry holding the Go runtime and process
// collectors.
func NewRegistry() *Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &Registry{r}
}

// Handler serves the registry in the Prometheus text (or OpenMetrics)
// format.
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(r.Registry, promhttp.HandlerOpts{Registry: r.Registry, MaxRequestsInFlight: 4, Timeout: 10 * time.Second})
}

// register registers cs with reg unless reg is nil.
func register(reg prometheus.Registerer, cs ...prometheus.Collector) {
	if reg == nil {
		return
	}
	reg.MustRegister(cs...)
}

// Buckets of the duration histograms, in seconds: 1 ms to 10 s.
var durationBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Buckets of the batch size histograms: 1 to 500 (the batch size limit).
var batchBuckets = []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 500}

// GraphQL counts the GraphQL endpoint's operations and streams.
type GraphQL struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	InFlight prometheus.Gauge
	// SSEStreams is the number of server-sent event subscription streams
	// open.
	SSEStreams  prometheus.Gauge
	updatesSent *prometheus.CounterVec
	// UpdatesSentWS and UpdatesSentSSE count subscription results written.
	UpdatesSentWS, UpdatesSentSSE prometheus.Counter
	byType                        map[string]prometheus.Observer
	fields                        *prometheus.HistogramVec
	ok                            map[string]prometheus.Counter // requests_total's ok children
}

// Operation types, as labels.
const (
	OpQuery        = "query"
	OpMutation     = "mutation"
	OpSubscription = "subscription"
	// OpUnknown: a request refused before its operation was known (a parse
	// error, a missing token).
	OpUnknown = "unknown"
)

// Outcomes of a GraphQL request, as labels.
const (
	OutcomeOK        = "ok"
	OutcomeUserError = "user_error"
	OutcomeError     = "error"
)

// NewGraphQL returns the GraphQL metrics registered with reg (nil: none).
func NewGraphQL(reg prometheus.Registerer) *GraphQL {
	g := &GraphQL{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Subsystem: "graphql", Name: "requests_total",
			Help: "GraphQL operations answered, by operation type (query, mutation, subscription: once when it starts; unknown: refused before the operation was known) and outcome: ok, user_error (a code the client can act on, userErrors included) or error (UNAVAILABLE, COMMAND_TIMEOUT, INTERNAL_SERVER_ERROR, other), with the first error's code."},
			[]string{"operation_type", "outcome", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Subsystem: "graphql", Name: "request_duration_seconds",
			Help: "Duration of GraphQL queries and mutations, from the start of the request to the result.", Buckets: durationBuckets},
			[]string{"operation_type"}),
		InFlight: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Subsystem: "graphql", Name: "requests_in_flight",
			Help: "GraphQL queries and mutations being executed."}),
		SSEStreams: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Subsystem: "graphql", Name: "sse_streams",
			Help: "Subscriptions open over server-sent events."}),
		updatesSent: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Subsystem: "graphql", Name: "subscription_updates_sent_total",
			Help: "Subscription results written to subscribers, by transport (websocket, sse)."}, []string{"transport"}),
	}
	g.fields = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Subsystem: "graphql", Name: "field_duration_seconds",
		Help: "Duration of GraphQL queries and mutations by their first root field (placeOrder, order, …: the schema's fields, a bounded set), from the start of the request to the result.", Buckets: durationBuckets},
		[]string{"operation_type", "field"})
	g.UpdatesSentWS = g.updatesSent.WithLabelValues("websocket")
	g.UpdatesSentSSE = g.updatesSent.WithLabelValues("sse")
	g.byType = map[string]prometheus.Observer{}
	for _, t := range []string{OpQuery, OpMutation} {
		g.byType[t] = g.duration.WithLabelValues(t)
	}
	g.ok = map[string]prometheus.Counter{}
	for _, t := range []string{OpQuery, OpMutation, OpSubscription} {
		g.ok[t] = g.requests.WithLabelValues(t, OutcomeOK, "") // a series from the start, for rate()
	}
	register(reg, g.requests, g.duration, g.fields, g.InFlight, g.SSEStreams, g.updatesSent)
	return g
}

// Request counts one operation's outcome; code is "" for ok.
func (g *GraphQL) Request(opType, outcome, code string) {
	if c := g.ok[opType]; c != nil && outcome == OutcomeOK && code == "" {
		c.Inc()
		return
	}
	g.requests.WithLabelValues(opType, outcome, code).Inc()
}

// FieldObserver is the duration histogram of operations of opType whose
// first root field is field; field must come from a bounded set (the
// schema's root fields, as a validated document names).
func (g *GraphQL) FieldObserver(opType, field string) prometheus.Observer {
	return g.fields.WithLabelValues(opType, field)
}

// Observe records a query's or mutation's duration.
func (g *GraphQL) Observe(opType string, d time.Duration) {
	if o := g.byType[opType]; o != nil {
		o.Observe(d.Seconds())
	}
}

// Commands counts the command bus's commands.
type Commands struct {
	sent     *prometheus.CounterVec
	answered *prometheus.CounterVec
	// TimedOut counts commands whose outcome did not arrive within the
	// command timeout.
	TimedOut prometheus.Counter
	// Unsent counts commands the broker did not take (unavailable).
	Unsent prometheus.Counter
	// Gathered counts commands written by the bus's gathering producer
	// (sent while another command was being written).
	Gathered prometheus.Counter
	// Produce is how long the broker took to acknowledge a command.
	Produce prometheus.Observer
	// Outcome is how long a command's outcome took after the broker had
	// it (the handler's batch and transaction, and the reply).
	Outcome prometheus.Observer
	// Duration is a command's whole time, from Send to its outcome.
	Duration prometheus.Observer
	// Errors counts the bus's broker errors; nil: counted nowhere.
	Errors *Errors
	ok     prometheus.Counter
}

// NewCommands returns the command metrics registered with reg (nil: none).
func NewCommands(reg prometheus.Registerer) *Commands {
	c := &Commands{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Subsystem: "commands", Name: "sent_total",
			Help: "Commands written to the commands topic, by command type."}, []string{"command"}),
		answered: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Subsystem: "commands", Name: "answered_total",
			Help: "Commands whose outcome arrived, by outcome (ok, rejected) and the rejection's code."}, []string{"outcome", "code"}),
		TimedOut: prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Subsystem: "commands", Name: "timed_out_total",
			Help: "Commands whose outcome did not arrive within COMMAND_TIMEOUT (answered COMMAND_TIMEOUT)."}),
		Unsent: prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Subsystem: "commands", Name: "unsent_total",
			Help: "Commands the broker did not take (answered UNAVAILABLE; nothing was handled)."}),
		Gathered: prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Subsystem: "commands", Name: "gathered_total",
			Help: "Commands written while another was being written, by the bus's producer that waits up to 2 ms to put more in one request (the others are written at once)."}),
	}
	stage := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Subsystem: "commands", Name: "stage_duration_seconds",
		Help: "Duration of a command's stages: produce (until the broker acknowledged it), outcome (from then until its outcome arrived: the handler's batch, transaction and reply), total.", Buckets: durationBuckets},
		[]string{"stage"})
	c.Produce, c.Outcome, c.Duration = stage.WithLabelValues("produce"), stage.WithLabelValues("outcome"), stage.WithLabelValues("total")
	c.ok = c.answered.WithLabelValues("ok", "")
	// The command types (domain.MarshalCommand's), each a series from the
	// start; a type not listed is counted all the same.
	for _, t := range []string{"PlaceOrder", "AddOrderItem", "RemoveOrderItem", "ConfirmOrder", "ShipOrder", "DeliverOrder", "CancelOrder"} {
		c.sent.WithLabelValues(t)
	}
	register(reg, c.sent, c.answered, c.TimedOut, c.Unsent, c.Gathered, stage)
	return c
}

// Sent counts one command of type typ written.
func (c *Commands) Sent(typ string) { c.sent.WithLabelValues(typ).Inc() }

// Answered counts an outcome: code "" is ok, else the rejection's code.
func (c *Commands) Answered(code string) {
	if code == "" {
		c.ok.Inc()
		return
	}
	c.answered.WithLabelValues("rejected", code).Inc()
}

// Handler counts the command handler's work.
type Handler struct {
	// BatchSize is the number of commands in each batch committed.
	BatchSize prometheus.Histogram
	// Committed and Aborted count transactions (restore markers' included).
	Committed, Aborted prometheus.Counter
	// Transaction is how long a transaction took, from begin to commit.
	Transaction prometheus.Histogram
	// Queued is how long each command waited between the broker taking it
	// and the handler's batch that decides it.
	Queued prometheus.Histogram
	// Restore is how long restoring a session's partitions took.
	Restore prometheus.Histogram
	// OrdersRestored counts the snapshots read at restores (those after
	// each local store's checkpoint).
	OrdersRestored prometheus.Counter
	// Fenced counts previous owners' open transactions fenced at restore.
	Fenced prometheus.Counter
	// Retried counts the transaction requests sent again, by request
	// (InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn,
	// TxnOffsetCommit, EndTxn): CONCURRENT_TRANSACTIONS while the
	// previous transaction's markers are written, a coordinator loading or
	// moving, a connection lost.
	Retried *prometheus.CounterVec
	// Partitions is the number of commands partitions this instance owns.
	Partitions prometheus.Gauge
	// Errors counts the handler's broker errors; nil: counted nowhere.
	Errors *Errors
}

// NewHandler returns the handler metrics registered with reg (nil: none).
func NewHandler(reg prometheus.Registerer) *Handler {
	txns := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Subsystem: "handler", Name: "transactions_total",
		Help: "Kafka transactions of the command handler, by result (committed, aborted)."}, []string{"result"})
	h := &Handler{
		BatchSize: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Subsystem: "handler", Name: "batch_size_commands",
			Help: "Commands in each batch the handler decided and committed in one transaction.", Buckets: batchBuckets}),
		Committed: txns.WithLabelValues("committed"), Aborted: txns.WithLabelValues("aborted"),
		Transaction: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Subsystem: "handler", Name: "transaction_duration_seconds",
			Help: "Duration of the handler's transactions, from begin to commit or abort.", Buckets: durationBuckets}),
		Queued: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Subsystem: "handler", Name: "queued_duration_seconds",
			Help: "How long each command waited between the broker taking it (its record's timestamp; for a command this instance's bus offered directly, the broker's acknowledgment) and the start of the handler's batch that decides it.", Buckets: durationBuckets}),
		Restore: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Subsystem: "handler", Name: "restore_duration_seconds",
			Help: "Duration of restoring the orders of the partitions a handler session was assigned.", Buckets: durationBuckets}),
		OrdersRestored: prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Subsystem: "handler", Name: "orders_restored_total",
			Help: "Snapshots read from the snapshots topic when partitions were assigned (those after each local state store's checkpoint)."}),
		Fenced: prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Subsystem: "handler", Name: "fenced_total",
			Help: "Open transactions of a previous owner fenced during a restore."}),
		Retried: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Subsystem: "handler", Name: "transaction_requests_retried_total",
			Help: "Transaction requests the handler sent again, by request (InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit, EndTxn): CONCURRENT_TRANSACTIONS while the previous transaction's markers are written, a coordinator loading or moving, a connection lost."}, []string{"request"}),
		Partitions: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Subsystem: "handler", Name: "partitions_assigned",
			Help: "Partitions of the commands topic this instance's handler owns (summed over instances: the partition count, else commands wait)."}),
	}
	register(reg, h.BatchSize, txns, h.Transaction, h.Queued, h.Restore, h.OrdersRestored, h.Fenced, h.Retried, h.Partitions)
	return h
}

// Projection is the metrics one projector counts in: its generation's
// series of the Projections it came from, resolved when it was made.
// The projection gap is collected when scraped (see
// projector.GapCollector).
type Projection struct {
	// Events counts the events topic's records projected (each batch's
	// records, dead-lettered ones included).
	Events prometheus.Counter
	// Write is how long writing a batch took (order views, publication).
	Write prometheus.Observer
	// BatchSize is the number of records in each batch.
	BatchSize prometheus.Observer
	// Partitions is the number of events partitions the projector owns.
	Partitions prometheus.Gauge
	// OrdersConflicts and CustomersConflicts count writes of order views
	// and of customer summaries refused by their version guard (another
	// writer, a stale cache, a replay) and retried from the store.
	OrdersConflicts, CustomersConflicts prometheus.Counter
	// Errors counts the projector's broker errors; nil: counted nowhere.
	Errors *Errors

	release sync.Once
	from    *Projections
	gen     int
}

// Projections holds the projection metrics of a gateway's projectors, by
// the generation of the views each writes (label generation, in decimal):
// a views rebuild's or switch's projector counts beside the serving one's,
// not in its series, and keeps its series when it is handed over to serve.
//
// The label is bounded by the generations projected in this process at
// once, usually one, two during a rebuild or switch: a generation's series
// are deleted when its last projector here is released (stops for good:
// left by a switch, a rebuild given up, the gateway closing).
type Projections struct {
	events     *prometheus.CounterVec
	write      *prometheus.HistogramVec
	batchSize  *prometheus.HistogramVec
	partitions *prometheus.GaugeVec
	conflicts  *prometheus.CounterVec
	// Errors counts the projectors' broker errors (by kind, not by
	// generation); nil: counted nowhere. Set before Generation is called.
	Errors *Errors

	mu    sync.Mutex
	users map[int]int // unreleased Projections of each generation
}

// NewProjections returns the projection metrics registered with reg (nil:
// none).
func NewProjections(reg prometheus.Registerer) *Projections {
	gen := []string{"generation"}
	ps := &Projections{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Subsystem: "projection", Name: "events_applied_total",
			Help: "Records of the events topic the projector of the views generation applied to its views (dead-lettered ones included)."}, gen),
		write: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Subsystem: "projection", Name: "write_duration_seconds",
			Help: "Duration of projecting one batch into the views generation: folding, writing the order views, publishing them (retries included).", Buckets: durationBuckets}, gen),
		batchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Subsystem: "projection", Name: "batch_size_events",
			Help: "Records in each batch the projector of the views generation applied.", Buckets: batchBuckets}, gen),
		partitions: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Subsystem: "projection", Name: "partitions_assigned",
			Help: "Partitions of the events topic this instance's projector of the views generation owns (summed over instances, the active generation's: the partition count)."}, gen),
		conflicts: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Subsystem: "projection", Name: "conflicts_retried_total",
			Help: "Writes the store refused because the view changed since it was read (a version guard: another writer, a stale cache, a replay), retried after reading the store, by views generation and view (orders, customers)."},
			[]string{"generation", "view"}),
		users: map[int]int{},
	}
	register(reg, ps.events, ps.write, ps.batchSize, ps.partitions, ps.conflicts)
	return ps
}

// Generation returns the metrics of a projector of generation gen. Each
// one must be released (Projection.Release) when its projector stops for
// good.
func (ps *Projections) Generation(gen int) *Projection {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.users[gen]++
	g := strconv.Itoa(gen)
	return &Projection{Events: ps.events.WithLabelValues(g), Write: ps.write.WithLabelValues(g), BatchSize: ps.batchSize.WithLabelValues(g),
		Partitions: ps.partitions.WithLabelValues(g), OrdersConflicts: ps.conflicts.WithLabelValues(g, "orders"),
		CustomersConflicts: ps.conflicts.WithLabelValues(g, "customers"), Errors: ps.Errors, from: ps, gen: gen}
}

// Release says p's projector stopped for good; once every Projection of
// its generation is released, the generation's series are deleted (what
// p counts afterwards is served nowhere). Releasing again, or a
// Projection not made by Generation, does nothing.
func (p *Projection) Release() {
	p.release.Do(func() {
		ps := p.from
		if ps == nil {
			return
		}
		ps.mu.Lock()
		defer ps.mu.Unlock()
		if ps.users[p.gen]--; ps.users[p.gen] > 0 {
			return
		}
		delete(ps.users, p.gen)
		g := strconv.Itoa(p.gen)
		ps.events.DeleteLabelValues(g)
		ps.write.DeleteLabelValues(g)
		ps.batchSize.DeleteLabelValues(g)
		ps.partitions.DeleteLabelValues(g)
		ps.conflicts.DeleteLabelValues(g, "orders")
		ps.conflicts.DeleteLabelValues(g, "customers")
	})
}

// Errors counts the errors the store and the broker return, by kind (a
// short fixed list each: view.ErrorKind's and kafka.ErrorKind's), where
// they happen. A nil *Errors counts nothing.
type Errors struct {
	store, broker, directFallbacks, directReadFallbacks *prometheus.CounterVec
}

// DirectFallbackReasons are why a direct write of views went through
// FerretDB instead (view.DirectWriter): unsupported (a document the direct
// encoding does not cover, a collection not there yet, repeated ids) or
// failed (the statement failed).
var DirectFallbackReasons = []string{"unsupported", "failed"}

// StoreErrorKinds are the kinds of store errors (view.ErrorKind).
var StoreErrorKinds = []string{"timeout", "network", "duplicate_key", "write_conflict", "other"}

// BrokerErrorKinds are the kinds of broker errors (kafka.ErrorKind).
var BrokerErrorKinds = []string{"timeout", "network", "not_leader", "fenced", "refused", "authorization", "other"}

// BrokerAPIs are what the gateway asked the broker for when it answered an
// error: produce (a command, a reply, a view change, a dead letter),
// transaction (begin, add offsets, commit), consume (a consumer group's
// fetches, joins and heartbeats).
var BrokerAPIs = []string{"produce", "transaction", "consume"}

// NewErrors returns the error counters registered with reg (nil: none).
func NewErrors(reg prometheus.Registerer) *Errors {
	e := &Errors{
		store: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Subsystem: "store", Name: "errors_total",
			Help: "Errors the view store (MongoDB, FerretDB) returned, by kind: timeout, network (unreachable, no server selected), duplicate_key (an insert of a view that exists: a conflict, retried), write_conflict, other."},
			[]string{"kind"}),
		broker: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Subsystem: "broker", Name: "errors_total",
			Help: "Errors from Kafka, by what was asked (api: produce, transaction, consume) and kind: timeout, network (unreachable, disconnected), not_leader (a leader or coordinator moving), fenced (another producer or group generation took over), refused (a record the broker will never take), authorization, other."},
			[]string{"api", "kind"}),
		directFallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Subsystem: "store", Name: "direct_write_fallbacks_total",
			Help: "Batches of view writes that the embedded store (on PostgreSQL or SQLite) could not write straight into its tables and wrote through FerretDB instead, by reason: unsupported (a document the direct encoding does not cover, a collection not created yet, on SQLite an _id JSON escapes), failed (the statement failed; FerretDB's attempt reports the store's error)."},
			[]string{"reason"}),
		directReadFallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Subsystem: "store", Name: "direct_read_fallbacks_total",
			Help: "Reads of views by id that the embedded store (on PostgreSQL or SQLite) could not make straight from its tables and made through FerretDB instead, by reason: unsupported (a document the direct decoding does not cover, a collection not created yet, on SQLite an _id JSON escapes), failed (the statement failed; FerretDB's attempt reports the store's error)."},
			[]string{"reason"}),
	}
	for _, r := range DirectFallbackReasons {
		e.directFallbacks.WithLabelValues(r)
		e.directReadFallbacks.WithLabelValues(r)
	}
	for _, k := range StoreErrorKinds {
		e.store.WithLabelValues(k)
	}
	for _, a := range BrokerAPIs {
		for _, k := range BrokerErrorKinds {
			e.broker.WithLabelValues(a, k)
		}
	}
	register(reg, e.store, e.broker, e.directFallbacks, e.directReadFallbacks)
	return e
}

// DirectFallback counts a batch of direct view writes that went through
// FerretDB instead, for reason (DirectFallbackReasons).
func (e *Errors) DirectFallback(reason string) {
	if e == nil {
		return
	}
	e.directFallbacks.WithLabelValues(reason).Inc()
}

// DirectReadFallback counts a direct read of views by id that went through
// FerretDB instead, for reason (DirectFallbackReasons).
func (e *Errors) DirectReadFallback(reason string) {
	if e == nil {
		return
	}
	e.directReadFallbacks.WithLabelValues(reason).Inc()
}

// DirectReadFallbacks is the counter of direct reads that went through
// FerretDB for reason.
func (e *Errors) DirectReadFallbacks(reason string) prometheus.Counter {
	return e.directReadFallbacks.WithLabelValues(reason)
}

// Store counts a store error of kind; "" (no error, or the caller gave
// up: a cancelled request) counts nothing.
func (e *Errors) Store(kind string) {
	if e == nil || kind == "" {
		return
	}
	e.store.WithLabelValues(kind).Inc()
}

// Broker counts a broker error of kind answered to api; "" counts
// nothing.
func (e *Errors) Broker(api, kind string) {
	if e == nil || kind == "" {
		return
	}
	e.broker.WithLabelValues(api, kind).Inc()
}

// Partition is a partition number as a label.
func Partition(p int32) string { return strconv.Itoa(int(p)) }

// Views counts the generations of the views (docs/design.md, "Rebuilding
// the views"): the one this instance reads, the switches it followed, and a
// rebuild running in this process.
type Views struct {
	Generation     prometheus.Gauge
	Switches       prometheus.Counter
	RebuildGen     prometheus.Gauge
	RebuildApplied prometheus.Gauge
	RebuildBehind  prometheus.Gauge
}

// NewViews registers the views' generation metrics with reg (nil: counted
// nowhere).
func NewViews(reg prometheus.Registerer) *Views {
	v := &Views{
		Generation: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Subsystem: "views", Name: "generation",
			Help: "The generation of the views this instance reads and projects (1: the collections orders and customers; N: orders_vN and customers_vN)."}),
		Switches: prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Subsystem: "views", Name: "switches_total",
			Help: "Changes of the active generation this instance followed."}),
		RebuildGen: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Subsystem: "views", Name: "rebuild_generation",
			Help: "The generation a rebuild (or a switch's catch-up) in this process is projecting; 0: none."}),
		RebuildApplied: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Subsystem: "views", Name: "rebuild_events_applied",
			Help: "Records of the events topic the running rebuild applied so far."}),
		RebuildBehind: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Subsystem: "views", Name: "rebuild_records_behind",
			Help: "Committed records of the events topic the running rebuild has not applied yet (its gap; it switches below --max-gap)."}),
	}
	register(reg, v.Generation, v.Switches, v.RebuildGen, v.RebuildApplied, v.RebuildBehind)
	return v
}
