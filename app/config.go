package app

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/ordergateway/gateway/auth"
	"github.com/ordergateway/gateway/graph"
	"github.com/ordergateway/gateway/kafka"
	"github.com/ordergateway/gateway/view"
)

// Config is everything the gateway can be told, by flag or environment
// variable (a flag wins). Run with --help for the list.
type Config struct {
	ListenAddr         string
	DataDir            string
	KafkaBrokers       []string // empty: start the embedded broker
	MongoURI           string   // empty: start the embedded store
	StorePostgreSQLURL string   // the embedded store on PostgreSQL instead of SQLite (needs MongoURI empty)
	MongoDatabase      string
	TopicPrefix        string
	Partitions         int
	ReplicationFactor  int
	CommandTimeout     time.Duration
	ConsistencyTimeout time.Duration
	StartupTimeout     time.Duration
	ShutdownTimeout    time.Duration
	FetchWait          time.Duration
	ProjectorLinger    time.Duration
	SessionTimeout     time.Duration
	StallTimeout       time.Duration
	HTTPReadTimeout    time.Duration
	HTTPIdleTimeout    time.Duration
	MaxConnections     int
	EmbeddedKafkaPort  int
	EmbeddedMongoAddr  string
	LogLevel           slog.Level
	AllowedOrigins     []string
	CORSAllowedOrigins []string       // nil: AllowedOrigins; empty: no other origin (app/security.go)
	KafkaSecurity      kafka.Security // KAFKA_TLS, KAFKA_CA_FILE, KAFKA_SASL_* (app/security.go)
	WSInitTimeout      time.Duration
	WSPingInterval     time.Duration
	WSWriteTimeout     time.Duration
	MaxSubscriptions   int
	DebugAddr          string
	MetricsAddr        string // "": /metrics on LISTEN_ADDR
	// AdminAddr is ADMIN_ADDR: the admin listener (app/admin.go), which
	// runs the views commands in this gateway; "": off. Loopback only
	// unless AdminAllowRemote, which needs AdminToken.
	AdminAddr        string
	AdminAllowRemote bool
	AdminToken       string
	Auth             auth.Config // AUTH_* (app/auth.go)
	// APQCacheSize is APQ_CACHE_SIZE: 0 is graph.DefaultAPQCacheSize, a
	// negative size turns automatic persisted queries off (app/persisted.go).
	APQCacheSize int
	// TrustedDocumentsFile is TRUSTED_DOCUMENTS_FILE ("": any document
	// runs), and TrustedDocuments its manifest as ParseConfig read it.
	TrustedDocumentsFile string
	TrustedDocuments     *graph.TrustedDocuments
	// NoPlayground is PLAYGROUND=false: / and /playground/ answer 404.
	NoPlayground bool
	// HandlerCacheOrders is HANDLER_CACHE_ORDERS: the order states the
	// command handler keeps in memory (command.HandlerConfig.CacheOrders).
	HandlerCacheOrders int
}

// setting is one configuration entry: its flag, environment variable,
// default and help.
type setting struct {
	flag, env, def, help string
	set                  func(c *Config, v string) error
}

