package command

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/domain/domaintest"
	"github.com/ordergateway/gateway/kafka"
	"github.com/ordergateway/gateway/kafka/kafkatest"
	"github.com/ordergateway/gateway/view"
)

// updateGolden rewrites the golden records of goldenFormat (never older
// ones: they record what older code wrote).
var updateGolden = flag.Bool("update-golden", false, "write domain/testdata/golden/v<goldenFormat>/ from this code")

// goldenDir holds one folder of golden records per format, v1, v2, ...: v1
// was written by the code before event versions existed, each later one by
// the code of a shape change.
const goldenDir = "../domain/testdata/golden"

// goldenFormat is the folder of the records this code writes. Raise it with
// any change of an event's or the order state's shape (with the type's or
// the order's schema version), and write the new folder with
// -update-golden.
const goldenFormat = 2

// goldenRecord is one record as it is on the wire: key, headers and the
// exact bytes of its value.
type goldenRecord struct {
	Key     string      `json:"key"`
	Headers [][2]string `json:"headers,omitempty"`
	Value   string      `json:"value"`
}

// goldenStep is one command of the golden history, decided at At.
type goldenStep struct {
	At  time.Time
	Key string // idempotency key
	Cmd domain.Command
}

var goldenAt = domaintest.GoldenAt

// goldenSteps is a history with every event type, both cancellations
// (pending and confirmed), a shipping address and a refused command (an
// outcome with an error in the snapshot).
var goldenSteps = []goldenStep{
	{goldenAt(0), "k-a1", domain.PlaceOrder{OrderID: "ord_golden_a", CustomerID: "cust-golden-1", Currency: "EUR",
		Items:           []domain.ItemInput{{SKU: "MUG-01", Name: "Mug", Quantity: 2, UnitPrice: "12.50"}, {SKU: "TEA-07", Name: "Tea, green", Quantity: 1, UnitPrice: "4.99"}},
		ShippingAddress: &domain.Address{Name: "Ada Lovelace", Line1: "12 St James's Square", City: "London", PostalCode: "SW1Y 4JH", Country: "GB"}}},
	{goldenAt(1), "k-a2", domain.AddOrderItem{OrderID: "ord_golden_a", Item: domain.ItemInput{SKU: "SPOON-3", Name: "Spoon", Quantity: 3, UnitPrice: "1.20"}}},
	{goldenAt(2), "k-a3", domain.RemoveOrderItem{OrderID: "ord_golden_a", SKU: "TEA-07"}},
	{goldenAt(3), "k-a4", domain.ConfirmOrder{OrderID: "ord_golden_a"}},
	{goldenAt(4), "k-a5", domain.ShipOrder{OrderID: "ord_golden_a", TrackingNumber: "1Z999AA10123456784"}},
	{goldenAt(5), "k-a6", domain.DeliverOrder{OrderID: "ord_golden_a"}},
	{goldenAt(6), "k-a7", domain.CancelOrder{OrderID: "ord_golden_a", Reason: "too late"}},
	{goldenAt(10), "k-b1", domain.PlaceOrder{OrderID: "ord_golden_b", CustomerID: "cust-golden-2", Currency: "USD",
		Items: []domain.ItemInput{{SKU: "BOOK-9", Name: "Book", Quantity: 1, UnitPrice: "30"}}}},
	{goldenAt(11), "k-b2", domain.CancelOrder{OrderID: "ord_golden_b", Reason: "customer changed their mind"}},
	{goldenAt(20), "k-c1", domain.PlaceOrder{OrderID: "ord_golden_c", CustomerID: "cust-golden-1", Currency: "JPY",
		Items: []domain.ItemInput{{SKU: "KETTLE", Name: "Kettle", Quantity: 1, UnitPrice: "4500"}}}},
	{goldenAt(21), "k-c2", domain.ConfirmOrder{OrderID: "ord_golden_c"}},
	{goldenAt(22), "k-c3", domain.CancelOrder{OrderID: "ord_golden_c", Reason: "out of stock"}},
	// From schema version 2 on: a cancellation with a reason code.
	{goldenAt(30), "k-d1", domain.PlaceOrder{OrderID: "ord_golden_d", CustomerID: "cust-golden-2", Currency: "GBP",
		Items: []domain.ItemInput{{SKU: "LAMP", Name: "Lamp", Quantity: 1, UnitPrice: "25"}}}},
	{goldenAt(31), "k-d2", domain.CancelOrder{OrderID: "ord_golden_d", Reason: "card reported stolen", ReasonCode: domain.ReasonFraudSuspected}},
}

