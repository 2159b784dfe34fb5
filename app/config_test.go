package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ordergateway/gateway/auth"
	"github.com/ordergateway/gateway/kafka"
)

// envOf is a getenv over a fixed map.
func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func parse(t *testing.T, args []string, env map[string]string) (Config, error) {
	t.Helper()
	return ParseConfig(args, envOf(env), io.Discard)
}

func mustParse(t *testing.T, args []string, env map[string]string) Config {
	t.Helper()
	c, err := parse(t, args, env)
	if err != nil {
		t.Fatalf("ParseConfig(%q, %v): want no error, got %v", args, env, err)
	}
	return c
}

// mustFail parses and wants an error whose one line contains every want.
func mustFail(t *testing.T, args []string, env map[string]string, want ...string) error {
	t.Helper()
	_, err := parse(t, args, env)
	if err == nil {
		t.Fatalf("ParseConfig(%q, %v): want an error, got none", args, env)
	}
	msg := err.Error()
	if strings.ContainsAny(msg, "\r\n") {
		t.Errorf("ParseConfig(%q, %v): want a one-line error, got %q", args, env, msg)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("ParseConfig(%q, %v): want the error to mention %q, got %q", args, env, w, msg)
		}
	}
	return err
}

func TestParseConfigDefaults(t *testing.T) {
	c := mustParse(t, nil, nil)
	want := Config{
		ListenAddr: ":8080", DataDir: "./data", MongoDatabase: "orders", TopicPrefix: "orders",
		Partitions: 6, ReplicationFactor: -1,
		CommandTimeout: 5 * time.Second, ConsistencyTimeout: 3 * time.Second,
		StartupTimeout: 60 * time.Second, ShutdownTimeout: 15 * time.Second,
		FetchWait: 20 * time.Millisecond, ProjectorLinger: 2 * time.Millisecond, SessionTimeout: 10 * time.Second, StallTimeout: 30 * time.Second,
		HTTPReadTimeout: 10 * time.Second, HTTPIdleTimeout: 60 * time.Second, MaxConnections: 10000,
		EmbeddedKafkaPort: 0, EmbeddedMongoAddr: "127.0.0.1:0", LogLevel: slog.LevelInfo,
		AllowedOrigins: []string{"localhost:*", "127.0.0.1:*"}, WSInitTimeout: 10 * time.Second,
		WSPingInterval: 15 * time.Second, WSWriteTimeout: 10 * time.Second, MaxSubscriptions: 100,
		Auth:         auth.Config{RoleClaim: "role", CustomerClaim: "sub", Leeway: 30 * time.Second},
		APQCacheSize: 1000, HandlerCacheOrders: 10000,
	}
	if !equalJSON(t, c, want) {
		t.Errorf("defaults:\nwant %+v\ngot  %+v", want, c)
	}
	if len(c.KafkaBrokers) != 0 || c.MongoURI != "" {
		t.Errorf("defaults: want no brokers and no MongoDB URI (embedded), got %q and %q", c.KafkaBrokers, c.MongoURI)
	}
	// An empty environment variable is the same as an unset one.
	empty := map[string]string{}
	for _, s := range settings() {
		empty[s.env] = ""
	}
	if c2 := mustParse(t, nil, empty); !equalJSON(t, c2, c) {
		t.Errorf("empty environment variables: want the defaults %+v, got %+v", c, c2)
	}
}

