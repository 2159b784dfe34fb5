package domain_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	. "github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/domain/domaintest"
	"github.com/ordergateway/gateway/view"
)

// TestGoldenEventsUpcastAndProject: the golden events of every folder
// (testdata/golden/v*/events.jsonl, written by the code of that time: v1
// before any shape changed), decoded as the projector and the
// handler decode them, are the events of the golden rules in today's shape,
// and project to the rules' views; the rules' own events project so too.
func TestGoldenEventsUpcastAndProject(t *testing.T) {
	domaintest.RunViews(t, domaintest.Golden)
	for _, dir := range goldenDirs(t) {
		path := filepath.Join(dir, "events.jsonl")
		t.Run(filepath.Base(dir), func(t *testing.T) {
			byOrder := map[string][]Event{}
			types := map[string]bool{}
			for i, value := range goldenValues(t, path) {
				e, err := UnmarshalEvent(value)
				if err != nil {
					t.Fatalf("record %d: %v", i+1, err)
				}
				byOrder[e.OrderID] = append(byOrder[e.OrderID], e)
				types[e.Data.EventType()] = true
			}
			for _, typ := range EventTypes() {
				if !types[typ] {
					t.Errorf("the golden events lack an %s", typ)
				}
			}
			seen := 0
			for _, rule := range domaintest.Golden {
				got, ok := byOrder[rule.Name]
				if !ok {
					continue // an order added to the golden history later
				}
				seen++
				if !reflect.DeepEqual(got, rule.Given) {
					t.Errorf("%s: decoded\n got  %+v\n want %+v", rule.Name, got, rule.Given)
				}
				domaintest.CheckView(t, domaintest.Project(got), rule.Then)
			}
			if seen != len(byOrder) {
				t.Errorf("%d orders in the golden events, %d of them in domaintest.Golden", len(byOrder), seen)
			}
		})
	}
}

// goldenDirs lists the golden records' folders, v1 (written before event
// versions existed) first.
func goldenDirs(t *testing.T) []string {
	t.Helper()
	var dirs []string
	for v := 1; ; v++ {
		dir := filepath.Join("testdata", "golden", fmt.Sprintf("v%d", v))
		if _, err := os.Stat(dir); err != nil {
			break
		}
		dirs = append(dirs, dir)
	}
	if len(dirs) < 2 {
		t.Fatalf("golden records in %v; want v1 and v2 at least", dirs)
	}
	return dirs
}

// goldenValues reads the values of a golden records file.
func goldenValues(t *testing.T, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out [][]byte
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r struct {
			Value string `json:"value"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, []byte(r.Value))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestUnmarshalOrder(t *testing.T) {
	cancelledV1 := []byte(`{"id":"o","status":"CANCELLED","cancellationReason":"r","version":2}`)
	for _, tc := range []struct {
		name    string
		version int
		in      []byte
		want    CancellationReasonCode
	}{
		{"v1 cancelled gets OTHER", 1, cancelledV1, ReasonOther},
		{"no version is v1", 0, cancelledV1, ReasonOther},
		{"v1 pending gets no code", 1, []byte(`{"id":"o","status":"PENDING","version":1}`), ""},
		{"v2 keeps its code", 2, []byte(`{"id":"o","status":"CANCELLED","cancellationReasonCode":"OUT_OF_STOCK","version":2}`), ReasonOutOfStock},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := UnmarshalOrder(tc.version, tc.in)
			if err != nil || o.CancellationReasonCode != tc.want || o.ID != "o" {
				t.Errorf("got %+v, %v; want reason code %q", o, err, tc.want)
			}
		})
	}
	for _, v := range []int{OrderVersion + 1, 99, -1} {
		_, err := UnmarshalOrder(v, []byte(`{}`))
		var newer *SchemaVersionError
		if !errors.As(err, &newer) || newer.Version != v {
			t.Errorf("version %d: %v, want a *SchemaVersionError", v, err)
		}
	}
}

func TestNewerEventIsASchemaVersionError(t *testing.T) {
	_, err := UnmarshalEvent([]byte(`{"orderId":"o","version":1,"type":"OrderPlaced","schemaVersion":99,"data":{"shape":"unknown"}}`))
	var newer *SchemaVersionError
	if !errors.As(err, &newer) || newer.Version != 99 || newer.Known != 1 || newer.What != "event OrderPlaced" {
		t.Fatalf("got %v, want a *SchemaVersionError for version 99", err)
	}
}

// TestProjectionRules: given an order's events, then its view (one row per
// rule; the golden rules are in TestGoldenEventsUpcastAndProject).
func TestProjectionRules(t *testing.T) {
	h := func(data ...EventData) []Event { return domaintest.History("o-view", data...) }
	at := func(i int) time.Time { return domaintest.At(i) }
	placed := OrderPlaced{CustomerID: "c", Currency: "EUR", Items: []Item{{SKU: "A", Name: "A", Quantity: 2, UnitPrice: 150}}}
	domaintest.RunViews(t, []domaintest.ViewCase{
		{
			Name:  "placed: pending, totals from the items",
			Given: h(placed),
			Then: view.OrderDoc{ID: "o-view", CustomerID: "c", Status: "PENDING", Currency: "EUR",
				Items: []view.ItemDoc{{SKU: "A", Name: "A", Quantity: 2, UnitPrice: 150, LineTotal: 300}}, ItemCount: 2, Total: 300,
				History: []view.ChangeDoc{{Status: "PENDING", At: at(0)}}, Version: 1, CreatedAt: at(0), UpdatedAt: at(0)},
		},
		{
			Name:  "the last item removed: no items, total 0, still pending",
			Given: h(placed, OrderItemRemoved{SKU: "A"}),
			Then: view.OrderDoc{ID: "o-view", CustomerID: "c", Status: "PENDING", Currency: "EUR", Items: []view.ItemDoc{},
				History: []view.ChangeDoc{{Status: "PENDING", At: at(0)}}, Version: 2, CreatedAt: at(0), UpdatedAt: at(1)},
		},
		{
			Name:  "cancelled with a code: reason, code and history entry; items kept",
			Given: h(placed, OrderCancelled{Reason: "stock count was wrong", ReasonCode: ReasonOutOfStock}),
			Then: view.OrderDoc{ID: "o-view", CustomerID: "c", Status: "CANCELLED", Currency: "EUR",
				Items: []view.ItemDoc{{SKU: "A", Name: "A", Quantity: 2, UnitPrice: 150, LineTotal: 300}}, ItemCount: 2, Total: 300,
				CancellationReason: "stock count was wrong", CancellationReasonCode: "OUT_OF_STOCK",
				History: []view.ChangeDoc{{Status: "PENDING", At: at(0)}, {Status: "CANCELLED", At: at(1), Reason: "stock count was wrong"}},
				Version: 2, CreatedAt: at(0), UpdatedAt: at(1)},
		},
	})
}
