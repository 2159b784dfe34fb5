// Package app is the gateway's one assembly: its configuration (Config,
// ParseConfig) and Main, which starts the embedded broker and store when
// none are configured, the command bus and handler, the projector, the
// views feed and the HTTP server, and stops them. The server's main, the
// tests and the benchmarks all start the gateway through it.
package app

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/ordergateway/gateway/auth"
	"github.com/ordergateway/gateway/command"
	"github.com/ordergateway/gateway/embedded"
	"github.com/ordergateway/gateway/graph"
	"github.com/ordergateway/gateway/kafka"
	"github.com/ordergateway/gateway/live"
	"github.com/ordergateway/gateway/playground"
	"github.com/ordergateway/gateway/projector"
	"github.com/ordergateway/gateway/tracing"
	"github.com/ordergateway/gateway/view"
)

// Main is the whole gateway: Run starts it, Close stops it gracefully. Tests
// start it on port 0.
type Main struct {
	Config Config
	Logger *slog.Logger
	// StoreOptions are added to the view store's options (the benchmark
	// passes view.SoleWriter for the embedded store it shares).
	StoreOptions []view.Option
	// WithoutProjector leaves the projector out: a diagnostic of the
	// benchmark (what the command path does without the projector beside
	// it). Queries, subscriptions and consistency waits see no changes then.
	WithoutProjector bool
	// TracerProvider, if set, traces the gateway (the tests' in-memory
	// exporter); else the OTEL_* variables choose (off by default).
	TracerProvider trace.TracerProvider
	// ViewsOnly starts the broker and store (embedded ones if none are
	// configured) and the view store, and nothing else: no listener, no
	// command handler, projector or feed. The views commands (views.go)
	// run on such a Main.
	ViewsOnly bool

	kafka             *embedded.Kafka
	mongo             *embedded.Mongo
	dataLock          *embedded.DirLock // held while the embedded broker or store runs
	stateLock         *embedded.DirLock // held on the command handler's state folder
	brokers           []string
	security          *kafka.Security // nil: plaintext, no SASL
	mongoURI          string
	store             *view.Store
	bus               *command.Bus
	handler           *command.Handler
	projMu            sync.Mutex
	projector         *projector.Projector // guarded by projMu once Run returned; the active generation's
	deadLettersBefore int64                // dead letters of the projectors a switch closed (guarded by projMu)
	projClosed        bool                 // Close took the projector (guarded by projMu)
	handover          *handover            // a caught-up projector a views command here hands over (guarded by projMu)
	catchingUp        *projector.Projector // the projector of a views command running here (guarded by projMu)
	viewsBusy         sync.Mutex           // one views rebuild or switch at a time in this process
	rebuild           rebuildStatus        // the views command running here, for /readyz
	topics            kafka.Topics
	admin             *http.Server // ADMIN_ADDR: the views commands (admin.go)
	adminListener     net.Listener
	adminToken        string
	adminTokenPath    string // the generated token's file, removed by Close
	adminCtx          context.Context
	adminStop         context.CancelFunc // ends the views commands the admin listener runs
	runCtx            context.Context
	feed              *live.Feed
	listener          net.Listener
	http              *http.Server
	gql               *graph.Server
	debug             *http.Server // DEBUG_ADDR: profiling endpoints
	debugListener     net.Listener
	metrics           *gatewayMetrics
	tracer            *tracing.Tracer          // nil: tracing off
	ownTracerProvider *sdktrace.TracerProvider // started from OTEL_*: shut down by Close
	metricsServer     *http.Server             // METRICS_ADDR: /metrics alone
	metricsListener   net.Listener
	lagClient         sarama.Client  // the consumer lag's (registerMetrics)
	verifier          *auth.Verifier // nil with AUTH_DISABLED
	mintWith          *auth.Config   // zero setup: the generated secret, to log tokens with

	cancel      context.CancelFunc
	wg          sync.WaitGroup
	closeOnce   sync.Once
	closeErr    error
	notReadyLog every // /readyz logs why it is not ready at most every 10 s
}

