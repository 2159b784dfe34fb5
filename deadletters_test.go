package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/ordergateway/gateway/app"
	"github.com/ordergateway/gateway/command"
	"github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/embedded"
	"github.com/ordergateway/gateway/kafka"
)

// deadLetters runs `deadletters args...` in process with env as its
// environment, checks its exit code and returns its output (stdout, then
// stderr).
func deadLetters(t testing.TB, env map[string]string, wantCode int, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	code := app.DeadLettersCommand(args, func(k string) string { return env[k] }, &out, &errOut)
	t.Logf("deadletters %s → %d\n%s%s", strings.Join(args, " "), code, out.String(), errOut.String())
	if code != wantCode {
		t.Fatalf("deadletters %s: exit code %d, want %d; stderr: %s", strings.Join(args, " "), code, wantCode, errOut.String())
	}
	return out.String() + errOut.String()
}

// dlEnv is the environment that points `deadletters` at cfg's topics.
func dlEnv(cfg app.Config) map[string]string {
	return map[string]string{"KAFKA_BROKERS": strings.Join(cfg.KafkaBrokers, ","), "TOPIC_PREFIX": cfg.TopicPrefix, "DATA_DIR": cfg.DataDir}
}

type dlList struct {
	Total       int `json:"total"`
	Replays     int `json:"replays"`
	DeadLetters []struct {
		ID          string `json:"id"`
		SourceTopic string `json:"sourceTopic"`
		Reason      string `json:"reason"`
		Error       string `json:"error"`
		ReplayOf    string `json:"replayOf"`
		Key         string `json:"key"`
		Replays     []struct {
			Topic  string `json:"topic"`
			Forced bool   `json:"forced"`
		} `json:"replays"`
	} `json:"deadLetters"`
}

func listDeadLetters(t testing.TB, env map[string]string) dlList {
	t.Helper()
	var l dlList
	if err := json.Unmarshal([]byte(deadLetters(t, env, 0, "list", "--json")), &l); err != nil {
		t.Fatalf("list --json: %v", err)
	}
	return l
}

// forgeProducer produces straight to the broker, past the gateway.
func forgeProducer(t testing.TB, brokers []string) sarama.SyncProducer {
	t.Helper()
	sc := kafka.Config("test-forger", 20*time.Millisecond)
	sc.Producer.Return.Successes = true
	prod, err := sarama.NewSyncProducer(brokers, sc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prod.Close() })
	return prod
}

// commandRecord is a command as a bus would write it, with no principal
// (nil) or the given one, and idempotency key id.
func commandRecord(topic, id string, cmd domain.Command, principal []byte) *sarama.ProducerMessage {
	typ, data, _ := domain.MarshalCommand(cmd)
	v, _ := json.Marshal(map[string]any{"commandId": id, "type": typ, "orderId": cmd.TargetOrderID(), "idempotencyKey": id, "data": json.RawMessage(data)})
	headers := []sarama.RecordHeader{{Key: []byte(command.HeaderCommandID), Value: []byte(id)},
		{Key: []byte(command.HeaderIdempotencyKey), Value: []byte(id)},
		{Key: []byte(command.HeaderReplyTo), Value: []byte("gw_gone")}, {Key: []byte(command.HeaderReplyPartition), Value: []byte("0")}}
	if principal != nil {
		headers = append(headers, sarama.RecordHeader{Key: []byte(command.HeaderPrincipal), Value: principal})
	}
	return &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(cmd.TargetOrderID()), Value: sarama.ByteEncoder(v), Headers: headers}
}

