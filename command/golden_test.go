package command

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/kafka"
)

// updateGolden rewrites the golden records of the schema version this code
// writes (never those of older versions: they record what older code wrote).
var updateGolden = flag.Bool("update-golden", false, "write domain/testdata/golden/v<EventSchemaVersion>/ from this code")

// goldenDir holds one folder per schema version, v1, v2, ...
const goldenDir = "../domain/testdata/golden"

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

var goldenT0 = time.Date(2026, time.March, 2, 10, 0, 0, 0, time.UTC)

func goldenAt(minutes int) time.Time { return goldenT0.Add(time.Duration(minutes) * time.Minute) }

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
// golden history are byte for byte the golden records of the schema version
// it writes. A change of an event's or a snapshot's shape fails here until
// the version is raised, an upcaster from the previous version written and
// the new version's golden records added (go test ./command -run
// TestGoldenRecordsOfThisVersion -update-golden).
func TestGoldenRecordsOfThisVersion(t *testing.T) {
	events, snapshots := goldenRecords(t)
	dir := filepath.Join(goldenDir, fmt.Sprintf("v%d", domain.EventSchemaVersion))
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
