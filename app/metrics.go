package app

import (
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ordergateway/gateway/metrics"
)

// gatewayMetrics is one gateway's registry and the metric sets its parts
// count in (README, Metrics).
type gatewayMetrics struct {
	registry   *metrics.Registry
	graphql    *metrics.GraphQL
	commands   *metrics.Commands
	handler    *metrics.Handler
	projection *metrics.Projections // each projector takes its generation's (newProjector)
	errors     *metrics.Errors      // the store's and the broker's, shared by the parts
	views      *metrics.Views
}

func newGatewayMetrics() *gatewayMetrics {
	r := metrics.NewRegistry()
	m := &gatewayMetrics{registry: r, graphql: metrics.NewGraphQL(r), commands: metrics.NewCommands(r),
		handler: metrics.NewHandler(r), projection: metrics.NewProjections(r), errors: metrics.NewErrors(r), views: metrics.NewViews(r)}
	m.commands.Errors, m.handler.Errors, m.projection.Errors = m.errors, m.errors, m.errors
	return m
}

// registerMetrics adds what is read from the started parts when scraped:
// dead letters, websocket connections, subscriptions, the hub's counters
// and the projection gap.
func (m *Main) registerMetrics() {
	r := m.metrics.registry
	ns := metrics.Namespace
	dead := func(source string, f func() int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Name: "dead_letters_total",
			Help:        "Messages this instance moved to the dead-letter topic, by the topic they came from (commands, events).",
			ConstLabels: prometheus.Labels{"source": source}}, func() float64 { return float64(f()) })
	}
	r.MustRegister(dead("commands", m.handler.DeadLetters), dead("events", func() int64 {
		m.projMu.Lock()
		defer m.projMu.Unlock()
		return m.deadLettersBefore + m.projector.DeadLetters() // nil-safe: 0 without a projector
	}))
	hub := m.feed.Hub()
	subs := func(field string, count func(one, matching int) int) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: "graphql", Name: "subscriptions",
			Help:        "Subscriptions open (websocket and SSE), by field: orderUpdated (one order), ordersUpdated (matching orders).",
			ConstLabels: prometheus.Labels{"field": field}}, func() float64 { return float64(count(hub.Counts())) })
	}
	r.MustRegister(
		subs("orderUpdated", func(one, _ int) int { return one }),
		subs("ordersUpdated", func(_, matching int) int { return matching }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: "graphql", Name: "websocket_connections",
			Help: "Websocket connections open."}, func() float64 { return float64(m.gql.WebsocketConnections()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Subsystem: "graphql", Name: "subscription_updates_coalesced_total",
			Help: "Order states a subscriber had not taken yet that a newer state of the same order replaced (a slow subscriber gets the newest state)."},
			func() float64 { return float64(hub.Coalesced()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Subsystem: "graphql", Name: "subscribers_too_slow_total",
			Help: "Subscriptions ended SUBSCRIBER_TOO_SLOW: their subscriber fell more than 256 orders behind."},
			func() float64 { return float64(hub.TooSlow()) }),
	)
	r.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "partitions",
		Help: "PARTITIONS: the partition count of the commands and events topics (the handler's and the projector's partitions assigned, summed over instances, should equal it)."},
		func() float64 { return float64(m.Config.Partitions) }))
	if p := m.proj(); p != nil {
		r.MustRegister(&currentGap{m: m, describe: p.GapCollector()})
	}
	// The consumer groups' lag, read with a client of its own (one
	// request at a time per connection: not behind the consumers' fetches).
	if client, err := sarama.NewClient(m.brokers, m.security.Config("order-gateway-lag", m.Config.FetchWait)); err != nil {
		m.Logger.Warn("metrics: consumer lag left out", "err", err)
	} else {
		m.lagClient = client
		r.MustRegister(&lagCollector{m: m, client: client})
	}
}

// serveMetrics serves /metrics alone on METRICS_ADDR.
func (m *Main) serveMetrics(ln net.Listener) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.metrics.registry.Handler())
	m.metricsServer = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	m.goRun(func() error {
		if err := m.metricsServer.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	m.Logger.Info("metrics endpoint", "url", "http://"+displayAddr(ln.Addr())+"/metrics")
}

// MetricsAddr is the address /metrics is served on: METRICS_ADDR's, or
// the HTTP server's without it.
func (m *Main) MetricsAddr() string {
	if m.metricsListener != nil {
		return m.metricsListener.Addr().String()
	}
	return m.Addr()
}
