package main

import (
	"encoding/json"
	"fmt"
	"testing"
)

// TestRelayNodes: node(id:) and nodes(ids:) answer an order by its id under
// the rules of order(id:): a customer gets their own orders and null for
// another customer's or a missing one, staff get every order, a
// consistencyToken waits for its write, and more than MaxNodes ids are
// refused with INVALID_INPUT.
func TestRelayNodes(t *testing.T) {
	g := startGateway(t, testConfig(t))
	alice, bob := "relay-alice", "relay-bob"
	aliceTok, bobTok := customerToken(alice), customerToken(bob)
	place := func(token, customer string) (string, string) {
		t.Helper()
		r := g.doAs(t, token, mutation("placeOrder"), map[string]any{"input": placeInput(customer, item("A", 1, "2.50"))})
		p := payloadOf(t, r)
		if p == nil || p.Order == nil || len(p.UserErrors) > 0 {
			t.Fatalf("placeOrder for %s: %+v %+v", customer, r.Errors, p)
		}
		return p.Order.ID, *p.ConsistencyToken
	}
	aliceOrder, aliceCT := place(aliceTok, alice)
	bobOrder, bobCT := place(bobTok, bob)

	const nodeQ = `query($id: ID!, $t: String) { node(id: $id, consistencyToken: $t) { __typename id ... on Order { customerId status } } }`
	type node struct {
		Typename   string `json:"__typename"`
		ID         string `json:"id"`
		CustomerID string `json:"customerId"`
		Status     string `json:"status"`
	}
	nodeAs := func(token, id, ct string) *node {
		t.Helper()
		r := g.doAs(t, token, nodeQ, map[string]any{"id": id, "t": ct})
		if len(r.Errors) > 0 || r.Extensions["consistency"] != nil {
			t.Fatalf("node(%s): %+v %v", id, r.Errors, r.Extensions)
		}
		var out struct{ Node *node }
		if err := json.Unmarshal(r.Data, &out); err != nil {
			t.Fatal(err)
		}
		return out.Node
	}
	if n := nodeAs(aliceTok, aliceOrder, aliceCT); n == nil || n.Typename != "Order" || n.ID != aliceOrder || n.CustomerID != alice || n.Status != "PENDING" {
		t.Errorf("alice's node(her order) = %+v", n)
	}
	if n := nodeAs(staffToken, bobOrder, bobCT); n == nil || n.ID != bobOrder || n.CustomerID != bob {
		t.Errorf("staff's node(bob's order) = %+v", n)
	}
	// Bob's order is in the views now (a customer's wait on another
	// customer's token runs out as for a missing order: not tried here).
	if n := nodeAs(aliceTok, bobOrder, ""); n != nil {
		t.Errorf("alice's node(bob's order) = %+v, want null (another customer's order reads as missing)", n)
	}
	if n := nodeAs(aliceTok, "no-such-order", ""); n != nil {
		t.Errorf("node(missing) = %+v, want null", n)
	}
	// The same id as order(id:) takes.
	var byOrder struct{ Order *struct{ ID string } }
	if err := json.Unmarshal(g.doAs(t, aliceTok, `query($id: ID!) { order(id: $id) { id } }`, map[string]any{"id": aliceOrder}).Data, &byOrder); err != nil || byOrder.Order == nil || byOrder.Order.ID != aliceOrder {
		t.Errorf("order(id: %s) = %+v, %v", aliceOrder, byOrder.Order, err)
	}

	const nodesQ = `query($ids: [ID!]!) { nodes(ids: $ids) { id ... on Order { customerId } } }`
	nodesAs := func(token string, ids []string) []*node {
		t.Helper()
		r := g.doAs(t, token, nodesQ, map[string]any{"ids": ids})
		if len(r.Errors) > 0 {
			t.Fatalf("nodes(%v): %+v", ids, r.Errors)
		}
		var out struct{ Nodes []*node }
		if err := json.Unmarshal(r.Data, &out); err != nil {
			t.Fatal(err)
		}
		return out.Nodes
	}
	ids := []string{aliceOrder, "no-such-order", bobOrder, aliceOrder}
	got := nodesAs(aliceTok, ids)
	if len(got) != 4 || got[0] == nil || got[0].ID != aliceOrder || got[1] != nil || got[2] != nil || got[3] == nil || got[3].ID != aliceOrder {
		t.Errorf("alice's nodes(%v) = %s", ids, show(got))
	}
	got = nodesAs(staffToken, ids)
	if len(got) != 4 || got[0] == nil || got[1] != nil || got[2] == nil || got[2].ID != bobOrder || got[3] == nil {
		t.Errorf("staff's nodes(%v) = %s", ids, show(got))
	}
	if got := nodesAs(aliceTok, []string{}); len(got) != 0 {
		t.Errorf("nodes([]) = %s", show(got))
	}

	many := make([]string, 101)
	for i := range many {
		many[i] = fmt.Sprintf("order-%d", i)
	}
	if got := nodesAs(staffToken, many[:100]); len(got) != 100 {
		t.Errorf("nodes of 100 ids: %d entries", len(got))
	}
	r := g.doAs(t, staffToken, nodesQ, map[string]any{"ids": many})
	if r.code() != "INVALID_INPUT" || string(r.Data) != "null" {
		t.Errorf("nodes of 101 ids: code %q, data %s, errors %+v; want INVALID_INPUT and null data", r.code(), r.Data, r.Errors)
	}
}

func show(v any) string { b, _ := json.Marshal(v); return string(b) }
