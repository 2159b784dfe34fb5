package graph

import (
	"fmt"
	"testing"
)

func TestSharedResults(t *testing.T) {
	var s sharedResults
	q := "subscription($id: ID!) { orderUpdated(id: $id) { id } }"
	k1 := shareKey(q, "", map[string]any{"id": "o1", "x": 1})
	if k2 := shareKey(q, "", map[string]any{"x": 1, "id": "o1"}); k2 != k1 {
		t.Fatal("the same variables in another order make another key")
	}
	for _, other := range []string{shareKey(q, "", map[string]any{"id": "o2", "x": 1}), shareKey(q, "Op", map[string]any{"id": "o1", "x": 1}), shareKey(q+" ", "", map[string]any{"id": "o1", "x": 1})} {
		if other == k1 {
			t.Fatalf("another variable, operation or query shares the key %q", k1)
		}
	}

	a, b := s.join(k1), s.join(k1)
	if a != b {
		t.Fatal("two subscriptions of one query got different groups")
	}
	c := s.join(shareKey(q, "", map[string]any{"id": "o2"}))
	s.put(a, "o1", 2, []byte("v2"))
	if got := s.get(b, "o1", 2); string(got) != "v2" {
		t.Fatalf("get o1@2 = %q, want v2", got)
	}
	if s.get(b, "o1", 1) != nil || s.get(b, "o1", 3) != nil || s.get(c, "o1", 2) != nil {
		t.Fatal("a result was shared for another version or another query")
	}
	s.put(a, "o1", 1, []byte("v1")) // older than what the group holds: ignored
	if got := s.get(a, "o1", 2); string(got) != "v2" {
		t.Fatalf("an older put replaced the newer result: %q", got)
	}
	s.put(a, "o9", 1, []byte("o9v1"))
	if string(s.get(a, "o1", 2)) != "v2" || string(s.get(a, "o9", 1)) != "o9v1" {
		t.Fatal("a group keeps one result per order")
	}
	for i := range maxSharedOrders + 1 { // bounded
		s.put(a, fmt.Sprint("many-", i), 1, []byte("x"))
	}
	if n := len(a.byOrder); n > maxSharedOrders {
		t.Fatalf("a group holds %d orders, more than %d", n, maxSharedOrders)
	}

	s.leave(a)
	if len(s.groups) != 2 {
		t.Fatalf("%d groups after one of two subscribers left, want 2", len(s.groups))
	}
	s.leave(b)
	s.leave(c)
	if len(s.groups) != 0 {
		t.Fatalf("%d groups after every subscriber left, want 0", len(s.groups))
	}
	if s.join("") != nil {
		t.Fatal("an empty key joined a group")
	}
	s.leave(nil)
	if s.get(nil, "o1", 2) != nil {
		t.Fatal("nil group returned a result")
	}
}