// every allows an action at most once per period (10 s by default).
type every struct {
	mu     sync.Mutex
	last   time.Time
	period time.Duration
}

// Allow reports whether the action may happen now, and if so counts it.
func (e *every) Allow() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if time.Since(e.last) < cmp.Or(e.period, 10*time.Second) {
		return false
	}
	e.last = time.Now()
	return true
}

// Run starts the dependencies (embedded ones if none are configured), the
// command handler, the projector and the HTTP server, and returns once the
// server is listening. Brokers and stores that are not reachable yet are
// retried for Config.StartupTimeout.
func (m *Main) Run(ctx context.Context) error {
	if m.Logger == nil {
		m.Logger = slog.Default()
	}
	c := m.Config
	if err := c.check(); err != nil {
		return err
	}
	if m.ViewsOnly {
		return m.runViewsOnly(ctx)
	}
	m.brokers, m.mongoURI = c.KafkaBrokers, c.MongoURI
	security, err := c.checkConnections()
	if err != nil {
		return err
	}
	if security != nil && security.SASLMechanism == kafka.SASLPlain && !security.TLS {
		m.Logger.Warn("kafka: KAFKA_SASL_MECHANISM=PLAIN without KAFKA_TLS sends the password in clear text")
	}
	m.security = security
	// The HTTP and debug addresses are taken first: one in use (or not
	// this host's) ends the start in one line, before the embedded broker
	// and store start. Requests wait in the backlog until Run serves them.
	if m.listener, err = net.Listen("tcp", c.ListenAddr); err != nil {
		return fmt.Errorf("LISTEN_ADDR (--listen-addr) %s: %v", c.ListenAddr, listenError(err))
	}
	if c.DebugAddr != "" {
		if m.debugListener, err = net.Listen("tcp", c.DebugAddr); err != nil {
			return fmt.Errorf("DEBUG_ADDR (--debug-addr) %s: %v", c.DebugAddr, listenError(err))
		}
	}
	if c.MetricsAddr != "" {
		if m.metricsListener, err = net.Listen("tcp", c.MetricsAddr); err != nil {
			return fmt.Errorf("METRICS_ADDR (--metrics-addr) %s: %v", c.MetricsAddr, listenError(err))
		}
	}
	m.metrics = newGatewayMetrics()
	if err := m.startTracing(ctx); err != nil {
		return err
	}
	if err := m.startAuth(); err != nil {
		return err
	}
	return m.runServing(ctx)
}

// runServing is Run from the embedded stack on: the dependencies, the
// views of the active generation, the command side, the projector and
// the feed, and the HTTP server.
func (m *Main) runServing(ctx context.Context) error {
	if err := m.startStores(ctx); err != nil {
		return err
	}
	return m.startServing()
}

