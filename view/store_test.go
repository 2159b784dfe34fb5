package view

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/ordergateway/gateway/embedded"
)

// openTestStore opens a fresh database on MONGODB_URI if set, else on an
// embedded FerretDB of its own.
func openTestStore(t *testing.T) *Store {
	t.Helper()
	uri := os.Getenv("MONGODB_URI")
	if uri == "" {
		m, err := embedded.StartMongo(t.TempDir(), "127.0.0.1:0", nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Close)
		uri = m.URI()
	}
	s, err := Open(uri, fmt.Sprintf("viewtest_%d", time.Now().UnixNano()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.db.Drop(ctx)
		_ = s.Close(ctx)
	})
	return s
}

func testOrder(id string, version int) OrderDoc {
	at := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	return OrderDoc{ID: id, CustomerID: "cust-1", Status: "PLACED", Currency: "EUR", Items: []ItemDoc{}, History: []ChangeDoc{}, Version: version, CreatedAt: at, UpdatedAt: at}
}

// Every lookup strategy (one $in, or one find per id) and guard strategy
// (in the filter, or read first) must give the same answers, so each runs
// the same checks.
func TestStoreWritesAndLookups(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t)
	for _, v := range []struct {
		name          string
		flavor        int32
		guardInFilter bool // FilterGuards
	}{{"in", flavorMongo, false}, {"one-by-one", flavorFerret, false}, {"one-by-one, guards in the filter", flavorFerret, true}} {
		t.Run(v.name, func(t *testing.T) {
			if err := s.Drop(ctx); err != nil {
				t.Fatal(err)
			}
			s.flavor.Store(v.flavor)
			s.guardsInFilter = v.guardInFilter

			if err := s.PutOrders(ctx, []OrderWrite{{Doc: testOrder("a", 1)}, {Doc: testOrder("b", 1)}, {Doc: testOrder("c", 2)}}); err != nil {
				t.Fatalf("first writes: %v", err)
			}
			got, err := s.OrdersByID(ctx, []string{"a", "b", "missing", "c"})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 3 || got["a"].Version != 1 || got["c"].Version != 2 {
				t.Fatalf("OrdersByID after inserts = %+v, want a@1 b@1 c@2", got)
			}
			if one, err := s.OrdersByID(ctx, []string{"b"}); err != nil || one["b"].ID != "b" {
				t.Fatalf("OrdersByID(b) = %+v, %v", one, err)
			}

			// a moves 1→2 (right prev), b is claimed new again (conflict), c
			// is written with a stale prev (conflict): a is written anyway.
			err = s.PutOrders(ctx, []OrderWrite{{Doc: testOrder("a", 2), Prev: 1}, {Doc: testOrder("b", 2)}, {Doc: testOrder("c", 3), Prev: 1}})
			if !errors.Is(err, ErrConflict) {
				t.Fatalf("conflicting writes: err = %v, want ErrConflict", err)
			}
			got, err = s.OrdersByID(ctx, []string{"a", "b", "c"})
			if err != nil {
				t.Fatal(err)
			}
			if got["a"].Version != 2 || got["b"].Version != 1 || got["c"].Version != 2 {
				t.Fatalf("after conflicting writes: a@%d b@%d c@%d, want a@2 b@1 c@2", got["a"].Version, got["b"].Version, got["c"].Version)
			}

			if got, err := s.OrdersByID(ctx, nil); err != nil || len(got) != 0 {
				t.Fatalf("OrdersByID(nil) = %v, %v", got, err)
			}

			if err := s.PutCustomers(ctx, []CustomerWrite{{Doc: CustomerDoc{ID: "cust-1", Rev: 3}}, {Doc: CustomerDoc{ID: "cust-3", Rev: 1}}}); err != nil {
				t.Fatal(err)
			}
			cs, err := s.CustomersByID(ctx, []string{"cust-1", "cust-2", "cust-3"})
			if err != nil || len(cs) != 2 || cs["cust-1"].Rev != 3 {
				t.Fatalf("CustomersByID = %+v, %v", cs, err)
			}
			// cust-1 is stale, cust-3 moves on, cust-3 is claimed new again.
			err = s.PutCustomers(ctx, []CustomerWrite{{Doc: CustomerDoc{ID: "cust-1", Rev: 5}, Prev: 2}, {Doc: CustomerDoc{ID: "cust-3", Rev: 2}, Prev: 1}, {Doc: CustomerDoc{ID: "cust-3", Rev: 9}}})
			if !errors.Is(err, ErrConflict) {
				t.Fatalf("stale customer writes: err = %v, want ErrConflict", err)
			}
			cs, err = s.CustomersByID(ctx, []string{"cust-1", "cust-3"})
			if err != nil || cs["cust-1"].Rev != 3 || cs["cust-3"].Rev != 2 {
				t.Fatalf("after stale customer writes: %+v, %v; want cust-1@3 cust-3@2", cs, err)
			}
		})
	}
}

