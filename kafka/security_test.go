package kafka_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/ordergateway/gateway/kafka"
	"github.com/ordergateway/gateway/kafka/kafkatest"
)

// roundTrip connects with sec, writes a record to a new topic and reads it
// back. It returns what the connection failed with, as Refusal explains it
// when it can.
func roundTrip(t *testing.T, addr string, sec *kafka.Security) error {
	t.Helper()
	sc := sec.Config("test-security", 20*time.Millisecond)
	sc.Producer.Return.Successes = true
	sc.Net.DialTimeout = 2 * time.Second
	sc.Net.ReadTimeout = 3 * time.Second
	client, err := sarama.NewClient([]string{addr}, sc)
	if err != nil {
		if r := sec.Refusal(err, []string{addr}); r != nil {
			return r
		}
		return err
	}
	defer client.Close()
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		return err
	}
	topic := fmt.Sprintf("security-%d", time.Now().UnixNano())
	if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1}, false); err != nil {
		return fmt.Errorf("create topic: %w", err)
	}
	prod, err := sarama.NewSyncProducer([]string{addr}, sc)
	if err != nil {
		return fmt.Errorf("producer: %w", err)
	}
	defer prod.Close()
	if _, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder("hello")}); err != nil {
		return fmt.Errorf("produce: %w", err)
	}
	cons, err := sarama.NewConsumer([]string{addr}, sc)
	if err != nil {
		return fmt.Errorf("consumer: %w", err)
	}
	defer cons.Close()
	pc, err := cons.ConsumePartition(topic, 0, sarama.OffsetOldest)
	if err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	defer pc.Close()
	select {
	case m := <-pc.Messages():
		if string(m.Value) != "hello" {
			return fmt.Errorf("read %q, want hello", m.Value)
		}
	case <-time.After(10 * time.Second):
		return errors.New("the record did not come back within 10s")
	}
	return nil
}

func load(t *testing.T, s kafka.Security) *kafka.Security {
	t.Helper()
	sec, err := s.Load()
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return sec
}

// wantRefusal wants err to be a one-line ConfigError naming setting,
// mentioning every want, and never showing secret.
func wantRefusal(t *testing.T, what string, err error, secret, setting string, want ...string) {
	t.Helper()
	var ce *kafka.ConfigError
	if !errors.As(err, &ce) {
		t.Errorf("%s: want a ConfigError naming %s, got %v", what, setting, err)
		return
	}
	msg := err.Error()
	if ce.Setting != setting {
		t.Errorf("%s: want the error to name %s, got %q", what, setting, msg)
	}
	if strings.ContainsAny(msg, "\r\n") {
		t.Errorf("%s: want one line, got %q", what, msg)
	}
	if secret != "" && strings.Contains(msg, secret) {
		t.Errorf("%s: the error shows the password: %q", what, msg)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("%s: want the error to mention %q, got %q", what, w, msg)
		}
	}
	t.Logf("%s: %v", what, msg)
}

