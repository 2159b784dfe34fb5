package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ordergateway/gateway/app"
	"github.com/ordergateway/gateway/kafka"
	"github.com/ordergateway/gateway/kafka/kafkatest"
)

// securedBroker is a broker that takes only TLS connections from SASL
// users, and how to connect to it.
type securedBroker struct {
	name   string // for the test log
	addr   string
	caFile string
	mech   string
	user   string
	pw     string
	// reauth is the broker's connections.max.reauth.ms (0: none): SASL
	// sessions must re-authenticate within it or are closed.
	reauth time.Duration
}

func (b securedBroker) security() kafka.Security {
	return kafka.Security{TLS: true, CAFile: b.caFile, SASLMechanism: b.mech, SASLUsername: b.user, SASLPassword: kafka.Secret(b.pw)}
}

// securedBrokers is an embedded broker (kfake) with TLS and SCRAM-SHA-512
// and, with the TEST_KAFKA_SASL_SSL_* variables (scripts/kafka.sh
// sasl-env), Apache Kafka's SASL_SSL listener.
func securedBrokers(t *testing.T) []securedBroker {
	const user, pw = "gateway-e2e", "pw-e2e-Vq7Lm2"
	kb := kafkatest.Start(t, true, kafkatest.User{Mechanism: kafka.SASLSCRAMSHA512, Name: user, Password: pw})
	brokers := []securedBroker{{name: "embedded", addr: kb.Addr, caFile: kb.CAFile, mech: kafka.SASLSCRAMSHA512, user: user, pw: pw}}
	if addr := os.Getenv("TEST_KAFKA_SASL_SSL_BROKERS"); addr != "" {
		ms, _ := strconv.Atoi(os.Getenv("TEST_KAFKA_SASL_SSL_REAUTH_MS"))
		brokers = append(brokers, securedBroker{name: "apache", addr: addr, caFile: os.Getenv("TEST_KAFKA_SASL_SSL_CA_FILE"),
			mech: kafka.SASLSCRAMSHA256, user: os.Getenv("TEST_KAFKA_SASL_SSL_USERNAME"), pw: os.Getenv("TEST_KAFKA_SASL_SSL_PASSWORD"),
			reauth: time.Duration(ms) * time.Millisecond})
	} else {
		t.Log("TEST_KAFKA_SASL_SSL_BROKERS is not set: Apache Kafka's SASL_SSL listener is not tried (see scripts/kafka.sh sasl-env)")
	}
	return brokers
}

// wantNoSecret fails if the password shows in what.
func wantNoSecret(t *testing.T, where, what, pw string) {
	t.Helper()
	if pw != "" && strings.Contains(what, pw) {
		t.Errorf("%s shows the password: %.2000s", where, what)
	}
}