// TestDeadLetteredCommandsAreListedShownAndReplayedOnce: a command without a
// principal (auth on) and a command that is not JSON are dead-lettered;
// list and show tell them apart. After the fix (here: the gateway restarted
// with AUTH_DISABLED) a replay of the first is applied once; a second replay
// is refused; a forced one is answered from the recorded outcome and
// appends nothing. The poisoned one, replayed, is dead-lettered again (a new
// dead letter naming the old one), and replay --all replays only that new
// one, once: no loop.
func TestDeadLetteredCommandsAreListedShownAndReplayedOnce(t *testing.T) {
	cfg := testConfig(t)
	g := startGateway(t, cfg)
	topics := kafka.NewTopics(cfg.TopicPrefix)
	env := dlEnv(cfg)
	if out := deadLetters(t, env, 0, "list"); !strings.Contains(out, "no dead letters in "+topics.DeadLetter) {
		t.Errorf("list of an empty topic: %q", out)
	}
	prod := forgeProducer(t, cfg.KafkaBrokers)
	orderID := "ord_dl_" + cfg.TopicPrefix
	place := domain.PlaceOrder{OrderID: orderID, CustomerID: "c-dl", Currency: "USD", Items: []domain.ItemInput{{SKU: "A", Name: "A", Quantity: 2, UnitPrice: "1.50"}}}
	poison := &sarama.ProducerMessage{Topic: topics.Commands, Key: sarama.StringEncoder("ord_dl_poison"), Value: sarama.StringEncoder("not json {"),
		Headers: []sarama.RecordHeader{{Key: []byte(command.HeaderCommandID), Value: []byte("cmd_dl_poison")}}}
	if err := prod.SendMessages([]*sarama.ProducerMessage{commandRecord(topics.Commands, "cmd_dl_place", place, nil), poison}); err != nil {
		t.Fatal(err)
	}
	var l dlList
	waitFor(t, eventWait, "two dead letters", func() bool { l = listDeadLetters(t, env); return l.Total == 2 })
	ids := map[string]string{} // reason → id
	for _, d := range l.DeadLetters {
		ids[d.Reason] = d.ID
		if d.SourceTopic != topics.Commands || len(d.Replays) != 0 || d.ReplayOf != "" {
			t.Errorf("dead letter %+v: want from %s, not replayed", d, topics.Commands)
		}
	}
	placeID, poisonID := ids[kafka.ReasonPrincipal], ids[kafka.ReasonUndecodable]
	if placeID == "" || poisonID == "" {
		t.Fatalf("dead letters %+v: want reasons %s and %s", l.DeadLetters, kafka.ReasonPrincipal, kafka.ReasonUndecodable)
	}
	text := deadLetters(t, env, 0, "list")
	for _, want := range []string{placeID, "principal", "undecodable", topics.Commands + "/", "pending", "2 dead letters in " + topics.DeadLetter} {
		if !strings.Contains(text, want) {
			t.Errorf("list does not show %q:\n%s", want, text)
		}
	}
	shown := deadLetters(t, env, 0, "show", placeID)
	for _, want := range []string{"reason:     principal: the command has no principal header", "command-id: cmd_dl_place",
		"key:        " + orderID, "\n  \"commandId\": \"cmd_dl_place\",\n", "replayed:   no"} {
		if !strings.Contains(shown, want) {
			t.Errorf("show %s does not hold %q:\n%s", placeID, want, shown)
		}
	}
	if out := deadLetters(t, env, 0, "show", poisonID, "--max-bytes", "64"); !strings.Contains(out, "value (10 bytes):\nnot json {\n") {
		t.Errorf("show of a value that is not JSON: %s", out)
	}
	deadLetters(t, env, 1, "show", "0/999999")
	deadLetters(t, env, 2, "show")
	deadLetters(t, env, 2, "replay", placeID, "--all")

	// The fix: commands without a principal are accepted now.
	g.stop()
	fixed := cfg
	fixed.Auth.Disabled = true
	g = startGateway(t, fixed)
	out := deadLetters(t, env, 0, "replay", placeID, "--wait", "30s")
	if !strings.Contains(out, placeID+": replayed to "+topics.Commands+"/") || !strings.Contains(out, "answer: applied (order "+orderID+" at version 1)") {
		t.Errorf("replay: %s", out)
	}
	waitFor(t, eventWait, "the replayed order's view", func() bool { o := g.orderAt(t, orderID, ""); return o != nil && o.Version == 1 })
	if out := deadLetters(t, env, 1, "replay", placeID); !strings.Contains(out, placeID+": refused: already replayed to "+topics.Commands) {
		t.Errorf("second replay: %s", out)
	}
	if out := deadLetters(t, env, 0, "replay", placeID, "--force", "--wait", "30s"); !strings.Contains(out, "answer: already applied: the recorded outcome") {
		t.Errorf("forced replay: %s", out)
	}
	events := 0
	for _, m := range readTopic(t, topics.Events, time.Second) {
		if string(m.Key) == orderID {
			events++
		}
	}
	if o := g.orderAt(t, orderID, ""); events != 1 || o == nil || o.Version != 1 || len(o.Items) != 1 || o.Items[0].Quantity != 2 {
		t.Errorf("after a replay and a forced one: %d events, order %+v; want 1 event, version 1", events, o)
	}

	// The poison fails again: a new dead letter that names the old one.
	if out := deadLetters(t, env, 0, "replay", poisonID, "--wait", "30s"); !strings.Contains(out, poisonID+": answer: INTERNAL_SERVER_ERROR") {
		t.Errorf("replay of the poison: %s", out)
	}
	var again string
	waitFor(t, eventWait, "the poison's new dead letter", func() bool {
		l = listDeadLetters(t, env)
		for _, d := range l.DeadLetters {
			if d.ReplayOf == poisonID && d.Reason == kafka.ReasonUndecodable {
				again = d.ID
			}
		}
		return again != ""
	})
	out = deadLetters(t, env, 0, "replay", "--all", "--wait", "30s")
	if strings.Count(out, ": replayed to ") != 1 || !strings.Contains(out, again+": replayed to ") || !strings.Contains(out, again+": answer: INTERNAL_SERVER_ERROR") {
		t.Errorf("replay --all: want only %s replayed, once:\n%s", again, out)
	}
	waitFor(t, eventWait, "the fourth dead letter", func() bool { l = listDeadLetters(t, env); return l.Total == 4 })
	if l.Replays != 4 {
		t.Errorf("%d replays recorded, want 4 (one forced)", l.Replays)
	}
	time.Sleep(time.Second) // nothing replays by itself
	if l = listDeadLetters(t, env); l.Total != 4 {
		t.Errorf("%d dead letters a second later, want still 4", l.Total)
	}
	var newest dlList
	if err := json.Unmarshal([]byte(deadLetters(t, env, 0, "list", "--json", "--limit", "2")), &newest); err != nil {
		t.Fatal(err)
	}
	if newest.Total != 4 || len(newest.DeadLetters) != 2 || newest.DeadLetters[0].ID != again || newest.DeadLetters[1].ReplayOf != again {
		t.Errorf("list --limit 2: %+v, want the newest two of 4 (%s and its replay's)", newest, again)
	}
}