func TestParseConfigEnv(t *testing.T) {
	env := map[string]string{
		"LISTEN_ADDR": "127.0.0.1:9000", "DATA_DIR": "/var/lib/gw", "KAFKA_BROKERS": "k1:9092",
		"MONGODB_URI": "mongodb://m:27017", "MONGODB_DATABASE": "db1", "TOPIC_PREFIX": "tp",
		"PARTITIONS": "12", "REPLICATION_FACTOR": "3", "COMMAND_TIMEOUT": "250ms",
		"CONSISTENCY_TIMEOUT": "1s", "STARTUP_TIMEOUT": "2m", "SHUTDOWN_TIMEOUT": "7s",
		"FETCH_WAIT": "5ms", "PROJECTOR_LINGER": "0s", "SESSION_TIMEOUT": "45s", "STALL_TIMEOUT": "90s",
		"HTTP_READ_TIMEOUT": "3s", "HTTP_IDLE_TIMEOUT": "2m", "MAX_CONNECTIONS": "500", "EMBEDDED_KAFKA_PORT": "9092",
		"EMBEDDED_MONGODB_ADDR": "0.0.0.0:27017", "LOG_LEVEL": "debug",
		"ALLOWED_ORIGINS": "app.example.com, *.example.org", "WS_INIT_TIMEOUT": "3s",
		"WS_PING_INTERVAL": "20s", "MAX_SUBSCRIPTIONS_PER_CONNECTION": "7",
		"DEBUG_ADDR": "127.0.0.1:6060", "WS_WRITE_TIMEOUT": "4s", "METRICS_ADDR": "127.0.0.1:9100",
		"STORE_POSTGRESQL_URL": "",                       // not with MONGODB_URI: see TestParseConfigStorePostgreSQL
		"AUTH_JWT_SECRET":      "", "AUTH_JWKS_FILE": "", // exclusive with AUTH_JWKS_URL: see TestParseConfigAuth
		"AUTH_JWKS_URL": "https://id.example/jwks.json", "AUTH_ISSUER": "https://id.example", "AUTH_AUDIENCE": "orders",
		"AUTH_ROLE_CLAIM": "realm_access.roles", "AUTH_CUSTOMER_CLAIM": "customer_id", "AUTH_LEEWAY": "5s", "AUTH_DISABLED": "false",
		"KAFKA_TLS": "true", "KAFKA_CA_FILE": "", // a CA file is read at once: see TestParseConfigKafkaSecurity
		"KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": "gw", "KAFKA_SASL_PASSWORD": "pw-1",
		"CORS_ALLOWED_ORIGINS": "shop.example.com", "PLAYGROUND": "false",
		"APQ_CACHE_SIZE": "50", "TRUSTED_DOCUMENTS_FILE": "", // a manifest is read at once: see TestParseConfigPersistedQueries
		"HANDLER_CACHE_ORDERS": "500",
		"ADMIN_ADDR":           "127.0.0.1:9091", "ADMIN_ALLOW_REMOTE": "false", "ADMIN_TOKEN": "0123456789abcdef", // see TestAdminAddrIsLoopbackUnlessAllowed
	}
	c := mustParse(t, nil, env)
	want := Config{
		ListenAddr: "127.0.0.1:9000", DataDir: "/var/lib/gw", KafkaBrokers: []string{"k1:9092"},
		MongoURI: "mongodb://m:27017", MongoDatabase: "db1", TopicPrefix: "tp",
		Partitions: 12, ReplicationFactor: 3, CommandTimeout: 250 * time.Millisecond,
		ConsistencyTimeout: time.Second, StartupTimeout: 2 * time.Minute, ShutdownTimeout: 7 * time.Second,
		FetchWait: 5 * time.Millisecond, ProjectorLinger: 0, SessionTimeout: 45 * time.Second, StallTimeout: 90 * time.Second,
		HTTPReadTimeout: 3 * time.Second, HTTPIdleTimeout: 2 * time.Minute, MaxConnections: 500, EmbeddedKafkaPort: 9092,
		EmbeddedMongoAddr: "0.0.0.0:27017", LogLevel: slog.LevelDebug,
		AllowedOrigins: []string{"app.example.com", "*.example.org"}, WSInitTimeout: 3 * time.Second,
		WSPingInterval: 20 * time.Second, MaxSubscriptions: 7, DebugAddr: "127.0.0.1:6060", WSWriteTimeout: 4 * time.Second,
		MetricsAddr: "127.0.0.1:9100",
		Auth: auth.Config{JWKSURL: "https://id.example/jwks.json", Issuer: "https://id.example", Audience: "orders",
			RoleClaim: "realm_access.roles", CustomerClaim: "customer_id", Leeway: 5 * time.Second},
		KafkaSecurity:      kafka.Security{TLS: true, SASLMechanism: "SCRAM-SHA-512", SASLUsername: "gw", SASLPassword: "pw-1"},
		CORSAllowedOrigins: []string{"shop.example.com"}, NoPlayground: true,
		APQCacheSize: 50, HandlerCacheOrders: 500,
		AdminAddr: "127.0.0.1:9091", AdminToken: "0123456789abcdef",
	}
	if c.KafkaSecurity.SASLPassword != "pw-1" {
		t.Errorf("KAFKA_SASL_PASSWORD: not read")
	}
	if !equalJSON(t, c, want) {
		t.Errorf("from the environment:\nwant %+v\ngot  %+v", want, c)
	}
	if len(env) != len(settings()) {
		t.Errorf("this test sets %d environment variables, settings() has %d: update the test", len(env), len(settings()))
	}
}