// TestSecurityOnTheEmbeddedBroker: against a kfake broker with TLS (a
// throwaway CA) and SASL, clients made with Security.Config write and read
// with each mechanism; a wrong password, a missing or untrusted CA, no TLS,
// no SASL, TLS to a plaintext listener are each refused at once with a
// ConfigError naming the setting, without the password.
func TestSecurityOnTheEmbeddedBroker(t *testing.T) {
	const pw256, pw512, pwPlain = "pw-256-Zq8x", "pw-512-Kd3v", "pw-plain-Rr5n"
	b := kafkatest.Start(t, true,
		kafkatest.User{Mechanism: "SCRAM-SHA-256", Name: "u256", Password: pw256},
		kafkatest.User{Mechanism: "SCRAM-SHA-512", Name: "u512", Password: pw512},
		kafkatest.User{Mechanism: "PLAIN", Name: "uplain", Password: pwPlain})
	for _, u := range []struct{ mech, user, pw string }{
		{kafka.SASLSCRAMSHA256, "u256", pw256}, {kafka.SASLSCRAMSHA512, "u512", pw512}, {kafka.SASLPlain, "uplain", pwPlain},
	} {
		sec := load(t, kafka.Security{TLS: true, CAFile: b.CAFile, SASLMechanism: u.mech, SASLUsername: u.user, SASLPassword: kafka.Secret(u.pw)})
		if err := roundTrip(t, b.Addr, sec); err != nil {
			t.Errorf("%s over TLS: %v", u.mech, err)
		}
		start := time.Now()
		wrong := load(t, kafka.Security{TLS: true, CAFile: b.CAFile, SASLMechanism: u.mech, SASLUsername: u.user, SASLPassword: "not-" + kafka.Secret(u.pw)})
		wantRefusal(t, u.mech+" with a wrong password", roundTrip(t, b.Addr, wrong), "not-"+u.pw,
			"KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD", u.user, "refused")
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("%s with a wrong password: refused after %s, want at once", u.mech, took)
		}
	}
	good := kafka.Security{TLS: true, CAFile: b.CAFile, SASLMechanism: kafka.SASLSCRAMSHA512, SASLUsername: "u512", SASLPassword: pw512}

	noTLS := good
	noTLS.TLS, noTLS.CAFile = false, ""
	wantRefusal(t, "no TLS", roundTrip(t, b.Addr, load(t, noTLS)), pw512, "KAFKA_TLS", "KAFKA_TLS=true", b.Addr)

	systemRoots := good
	systemRoots.CAFile = ""
	wantRefusal(t, "TLS with the system's roots", roundTrip(t, b.Addr, load(t, systemRoots)), pw512, "KAFKA_CA_FILE", "not trusted")

	otherCA := good
	otherCA.CAFile = kafkatest.NewCA(t, "another CA").WriteFile(t, t.TempDir())
	wantRefusal(t, "TLS with another CA", roundTrip(t, b.Addr, load(t, otherCA)), pw512, "KAFKA_CA_FILE", "not trusted", otherCA.CAFile)

	noSASL := good
	noSASL.SASLMechanism, noSASL.SASLUsername, noSASL.SASLPassword = "", "", ""
	wantRefusal(t, "TLS without SASL", roundTrip(t, b.Addr, load(t, noSASL)), pw512, "KAFKA_SASL_MECHANISM", "wants SASL", "SCRAM-SHA-512")

	plain := kafkatest.Start(t, false)
	wantRefusal(t, "TLS to a plaintext broker", roundTrip(t, plain.Addr, load(t, good)), pw512, "KAFKA_TLS", "answers without TLS")
	if err := roundTrip(t, plain.Addr, nil); err != nil {
		t.Errorf("no security to a plaintext broker: %v", err)
	}
	// The zero Security is exactly the plaintext configuration.
	zero := load(t, kafka.Security{})
	if z, p := zero.Config("x", time.Second), kafka.Config("x", time.Second); z.Net.TLS.Enable || z.Net.SASL.Enable || p.Net.TLS.Enable || p.Net.SASL.Enable {
		t.Errorf("the zero Security enables TLS or SASL")
	}
}