func settings() []setting {
	str := func(dst func(*Config) *string) func(*Config, string) error {
		return func(c *Config, v string) error { *dst(c) = v; return nil }
	}
	// duration parses a positive duration, or also 0 if zeroOK.
	duration := func(dst func(*Config) *time.Duration, zeroOK bool) func(*Config, string) error {
		return func(c *Config, v string) error {
			d, err := time.ParseDuration(v)
			switch {
			case zeroOK && (err != nil || d < 0):
				return fmt.Errorf("%q is not a duration such as 2ms, or 0", v)
			case !zeroOK && (err != nil || d <= 0):
				return fmt.Errorf("%q is not a positive duration such as 5s or 250ms", v)
			}
			*dst(c) = d
			return nil
		}
	}
	dur := func(dst func(*Config) *time.Duration) func(*Config, string) error { return duration(dst, false) }
	num := func(dst func(*Config) *int, min, max int) func(*Config, string) error {
		return func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < min || n > max {
				return fmt.Errorf("%q is not a whole number from %d to %d", v, min, max)
			}
			*dst(c) = n
			return nil
		}
	}
	return append([]setting{
		{"listen-addr", "LISTEN_ADDR", ":8080", "HTTP address to serve GraphQL on (host:port; an empty host is every interface)", addr(func(c *Config) *string { return &c.ListenAddr })},
		{"data-dir", "DATA_DIR", "./data", "folder for the embedded broker's and store's data and the command handler's local state (handler-state), also with KAFKA_BROKERS", str(func(c *Config) *string { return &c.DataDir })},
		{"kafka-brokers", "KAFKA_BROKERS", "", "comma-separated Kafka bootstrap servers (host:port); empty starts the embedded broker", func(c *Config, v string) error {
			c.KafkaBrokers = splitList(v)
			for _, b := range c.KafkaBrokers {
				if err := checkBroker(b); err != nil {
					return err
				}
			}
			return nil
		}},
		{"kafka-tls", "KAFKA_TLS", "false", "true: connect to KAFKA_BROKERS over TLS (1.2 or newer), checking their certificates against KAFKA_CA_FILE or the system's roots", setKafkaTLS},
		{"kafka-ca-file", "KAFKA_CA_FILE", "", "PEM file of the CA certificates the brokers' certificates are checked against (with KAFKA_TLS); empty: the system's roots", setKafkaCAFile},
		{"kafka-sasl-mechanism", "KAFKA_SASL_MECHANISM", "", "SASL mechanism for KAFKA_BROKERS: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty: no SASL", setKafkaSASLMechanism},
		{"kafka-sasl-username", "KAFKA_SASL_USERNAME", "", "SASL user name, 1 to 255 bytes", setKafkaSASLUsername},
		{"kafka-sasl-password", "KAFKA_SASL_PASSWORD", "", "SASL password, 1 to 1024 bytes (prefer the environment variable: a flag shows in the process list); never logged or shown", setKafkaSASLPassword},
		{"mongodb-uri", "MONGODB_URI", "", "MongoDB connection string; empty starts the embedded store", func(c *Config, v string) error {
			if v != "" {
				if err := view.CheckURI(v); err != nil {
					return err
				}
			}
			c.MongoURI = v
			return nil
		}},
		{"store-postgresql-url", "STORE_POSTGRESQL_URL", "", "PostgreSQL URL (postgres://user:password@host:5432/db) for the embedded store to keep the views in instead of SQLite under DATA_DIR; gateways may share it; not with MONGODB_URI", func(c *Config, v string) error {
			if v != "" {
				if u, err := url.Parse(v); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
					return fmt.Errorf("%q is not a postgres://user:password@host:port/database URL", redact(v))
				}
			}
			c.StorePostgreSQLURL = v
			return nil
		}},
		{"mongodb-database", "MONGODB_DATABASE", "orders", "MongoDB database for the views: at most 63 bytes, none of /\\. \"$*<>:|? (the embedded store: ASCII letters, digits, '_' and '-' only)", func(c *Config, v string) error {
			if v == "" || len(v) > 63 || strings.ContainsAny(v, "/\\. \"$*<>:|?\x00") {
				return fmt.Errorf("%q is not a MongoDB database name (1 to 63 bytes, none of /\\. \"$*<>:|?)", v)
			}
			c.MongoDatabase = v
			return nil
		}},
		{"topic-prefix", "TOPIC_PREFIX", "orders", "prefix of the topic and consumer group names: ASCII letters, digits, '.', '_' and '-', at most 238 characters", func(c *Config, v string) error {
			if err := kafka.CheckTopicPrefix(v); err != nil {
				return err
			}
			c.TopicPrefix = v
			return nil
		}},
		{"partitions", "PARTITIONS", "6", "partitions of each topic created at start", num(func(c *Config) *int { return &c.Partitions }, 1, 10000)},
		{"replication-factor", "REPLICATION_FACTOR", "-1", "replication factor of topics created at start, 1 to 32 (-1: broker default)", func(c *Config, v string) error {
			if v == "0" {
				return fmt.Errorf("%q is not -1 (the broker's default) or a whole number from 1 to 32", v)
			}
			return num(func(c *Config) *int { return &c.ReplicationFactor }, -1, 32)(c, v)
		}},
		{"command-timeout", "COMMAND_TIMEOUT", "5s", "how long a mutation waits for its command's outcome", dur(func(c *Config) *time.Duration { return &c.CommandTimeout })},
		{"consistency-timeout", "CONSISTENCY_TIMEOUT", "3s", "how long a query with a consistencyToken waits for the views", dur(func(c *Config) *time.Duration { return &c.ConsistencyTimeout })},
		{"startup-timeout", "STARTUP_TIMEOUT", "60s", "how long to retry an unreachable broker or store at start", dur(func(c *Config) *time.Duration { return &c.StartupTimeout })},
		{"shutdown-timeout", "SHUTDOWN_TIMEOUT", "15s", "how long to wait for in-flight requests at shutdown", dur(func(c *Config) *time.Duration { return &c.ShutdownTimeout })},
		{"fetch-wait", "FETCH_WAIT", "", "longest a consumer fetch waits at the broker for new records (default: 20ms with the embedded broker, 500ms with KAFKA_BROKERS)", func(c *Config, v string) error {
			if v == "" {
				return nil // chosen for the broker once KAFKA_BROKERS is known
			}
			return dur(func(c *Config) *time.Duration { return &c.FetchWait })(c, v)
		}},
		{"projector-linger", "PROJECTOR_LINGER", "2ms", "how long the projector waits after an event for more before it writes the views (an order's events in one batch become one write; 0: no wait)", duration(func(c *Config) *time.Duration { return &c.ProjectorLinger }, true)},
		{"http-read-timeout", "HTTP_READ_TIMEOUT", "10s", "how long a client may take to send a request's headers, and again its body", dur(func(c *Config) *time.Duration { return &c.HTTPReadTimeout })},
		{"http-idle-timeout", "HTTP_IDLE_TIMEOUT", "60s", "how long an idle keep-alive connection stays open", dur(func(c *Config) *time.Duration { return &c.HTTPIdleTimeout })},
		{"max-connections", "MAX_CONNECTIONS", "10000", "HTTP connections open at once (websockets and event streams included); one more is closed at once", num(func(c *Config) *int { return &c.MaxConnections }, 1, 1_000_000)},
		{"stall-timeout", "STALL_TIMEOUT", "30s", "how long the command handler or the projector may make no progress with work waiting (failing writes or transactions, out of their group) before /readyz answers 503", dur(func(c *Config) *time.Duration { return &c.StallTimeout })},
		{"session-timeout", "SESSION_TIMEOUT", "10s", "consumer group session timeout (how fast a dead instance's partitions move), 1s to 15m, and within the broker's group.min.session.timeout.ms and group.max.session.timeout.ms", func(c *Config, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil || d < minSessionTimeout || d > maxSessionTimeout {
				return fmt.Errorf("%q is not a duration from %s to %s", v, minSessionTimeout, maxSessionTimeout)
			}
			c.SessionTimeout = d
			return nil
		}},
		{"embedded-kafka-port", "EMBEDDED_KAFKA_PORT", "0", "port of the embedded broker on 127.0.0.1 (0: any free port)", num(func(c *Config) *int { return &c.EmbeddedKafkaPort }, 0, 65535)},
		{"embedded-mongodb-addr", "EMBEDDED_MONGODB_ADDR", "127.0.0.1:0", "address of the embedded store", str(func(c *Config) *string { return &c.EmbeddedMongoAddr })},
		{"allowed-origins", "ALLOWED_ORIGINS", "localhost:*,127.0.0.1:*", "comma-separated host patterns of pages allowed to open websockets (the server's own origin always is)", func(c *Config, v string) error {
			c.AllowedOrigins = splitList(v)
			return nil
		}},
		{"cors-allowed-origins", "CORS_ALLOWED_ORIGINS", "", "comma-separated host patterns of pages allowed to call /graphql from another origin (CORS), as ALLOWED_ORIGINS; empty: ALLOWED_ORIGINS' list; none: no other origin", setCORSAllowedOrigins},
		{"ws-init-timeout", "WS_INIT_TIMEOUT", "10s", "how long a websocket may take to send connection_init", dur(func(c *Config) *time.Duration { return &c.WSInitTimeout })},
		{"ws-ping-interval", "WS_PING_INTERVAL", "15s", "websocket keep-alive interval (a peer that misses two pongs is closed) and SSE keep-alive comment interval", dur(func(c *Config) *time.Duration { return &c.WSPingInterval })},
		{"ws-write-timeout", "WS_WRITE_TIMEOUT", "10s", "how long a websocket write may wait for a client that does not read before it is disconnected", dur(func(c *Config) *time.Duration { return &c.WSWriteTimeout })},
		{"max-subscriptions-per-connection", "MAX_SUBSCRIPTIONS_PER_CONNECTION", "100", "subscriptions one websocket may hold at once", num(func(c *Config) *int { return &c.MaxSubscriptions }, 1, 100000)},
		{"handler-cache-orders", "HANDLER_CACHE_ORDERS", "10000", "order states the command handler keeps in memory, the least recently used dropped first (64 MiB of snapshots at most); the others are read from its local state store under DATA_DIR when needed", num(func(c *Config) *int { return &c.HandlerCacheOrders }, 1, 10_000_000)},
		{"apq-cache-size", "APQ_CACHE_SIZE", "1000", "automatic persisted queries (Apollo's APQ) kept, the least recently used dropped first (16 MiB of documents at most); 0 turns APQ off", setAPQCacheSize},
		{"trusted-documents-file", "TRUSTED_DOCUMENTS_FILE", "", "JSON manifest of trusted documents (Apollo's persisted query manifest, or an object of SHA-256 to document): when set, only its documents run; empty: any document", setTrustedDocumentsFile},
		{"playground", "PLAYGROUND", "true", "serve the GraphiQL playground at / (its page holds the schema, for anyone who can reach the address); false: / answers 404, and tools introspect /graphql with a token", func(c *Config, v string) error {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return fmt.Errorf("%q is not true or false", cut(v, 40))
			}
			c.NoPlayground = !b
			return nil
		}},
		{"admin-addr", "ADMIN_ADDR", "", "address (host:port) of the admin listener, through which views commands (go run . views ...) run in this gateway when it holds DATA_DIR; a loopback address unless ADMIN_ALLOW_REMOTE; empty turns it off", func(c *Config, v string) error {
			if v == "" {
				c.AdminAddr = ""
				return nil
			}
			return addr(func(c *Config) *string { return &c.AdminAddr })(c, v)
		}},
		{"admin-allow-remote", "ADMIN_ALLOW_REMOTE", "false", "true: ADMIN_ADDR may be an address other machines reach (needs ADMIN_TOKEN; the listener speaks plain HTTP: reach it through a tunnel)", func(c *Config, v string) error {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return fmt.Errorf("%q is not true or false", cut(v, 40))
			}
			c.AdminAllowRemote = b
			return nil
		}},
		{"admin-token", "ADMIN_TOKEN", "", "bearer token of the admin listener, 16 to 1024 bytes; empty: a random one, written to DATA_DIR/admin-token (mode 0600) for the views commands of this host to read", func(c *Config, v string) error {
			if v != "" && (len(v) < 16 || len(v) > 1024 || strings.ContainsAny(v, " \t\r\n")) {
				return errors.New("must be 16 to 1024 bytes without spaces")
			}
			c.AdminToken = v
			return nil
		}},
		{"debug-addr", "DEBUG_ADDR", "", "address (host:port) for Go's profiling endpoints (/debug/pprof/); empty turns them off", func(c *Config, v string) error {
			if v == "" {
				c.DebugAddr = ""
				return nil
			}
			return addr(func(c *Config) *string { return &c.DebugAddr })(c, v)
		}},
		{"metrics-addr", "METRICS_ADDR", "", "address (host:port) to serve /metrics (Prometheus) on instead of LISTEN_ADDR, e.g. one only the scraper reaches; empty: on LISTEN_ADDR, without a token", func(c *Config, v string) error {
			if v == "" {
				c.MetricsAddr = ""
				return nil
			}
			return addr(func(c *Config) *string { return &c.MetricsAddr })(c, v)
		}},
		{"log-level", "LOG_LEVEL", "info", "debug, info, warn or error", func(c *Config, v string) error {
			switch strings.ToLower(v) {
			case "debug", "info", "warn", "error":
				return c.LogLevel.UnmarshalText([]byte(v))
			}
			return fmt.Errorf("%q is not debug, info, warn or error", cut(v, 40))
		}},
	}, authSettings()...)
}