// TestReplayedEventsApplyOnceInTheViews: an event that would leave a gap in
// its order's view is dead-lettered; once the event before it arrived, its
// replay is applied, and a forced second replay is skipped by the
// projector's version check (no second item, no new dead letter).
func TestReplayedEventsApplyOnceInTheViews(t *testing.T) {
	cfg := testConfig(t)
	g := startGateway(t, cfg)
	topics := kafka.NewTopics(cfg.TopicPrefix)
	env := dlEnv(cfg)
	o := g.mustMutate(t, "placeOrder", placeInput("c-dl", item("A", 1, "1")))
	sc := kafka.Config("test-forger", 20*time.Millisecond)
	sc.Producer.Return.Successes = true
	sc.Producer.Partitioner = sarama.NewHashPartitioner // as the bus: the order's commands' partition, so its events'
	prod, err := sarama.NewSyncProducer(cfg.KafkaBrokers, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	event := func(version int, sku string) *sarama.ProducerMessage {
		v, err := domain.MarshalEvent(domain.Event{OrderID: o.ID, Version: version, OccurredAt: time.Now().UTC().Truncate(time.Millisecond),
			CommandID: "cmd_forged", Data: domain.OrderItemAdded{Item: domain.Item{SKU: sku, Name: sku, Quantity: 1}}})
		if err != nil {
			t.Fatal(err)
		}
		return &sarama.ProducerMessage{Topic: topics.Events, Key: sarama.StringEncoder(o.ID), Value: sarama.ByteEncoder(v)}
	}
	if _, _, err := prod.SendMessage(event(3, "C")); err != nil {
		t.Fatal(err)
	}
	var l dlList
	waitFor(t, eventWait, "the gap's dead letter", func() bool { l = listDeadLetters(t, env); return l.Total == 1 })
	if d := l.DeadLetters[0]; d.Reason != kafka.ReasonGap || d.SourceTopic != topics.Events || d.Key != o.ID {
		t.Fatalf("dead letter %+v, want a gap in %s of %s", d, topics.Events, o.ID)
	}
	gap := l.DeadLetters[0].ID
	if _, _, err := prod.SendMessage(event(2, "B")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, eventWait, "version 2 in the view", func() bool { v := g.orderAt(t, o.ID, ""); return v != nil && v.Version == 2 })
	if out := deadLetters(t, env, 0, "replay", gap); !strings.Contains(out, gap+": replayed to "+topics.Events+"/") {
		t.Errorf("replay: %s", out)
	}
	waitFor(t, eventWait, "version 3 in the view", func() bool { v := g.orderAt(t, o.ID, ""); return v != nil && v.Version == 3 })
	deadLetters(t, env, 1, "replay", gap)
	deadLetters(t, env, 0, "replay", "--force", gap)
	// The forced replay is behind the view: a marker after it shows it was read.
	_, _, err = prod.SendMessage(event(4, "D"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, eventWait, "version 4 in the view", func() bool { v := g.orderAt(t, o.ID, ""); return v != nil && v.Version == 4 })
	v := g.orderAt(t, o.ID, "")
	var skus []string
	for _, it := range v.Items {
		skus = append(skus, it.SKU)
	}
	if strings.Join(skus, ",") != "A,B,C,D" {
		t.Errorf("items %v after a replay and a forced replay of C, want A,B,C,D", skus)
	}
	if l = listDeadLetters(t, env); l.Total != 1 || l.Replays != 2 {
		t.Errorf("%d dead letters and %d replays, want 1 and 2", l.Total, l.Replays)
	}
}

// TestDeadLettersWithTheEmbeddedBroker: with no KAFKA_BROKERS, the tool
// reaches the embedded broker of the gateway that runs on DATA_DIR, starts
// one itself when none does, and says in one line what to do when the
// folder is held and no broker address is recorded, or holds no broker.
func TestDeadLettersWithTheEmbeddedBroker(t *testing.T) {
	cfg := testConfig(t)
	cfg.KafkaBrokers = nil // the embedded broker, in cfg.DataDir
	g := startGateway(t, cfg)
	addr, ok := embedded.RunningKafkaAddr(filepath.Join(cfg.DataDir, "kafka"))
	if !ok {
		t.Fatal("the running gateway recorded no broker address")
	}
	topics := kafka.NewTopics(cfg.TopicPrefix)
	prod := forgeProducer(t, []string{addr})
	place := domain.PlaceOrder{OrderID: "ord_dl_embedded", CustomerID: "c-dl", Currency: "USD", Items: []domain.ItemInput{{SKU: "A", Name: "A", Quantity: 1, UnitPrice: "1"}}}
	if _, _, err := prod.SendMessage(commandRecord(topics.Commands, "cmd_dl_embedded", place, nil)); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"DATA_DIR": cfg.DataDir, "TOPIC_PREFIX": cfg.TopicPrefix}
	waitFor(t, eventWait, "the dead letter, through the running gateway's broker", func() bool { return listDeadLetters(t, env).Total == 1 })
	g.stop()
	if l := listDeadLetters(t, env); l.Total != 1 || l.DeadLetters[0].Reason != kafka.ReasonPrincipal {
		t.Errorf("with the gateway stopped: %+v", l)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "gateway.lock")); err != nil {
		t.Fatal(err)
	}
	lock, err := embedded.LockDir(cfg.DataDir) // the tool released the folder
	if err != nil {
		t.Fatalf("the data folder after the tool ran: %v", err)
	}
	defer lock.Close()

	held := t.TempDir() // a folder held by a gateway whose broker address is not recorded
	if err := os.MkdirAll(filepath.Join(held, "kafka"), 0o755); err != nil {
		t.Fatal(err)
	}
	l2, err := embedded.LockDir(held)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	out := deadLetters(t, map[string]string{"DATA_DIR": held}, 1, "list")
	if !strings.Contains(out, "stop that gateway, or set KAFKA_BROKERS") || strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Errorf("held data folder: %q, want one line saying to stop the gateway or set KAFKA_BROKERS", out)
	}
	out = deadLetters(t, map[string]string{"DATA_DIR": t.TempDir()}, 1, "list")
	if !strings.Contains(out, "holds no embedded broker") {
		t.Errorf("empty data folder: %q", out)
	}
}

