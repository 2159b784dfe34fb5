package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/domain/domaintest"
	"github.com/ordergateway/gateway/kafka"
	"github.com/ordergateway/gateway/kafka/kafkatest"
	"github.com/ordergateway/gateway/view"
)

// goldenRecords reads domain/testdata/golden/v<version>/<name>.jsonl as
// records to produce to topic, with their keys, headers and exact values.
func goldenRecords(t *testing.T, version int, name, topic string) []*sarama.ProducerMessage {
	t.Helper()
	f, err := os.Open(filepath.Join("domain", "testdata", "golden", fmt.Sprintf("v%d", version), name+".jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []*sarama.ProducerMessage
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r struct {
			Key     string      `json:"key"`
			Headers [][2]string `json:"headers"`
			Value   string      `json:"value"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		m := &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(r.Key), Value: sarama.StringEncoder(r.Value)}
		for _, h := range r.Headers {
			m.Headers = append(m.Headers, sarama.RecordHeader{Key: []byte(h[0]), Value: []byte(h[1])})
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// produceTo sends msgs to partition 0 of their topics, in order.
func produceTo(t *testing.T, msgs []*sarama.ProducerMessage) {
	t.Helper()
	kafkatest.SendToPartitions(t, testBrokers, msgs...)
}

// TestGoldenV1EventsProjectLikeNewOnes: the golden events of schema version
// 1 (written by the code before version 2, exact bytes and headers),
// produced to the events topic of a running gateway, are projected through
// the upcasters to the views of domaintest.Golden, the views the same
// events of today's shape make; and the API shows their cancellations'
// reason code OTHER.
func TestGoldenV1EventsProjectLikeNewOnes(t *testing.T) {
	cfg := testConfig(t)
	g := startGateway(t, cfg)
	topics := kafka.NewTopics(cfg.TopicPrefix)
	produceTo(t, goldenRecords(t, 1, "events", topics.Events))
	store, err := view.Open(cfg.MongoURI, cfg.MongoDatabase)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close(context.Background())
	checked := 0
	for _, rule := range domaintest.Golden {
		if rule.Name == "ord_golden_d" {
			continue // not in version 1's history
		}
		checked++
		last := rule.Given[len(rule.Given)-1].Version
		o := g.orderAt(t, rule.Name, consistencyTokenFor(rule.Name, last))
		if o == nil || o.Version != last {
			t.Fatalf("%s: view %+v, want version %d", rule.Name, o, last)
		}
		doc, err := store.Order(context.Background(), rule.Name)
		if err != nil {
			t.Fatal(err)
		}
		doc.Uncounted = nil // the projector's bookkeeping, not the view
		domaintest.CheckView(t, *doc, rule.Then)
		var out struct {
			Order struct{ CancellationReasonCode *string }
		}
		g.data(t, `query($id: ID!) { order(id: $id) { cancellationReasonCode } }`, map[string]any{"id": rule.Name}, &out)
		if got, want := out.Order.CancellationReasonCode, rule.Then.CancellationReasonCode; (got == nil) != (want == "") || (got != nil && *got != want) {
			t.Errorf("%s: cancellationReasonCode %v, want %q", rule.Name, got, want)
		}
	}
	if checked != 3 {
		t.Fatalf("checked %d golden orders", checked)
	}
}

// TestViewsRebuildFollowsTheProjectionRules: a rebuild projects the golden
// histories (schema version 1, through the upcasters) to the views the
// projection rules of domaintest.Golden state, in the new generation: the
// rules' table is the rebuild's too, so a new rule is checked there as well.
func TestViewsRebuildFollowsTheProjectionRules(t *testing.T) {
	cfg := testConfig(t)
	g := startGateway(t, cfg)
	topics := kafka.NewTopics(cfg.TopicPrefix)
	produceTo(t, goldenRecords(t, 1, "events", topics.Events))
	views := startViews(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if gen, err := views.RebuildViews(ctx, &lineWriter{t: t}, 0); err != nil || gen != 2 {
		t.Fatalf("rebuild: generation %d, %v", gen, err)
	}
	rebuilt := g.Store().At(2)
	checked := 0
	for _, rule := range domaintest.Golden {
		if rule.Name == "ord_golden_d" {
			continue // not in version 1's history
		}
		checked++
		doc, err := rebuilt.Order(ctx, rule.Name)
		if err != nil || doc == nil {
			t.Fatalf("%s in generation 2: %+v, %v", rule.Name, doc, err)
		}
		doc.Uncounted = nil // the projector's bookkeeping, not the view
		domaintest.CheckView(t, *doc, rule.Then)
	}
	if checked != 3 {
		t.Fatalf("checked %d golden orders", checked)
	}
}

// TestNewerEventVersionIsDeadLettered: an event of a schema version newer
// than this build reads (a newer build's, in a rolling deploy) goes to the
// dead-letter topic with reason newer-schema, and the events
// after it on its partition are projected.
func TestNewerEventVersionIsDeadLettered(t *testing.T) {
	cfg := testConfig(t)
	g := startGateway(t, cfg)
	waitReady(t, g) // restored: the handler does not rebuild from these events
	topics := kafka.NewTopics(cfg.TopicPrefix)
	at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	future, _ := json.Marshal(map[string]any{"orderId": "o-v99", "version": 1, "type": "OrderPlaced", "schemaVersion": 99,
		"occurredAt": at, "data": map[string]any{"customerId": "c", "lines": "a shape this build does not know"}})
	msgs := []*sarama.ProducerMessage{{Topic: topics.Events, Key: sarama.StringEncoder("o-v99"), Value: sarama.ByteEncoder(future)}}
	for v, data := range []domain.EventData{
		domain.OrderPlaced{CustomerID: "c-after", Currency: "USD", Items: []domain.Item{{SKU: "A", Name: "A", Quantity: 1, UnitPrice: 100}}},
		domain.OrderCancelled{Reason: "test", ReasonCode: domain.ReasonOutOfStock},
	} {
		b, err := domain.MarshalEvent(domain.Event{OrderID: "o-after", Version: v + 1, OccurredAt: at, Data: data})
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, &sarama.ProducerMessage{Topic: topics.Events, Key: sarama.StringEncoder("o-after"), Value: sarama.ByteEncoder(b)})
	}
	produceTo(t, msgs)
	o := g.orderAt(t, "o-after", consistencyTokenFor("o-after", 2))
	if o == nil || o.Status != "CANCELLED" {
		t.Fatalf("the order after the newer event: %+v", o)
	}
	var out struct{ Order *struct{ ID string } }
	g.data(t, `query { order(id: "o-v99") { id } }`, nil, &out)
	if out.Order != nil {
		t.Errorf("the newer event was projected: %+v", out.Order)
	}
	dead := readTopic(t, topics.DeadLetter, time.Second)
	if len(dead) != 1 || string(dead[0].Key) != "o-v99" {
		t.Fatalf("dead letters: %d, want the newer event", len(dead))
	}
	if code, why := kafka.Header(dead[0], kafka.HeaderDLReason), kafka.Header(dead[0], kafka.HeaderDLError); code != kafka.ReasonNewerSchema || !strings.Contains(why, "schema version 99") {
		t.Errorf("dead letter reason code %q, error %q", code, why)
	}
}

// TestHandlerRefusesNewerSnapshots: a snapshot of a newer schema version
// than this build reads (a newer build's, in a rolling deploy) makes the
// command handler refuse to start: /readyz is not ready and says why, and
// the order's commands are not handled by this build.
func TestHandlerRefusesNewerSnapshots(t *testing.T) {
	cfg := testConfig(t)
	cfg.Partitions = 1
	topics := kafka.NewTopics(cfg.TopicPrefix)
	admin := newAdmin(t)
	if err := kafka.EnsureTopics(admin, topics, kafka.TopicSettings{Partitions: 1, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	newer := fmt.Sprintf(`{"schemaVersion":%d,"order":{"id":"o-new","shape":"unknown"}}`, domain.OrderVersion+1)
	produceTo(t, []*sarama.ProducerMessage{{Topic: topics.Snapshots, Key: sarama.StringEncoder("o-new"), Value: sarama.StringEncoder(newer)}})
	g := startGateway(t, cfg)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(g.url + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var status map[string]string
		_ = json.Unmarshal(body, &status)
		if strings.HasPrefix(status["commandHandler"], "refused") {
			if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(status["commandHandler"], fmt.Sprintf("schema version %d", domain.OrderVersion+1)) {
				t.Fatalf("/readyz %d %s", resp.StatusCode, body)
			}
			t.Logf("/readyz: %s", body)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz after 30 s: %d %s", resp.StatusCode, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if g.Handler().Ready() {
		t.Error("the handler is ready")
	}
	// It left its group at once (not after SESSION_TIMEOUT, 6 s): the
	// partitions are free for the members of a build that reads them.
	group := cfg.TopicPrefix + ".command-handler"
	for start := time.Now(); ; time.Sleep(100 * time.Millisecond) {
		described, err := admin.DescribeConsumerGroups([]string{group})
		if err != nil {
			t.Fatal(err)
		}
		if len(described) == 1 && len(described[0].Members) == 0 {
			t.Logf("the refusing handler's group is empty (%s after /readyz said refused)", time.Since(start).Round(time.Millisecond))
			break
		}
		if time.Since(start) > 3*time.Second {
			t.Fatalf("group %s still has %d members 3 s after the refusal", group, len(described[0].Members))
		}
	}
}

// TestCancelWithReasonCode: cancelOrder takes a reason code (OTHER when not
// given); the payload and the view show it beside the free text.
func TestCancelWithReasonCode(t *testing.T) {
	g := startGateway(t, testConfig(t))
	for _, tc := range []struct{ code, want string }{{"PAYMENT_FAILED", "PAYMENT_FAILED"}, {"", "OTHER"}} {
		o := g.mustMutate(t, "placeOrder", placeInput("cust-reason", item("A", 1, "1")))
		in := map[string]any{"orderId": o.ID, "reason": "card declined"}
		if tc.code != "" {
			in["reasonCode"] = tc.code
		}
		q := `mutation($input: CancelOrderInput!) { cancelOrder(input: $input) { order { cancellationReason cancellationReasonCode } consistencyToken userErrors { code } } }`
		var out struct {
			CancelOrder struct {
				Order *struct {
					CancellationReason, CancellationReasonCode string
				}
				ConsistencyToken string
				UserErrors       []UserError
			}
		}
		g.data(t, q, map[string]any{"input": in}, &out)
		p := out.CancelOrder
		if len(p.UserErrors) > 0 || p.Order == nil || p.Order.CancellationReasonCode != tc.want || p.Order.CancellationReason != "card declined" {
			t.Fatalf("cancelOrder(reasonCode %q): %+v", tc.code, p)
		}
		var view struct {
			Order struct{ CancellationReasonCode string }
		}
		g.data(t, `query($id: ID!, $t: String) { order(id: $id, consistencyToken: $t) { cancellationReasonCode } }`, map[string]any{"id": o.ID, "t": p.ConsistencyToken}, &view)
		if view.Order.CancellationReasonCode != tc.want {
			t.Errorf("view of %s: reason code %q, want %q", o.ID, view.Order.CancellationReasonCode, tc.want)
		}
	}
	r := g.do(t, `mutation { cancelOrder(input: {orderId: "x", reason: "r", reasonCode: BORED}) { version } }`, nil)
	if len(r.Errors) == 0 || r.Errors[0].Extensions["code"] != "GRAPHQL_VALIDATION_FAILED" {
		t.Errorf("an unknown reason code: %+v", r.Errors)
	}
}