// TestSecurityChecks: settings that contradict each other or are out of
// bounds are ConfigErrors naming the setting, in one line without the
// password; the password never shows when a Security is printed, logged
// or encoded.
func TestSecurityChecks(t *testing.T) {
	const secret = "s3cr3t-Pw"
	caDir := t.TempDir()
	notPEM := filepath.Join(caDir, "not.pem")
	os.WriteFile(notPEM, []byte("hello"), 0o600)
	for _, c := range []struct {
		s       kafka.Security
		setting string
	}{
		{kafka.Security{CAFile: "/ca.pem"}, "KAFKA_CA_FILE"},
		{kafka.Security{TLS: true, CAFile: filepath.Join(caDir, "missing.pem")}, "KAFKA_CA_FILE"},
		{kafka.Security{TLS: true, CAFile: notPEM}, "KAFKA_CA_FILE"},
		{kafka.Security{SASLMechanism: "GSSAPI", SASLUsername: "u", SASLPassword: secret}, "KAFKA_SASL_MECHANISM"},
		{kafka.Security{SASLMechanism: "scram-sha-512", SASLUsername: "u", SASLPassword: secret}, "KAFKA_SASL_MECHANISM"},
		{kafka.Security{SASLMechanism: "PLAIN", SASLPassword: secret}, "KAFKA_SASL_USERNAME"},
		{kafka.Security{SASLMechanism: "PLAIN", SASLUsername: "u"}, "KAFKA_SASL_PASSWORD"},
		{kafka.Security{SASLUsername: "u"}, "KAFKA_SASL_USERNAME"},
		{kafka.Security{SASLPassword: secret}, "KAFKA_SASL_PASSWORD"},
		{kafka.Security{SASLMechanism: "PLAIN", SASLUsername: "u\n", SASLPassword: secret}, "KAFKA_SASL_USERNAME"},
		{kafka.Security{SASLMechanism: "PLAIN", SASLUsername: strings.Repeat("u", 256), SASLPassword: secret}, "KAFKA_SASL_USERNAME"},
		{kafka.Security{SASLMechanism: "PLAIN", SASLUsername: "u", SASLPassword: secret + "\x00"}, "KAFKA_SASL_PASSWORD"},
		{kafka.Security{SASLMechanism: "PLAIN", SASLUsername: "u", SASLPassword: kafka.Secret(strings.Repeat(secret, 200))}, "KAFKA_SASL_PASSWORD"},
		{kafka.Security{SASLMechanism: "SCRAM-SHA-256", SASLUsername: "u", SASLPassword: secret + "\u0221"}, "KAFKA_SASL_PASSWORD"}, // unassigned in Unicode 3.2: SASLprep refuses it
	} {
		_, err := c.s.Load()
		wantRefusal(t, fmt.Sprintf("%+v", c.s), err, secret, c.setting)
	}
	s := kafka.Security{TLS: true, SASLMechanism: "PLAIN", SASLUsername: "u", SASLPassword: secret}
	var logged strings.Builder
	slog.New(slog.NewTextHandler(&logged, nil)).Info("x", "security", s, "password", s.SASLPassword)
	j, _ := json.Marshal(s)
	for _, shown := range []string{fmt.Sprint(s), fmt.Sprintf("%+v %#v %v %s %q", s, s, s.SASLPassword, s.SASLPassword, s.SASLPassword), logged.String(), string(j), s.Describe()} {
		if strings.Contains(shown, secret) {
			t.Errorf("the password shows: %s", shown)
		}
	}
}