func TestStoreDetectsFerretDB(t *testing.T) {
	if os.Getenv("MONGODB_URI") != "" {
		t.Skip("MONGODB_URI is set: the store under test is not the embedded FerretDB")
	}
	s := openTestStore(t)
	ferret, err := s.onFerretDB(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !ferret {
		t.Fatal("the embedded FerretDB was not recognised: lookups would scan the whole collection")
	}
}

// A batch of a few hundred updates goes through, and so do several batches
// at once (FerretDB deadlocks when about 100 replaces of existing documents
// are in flight; see replaceAll).
func TestStoreWritesLargeBatches(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := openTestStore(t)
	const n = 300
	var writes []OrderWrite
	var customers []CustomerWrite
	for i := range n {
		writes = append(writes, OrderWrite{Doc: testOrder(fmt.Sprintf("o%03d", i), 1)})
		customers = append(customers, CustomerWrite{Doc: CustomerDoc{ID: fmt.Sprintf("c%03d", i), Rev: 1}})
	}
	if err := s.PutOrders(ctx, writes); err != nil {
		t.Fatal(err)
	}
	if err := s.PutCustomers(ctx, customers); err != nil {
		t.Fatal(err)
	}
	for i := range writes {
		writes[i] = OrderWrite{Doc: testOrder(writes[i].Doc.ID, 2), Prev: 1}
		customers[i] = CustomerWrite{Doc: CustomerDoc{ID: customers[i].Doc.ID, Rev: 2}, Prev: 1}
	}
	if err := s.PutOrders(ctx, writes); err != nil {
		t.Fatalf("replacing %d orders: %v", n, err)
	}
	if err := s.PutCustomers(ctx, customers); err != nil {
		t.Fatalf("replacing %d customers: %v", n, err)
	}
	ids := make([]string, n)
	for i := range writes {
		ids[i] = writes[i].Doc.ID
	}
	got, err := s.OrdersByID(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if got[id].Version != 2 {
			t.Fatalf("order %s at version %d after the batch, want 2", id, got[id].Version)
		}
	}
}

func TestStoreWritesConcurrentBatches(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := openTestStore(t)
	const writers, n = 8, 60
	batches := make([][]OrderWrite, writers)
	for w := range batches {
		for i := range n {
			batches[w] = append(batches[w], OrderWrite{Doc: testOrder(fmt.Sprintf("w%d-o%03d", w, i), 1)})
		}
		if err := s.PutOrders(ctx, batches[w]); err != nil {
			t.Fatal(err)
		}
		for i := range batches[w] {
			batches[w][i] = OrderWrite{Doc: testOrder(batches[w][i].Doc.ID, 2), Prev: 1}
		}
	}
	errs := make(chan error, writers)
	for _, b := range batches {
		go func() { errs <- s.PutOrders(ctx, b) }()
	}
	for range writers {
		if err := <-errs; err != nil {
			t.Fatalf("%d concurrent batches of %d replaces: %v", writers, n, err)
		}
	}
}

// An urgent waiter (an order write) gets the turn before a waiter that came
// earlier but is not urgent (a summary write).
func TestWriteTurnUrgentFirst(t *testing.T) {
	var turn writeTurn
	ctx := context.Background()
	_ = turn.acquire(ctx, false)
	order := make(chan string, 2)
	urgentWaiting := func() bool {
		turn.mu.Lock()
		defer turn.mu.Unlock()
		return turn.urgents > 0
	}
	go func() { _ = turn.acquire(ctx, false); order <- "summary"; turn.release() }()
	time.Sleep(20 * time.Millisecond) // let the summary writer queue first
	go func() { _ = turn.acquire(ctx, true); order <- "order"; turn.release() }()
	for !urgentWaiting() {
		time.Sleep(time.Millisecond)
	}
	turn.release()
	if first, second := <-order, <-order; first != "order" || second != "summary" {
		t.Fatalf("turn order: %s then %s, want order then summary", first, second)
	}
}

// A waiter whose context ends gives up without the turn; an urgent one that
// gives up lets the non-urgent waiters behind it go.
func TestWriteTurnWaitEndsWithContext(t *testing.T) {
	var turn writeTurn
	if err := turn.acquire(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := turn.acquire(ctx, true); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("acquire with an ending context: %v, want the context's error", err)
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Fatalf("acquire gave up after %s", waited)
	}
	summary := make(chan error, 1)
	go func() { summary <- turn.acquire(context.Background(), false) }()
	urgent, cancelUrgent := context.WithCancel(context.Background())
	urgentDone := make(chan error, 1)
	go func() { urgentDone <- turn.acquire(urgent, true) }()
	for {
		turn.mu.Lock()
		n := turn.urgents
		turn.mu.Unlock()
		if n > 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancelUrgent()
	if err := <-urgentDone; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled urgent waiter: %v", err)
	}
	turn.release()
	select {
	case err := <-summary:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the non-urgent waiter did not get the turn after the urgent one gave up")
	}
	turn.release()
}

// A SoleWriter store on FerretDB trusts a write's Prev instead of reading
// the stored guard: a stale Prev is written (another process's change would
// be overwritten, which is why only a sole writer may say so), a missing
// document still conflicts, and the MongoDB path keeps its guard in the
// filter.
func TestSoleWriterTrustsPrev(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t)
	for _, tc := range []struct {
		name       string
		flavor     int32
		soleWriter bool
		staleWins  bool
	}{
		{"ferret", flavorFerret, false, false},
		{"ferret sole writer", flavorFerret, true, true},
		{"mongo sole writer", flavorMongo, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.Drop(ctx); err != nil {
				t.Fatal(err)
			}
			s.flavor.Store(tc.flavor)
			s.soleWriter = tc.soleWriter
			defer func() { s.soleWriter = false }()
			if err := s.PutOrders(ctx, []OrderWrite{{Doc: testOrder("a", 1)}}); err != nil {
				t.Fatal(err)
			}
			if err := s.PutOrders(ctx, []OrderWrite{{Doc: testOrder("a", 2), Prev: 1}}); err != nil {
				t.Fatalf("write with the right Prev: %v", err)
			}
			err := s.PutOrders(ctx, []OrderWrite{{Doc: testOrder("a", 4), Prev: 3}})
			got, gerr := s.OrdersByID(ctx, []string{"a"})
			if gerr != nil {
				t.Fatal(gerr)
			}
			if tc.staleWins {
				if err != nil || got["a"].Version != 4 {
					t.Fatalf("stale Prev on a sole writer: err = %v, stored a@%d; want nil, a@4 (no guard read)", err, got["a"].Version)
				}
			} else if !errors.Is(err, ErrConflict) || got["a"].Version != 2 {
				t.Fatalf("stale Prev: err = %v, stored a@%d; want ErrConflict, a@2", err, got["a"].Version)
			}
			if err := s.PutCustomers(ctx, []CustomerWrite{{Doc: CustomerDoc{ID: "gone", Rev: 2}, Prev: 1}}); !errors.Is(err, ErrConflict) {
				t.Fatalf("replace of a missing summary: err = %v, want ErrConflict", err)
			}
			if cs, err := s.CustomersByID(ctx, []string{"gone"}); err != nil || len(cs) != 0 {
				t.Fatalf("replace of a missing summary created %+v (%v)", cs, err)
			}
		})
	}
}
