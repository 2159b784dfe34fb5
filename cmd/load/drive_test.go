package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

// TestMutationBodiesAreWhatJSONWouldWrite: the hand-written place and
// confirm bodies decode to what json.Marshal of the query and variables
// would give, with a fresh 24-hex-digit idempotency key each, and an order
// id that needs escaping stays intact.
func TestMutationBodiesAreWhatJSONWouldWrite(t *testing.T) {
	bodies := make(chan []byte, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies <- b
		io.WriteString(w, `{"data":{"m":{"order":{"id":"o-1","status":"PENDING","version":1},"version":1,"consistencyToken":"t","userErrors":[]}}}`)
	}))
	defer srv.Close()
	c := &client{conns: newTestConns(t, strings.TrimPrefix(srv.URL, "http://")), id: 7, token: "tok"}
	decode := func(b []byte) map[string]any {
		t.Helper()
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		var v map[string]any
		if err := d.Decode(&v); err != nil || d.More() {
			t.Fatalf("body %s: %v", b, err)
		}
		return v
	}
	keys := map[string]bool{}
	check := func(query string, in map[string]any) {
		t.Helper()
		got := decode(<-bodies)
		key, _ := got["variables"].(map[string]any)["in"].(map[string]any)["idempotencyKey"].(string)
		if k, err := hex.DecodeString(key); err != nil || len(k) != 12 || keys[key] {
			t.Fatalf("idempotency key %q: want 24 fresh hex digits", key)
		}
		keys[key] = true
		in["idempotencyKey"] = key
		want, _ := json.Marshal(map[string]any{"query": query, "variables": map[string]any{"in": in}})
		if !reflect.DeepEqual(got, decode(want)) {
			t.Fatalf("body\n%v\nwant what json.Marshal writes:\n%v", got, decode(want))
		}
	}
	ctx := context.Background()
	for range 2 {
		if _, err := c.place(ctx); err != nil {
			t.Fatal(err)
		}
		check(placeMutation, map[string]any{"customerId": "load-c7", "currencyCode": "EUR", "items": []any{
			map[string]any{"sku": "TEA", "name": "Green tea", "quantity": 2, "unitPrice": "4.50"},
			map[string]any{"sku": "CUP", "name": "Cup", "quantity": 1, "unitPrice": "12.00"},
		}})
		if _, err := c.confirm(ctx, "o-\"quoted\"\\é", 12); err != nil {
			t.Fatal(err)
		}
		check(confirmMutation, map[string]any{"orderId": "o-\"quoted\"\\é", "expectedVersion": 12})
	}
}