// Setting describes one setting as --help shows it.
type Setting struct{ Flag, Env, Default, Help string }

// Settings lists every setting the gateway reads.
func Settings() []Setting {
	ss := settings()
	out := make([]Setting, len(ss))
	for i, s := range ss {
		out[i] = Setting{Flag: s.flag, Env: s.env, Default: s.def, Help: s.help}
	}
	return out
}

// ParseConfig reads the configuration from args and the environment. Its
// error is one line naming the setting and what was wrong with it; for
// --help it returns flag.ErrHelp after printing the usage to out.
func ParseConfig(args []string, getenv func(string) string, out io.Writer) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("order-gateway", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	ss := settings()
	values := make(map[string]*string, len(ss))
	for _, s := range ss {
		values[s.flag] = fs.String(s.flag, "", "")
	}
	fs.Usage = func() {} // the help is printed for --help only, not after every error
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(out, ss)
			return c, err
		}
		return c, fmt.Errorf("%v (see --help)", err)
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0))
	}
	setByFlag := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { setByFlag[f.Name] = true })
	for _, s := range ss {
		v, from := s.def, "default"
		if e := getenv(s.env); e != "" {
			v, from = e, "environment variable "+s.env
		}
		if setByFlag[s.flag] {
			v, from = *values[s.flag], "flag --"+s.flag
		}
		if err := s.set(&c, v); err != nil {
			return c, fmt.Errorf("%s: %v", from, err)
		}
	}
	if err := c.check(); err != nil {
		return c, err
	}
	if _, err := c.checkConnections(); err != nil {
		return c, err
	}
	if c.FetchWait == 0 {
		c.FetchWait = defaultFetchWait(c.KafkaBrokers)
	}
	return c, nil
}

