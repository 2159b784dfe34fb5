package main

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/ordergateway/gateway/app"
	"github.com/ordergateway/gateway/kafka"
)

// Hardening item 9: configuration that no retry can fix ends Run at once,
// with one line naming the setting, instead of being retried for the
// startup timeout and reported as an unreachable broker (or, for the
// session timeout, never ending at all). These run on the embedded broker
// and, with KAFKA_BROKERS, on Apache Kafka.

// startupTimeout is long enough that a test that waits for it fails: the
// errors here must come at once.
const startupTimeout = 40 * time.Second

// mustFailAtOnce runs a gateway with cfg and wants Run to fail within a few
// seconds with one line mentioning every want (and none of avoid).
func mustFailAtOnce(t *testing.T, cfg app.Config, logger *slog.Logger, want ...string) string {
	t.Helper()
	cfg.StartupTimeout = startupTimeout
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m := &app.Main{Config: cfg, Logger: logger}
	start := time.Now()
	err := m.Run(context.Background())
	took := time.Since(start)
	m.Close()
	if err == nil {
		t.Fatalf("Run succeeded; want it to fail naming %q", want)
	}
	msg := err.Error()
	if strings.ContainsAny(msg, "\r\n") {
		t.Errorf("want one line, got %q", msg)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("want the error to mention %q, got %q", w, msg)
		}
	}
	if strings.Contains(msg, "not reachable") {
		t.Errorf("a refused setting is reported as an unreachable broker: %q", msg)
	}
	if took > 10*time.Second {
		t.Errorf("Run failed after %s; want at once (STARTUP_TIMEOUT is %s)", took.Round(100*time.Millisecond), startupTimeout)
	}
	t.Logf("failed after %s (%s broker): %v", took.Round(10*time.Millisecond), testKafka, err)
	return msg
}

// (a) A session timeout outside the broker's group.min.session.timeout.ms
// and group.max.session.timeout.ms: every JoinGroup fails with
// INVALID_SESSION_TIMEOUT, and /readyz said "starting" forever.
func TestRefusedSessionTimeoutEndsTheStart(t *testing.T) {
	below := 500 * time.Millisecond // the embedded broker's minimum is 1s
	if testKafka == "external" {
		below = 3 * time.Second // Apache Kafka's default minimum is 6s
	}
	for _, tc := range []struct {
		name    string
		timeout time.Duration
	}{
		{"below the broker's minimum", below},
		{"above the broker's maximum", 45 * time.Minute}, // 30 min on both
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.SessionTimeout = tc.timeout
			mustFailAtOnce(t, cfg, nil, "SESSION_TIMEOUT", tc.timeout.String(), "group.min.session.timeout.ms")
		})
	}
	t.Run("within the bounds", func(t *testing.T) {
		cfg := testConfig(t)
		cfg.SessionTimeout = 10 * time.Minute // above kfake's own maximum (5 min), within Apache Kafka's
		g := startGateway(t, cfg)
		waitReady(t, g)
	})
}

// waitReady waits for the gateway's groups to be joined.
func waitReady(t *testing.T, g *gateway) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !g.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("the gateway did not join its groups within 60s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// (b) A topic prefix Kafka refuses in topic names.
func TestRefusedTopicPrefixEndsTheStart(t *testing.T) {
	t.Run("characters", func(t *testing.T) {
		cfg := testConfig(t)
		cfg.TopicPrefix += "/orders"
		mustFailAtOnce(t, cfg, nil, "TOPIC_PREFIX", `'/'`)
	})
	t.Run("length", func(t *testing.T) {
		cfg := testConfig(t)
		cfg.TopicPrefix += strings.Repeat("x", kafka.MaxTopicPrefix+1-len(cfg.TopicPrefix))
		mustFailAtOnce(t, cfg, nil, "TOPIC_PREFIX", "at most 238")
	})
	// Names that differ only in '.' and '_' collide in Kafka: the broker
	// refuses the second, whatever its characters.
	t.Run("collision", func(t *testing.T) {
		cfg := testConfig(t)
		createTopic(t, cfg.TopicPrefix+".x.commands", 1)
		cfg.TopicPrefix += "_x"
		mustFailAtOnce(t, cfg, nil, "TOPIC_PREFIX", cfg.TopicPrefix+".commands")
	})
}

// (c) Commands, events and snapshots topics with different partition counts
// (their partition numbers must line up) end the start in one line naming
// each count and PARTITIONS; topics that agree keep their count (PARTITIONS
// is for the topics the gateway creates), and a missing one gets it too,
// with one line saying so.
func TestPartitionCountsOfExistingTopics(t *testing.T) {
	t.Run("different", func(t *testing.T) {
		cfg := testConfig(t)
		topics := kafka.NewTopics(cfg.TopicPrefix)
		createTopic(t, topics.Commands, 2)
		createTopic(t, topics.Events, 4)
		mustFailAtOnce(t, cfg, nil, "PARTITIONS=3", topics.Commands+" 2", topics.Events+" 4")
	})
	t.Run("adopted", func(t *testing.T) {
		cfg := testConfig(t)
		topics := kafka.NewTopics(cfg.TopicPrefix)
		createTopic(t, topics.Commands, 2)
		var logs syncBuffer
		m := &app.Main{Config: cfg, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))}
		g := startMain(t, m)
		waitReady(t, g)
		admin := newAdmin(t)
		defer admin.Close()
		meta, err := admin.DescribeTopics([]string{topics.Commands, topics.Events, topics.Snapshots})
		if err != nil {
			t.Fatal(err)
		}
		for _, md := range meta {
			if len(md.Partitions) != 2 {
				t.Errorf("%s has %d partitions, want 2 (those of %s)", md.Name, len(md.Partitions), topics.Commands)
			}
		}
		var lines []string
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "PARTITIONS") {
				lines = append(lines, l)
			}
		}
		if len(lines) != 1 || !strings.Contains(lines[0], "2 partitions") || !strings.Contains(lines[0], "PARTITIONS=3") || !strings.Contains(lines[0], topics.Commands) {
			t.Errorf("want one line naming the topics, their 2 partitions and PARTITIONS=3, got %q", lines)
		}
		t.Logf("%s", lines)
	})
}

// createTopic creates a topic with n partitions on the test broker.
func createTopic(t *testing.T, name string, n int32) {
	t.Helper()
	admin := newAdmin(t)
	defer admin.Close()
	if err := admin.CreateTopic(name, &sarama.TopicDetail{NumPartitions: n, ReplicationFactor: 1}, false); err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		meta, err := admin.DescribeTopics([]string{name})
		if err == nil && len(meta) == 1 && meta[0].Err == sarama.ErrNoError && len(meta[0].Partitions) == int(n) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("topic %s not described with %d partitions within 10s: %v", name, n, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Hardening item 8: a malformed MONGODB_URI is named without its password.
func TestMalformedMongoURIShowsNoPassword(t *testing.T) {
	for _, uri := range []string{
		"mongodb://user:secret@host:notaport/db",
		"mongodb://user:sec:ret@host/db",
		"mongodb://user:se/cret@host/db",
		"mongodb+srv://user:secret@host:27017/db",
	} {
		cfg := testConfig(t)
		cfg.MongoURI = uri
		msg := mustFailAtOnce(t, cfg, nil, "MONGODB_URI")
		for _, s := range []string{"secret", "sec:ret", "se/cret"} {
			if strings.Contains(msg, s) {
				t.Errorf("%s: the error shows the password: %q", uri, msg)
			}
		}
	}
}