func TestParseConfigFlags(t *testing.T) {
	env := map[string]string{"LISTEN_ADDR": ":1", "PARTITIONS": "2", "COMMAND_TIMEOUT": "2s", "KAFKA_BROKERS": "env:1", "LOG_LEVEL": "error"}
	c := mustParse(t, []string{"--listen-addr", ":2", "-partitions=3", "--command-timeout=3s", "--kafka-brokers=flag:1,flag:2", "--log-level", "warn"}, env)
	if c.ListenAddr != ":2" || c.Partitions != 3 || c.CommandTimeout != 3*time.Second || !equalStrings(c.KafkaBrokers, []string{"flag:1", "flag:2"}) || c.LogLevel != slog.LevelWarn {
		t.Errorf("flags over env: want :2, 3, 3s, [flag:1 flag:2], WARN, got %q, %d, %v, %q, %v", c.ListenAddr, c.Partitions, c.CommandTimeout, c.KafkaBrokers, c.LogLevel)
	}
	// Settings without a flag still come from the environment.
	c = mustParse(t, []string{"--partitions=3"}, env)
	if c.ListenAddr != ":1" || c.Partitions != 3 || c.CommandTimeout != 2*time.Second {
		t.Errorf("env where no flag: want :1, 3, 2s, got %q, %d, %v", c.ListenAddr, c.Partitions, c.CommandTimeout)
	}
	// A flag set to the empty string wins over the environment too.
	c = mustParse(t, []string{"--kafka-brokers="}, env)
	if len(c.KafkaBrokers) != 0 {
		t.Errorf("--kafka-brokers= over KAFKA_BROKERS=env:1: want no brokers, got %q", c.KafkaBrokers)
	}
	// A bad environment variable does not matter when a flag overrides it.
	if _, err := parse(t, []string{"--command-timeout=1s"}, map[string]string{"COMMAND_TIMEOUT": "5"}); err != nil {
		t.Errorf("bad COMMAND_TIMEOUT overridden by --command-timeout: want no error, got %v", err)
	}
}

func TestParseConfigBrokers(t *testing.T) {
	for in, want := range map[string][]string{
		"a:1, b:2,,":        {"a:1", "b:2"},
		"a:1":               {"a:1"},
		" a:1 ,\tb:2 , c:3": {"a:1", "b:2", "c:3"},
		",, ,":              nil,
	} {
		c := mustParse(t, nil, map[string]string{"KAFKA_BROKERS": in})
		if !equalStrings(c.KafkaBrokers, want) {
			t.Errorf("KAFKA_BROKERS=%q: want %q, got %q", in, want, c.KafkaBrokers)
		}
	}
}

func TestParseConfigErrors(t *testing.T) {
	// Bad environment values: the error names the variable and the value.
	mustFail(t, nil, map[string]string{"COMMAND_TIMEOUT": "5"}, "COMMAND_TIMEOUT", `"5"`)
	mustFail(t, nil, map[string]string{"CONSISTENCY_TIMEOUT": "-1s"}, "CONSISTENCY_TIMEOUT", `"-1s"`)
	mustFail(t, nil, map[string]string{"FETCH_WAIT": "0s"}, "FETCH_WAIT", `"0s"`)
	mustFail(t, nil, map[string]string{"PROJECTOR_LINGER": "-1ms"}, "PROJECTOR_LINGER", `"-1ms"`)
	mustFail(t, nil, map[string]string{"PROJECTOR_LINGER": "soon"}, "PROJECTOR_LINGER", `"soon"`)
	mustFail(t, nil, map[string]string{"PARTITIONS": "0"}, "PARTITIONS", `"0"`)
	mustFail(t, nil, map[string]string{"PARTITIONS": "six"}, "PARTITIONS", `"six"`)
	mustFail(t, nil, map[string]string{"REPLICATION_FACTOR": "-2"}, "REPLICATION_FACTOR", `"-2"`)
	mustFail(t, nil, map[string]string{"EMBEDDED_KAFKA_PORT": "70000"}, "EMBEDDED_KAFKA_PORT", `"70000"`)
	mustFail(t, nil, map[string]string{"LOG_LEVEL": "loud"}, "LOG_LEVEL", "loud")
	// Bad flag values name the flag.
	mustFail(t, []string{"--command-timeout=soon"}, nil, "--command-timeout", `"soon"`)
	mustFail(t, []string{"--partitions", "0"}, nil, "--partitions", `"0"`)
	mustFail(t, []string{"--log-level=loud"}, nil, "--log-level", "loud")
	// A flag with no value, an unknown flag, a positional argument.
	mustFail(t, []string{"--partitions"}, nil, "partitions")
	mustFail(t, []string{"--no-such-flag=1"}, nil, "no-such-flag")
	mustFail(t, []string{"serve"}, nil, `"serve"`)
	mustFail(t, []string{"--partitions=2", "extra", "--listen-addr=:1"}, nil, `"extra"`)
	// Errors are not flag.ErrHelp.
	if err := mustFail(t, []string{"--bogus"}, nil); errors.Is(err, flag.ErrHelp) {
		t.Errorf("unknown flag: want an error other than flag.ErrHelp, got %v", err)
	}
}