// goldenRecords decides goldenSteps with this code and returns the records
// it writes to the events and snapshots topics, in order.
func goldenRecords(t *testing.T) (events, snapshots []goldenRecord) {
	t.Helper()
	topics := kafka.NewTopics("golden")
	h := &Handler{cfg: HandlerConfig{Topics: topics, Logger: slog.New(slog.DiscardHandler), AuthDisabled: true}}
	states := partitionStates{}
	for i, s := range goldenSteps {
		at := s.At
		h.cfg.Now = func() time.Time { return at }
		typ, data, err := domain.MarshalCommand(s.Cmd)
		if err != nil {
			t.Fatal(err)
		}
		env := envelope{CommandID: fmt.Sprintf("cmd_golden_%02d", i+1), Type: typ, OrderID: s.Cmd.TargetOrderID(), IdempotencyKey: s.Key, Data: data}
		value, _ := json.Marshal(env)
		d, err := h.decideBatch(states, []*sarama.ConsumerMessage{{Topic: topics.Commands, Offset: int64(i), Key: []byte(env.OrderID), Value: value,
			Headers: []*sarama.RecordHeader{{Key: []byte(HeaderCommandID), Value: []byte(env.CommandID)}}}})
		if err != nil || d.dead != 0 {
			t.Fatalf("step %d: %v (%d dead)", i+1, err, d.dead)
		}
		for _, m := range d.records {
			r := goldenRecord{Key: wireBytes(t, m.Key), Value: wireBytes(t, m.Value)}
			for _, hd := range m.Headers {
				r.Headers = append(r.Headers, [2]string{string(hd.Key), string(hd.Value)})
			}
			switch m.Topic {
			case topics.Events:
				events = append(events, r)
			case topics.Snapshots:
				snapshots = append(snapshots, r)
			default:
				t.Fatalf("step %d: a record for %s", i+1, m.Topic)
			}
		}
		for id, st := range d.changed[0] {
			if states[0] == nil {
				states[0] = map[string]*orderState{}
			}
			states[0][id] = st
		}
	}
	return events, snapshots
}