// startStores starts the broker and the store (embedded ones if none are
// configured), creates the topics, opens the view store and reads the
// active generation of the views.
func (m *Main) startStores(ctx context.Context) error {
	c := m.Config
	onPostgreSQL := m.mongoURI == "" && c.StorePostgreSQLURL != ""
	// The data folder holds the embedded broker's files and the embedded
	// store's SQLite files; on PostgreSQL the store keeps nothing there.
	if len(m.brokers) == 0 || (m.mongoURI == "" && !onPostgreSQL) {
		l, err := embedded.LockDir(c.DataDir)
		if err != nil {
			return err
		}
		m.dataLock = l
	}
	if len(m.brokers) == 0 {
		k, err := embedded.StartKafka(filepath.Join(c.DataDir, "kafka"), c.EmbeddedKafkaPort)
		if err != nil {
			return err
		}
		m.kafka = k
		m.brokers = []string{k.Addr()}
		if n := k.FinishedCommits(); n > 0 {
			m.Logger.Warn("embedded kafka: finished transaction commits cut short by the unclean stop", "partitions", n)
		}
	}
	storeName := "mongodb at " + redact(m.mongoURI)
	switch {
	case onPostgreSQL:
		// The database may be shared with other gateways: FerretDB's cache
		// of the views database's collections is kept in step with theirs.
		mg, err := embedded.PostgreSQLStore{URL: c.StorePostgreSQLURL, Addr: c.EmbeddedMongoAddr,
			Shared: []string{c.MongoDatabase}, Logger: m.Logger, FerretDBLogger: m.ferretLogger()}.Start()
		if err != nil {
			return err
		}
		m.mongo = mg
		m.mongoURI = mg.URI()
		storeName = "postgresql at " + redact(c.StorePostgreSQLURL) + " (through the embedded store at " + m.mongoURI + ")"
	case m.mongoURI == "":
		mg, err := embedded.StartMongo(filepath.Join(c.DataDir, "mongodb"), c.EmbeddedMongoAddr, m.ferretLogger())
		if err != nil {
			return err
		}
		m.mongo = mg
		m.mongoURI = mg.URI()
		storeName = "mongodb at " + m.mongoURI
	}
	topics := kafka.NewTopics(c.TopicPrefix)
	m.topics = topics
	if err := m.prepareKafka(ctx, topics); err != nil {
		return err
	}
	storeOpts := append([]view.Option(nil), m.StoreOptions...)
	if m.mongo != nil && !onPostgreSQL {
		// The embedded store on SQLite is this process's alone (the data
		// folder is locked), so guarded writes need not read the guard back
		// first. Not on PostgreSQL: other gateways may write the same views.
		storeOpts = append(storeOpts, view.SoleWriter())
	}
	if onPostgreSQL {
		// The store adds an _id index FerretDB's lookups can use (see
		// embedded/pgcatalog.go), so a guard can be in the filter.
		storeOpts = append(storeOpts, view.SummaryLane(), view.FilterGuards())
	}
	if m.mongo != nil && m.mongo.DirectWrites() {
		// The projector's views are written straight into the embedded
		// store's tables, a batch per statement or transaction
		// (embedded/pgwrite.go, sqlitewrite.go).
		// And reads by id straight from them (embedded.Mongo.FindByIDs).
		storeOpts = append(storeOpts, view.DirectWrites(m.mongo), view.DirectReads(m.mongo))
	}
	storeOpts = append(storeOpts, view.WithErrors(m.metrics.errors), view.WithTracer(m.tracer))
	store, err := view.Open(m.mongoURI, c.MongoDatabase, storeOpts...)
	if err != nil {
		if m.mongo == nil {
			return fmt.Errorf("MONGODB_URI: %w", err) // the error shows no password
		}
		return err
	}
	m.store = store
	// The active generation of the views (1 until a rebuild switched).
	return m.retry(ctx, c.StartupTimeout, storeName, func(ctx context.Context) error {
		gen, err := store.ActiveGeneration(ctx)
		if err != nil {
			return err
		}
		store.Use(gen)
		return store.EnsureIndexes(ctx)
	})
}