// TestSecurityOnApacheKafka runs TestSecurityOnTheEmbeddedBroker's checks
// against an Apache Kafka SASL_SSL listener (scripts/kafka.sh with
// KAFKA_SASL_SSL=1; .ci/run sets these variables from `scripts/kafka.sh
// sasl-env`).
func TestSecurityOnApacheKafka(t *testing.T) {
	addr, ca, user, pw := os.Getenv("TEST_KAFKA_SASL_SSL_BROKERS"), os.Getenv("TEST_KAFKA_SASL_SSL_CA_FILE"),
		os.Getenv("TEST_KAFKA_SASL_SSL_USERNAME"), os.Getenv("TEST_KAFKA_SASL_SSL_PASSWORD")
	if addr == "" {
		t.Skip("TEST_KAFKA_SASL_SSL_BROKERS is not set (see scripts/kafka.sh sasl-env)")
	}
	for _, mech := range []string{kafka.SASLSCRAMSHA512, kafka.SASLSCRAMSHA256, kafka.SASLPlain} {
		good := kafka.Security{TLS: true, CAFile: ca, SASLMechanism: mech, SASLUsername: user, SASLPassword: kafka.Secret(pw)}
		if err := roundTrip(t, addr, load(t, good)); err != nil {
			t.Errorf("%s over TLS: %v", mech, err)
		}
		wrong := good
		wrong.SASLPassword = "not-" + wrong.SASLPassword
		wantRefusal(t, mech+" with a wrong password", roundTrip(t, addr, load(t, wrong)), "not-"+pw,
			"KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD", user, "refused")
	}
	good := kafka.Security{TLS: true, CAFile: ca, SASLMechanism: kafka.SASLSCRAMSHA512, SASLUsername: user, SASLPassword: kafka.Secret(pw)}
	noTLS := good
	noTLS.TLS, noTLS.CAFile = false, ""
	wantRefusal(t, "no TLS", roundTrip(t, addr, load(t, noTLS)), pw, "KAFKA_TLS", "KAFKA_TLS=true")
	systemRoots := good
	systemRoots.CAFile = ""
	wantRefusal(t, "TLS with the system's roots", roundTrip(t, addr, load(t, systemRoots)), pw, "KAFKA_CA_FILE", "not trusted")
	noSASL := good
	noSASL.SASLMechanism, noSASL.SASLUsername, noSASL.SASLPassword = "", "", ""
	wantRefusal(t, "TLS without SASL", roundTrip(t, addr, load(t, noSASL)), pw, "KAFKA_SASL_MECHANISM", "wants SASL", "SCRAM-SHA-512")
}

// TestRefusalOnlyForWhatNoRetryFixes: Refusal names a setting only for a
// broker that cannot work with it. SASL to a TLS listener without SASL is
// KAFKA_SASL_MECHANISM (not refused credentials, which kfake's answer
// looked like); an error that is not a refusal (a timeout, say) with
// settings the broker takes is nil, to be retried (it panicked: the probe's
// successful authentication was read as an error). With KAFKA_BROKERS
// (Apache Kafka's PLAINTEXT listener), SASL to it is KAFKA_SASL_MECHANISM
// too.
func TestRefusalOnlyForWhatNoRetryFixes(t *testing.T) {
	const pw = "pw-retry-Hn4c"
	b := kafkatest.Start(t, true, kafkatest.User{Mechanism: kafka.SASLSCRAMSHA256, Name: "u", Password: pw})
	good := load(t, kafka.Security{TLS: true, CAFile: b.CAFile, SASLMechanism: kafka.SASLSCRAMSHA256, SASLUsername: "u", SASLPassword: pw})
	if err := good.Refusal(errors.New("kafka: client has run out of available brokers to talk to: read tcp: i/o timeout"), []string{b.Addr}); err != nil {
		t.Errorf("a timeout with settings the broker takes: %v, want nil (retry)", err)
	}
	if err := good.Refusal(errors.New("dial tcp 127.0.0.1:1: connect: connection refused"), []string{"127.0.0.1:1"}); err != nil {
		t.Errorf("an unreachable broker: %v, want nil (retry)", err)
	}

	noSASL := kafkatest.Start(t, true)
	sasl := load(t, kafka.Security{TLS: true, CAFile: noSASL.CAFile, SASLMechanism: kafka.SASLSCRAMSHA256, SASLUsername: "u", SASLPassword: pw})
	wantRefusal(t, "SASL to a TLS listener without SASL", roundTrip(t, noSASL.Addr, sasl), pw, "KAFKA_SASL_MECHANISM", "takes no SASL")

	if brokers := os.Getenv("KAFKA_BROKERS"); brokers != "" {
		addr := strings.Split(brokers, ",")[0]
		for _, mech := range []string{kafka.SASLPlain, kafka.SASLSCRAMSHA512} {
			s := load(t, kafka.Security{SASLMechanism: mech, SASLUsername: "u", SASLPassword: pw})
			wantRefusal(t, mech+" to Apache Kafka's PLAINTEXT listener", roundTrip(t, addr, s), pw, "KAFKA_SASL_MECHANISM", "takes no SASL")
		}
	}
}