func TestParseConfigStorePostgreSQL(t *testing.T) {
	const pg = "postgres://gw:s3cret@db:5432/ferretdb?sslmode=disable"
	if c := mustParse(t, nil, map[string]string{"STORE_POSTGRESQL_URL": pg}); c.StorePostgreSQLURL != pg || c.MongoURI != "" {
		t.Errorf("STORE_POSTGRESQL_URL: want %q and no MongoDB URI, got %q and %q", pg, c.StorePostgreSQLURL, c.MongoURI)
	}
	if c := mustParse(t, []string{"--store-postgresql-url=postgresql://db/x"}, map[string]string{"STORE_POSTGRESQL_URL": pg}); c.StorePostgreSQLURL != "postgresql://db/x" {
		t.Errorf("--store-postgresql-url over STORE_POSTGRESQL_URL: got %q", c.StorePostgreSQLURL)
	}
	// With MONGODB_URI: one line naming both, whichever way each is set.
	for _, args := range [][]string{nil, {"--mongodb-uri=mongodb://m:27017"}} {
		env := map[string]string{"STORE_POSTGRESQL_URL": pg}
		if args == nil {
			env["MONGODB_URI"] = "mongodb://m:27017"
		}
		if err := mustFail(t, args, env, "MONGODB_URI", "STORE_POSTGRESQL_URL"); strings.Contains(err.Error(), "s3cret") {
			t.Errorf("the error shows the password: %v", err)
		}
	}
	// A flag that empties MONGODB_URI leaves the store on PostgreSQL.
	if c := mustParse(t, []string{"--mongodb-uri="}, map[string]string{"STORE_POSTGRESQL_URL": pg, "MONGODB_URI": "mongodb://m:27017"}); c.StorePostgreSQLURL != pg || c.MongoURI != "" {
		t.Errorf("--mongodb-uri= with both variables: got %q and %q", c.StorePostgreSQLURL, c.MongoURI)
	}
	// Not a PostgreSQL URL: named, without its password.
	for _, bad := range []string{"mongodb://gw:s3cret@db/x", "db:5432", "postgres://gw:s3cret@/x"} {
		if err := mustFail(t, nil, map[string]string{"STORE_POSTGRESQL_URL": bad}, "STORE_POSTGRESQL_URL"); strings.Contains(err.Error(), "s3cret") {
			t.Errorf("STORE_POSTGRESQL_URL=%q: the error shows the password: %v", bad, err)
		}
	}
	mustFail(t, []string{"--store-postgresql-url=mysql://db/x"}, nil, "--store-postgresql-url", "mysql://db/x")
}