// TestGatewayOnSecuredKafka: the whole gateway runs against a broker that
// takes only TLS connections (a private CA, KAFKA_CA_FILE) authenticated
// with SASL SCRAM: a placed order is read back through the views, /readyz
// is ready, and the start log says how it connects (kafka_security)
// without the password. A wrong password ends the start at once with one
// line naming KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD, an untrusted CA
// with one naming KAFKA_CA_FILE, a missing KAFKA_TLS with one naming
// KAFKA_TLS; the password is never in an error, a log line or /readyz. On
// the embedded broker and, with TEST_KAFKA_SASL_SSL_*, on Apache Kafka.
func TestGatewayOnSecuredKafka(t *testing.T) {
	for _, b := range securedBrokers(t) {
		t.Run(b.name, func(t *testing.T) {
			if b.user == "" || b.pw == "" || b.caFile == "" {
				t.Fatal("TEST_KAFKA_SASL_SSL_BROKERS is set without TEST_KAFKA_SASL_SSL_CA_FILE, _USERNAME and _PASSWORD")
			}
			t.Run("end to end", func(t *testing.T) {
				var logs syncBuffer
				cfg := testConfig(t)
				cfg.KafkaBrokers, cfg.KafkaSecurity = []string{b.addr}, b.security()
				cfg.LogLevel = slog.LevelDebug
				g := startMain(t, &app.Main{Config: cfg, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})

				o := g.mustMutate(t, "placeOrder", placeInput("c-secured", item("SKU-S", 2, "4.50")))
				p := g.mutate(t, "confirmOrder", map[string]any{"orderId": o.ID})
				if len(p.UserErrors) > 0 || p.ConsistencyToken == nil {
					t.Fatalf("confirmOrder: %+v", p.UserErrors)
				}
				viewed := g.orderAt(t, o.ID, *p.ConsistencyToken)
				if viewed == nil || viewed.Status != "CONFIRMED" || viewed.CustomerID != "c-secured" || viewed.Total.Amount != "9.00" {
					t.Fatalf("the order as the views show it: %+v", viewed)
				}
				var list struct {
					Orders struct{ TotalCount int }
				}
				g.data(t, `query($t: String) { orders(filter: {customerId: "c-secured"}, consistencyToken: $t) { totalCount } }`,
					map[string]any{"t": *p.ConsistencyToken}, &list)
				if list.Orders.TotalCount != 1 {
					t.Errorf("orders of c-secured: %d, want 1", list.Orders.TotalCount)
				}
				waitReady(t, g)
				resp, err := http.Get(g.url + "/readyz")
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("/readyz: %d %s", resp.StatusCode, body)
				}
				wantNoSecret(t, "/readyz", string(body), b.pw)
				// `deadletters` takes the same settings: it reads, and replays
				// through its transactional producer, over TLS and SASL.
				env := map[string]string{"KAFKA_BROKERS": b.addr, "KAFKA_TLS": "true", "KAFKA_CA_FILE": b.caFile, "KAFKA_SASL_MECHANISM": b.mech,
					"KAFKA_SASL_USERNAME": b.user, "KAFKA_SASL_PASSWORD": b.pw, "TOPIC_PREFIX": cfg.TopicPrefix}
				if out := deadLetters(t, env, 0, "list"); !strings.Contains(out, "no dead letters in "+cfg.TopicPrefix+".deadletter") {
					t.Errorf("deadletters list: %q", out)
				}
				if out := deadLetters(t, env, 0, "replay", "--all"); !strings.Contains(out, "no dead letters left to replay") {
					t.Errorf("deadletters replay --all: %q", out)
				}
				env["KAFKA_SASL_PASSWORD"] = "wrong-" + b.pw
				out := deadLetters(t, env, 1, "list")
				wantNoSecret(t, "deadletters with a wrong password", out, b.pw)
				g.stop()

				all := logs.String()
				wantNoSecret(t, "the log", all, b.pw)
				var ready string
				for _, line := range strings.Split(all, "\n") {
					if strings.Contains(line, "order gateway ready") {
						ready = line
					}
				}
				for _, want := range []string{"kafka_security=", "TLS (CA " + b.caFile + ")", "SASL " + b.mech, b.user} {
					if !strings.Contains(ready, want) {
						t.Errorf("the start line does not say %q: %s", want, ready)
					}
				}
				t.Logf("start line: %s", ready)
			})

			// A broker that closes SASL sessions not re-authenticated
			// within connections.max.reauth.ms (Apache Kafka; kfake does
			// not close them): every client of the gateway re-authenticates
			// (sarama, KIP-368), and mutations and reads keep working over
			// several session lifetimes, for each mechanism.
			if b.reauth > 0 {
				for _, mech := range []string{kafka.SASLSCRAMSHA512, kafka.SASLPlain} {
					t.Run("across re-authentications, "+mech, func(t *testing.T) {
						if b.reauth > 10*time.Second {
							t.Skipf("the broker's connections.max.reauth.ms is %s: too long to wait for here", b.reauth)
						}
						cfg := testConfig(t)
						cfg.KafkaBrokers, cfg.KafkaSecurity = []string{b.addr}, b.security()
						cfg.KafkaSecurity.SASLMechanism = mech
						g := startGateway(t, cfg)
						waitReady(t, g)
						customer := "c-reauth-" + strings.ToLower(mech)
						end := time.Now().Add(max(3*b.reauth, 10*time.Second))
						var token string
						n := 0
						for ; time.Now().Before(end); n++ {
							t0 := time.Now()
							p := g.mutate(t, "placeOrder", placeInput(customer, item("R", 1, "1.00")))
							if len(p.UserErrors) > 0 || p.ConsistencyToken == nil {
								t.Fatalf("mutation %d after %s: %+v", n, time.Since(end.Add(-max(3*b.reauth, 10*time.Second))).Round(time.Millisecond), p.UserErrors)
							}
							if d := time.Since(t0); d > 3*time.Second {
								t.Errorf("mutation %d took %s", n, d.Round(time.Millisecond))
							}
							token = *p.ConsistencyToken
							time.Sleep(200 * time.Millisecond)
						}
						var list struct {
							Orders struct{ TotalCount int }
						}
						g.data(t, `query($t: String) { orders(filter: {customerId: "`+customer+`"}, consistencyToken: $t) { totalCount } }`,
							map[string]any{"t": token}, &list)
						if list.Orders.TotalCount != n {
							t.Errorf("orders of %s: %d, want %d", customer, list.Orders.TotalCount, n)
						}
						if !g.Ready() {
							t.Errorf("the gateway is not ready after %d re-authentication periods", int(max(3*b.reauth, 10*time.Second)/b.reauth))
						}
						t.Logf("%d mutations over %s with SASL sessions of %s", n, max(3*b.reauth, 10*time.Second), b.reauth)
					})
				}
			}

			refused := func(t *testing.T, sec kafka.Security, want ...string) {
				t.Helper()
				var logs syncBuffer
				cfg := testConfig(t)
				cfg.KafkaBrokers, cfg.KafkaSecurity = []string{b.addr}, sec
				msg := mustFailAtOnce(t, cfg, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})), want...)
				for _, pw := range []string{b.pw, string(sec.SASLPassword)} {
					wantNoSecret(t, "the error", msg, pw)
					wantNoSecret(t, "the log", logs.String(), pw)
				}
			}
			t.Run("wrong password", func(t *testing.T) {
				sec := b.security()
				sec.SASLPassword = "wrong-" + sec.SASLPassword + "-Xy"
				refused(t, sec, "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD", b.user, "refused")
			})
			t.Run("unknown user", func(t *testing.T) {
				sec := b.security()
				sec.SASLUsername = "nobody-here"
				refused(t, sec, "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD", "nobody-here")
			})
			t.Run("untrusted CA", func(t *testing.T) {
				sec := b.security()
				sec.CAFile = kafkatest.NewCA(t, "another CA").WriteFile(t, t.TempDir())
				refused(t, sec, "KAFKA_CA_FILE", sec.CAFile, "not trusted")
			})
			t.Run("no TLS", func(t *testing.T) {
				sec := b.security()
				sec.TLS, sec.CAFile = false, ""
				refused(t, sec, "KAFKA_TLS", "KAFKA_TLS=true")
			})
		})
	}
}