// startServing starts the command side, the projector of the active
// generation, the feed, the views' follower and the HTTP server.
func (m *Main) startServing() error {
	var err error
	c := m.Config
	topics, store := m.topics, m.store
	gen := store.Generation()
	m.metrics.views.Generation.Set(float64(gen))
	if m.bus, err = command.NewBus(command.BusConfig{Brokers: m.brokers, Topics: topics, Timeout: c.CommandTimeout, FetchWait: c.FetchWait, Logger: m.Logger, Security: m.security,
		Metrics: m.metrics.commands, Tracer: m.tracer}); err != nil {
		return err
	}
	if m.handler, err = command.NewHandler(command.HandlerConfig{Brokers: m.brokers, Topics: topics, Group: m.handlerGroup(),
		FetchWait: c.FetchWait, SessionTimeout: c.SessionTimeout, Logger: m.Logger, Local: m.bus, Security: m.security,
		AuthDisabled: c.Auth.Disabled, Metrics: m.metrics.handler, Tracer: m.tracer,
		StateDir: m.stateDir(), CacheOrders: c.HandlerCacheOrders}); err != nil {
		return err
	}
	m.bus.Attach(m.handler)
	if !m.WithoutProjector {
		if m.projector, err = m.newProjector(gen, nil); err != nil {
			return err
		}
	}
	if m.feed, err = live.NewFeed(live.FeedConfig{Brokers: m.brokers, Topics: topics, FetchWait: c.FetchWait, Logger: m.Logger, Security: m.security, Tracer: m.tracer}); err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	m.cancel, m.runCtx = cancel, runCtx
	m.goRun(func() error { return m.handler.Run(runCtx) })
	if m.projector != nil {
		p := m.projector
		m.goRun(func() error { return p.Run(runCtx) })
	}
	// Every instance follows the active generation (a views switch).
	m.goRun(func() error { store.Follow(runCtx, m.switched); return nil })

	ln := m.listener
	// No ReadTimeout: it would also end server-sent event streams. A
	// request's headers have HTTP_READ_TIMEOUT (ReadHeaderTimeout), and
	// graph.Server gives its body the same.
	m.http = &http.Server{Handler: m.routes(), ReadHeaderTimeout: c.HTTPReadTimeout, IdleTimeout: c.HTTPIdleTimeout,
		ConnContext: graph.ConnContext, ErrorLog: slog.NewLogLogger(m.Logger.Handler(), slog.LevelDebug)}
	capped := &capListener{Listener: ln, max: int64(c.MaxConnections), logger: m.Logger}
	m.goRun(func() error {
		if err := m.http.Serve(capped); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	if m.debugListener != nil {
		m.serveDebug(m.debugListener)
	}
	m.registerMetrics()
	if m.metricsListener != nil {
		m.serveMetrics(m.metricsListener)
	}
	if c.AdminAddr != "" {
		if err := m.startAdmin(); err != nil {
			return err
		}
	}
	ready := []any{
		"graphql", "http://" + displayAddr(ln.Addr()) + "/graphql",
		"playground", m.playgroundURL(ln.Addr()),
		"kafka", m.brokers, "kafka_embedded", m.kafka != nil, "kafka_security", m.security.Describe(),
		"mongodb", redact(m.mongoURI), "mongodb_embedded", m.mongo != nil,
	}
	if m.mongoURI != c.MongoURI && c.StorePostgreSQLURL != "" {
		ready = append(ready, "postgresql", redact(c.StorePostgreSQLURL))
	}
	ready = append(ready, "views_generation", store.Generation(), "auth", m.describeAuth())
	m.Logger.Info("order gateway ready", append(ready, "data_dir", c.DataDir)...)
	m.logZeroSetupTokens()
	return nil
}

// serveDebug serves Go's profiling endpoints on their own address, so they
// are never exposed with the GraphQL endpoint.
func (m *Main) serveDebug(ln net.Listener) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	m.debug, m.debugListener = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, ln
	m.goRun(func() error {
		if err := m.debug.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	m.Logger.Info("profiling endpoints", "url", "http://"+displayAddr(ln.Addr())+"/debug/pprof/")
}

// listenError words a failed listen without Go's "listen tcp" prefix.
func listenError(err error) string {
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return "the address is in use (another process listens on it)"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "the address is not one of this host's"
	case errors.Is(err, syscall.EACCES):
		return "permission denied (ports below 1024 need privileges)"
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return "the host name does not resolve"
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Err != nil {
		return opErr.Err.Error()
	}
	return err.Error()
}

// ferretLogger is the embedded store's logger: FerretDB logs every error
// reply it sends (a missing collection, say) as a warning, which is noise
// for the gateway; only its errors are shown unless LOG_LEVEL is debug.
func (m *Main) ferretLogger() *slog.Logger {
	level := slog.LevelError
	if m.Config.LogLevel <= slog.LevelDebug {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("component", "ferretdb")
}

func (m *Main) goRun(f func() error) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		if err := f(); err != nil {
			m.Logger.Error("component stopped", "err", err)
		}
	}()
}

// prepareKafka waits for the broker, creates the topics, and checks that
// the broker accepts SESSION_TIMEOUT for the consumer groups (a refused one
// would have them try to join forever).
func (m *Main) prepareKafka(ctx context.Context, topics kafka.Topics) error {
	sc := m.security.Config("order-gateway-admin", m.Config.FetchWait)
	return m.retry(ctx, m.Config.StartupTimeout, fmt.Sprintf("kafka at %v", m.brokers), func(context.Context) error {
		client, err := sarama.NewClient(m.brokers, sc)
		if err != nil {
			if refused := m.security.Refusal(err, m.brokers); refused != nil {
				return refused // a wrong password, CA, TLS or SASL setting: no retry helps
			}
			return err
		}
		admin, err := sarama.NewClusterAdminFromClient(client)
		if err != nil {
			client.Close()
			return err
		}
		defer admin.Close() // and the client
		err = kafka.EnsureTopics(admin, topics, kafka.TopicSettings{Partitions: int32(m.Config.Partitions),
			ReplicationFactor: int16(m.Config.ReplicationFactor), Logger: m.Logger})
		if err != nil || m.Config.SessionTimeout == 0 || m.ViewsOnly {
			return err // a views command: its gateways checked SESSION_TIMEOUT
		}
		return kafka.CheckSessionTimeout(client, m.handlerGroup(), []string{topics.Commands}, m.Config.SessionTimeout)
	})
}

// handlerGroup and projectorGroup are the consumer groups' names: the
// projector's is one per generation of the views (generation 1 keeps the
// name it always had, so its committed offsets carry over).
func (m *Main) handlerGroup() string { return m.Config.TopicPrefix + ".command-handler" }
func (m *Main) projectorGroup(gen int) string {
	if gen <= 1 {
		return m.Config.TopicPrefix + ".projector"
	}
	return fmt.Sprintf("%s.projector.v%d", m.Config.TopicPrefix, gen)
}

// retry calls f until it succeeds or timeout passes, then returns one line
// naming what could not be reached. A kafka.ConfigError ends it at once,
// with one line naming the setting: retrying cannot change it.
func (m *Main) retry(ctx context.Context, timeout time.Duration, what string, f func(context.Context) error) error {
	deadline := time.Now().Add(timeout)
	ctx, cancel := context.WithDeadline(ctx, deadline) // no attempt outlives the timeout
	defer cancel()
	backoff := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := f(ctx)
		if err == nil {
			return nil
		}
		if ce := (*kafka.ConfigError)(nil); errors.As(err, &ce) {
			return fmt.Errorf("%s: %v", what, ce)
		}
		if attempt == 1 || attempt%5 == 0 {
			m.Logger.Warn("waiting for "+what, "err", err)
		}
		if time.Now().Add(backoff).After(deadline) {
			return fmt.Errorf("%s not reachable within %s: %v", what, timeout, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not reachable within %s: %v", what, timeout, err)
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

func (m *Main) routes() http.Handler {
	m.gql = graph.NewServer(&graph.Resolver{
		Commands: m.bus, Views: m.store, Logger: m.Logger,
		Waiter: live.Waiter{Feed: m.feed, Store: m.store}, ConsistencyTimeout: m.Config.ConsistencyTimeout,
		Live: m.feed.Hub(), Snapshots: &live.Snapshots{Store: m.store}, Auth: m.authenticator(),
		Metrics: m.metrics.graphql, Tracer: m.tracer, Traces: m.feed,
	}, graph.WebsocketOptions{AllowedOrigins: m.Config.AllowedOrigins,
		InitTimeout: m.Config.WSInitTimeout, PingInterval: m.Config.WSPingInterval, WriteTimeout: m.Config.WSWriteTimeout, MaxSubscriptionsPer: m.Config.MaxSubscriptions,
		BodyTimeout: m.Config.HTTPReadTimeout})
	m.configurePersisted(m.gql)

	mux := http.NewServeMux()
	// CORS outermost: a preflight carries no token, and a refusal must
	// reach the page that may read it.
	mux.Handle("/graphql", graph.CORS(m.Config.corsOrigins(), m.gql))
	// GraphiQL, served from the binary (works offline): the page at /, its
	// scripts and styles under /playground/.
	if !m.Config.NoPlayground {
		pg, err := playground.New(playground.Options{Title: "Order gateway", Endpoint: "/graphql",
			Schema: graph.NewExecutableSchema(graph.Config{})}) // introspected once, for Docs and autocompletion
		if err != nil {
			panic(err) // the embedded files are checked by playground's tests
		}
		mux.Handle("GET /{$}", pg)
		mux.Handle("GET "+playground.Prefix, pg)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", m.readyz)
	if m.metricsListener == nil {
		// Prometheus' text format, without a token (a scraper has none);
		// METRICS_ADDR moves it to an address of its own.
		mux.Handle("GET /metrics", m.metrics.registry.Handler())
	}
	return mux
}

// readyz reports 200 when the broker and store answer and the handler and
// projector have joined their groups, 503 otherwise, with a line for each.
func (m *Main) readyz(w http.ResponseWriter, r *http.Request) {
	status := map[string]string{"kafka": "ok", "mongodb": "ok", "commandHandler": "running", "projector": "running", "auth": m.authStatus()}
	var details []any // for the log: the body names no addresses and quotes no driver text
	ok := true
	if err := m.bus.Ping(); err != nil {
		status["kafka"], ok = "unavailable", false
		details = append(details, "kafka", err)
	}
	if err := m.store.Ping(r.Context()); err != nil {
		status["mongodb"], ok = "unavailable", false
		details = append(details, "mongodb", err)
	}
	if why := m.handler.Refused(); why != "" {
		status["commandHandler"], ok = why, false
	} else if !m.handler.Ready() {
		status["commandHandler"], ok = "starting", false
	} else if why := m.handler.Stalled(m.Config.StallTimeout); why != "" {
		status["commandHandler"], ok = why, false
	}
	p := m.proj()
	switch {
	case p == nil:
		status["projector"] = "off"
	case !p.Ready():
		status["projector"], ok = "starting", false
	case p.Stalled(m.Config.StallTimeout) != "":
		status["projector"], ok = p.Stalled(m.Config.StallTimeout), false
		details = append(details, "projector", p.LastError())
	case p.LastError() != "":
		status["projector"] = "retrying"
		details = append(details, "projector", p.LastError())
	}
	status["views"] = fmt.Sprintf("generation %d", m.store.Generation())
	if r := m.rebuild.String(); r != "" {
		status["viewsRebuild"] = r
	}
	code := http.StatusOK
	if !ok {
		code = http.StatusServiceUnavailable
	}
	if len(details) > 0 && m.notReadyLog.Allow() {
		m.Logger.Warn("readiness: not ready", append(details, "status", status)...)
	}
	writeJSON(w, code, status)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// Ready reports whether the command handler and the projector (unless it
// is left out) have joined their groups.
func (m *Main) Ready() bool {
	p := m.proj()
	return m.handler != nil && m.handler.Ready() && (p == nil || p.Ready())
}

// Bus is the gateway's command bus.
func (m *Main) Bus() *command.Bus { return m.bus }

// Handler is the gateway's command handler (tests stop it to see commands
// wait).
func (m *Main) Handler() *command.Handler { return m.handler }

// Projector is the projector of the active generation of the views, or
// nil (tests pause it, to leave that generation behind).
func (m *Main) Projector() *projector.Projector { return m.proj() }

// Hub is the hub of the gateway's live subscriptions.
func (m *Main) Hub() *live.Hub { return m.feed.Hub() }

// Addr is the address the HTTP server listens on.
func (m *Main) Addr() string { return m.listener.Addr().String() }

// DebugAddr is the address of the profiling endpoints, or "" when they are
// off.
func (m *Main) DebugAddr() string {
	if m.debugListener == nil {
		return ""
	}
	return m.debugListener.Addr().String()
}

// Close stops taking requests, lets in-flight ones finish (their commands
// are still handled meanwhile), stops the handler and projector (committing
// what they finished), then closes the clients, and the embedded store and
// broker last. It is safe to call on a partly started Main, and more than
// once (later calls return the first call's error).
func (m *Main) Close() error {
	m.closeOnce.Do(func() { m.closeErr = m.close() })
	return m.closeErr
}

func (m *Main) close() error {
	var errs []error
	deadline := time.Now().Add(m.Config.ShutdownTimeout)
	if m.http != nil {
		// Shutdown stops taking requests and waits for those in progress;
		// CloseStreams, beside it, ends the event streams (which never end
		// by themselves) and the websockets once their queries and
		// mutations are done. Both within SHUTDOWN_TIMEOUT.
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		shut := make(chan error, 1)
		go func() { shut <- m.http.Shutdown(ctx) }()
		if m.gql != nil {
			m.gql.CloseStreams(deadline) // subscribers reconnect elsewhere
		}
		errs = append(errs, <-shut)
		cancel()
	}
	if m.debug != nil {
		errs = append(errs, m.debug.Close())
	}
	if m.admin != nil {
		// A views command running ends (adminStop cancels its context);
		// the lock waits for it.
		m.adminStop()
		errs = append(errs, m.admin.Close())
		m.viewsBusy.Lock()
		m.viewsBusy.Unlock()
	}
	if m.adminTokenPath != "" {
		os.Remove(m.adminTokenPath)
	}
	if m.metricsServer != nil {
		errs = append(errs, m.metricsServer.Close())
	} else if m.metricsListener != nil {
		m.metricsListener.Close()
	}
	// Listeners taken by a Run that failed before serving them.
	if m.http == nil && m.listener != nil {
		m.listener.Close()
	}
	if m.debug == nil && m.debugListener != nil {
		m.debugListener.Close()
	}
	if m.feed != nil {
		errs = append(errs, m.feed.Close())
	}
	if m.cancel != nil {
		m.cancel()
	}
	if m.handler != nil {
		errs = append(errs, m.handler.Close())
	}
	m.projMu.Lock()
	p, h := m.projector, m.handover
	m.projClosed, m.handover = true, nil
	m.projMu.Unlock()
	if p != nil {
		errs = append(errs, p.Close())
	}
	if h != nil {
		h.p.Close()
	}
	m.wg.Wait()
	if m.bus != nil {
		errs = append(errs, m.bus.Close())
	}
	if m.lagClient != nil {
		m.lagClient.Close()
	}
	if m.store != nil {
		errs = append(errs, m.store.Close(context.Background()))
	}
	if m.mongo != nil {
		m.mongo.Close()
	}
	if m.kafka != nil {
		m.kafka.Close()
	}
	m.verifier.Close()
	errs = append(errs, m.stopTracing())
	errs = append(errs, m.stateLock.Close())
	errs = append(errs, m.dataLock.Close())
	return errors.Join(errs...)
}

// stateDir is the command handler's state folder, handler-state in
// DATA_DIR, locked for this process. If another process holds it (several
// gateways given one DATA_DIR) or it cannot be made, the handler keeps its
// state in a temporary folder ("") instead, and every start restores from
// the snapshots topic: slower, never wrong.
func (m *Main) stateDir() string {
	dir := filepath.Join(m.Config.DataDir, "handler-state")
	l, err := embedded.LockDir(dir)
	if err != nil {
		m.Logger.Warn("command handler: its state folder is not usable; keeping its state in a temporary folder (each start reads all snapshots)", "err", err)
		return ""
	}
	m.stateLock = l
	return dir
}

func displayAddr(a net.Addr) string {
	host, port, _ := net.SplitHostPort(a.String())
	if host == "::" || host == "0.0.0.0" || host == "" {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

// redact hides a password in a connection string (mongodb://, postgres://)
// before it is logged.
func redact(uri string) string { return view.RedactURI(uri) }

// storeFlush is the projector's Config.Durable: the embedded store's Flush
// (the store on PostgreSQL commits asynchronously), nil for an external
// MongoDB, whose acknowledged writes are as durable as its write concern
// makes them.
func (m *Main) storeFlush() func(context.Context) error {
	if m.mongo == nil {
		return nil
	}
	return m.mongo.Flush
}

// playgroundURL is where the start log says the playground is: "off" with
// PLAYGROUND=false.
func (m *Main) playgroundURL(a net.Addr) string {
	if m.Config.NoPlayground {
		return "off"
	}
	return "http://" + displayAddr(a) + "/"
}