// redact hides passwords of both kinds of URL the gateway logs.
func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"mongodb://u:p@m:27017/":                      "mongodb://u:xxxxx@m:27017/",
		"mongodb://127.0.0.1:27017/":                  "mongodb://127.0.0.1:27017/",
		"postgres://gw:s3cret@db:5432/ferretdb":       "postgres://gw:xxxxx@db:5432/ferretdb",
		"postgres://db:5432/ferretdb?password=s3cret": "postgres://db:5432/ferretdb?password=xxxxx",
		"postgresql://gw@db/ferretdb?sslmode=require": "postgresql://gw@db/ferretdb?sslmode=require",
		// Several hosts, secrets in parameters, and strings that are no URL.
		"mongodb://u:p@m1:27017,m2:27017/db?replicaSet=rs0":                                          "mongodb://u:xxxxx@m1:27017,m2:27017/db?replicaSet=rs0",
		"mongodb://m/?tls=true&tlsCertificateKeyFilePassword=s3cret&appName=gw":                      "mongodb://m/?tls=true&tlsCertificateKeyFilePassword=xxxxx&appName=gw",
		"mongodb://k:s@m/?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:t0ken": "mongodb://k:xxxxx@m/?authMechanism=MONGODB-AWS&authMechanismProperties=xxxxx",
		"postgres://gw@db/x?sslpassword=s3cret":                                                      "postgres://gw@db/x?sslpassword=xxxxx",
		"mongodb://u:s3c/ret@m:27017/":                                                               "mongodb://xxxxx@m:27017/",
		"mongodb//u:s3cret@m:27017/":                                                                 "xxxxx@m:27017/",
		"u:s3cret@kafka:9092":                                                                        "xxxxx@kafka:9092",
		"host=db user=gw password=s3cret dbname=x":                                                   "host=db user=gw password=xxxxx dbname=x",
		"host=db password='s3 cret' dbname=x":                                                        "host=db password=xxxxx dbname=x",
		"db:5432?user=gw&password=s3cret&sslmode=none":                                               "db:5432?user=gw&password=xxxxx&sslmode=none",
	} {
		if got := redact(in); got != want {
			t.Errorf("redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseConfigHelp(t *testing.T) {
	for _, arg := range []string{"--help", "-h"} {
		var out bytes.Buffer
		_, err := ParseConfig([]string{arg}, envOf(nil), &out)
		if !errors.Is(err, flag.ErrHelp) {
			t.Errorf("%s: want flag.ErrHelp, got %v", arg, err)
		}
		usage := out.String()
		for _, s := range settings() {
			if !strings.Contains(usage, s.env) || !strings.Contains(usage, "--"+s.flag) {
				t.Errorf("%s: want the usage to list %s and --%s, got:\n%s", arg, s.env, s.flag, usage)
			}
		}
	}
	// A bad flag gets its one-line error and nothing else.
	var out bytes.Buffer
	if _, err := ParseConfig([]string{"--bogus"}, envOf(nil), &out); err == nil {
		t.Errorf("--bogus: want an error, got none")
	} else if out.Len() != 0 {
		t.Errorf("--bogus: want no usage printed besides the error %q, got %d bytes", err, out.Len())
	}
}

// TestFetchWaitDependsOnTheBroker: FETCH_WAIT's default is 20ms with the
// embedded broker and 500ms with KAFKA_BROKERS; a value set wins either way.
func TestFetchWaitDependsOnTheBroker(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want time.Duration
	}{
		{nil, 20 * time.Millisecond},
		{map[string]string{"KAFKA_BROKERS": "kafka:9092"}, 500 * time.Millisecond},
		{map[string]string{"KAFKA_BROKERS": "kafka:9092", "FETCH_WAIT": "50ms"}, 50 * time.Millisecond},
		{map[string]string{"FETCH_WAIT": "100ms"}, 100 * time.Millisecond},
	} {
		if c := mustParse(t, nil, tc.env); c.FetchWait != tc.want {
			t.Errorf("%v: FetchWait %v, want %v", tc.env, c.FetchWait, tc.want)
		}
	}
}

func equalJSON(t testing.TB, a, b any) bool {
	t.Helper()
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

func equalStrings(a, b []string) bool { return slices.Equal(a, b) }

// Hardening item 9: what no broker would accept is refused by ParseConfig
// in one line naming the setting, rather than retried at start.
func TestParseConfigRefusesWhatKafkaWould(t *testing.T) {
	for _, v := range []string{"orders/eu", "orders eu", "ordérs", strings.Repeat("o", 239)} {
		mustFail(t, nil, map[string]string{"TOPIC_PREFIX": v}, "environment variable TOPIC_PREFIX")
	}
	mustFail(t, []string{"--topic-prefix="}, nil, "--topic-prefix", "empty")
	mustFail(t, nil, map[string]string{"TOPIC_PREFIX": strings.Repeat("o", 239)}, "at most 238")
	for _, v := range []string{"orders", "eu-1_orders.v2", strings.Repeat("o", 238)} {
		if c := mustParse(t, nil, map[string]string{"TOPIC_PREFIX": v}); c.TopicPrefix != v {
			t.Errorf("TOPIC_PREFIX=%q: got %q", v, c.TopicPrefix)
		}
	}
	for _, v := range []string{"500ms", "16m", "1h", "0s", "soon"} {
		mustFail(t, nil, map[string]string{"SESSION_TIMEOUT": v}, "SESSION_TIMEOUT", `"`+v+`"`, "1s to 15m")
	}
	for _, v := range []string{"1s", "6s", "15m"} {
		mustParse(t, nil, map[string]string{"SESSION_TIMEOUT": v})
	}
	mustFail(t, nil, map[string]string{"REPLICATION_FACTOR": "0"}, "REPLICATION_FACTOR", `"0"`)
	for _, v := range []string{"kafka", "kafka:", "kafka:x", "kafka:0", "kafka1:9092,kafka2", "kafka://kafka:9092", "kafka:9092/"} {
		mustFail(t, nil, map[string]string{"KAFKA_BROKERS": v}, "KAFKA_BROKERS", "host:port")
	}
	if c := mustParse(t, nil, map[string]string{"KAFKA_BROKERS": "kafka1:9092, 10.0.0.2:9093,[::1]:9094"}); len(c.KafkaBrokers) != 3 {
		t.Errorf("KAFKA_BROKERS: got %q", c.KafkaBrokers)
	}
	for _, v := range []string{"localhost:27017", "http://m:27017", "mongodb://", "mongodb:///db", "mongodb://u:p@/db"} {
		mustFail(t, nil, map[string]string{"MONGODB_URI": v}, "MONGODB_URI")
	}
	for _, v := range []string{"mongodb://m:27017", "mongodb://u:p@m1:27017,m2:27017/db?replicaSet=rs0", "mongodb+srv://u:p@cluster0.example.net/"} {
		mustParse(t, nil, map[string]string{"MONGODB_URI": v})
	}
	// A database name MongoDB refuses, or (for the embedded store) FerretDB.
	for _, v := range []string{"orders.eu", "orders eu", "orders/eu", `orders"`, strings.Repeat("o", 64)} {
		mustFail(t, nil, map[string]string{"MONGODB_DATABASE": v}, "environment variable MONGODB_DATABASE")
	}
	mustFail(t, []string{"--mongodb-database="}, nil, "--mongodb-database")
	mustFail(t, nil, map[string]string{"MONGODB_DATABASE": "ordérs"}, "MONGODB_DATABASE", "embedded store")
	if c := mustParse(t, nil, map[string]string{"MONGODB_DATABASE": "ordérs", "MONGODB_URI": "mongodb://m:27017"}); c.MongoDatabase != "ordérs" {
		t.Errorf("MONGODB_DATABASE on MongoDB: got %q", c.MongoDatabase)
	}
	mustParse(t, nil, map[string]string{"MONGODB_DATABASE": "eu-1_" + strings.Repeat("o", 58)})
	// A Config made without ParseConfig is checked again by Run.
	c := mustParse(t, []string{"--data-dir=" + t.TempDir(), "--listen-addr=127.0.0.1:0", "--startup-timeout=1s"}, nil)
	c.TopicPrefix = "orders/eu"
	m := &Main{Config: c, Logger: slog.New(slog.DiscardHandler)}
	err := m.Run(t.Context())
	m.Close()
	if err == nil || !strings.Contains(err.Error(), "TOPIC_PREFIX") {
		t.Errorf("Run with TOPIC_PREFIX %q: want an error naming it, got %v", c.TopicPrefix, err)
	}
}

// Hardening item 8: errors about a connection string never show its
// password, however malformed it is.
func TestErrorsShowNoSecrets(t *testing.T) {
	for _, tc := range []struct{ env, value, secret string }{
		{"KAFKA_BROKERS", "user:s3cret@kafka:9092", "s3cret"},
		{"KAFKA_BROKERS", "SASL_SSL://user:s3cret@kafka:9092", "s3cret"},
		{"KAFKA_BROKERS", "kafka:9092,user:s3cret@kafka2:9092", "s3cret"},
		{"MONGODB_URI", "user:s3cret@m:27017", "s3cret"},
		{"MONGODB_URI", "mongodb//user:s3cret@m:27017/", "s3cret"},
		{"MONGODB_URI", "mongo://user:s3c/ret@m:27017/", "s3c/ret"},
		{"STORE_POSTGRESQL_URL", "host=db user=gw password=s3cret dbname=orders", "s3cret"},
		{"STORE_POSTGRESQL_URL", "db:5432?user=gw&password=s3cret", "s3cret"},
		{"STORE_POSTGRESQL_URL", "postgres://gw:s3c ret@/x", "s3c ret"},
	} {
		err := mustFail(t, nil, map[string]string{tc.env: tc.value}, tc.env)
		if strings.Contains(err.Error(), tc.secret) {
			t.Errorf("%s=%q: the error shows the password: %v", tc.env, tc.value, err)
		}
	}
}

func TestParseConfigAuth(t *testing.T) {
	const secret = "a-secret-of-at-least-32-bytes-0123456789"
	c := mustParse(t, nil, map[string]string{"AUTH_JWT_SECRET": secret, "AUTH_LEEWAY": "0s"})
	if string(c.Auth.Secret) != secret || c.Auth.Leeway != 0 {
		t.Errorf("AUTH_JWT_SECRET, AUTH_LEEWAY=0s: got %d bytes, %v", len(c.Auth.Secret), c.Auth.Leeway)
	}
	if got := fmt.Sprintf("%v %+v", c, c); strings.Contains(got, secret) {
		t.Errorf("a printed configuration shows the secret: %s", got)
	}
	if c := mustParse(t, []string{"--auth-disabled=true"}, nil); !c.Auth.Disabled {
		t.Error("--auth-disabled=true: not disabled")
	}
	if c := mustParse(t, nil, map[string]string{"AUTH_JWKS_FILE": "/etc/gw/jwks.json"}); c.Auth.JWKSFile != "/etc/gw/jwks.json" {
		t.Errorf("AUTH_JWKS_FILE: got %q", c.Auth.JWKSFile)
	}
	for _, err := range []error{
		mustFail(t, nil, map[string]string{"AUTH_JWT_SECRET": "short-s3cret"}, "AUTH_JWT_SECRET", "at least 32"),
		mustFail(t, nil, map[string]string{"AUTH_JWT_SECRET": secret, "AUTH_JWKS_URL": "https://id.example/jwks"}, "AUTH_JWT_SECRET", "AUTH_JWKS_URL"),
		mustFail(t, nil, map[string]string{"AUTH_JWKS_FILE": "f", "AUTH_JWKS_URL": "https://id.example/jwks"}, "AUTH_JWKS_FILE", "AUTH_JWKS_URL"),
		mustFail(t, nil, map[string]string{"AUTH_JWKS_URL": "ftp://id.example/jwks"}, "AUTH_JWKS_URL"),
		mustFail(t, nil, map[string]string{"AUTH_LEEWAY": "-1s"}, "AUTH_LEEWAY"),
		mustFail(t, nil, map[string]string{"AUTH_LEEWAY": "11m"}, "AUTH_LEEWAY"),
		mustFail(t, nil, map[string]string{"AUTH_DISABLED": "maybe"}, "AUTH_DISABLED"),
		mustFail(t, []string{"--auth-role-claim="}, nil, "--auth-role-claim"),
	} {
		if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), secret) {
			t.Errorf("the error shows the secret: %v", err)
		}
	}
}