// defaultFetchWait is FETCH_WAIT's default for the broker: Apache Kafka
// answers a waiting fetch as soon as records (or a transaction's commit)
// arrive, so the wait only bounds how often idle consumers ask (500 ms
// measured no slower than 20 ms for mutations and read-your-writes, with
// the broker's idle polling cut by the same factor); the embedded broker is
// in the process, where asking often costs little and waiting long could.
func defaultFetchWait(brokers []string) time.Duration {
	if len(brokers) > 0 {
		return 500 * time.Millisecond
	}
	return 20 * time.Millisecond
}

// SESSION_TIMEOUT's bounds. Below a second, heartbeats (a third of it) would
// be more frequent than a consumer group needs; the command handler's
// transactions time out after SESSION_TIMEOUT too, and Apache Kafka allows
// at most its transaction.max.timeout.ms, 15 minutes by default. The broker
// has bounds of its own (group.min.session.timeout.ms and
// group.max.session.timeout.ms, 6s and 30m by default), checked at start.
const (
	minSessionTimeout = time.Second
	maxSessionTimeout = 15 * time.Minute
)

// check reports settings that contradict each other, or that Kafka would
// refuse whatever its configuration (for a Config made without
// ParseConfig), in one line.
func (c Config) check() error {
	if c.MongoURI != "" && c.StorePostgreSQLURL != "" {
		return errors.New("MONGODB_URI (--mongodb-uri) and STORE_POSTGRESQL_URL (--store-postgresql-url) are both set: the views go to MongoDB or to the embedded store on PostgreSQL, set only one")
	}
	if err := kafka.CheckTopicPrefix(c.TopicPrefix); err != nil {
		return fmt.Errorf("TOPIC_PREFIX (--topic-prefix): %v", err)
	}
	if err := checkAuth(c.Auth); err != nil {
		return err
	}
	if err := checkAdmin(c); err != nil {
		return err
	}
	if c.MongoURI == "" && !ferretDatabaseName.MatchString(c.MongoDatabase) {
		return fmt.Errorf("MONGODB_DATABASE (--mongodb-database): %q is not a database name the embedded store accepts (1 to 63 ASCII letters, digits, '_' and '-')", c.MongoDatabase)
	}
	return nil
}