// TestSecuredKafkaSettingsEndTheStartAtOnce: settings that contradict each
// other end Run before any connection, naming the setting without the
// password (the checks themselves are app's and kafka's tests).
func TestSecuredKafkaSettingsEndTheStartAtOnce(t *testing.T) {
	const pw = "never-shown-Pw9"
	cfg := testConfig(t)
	cfg.KafkaSecurity = kafka.Security{SASLMechanism: kafka.SASLSCRAMSHA256, SASLPassword: pw}
	msg := mustFailAtOnce(t, cfg, nil, "KAFKA_SASL_USERNAME")
	wantNoSecret(t, "the error", msg, pw)

	cfg = testConfig(t)
	cfg.KafkaSecurity = kafka.Security{TLS: true, CAFile: t.TempDir() + "/missing.pem"}
	mustFailAtOnce(t, cfg, nil, "KAFKA_CA_FILE")

	// The embedded broker takes neither TLS nor SASL.
	cfg = testConfig(t)
	cfg.KafkaBrokers = nil
	cfg.KafkaSecurity = kafka.Security{SASLMechanism: kafka.SASLPlain, SASLUsername: "u", SASLPassword: pw}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	m := &app.Main{Config: cfg, Logger: slog.New(slog.DiscardHandler)}
	err := m.Run(ctx)
	m.Close()
	if err == nil || !strings.Contains(err.Error(), "KAFKA_BROKERS") || strings.Contains(err.Error(), pw) {
		t.Errorf("SASL with the embedded broker: %v; want an error naming KAFKA_BROKERS without the password", err)
	}
}