// The Kafka security settings are checked together, in one line naming
// the setting, without the password.
func TestParseConfigKafkaSecurity(t *testing.T) {
	const pw = "pw-that-must-not-show"
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"KAFKA_SASL_MECHANISM": "SCRAM-SHA-256", "KAFKA_SASL_USERNAME": "gw", "KAFKA_SASL_PASSWORD": pw}, "embedded broker"},
		{map[string]string{"KAFKA_BROKERS": "k:9093", "KAFKA_TLS": "true", "KAFKA_CA_FILE": t.TempDir() + "/missing.pem"}, "KAFKA_CA_FILE"},
		{map[string]string{"KAFKA_BROKERS": "k:9093", "KAFKA_SASL_MECHANISM": "GSSAPI"}, "KAFKA_SASL_MECHANISM"},
		{map[string]string{"KAFKA_BROKERS": "k:9093", "KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_PASSWORD": pw}, "KAFKA_SASL_USERNAME"},
		{map[string]string{"KAFKA_TLS": "yes please"}, "KAFKA_TLS"},
		{map[string]string{"PLAYGROUND": "off"}, "PLAYGROUND"},
		{map[string]string{"CORS_ALLOWED_ORIGINS": "https://shop.example.com"}, "CORS_ALLOWED_ORIGINS"},
	} {
		_, err := ParseConfig(nil, envOf(tc.env), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), pw) {
			t.Errorf("%v: want an error naming %s without the password, got %v", tc.env, tc.want, err)
		}
	}
	c := mustParse(t, nil, map[string]string{"CORS_ALLOWED_ORIGINS": "none"})
	if o := c.corsOrigins(); o == nil || len(o) != 0 {
		t.Errorf("CORS_ALLOWED_ORIGINS=none: want no origin, got %q", o)
	}
	if o := mustParse(t, nil, nil).corsOrigins(); !equalStrings(o, []string{"localhost:*", "127.0.0.1:*"}) {
		t.Errorf("CORS_ALLOWED_ORIGINS unset: want ALLOWED_ORIGINS' list, got %q", o)
	}
}