// ferretDatabaseName is FerretDB's rule for database names (the embedded
// store, on SQLite or PostgreSQL).
var ferretDatabaseName = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,63}$`)

// checkBroker reports a KAFKA_BROKERS entry that is not a host:port, quoted
// without what could be credentials.
func checkBroker(b string) error {
	host, port, err := net.SplitHostPort(b)
	n, perr := strconv.Atoi(port)
	if err != nil || perr != nil || n < 1 || n > 65535 || strings.ContainsAny(host, "@/?#") {
		return fmt.Errorf("%q is not a host:port such as kafka1:9092", redact(b))
	}
	return nil
}

func usage(out io.Writer, ss []setting) {
	fmt.Fprintln(out, "order-gateway: a GraphQL gateway for orders, CQRS over Kafka and MongoDB.")
	fmt.Fprintln(out, "With no KAFKA_BROKERS or MONGODB_URI it starts embedded ones under DATA_DIR")
	fmt.Fprintln(out, "(the store on PostgreSQL instead with STORE_POSTGRESQL_URL).")
	fmt.Fprintln(out, "\nSettings: a flag or its environment variable (the flag wins), and the default.")
	for _, s := range ss {
		fmt.Fprintf(out, "\n  --%s, %s (default %q)\n", s.flag, s.env, s.def)
		for _, line := range wrap(s.help, 72) {
			fmt.Fprintf(out, "        %s\n", line)
		}
	}
	fmt.Fprintln(out, "\nAlso: `order-gateway token --help` mints tokens signed with the gateway's secret;")
	fmt.Fprintln(out, "`order-gateway deadletters --help` lists, shows and replays dead letters.")
}

// wrap breaks text into lines of at most width bytes, at spaces.
func wrap(text string, width int) []string {
	var lines []string
	line := ""
	for _, w := range strings.Fields(text) {
		if line != "" && len(line)+1+len(w) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	return append(lines, line)
}

// addr sets a host:port listen address, checked before anything starts.
func addr(dst func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error {
		host, port, err := net.SplitHostPort(v)
		if err != nil {
			return fmt.Errorf("%q is not host:port (such as :8080 or 127.0.0.1:8080)", cut(v, 60))
		}
		if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			if _, err := net.LookupPort("tcp", port); err != nil {
				return fmt.Errorf("port %q is not a number from 0 to 65535", cut(port, 20))
			}
		}
		if strings.ContainsAny(host, " /\\") {
			return fmt.Errorf("host %q is not a host name or IP address", cut(host, 60))
		}
		*dst(c) = v
		return nil
	}
}

// cut shortens s to at most n bytes for an error message.
func cut(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func defaultGetenv(k string) string { return os.Getenv(k) }

// splitList splits a comma-separated list, dropping blanks.
func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
