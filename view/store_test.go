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

// Every lookup strategy (one $in, or one find per id) must give the same
// answers, so each runs the same checks.
func TestStoreWritesAndLookups(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t)
	for _, flavor := range []int32{flavorMongo, flavorFerret} {
		t.Run(map[int32]string{flavorMongo: "in", flavorFerret: "one-by-one"}[flavor], func(t *testing.T) {
			if err := s.Drop(ctx); err != nil {
				t.Fatal(err)
			}
			s.flavor.Store(flavor)

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

			if err := s.PutCustomer(ctx, CustomerDoc{ID: "cust-1", Rev: 3}, 0); err != nil {
				t.Fatal(err)
			}
			cs, err := s.CustomersByID(ctx, []string{"cust-1", "cust-2"})
			if err != nil || len(cs) != 1 || cs["cust-1"].Rev != 3 {
				t.Fatalf("CustomersByID = %+v, %v", cs, err)
			}
			if err := s.PutCustomer(ctx, CustomerDoc{ID: "cust-1", Rev: 5}, 2); !errors.Is(err, ErrConflict) {
				t.Fatalf("stale customer write: err = %v, want ErrConflict", err)
			}
		})
	}
}

func TestStoreDetectsFerretDB(t *testing.T) {
	if os.Getenv("MONGODB_URI") != "" {
		t.Skip("MONGODB_URI is set: the store under test is not the embedded FerretDB")
	}
	s := openTestStore(t)
	oneByOne, err := s.onFerretDB(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !oneByOne {
		t.Fatal("the embedded FerretDB was not recognised: lookups would scan the whole collection")
	}
}