// Issue 21: a listen address is checked in ParseConfig, LOG_LEVEL's error
// says what it takes (not slog's internal message), and --help has no
// columns for a long flag or default to break.
func TestParseConfigAddressesAndLogLevel(t *testing.T) {
	mustFail(t, nil, map[string]string{"LISTEN_ADDR": "nonsense"}, "LISTEN_ADDR", `"nonsense"`, "host:port")
	mustFail(t, []string{"--listen-addr=:99999"}, nil, "--listen-addr", "99999")
	mustFail(t, nil, map[string]string{"DEBUG_ADDR": "localhost"}, "DEBUG_ADDR", "host:port")
	mustFail(t, nil, map[string]string{"METRICS_ADDR": "localhost"}, "METRICS_ADDR", "host:port")
	err := mustFail(t, nil, map[string]string{"LOG_LEVEL": "verbose"}, "LOG_LEVEL", `"verbose"`, "debug, info, warn or error")
	if strings.Contains(err.Error(), "slog") {
		t.Errorf("LOG_LEVEL=verbose: %q shows slog's own message", err)
	}
	for _, v := range []string{"127.0.0.1:0", ":8080", "[::1]:8080", "localhost:http"} {
		mustParse(t, nil, map[string]string{"LISTEN_ADDR": v})
	}
	for _, v := range []string{"DEBUG", "Warn"} {
		mustParse(t, nil, map[string]string{"LOG_LEVEL": v})
	}
	var out bytes.Buffer
	if _, err := ParseConfig([]string{"--help"}, envOf(nil), &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatal(err)
	}
	for _, s := range settings() {
		if s.flag != strings.ReplaceAll(strings.ToLower(s.env), "_", "-") {
			t.Errorf("flag --%s does not follow its variable %s", s.flag, s.env)
		}
		if !strings.Contains(out.String(), fmt.Sprintf("\n  --%s, %s (default %q)\n", s.flag, s.env, s.def)) {
			t.Errorf("--help has no line of its own for --%s", s.flag)
		}
	}
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(line, "        ") && len(line) > 80 {
			t.Errorf("--help: a description line is %d bytes long: %q", len(line), line)
		}
	}
}

// Issue 21: a listen address in use ends Run at once, in one line, before
// the embedded broker and store start (they printed seven lines).
func TestRunEndsAtOnceWhenTheAddressIsInUse(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	dataDir := filepath.Join(t.TempDir(), "data")
	for _, env := range []map[string]string{
		{"LISTEN_ADDR": taken.Addr().String(), "DATA_DIR": dataDir},
		{"LISTEN_ADDR": "127.0.0.1:0", "DEBUG_ADDR": taken.Addr().String(), "DATA_DIR": dataDir},
	} {
		c := mustParse(t, nil, env)
		m := &Main{Config: c, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
		start := time.Now()
		err := m.Run(context.Background())
		m.Close()
		if err == nil || !strings.Contains(err.Error(), "in use") || strings.ContainsAny(err.Error(), "\n") {
			t.Fatalf("%v: Run: %v; want one line saying the address is in use", env, err)
		}
		if _, statErr := os.Stat(dataDir); !os.IsNotExist(statErr) || time.Since(start) > 2*time.Second {
			t.Errorf("%v: the start went on before the error %q (data folder: %v, %s)", env, err, statErr, time.Since(start))
		}
	}
}