// TestConcurrentReplaysCannotBothCommit: two replayers of one dead letter
// at once, as two `deadletters replay` processes. The second one's start
// fences the first: the first's replay fails, the second finds no mark and
// replays, and the dead letter is replayed exactly once.
func TestConcurrentReplaysCannotBothCommit(t *testing.T) {
	cfg := testConfig(t)
	startGateway(t, cfg)
	topics := kafka.NewTopics(cfg.TopicPrefix)
	env := dlEnv(cfg)
	place := domain.PlaceOrder{OrderID: "ord_dl_race", CustomerID: "c-dl", Currency: "USD", Items: []domain.ItemInput{{SKU: "A", Name: "A", Quantity: 1, UnitPrice: "1"}}}
	if _, _, err := forgeProducer(t, cfg.KafkaBrokers).SendMessage(commandRecord(topics.Commands, "cmd_dl_race", place, nil)); err != nil {
		t.Fatal(err)
	}
	var l dlList
	waitFor(t, eventWait, "the dead letter", func() bool { l = listDeadLetters(t, env); return l.Total == 1 })
	id, _, err := kafka.ParseDeadLetterID(l.DeadLetters[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	client, err := sarama.NewClient(cfg.KafkaBrokers, kafka.Config("test-replay", 20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	reader := &kafka.DeadLetterReader{Client: client, Topic: topics.DeadLetter}
	rec, err := reader.Get(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := kafka.ReplayMessage(rec, []string{topics.Commands})
	if err != nil {
		t.Fatal(err)
	}
	newReplayer := func() *kafka.Replayer {
		r, err := kafka.NewReplayer(cfg.KafkaBrokers, kafka.Config("test-replay", 20*time.Millisecond), topics.DeadLetter, kafka.ReplayTransactionalID(cfg.TopicPrefix))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}
	marks := func(r *kafka.Replayer) int {
		until, err := r.Fence([]int32{id.Partition})
		if err != nil {
			t.Fatalf("fence: %v", err)
		}
		n := 0
		if err := reader.Scan(t.Context(), []int32{id.Partition}, until, func(_ *kafka.DeadLetterRecord, m *kafka.ReplayMark) error {
			if m != nil && m.Of == id {
				n++
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	first := newReplayer()
	if n := marks(first); n != 0 {
		t.Fatalf("first replayer: %d marks before any replay", n)
	}
	second := newReplayer() // fences the first
	if n := marks(second); n != 0 {
		t.Fatalf("second replayer: %d marks before any replay", n)
	}
	if _, err := first.Replay(rec, msg, false); err == nil {
		t.Fatal("the fenced replayer's replay committed")
	} else {
		t.Logf("the fenced replayer: %v", err)
	}
	msg2, _ := kafka.ReplayMessage(rec, []string{topics.Commands})
	if _, err := second.Replay(rec, msg2, false); err != nil {
		t.Fatalf("the second replayer: %v", err)
	}
	if l = listDeadLetters(t, env); l.Replays != 1 || len(l.DeadLetters[0].Replays) != 1 {
		t.Errorf("%d replays recorded (%+v), want 1", l.Replays, l.DeadLetters[0].Replays)
	}
	replayed := 0
	for _, m := range readTopic(t, topics.Commands, time.Second) {
		if kafka.Header(m, kafka.HeaderDLReplayOf) == id.String() {
			replayed++
		}
	}
	if replayed != 1 {
		t.Errorf("%d replayed commands in %s, want 1", replayed, topics.Commands)
	}
}