func wireBytes(t *testing.T, e sarama.Encoder) string {
	t.Helper()
	b, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeGolden(t *testing.T, path string, records []goldenRecord) {
	t.Helper()
	var buf bytes.Buffer
	for _, r := range records {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(b)
		buf.WriteByte('\n')
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// readGolden reads a JSON Lines file of golden records.
func readGolden(t *testing.T, path string) []goldenRecord {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []goldenRecord
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r goldenRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestGoldenRecordsOfThisVersion: the records this code writes for the
// golden history are byte for byte the golden records of goldenFormat. A
// change of an event's or a snapshot's shape fails here until its schema
// version is raised (an upcaster from the previous version appended),
// goldenFormat raised and the new folder written (go test ./command -run
// TestGoldenRecordsOfThisVersion -update-golden).
func TestGoldenRecordsOfThisVersion(t *testing.T) {
	events, snapshots := goldenRecords(t)
	dir := filepath.Join(goldenDir, fmt.Sprintf("v%d", goldenFormat))
	if *updateGolden {
		writeGolden(t, filepath.Join(dir, "events.jsonl"), events)
		writeGolden(t, filepath.Join(dir, "snapshots.jsonl"), snapshots)
	}
	for name, got := range map[string][]goldenRecord{"events.jsonl": events, "snapshots.jsonl": snapshots} {
		want := readGolden(t, filepath.Join(dir, name))
		if len(got) != len(want) {
			t.Fatalf("%s: this code writes %d records, the golden file has %d", name, len(got), len(want))
		}
		for i := range got {
			g, _ := json.Marshal(got[i])
			w, _ := json.Marshal(want[i])
			if !bytes.Equal(g, w) {
				t.Errorf("%s record %d:\n this code: %s\n golden:    %s", name, i+1, g, w)
			}
		}
	}
}

// goldenVersions lists the golden formats that have records: 1 to
// goldenFormat.
func goldenVersions(t *testing.T) []int {
	t.Helper()
	var vs []int
	for v := 1; v <= goldenFormat; v++ {
		if _, err := os.Stat(filepath.Join(goldenDir, fmt.Sprintf("v%d", v))); err != nil {
			t.Fatalf("no golden records v%d: %v", v, err)
		}
		vs = append(vs, v)
	}
	return vs
}

// TestGoldenSnapshotsUpcast: the golden snapshots of every format,
// decoded as a restore decodes them (decodeSnapshot, the last of each
// order), are the states the golden rules' events make, and their views
// are the rules' views (domaintest.Golden). Snapshots of version 1 have no
// schema version; their cancelled orders get reason code OTHER.
func TestGoldenSnapshotsUpcast(t *testing.T) {
	for _, v := range goldenVersions(t) {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			states := map[string]*orderState{}
			for i, r := range readGolden(t, filepath.Join(goldenDir, fmt.Sprintf("v%d", v), "snapshots.jsonl")) {
				s, err := decodeSnapshot([]byte(r.Value))
				if err != nil {
					t.Fatalf("record %d: %v", i+1, err)
				}
				if s.SchemaVersion != domain.OrderVersion {
					t.Errorf("record %d: decoded as schema version %d", i+1, s.SchemaVersion)
				}
				states[r.Key] = s
			}
			seen := 0
			for _, rule := range domaintest.Golden {
				s := states[rule.Name]
				if s == nil {
					continue // an order added to the golden history later
				}
				seen++
				if want := domain.Fold(rule.Given); !reflect.DeepEqual(s.Order, want) {
					t.Errorf("%s: snapshot state\n got  %+v\n want %+v", rule.Name, s.Order, want)
				}
				domaintest.CheckView(t, view.FromOrder(s.Order), rule.Then)
				if len(s.Outcomes) == 0 {
					t.Errorf("%s: no idempotency outcomes", rule.Name)
				}
			}
			if seen != len(states) {
				t.Errorf("%d orders in the golden snapshots, %d of them in domaintest.Golden", len(states), seen)
			}
		})
	}
}

// TestNewerSnapshotIsRefused: a snapshot of a newer schema version than
// this build reads is a *domain.SchemaVersionError, not a damaged record
// (which restore would rebuild from the events, misreading nothing but
// dropping the newer build's outcomes).
func TestNewerSnapshotIsRefused(t *testing.T) {
	for _, in := range []string{
		fmt.Sprintf(`{"schemaVersion":%d,"order":{"id":"o","status":"PENDING","version":1}}`, domain.OrderVersion+1),
		`{"schemaVersion":99,"order":"a shape from the future"}`,
	} {
		_, err := decodeSnapshot([]byte(in))
		var newer *domain.SchemaVersionError
		if !errors.As(err, &newer) || newer.Version <= domain.OrderVersion {
			t.Errorf("decodeSnapshot(%s) = %v, want a *domain.SchemaVersionError", in, err)
		}
	}
	if _, err := decodeSnapshot([]byte(`{"order":`)); err == nil {
		t.Error("a truncated snapshot decoded")
	}
}

// TestRestoreReadsGoldenV1Records: a handler of this build restores
// partitions holding what the code of schema version 1 wrote, on a broker:
// partition 0 the v1 snapshots (restored from them), partition 1 the v1
// events without snapshots (rebuilt from them). Both give the states of the
// golden rules, and partition 0 keeps the recorded outcomes.
func TestRestoreReadsGoldenV1Records(t *testing.T) {
	topics := testTopics(t, "golden", 2)
	var msgs []*sarama.ProducerMessage
	for _, f := range []struct {
		name, topic string
		partition   int32
	}{{"snapshots.jsonl", topics.Snapshots, 0}, {"events.jsonl", topics.Events, 1}} {
		for _, r := range readGolden(t, filepath.Join(goldenDir, "v1", f.name)) {
			m := &sarama.ProducerMessage{Topic: f.topic, Partition: f.partition, Key: sarama.StringEncoder(r.Key), Value: sarama.StringEncoder(r.Value)}
			for _, h := range r.Headers {
				m.Headers = append(m.Headers, sarama.RecordHeader{Key: []byte(h[0]), Value: []byte(h[1])})
			}
			msgs = append(msgs, m)
		}
	}
	kafkatest.SendToPartitions(t, testBrokers, msgs...)
	h := fenceTestHandler(t, topics, topics.Commands+".group")
	tp, err := h.newTxnProducer()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tp.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	restored, err := h.restore(ctx, tp, []int32{0, 1})
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	states := partitionStates{0: restoredOrders(t, restored, 0), 1: restoredOrders(t, restored, 1)}
	for p := range int32(2) {
		if len(states[p]) != 3 {
			t.Errorf("partition %d: %d orders restored, want the 3 of version 1", p, len(states[p]))
		}
		for _, rule := range domaintest.Golden {
			s := states[p][rule.Name]
			if rule.Name == "ord_golden_d" || s == nil {
				continue
			}
			if want := domain.Fold(rule.Given); !reflect.DeepEqual(s.Order, want) {
				t.Errorf("partition %d, %s:\n got  %+v\n want %+v", p, rule.Name, s.Order, want)
			}
		}
	}
	if s := states[0]["ord_golden_a"]; s == nil || s.find("k-a7") == nil || s.find("k-a7").Error == nil {
		t.Error("the refused command's recorded outcome was not restored")
	}
}
