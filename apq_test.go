package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func sha256Hex(s string) string {
	b := sha256.Sum256([]byte(s))
	return hex.EncodeToString(b[:])
}

// rawGraphQL sends one request (POST of body, or GET with query as the
// query string) with the staff token and returns its status, headers and
// decoded response.
func rawGraphQL(t *testing.T, g *gateway, method string, body map[string]any, accept string) (int, http.Header, gqlResponse) {
	t.Helper()
	var req *http.Request
	if method == http.MethodGet {
		q := url.Values{}
		for k, v := range body {
			if s, ok := v.(string); ok {
				q.Set(k, s)
			} else {
				b, _ := json.Marshal(v)
				q.Set(k, string(b))
			}
		}
		req, _ = http.NewRequest(http.MethodGet, g.url+"/graphql?"+q.Encode(), nil)
	} else {
		b, _ := json.Marshal(body)
		req, _ = http.NewRequest(http.MethodPost, g.url+"/graphql", bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var r gqlResponse
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("%s: not JSON (%d): %s", method, resp.StatusCode, raw)
	}
	return resp.StatusCode, resp.Header, r
}

func pq(hash string) map[string]any {
	return map[string]any{"persistedQuery": map[string]any{"version": 1, "sha256Hash": hash}}
}

// TestPersistedQueries: Apollo's automatic persisted queries over POST and
// GET: a miss, registering, the hash alone, a wrong hash, a bad version, a
// mutation's hash over GET, and APQ turned off.
func TestPersistedQueries(t *testing.T) {
	g := startGateway(t, testConfig(t))
	const query = `query Q($id: ID!) { order(id: $id) { id } }`
	hash := sha256Hex(query)
	vars := map[string]any{"id": "apq-none"}

	for _, accept := range []string{"", "application/graphql-response+json"} {
		status, h, r := rawGraphQL(t, g, http.MethodPost, map[string]any{"extensions": pq(hash), "variables": vars}, accept)
		if status != 200 || r.code() != "PERSISTED_QUERY_NOT_FOUND" || r.Errors[0].Message != "PersistedQueryNotFound" || r.Data != nil ||
			h.Get("Cache-Control") != "private, no-cache, must-revalidate" {
			t.Errorf("miss (Accept %q): %d %q %+v", accept, status, h.Get("Cache-Control"), r)
		}
	}
	status, _, r := rawGraphQL(t, g, http.MethodGet, map[string]any{"extensions": pq(hash), "variables": vars}, "")
	if status != 200 || r.code() != "PERSISTED_QUERY_NOT_FOUND" {
		t.Errorf("GET miss: %d %+v", status, r)
	}
	// Registered with its query, then the hash alone, over POST and GET.
	status, _, r = rawGraphQL(t, g, http.MethodPost, map[string]any{"query": query, "extensions": pq(hash), "variables": vars}, "")
	if status != 200 || len(r.Errors) > 0 || string(r.Data) != `{"order":null}` {
		t.Errorf("register: %d %+v %s", status, r.Errors, r.Data)
	}
	for _, m := range []string{http.MethodPost, http.MethodGet} {
		status, _, r = rawGraphQL(t, g, m, map[string]any{"extensions": pq(strings.ToUpper(hash)), "variables": vars}, "")
		if status != 200 || len(r.Errors) > 0 || string(r.Data) != `{"order":null}` {
			t.Errorf("%s with the hash alone: %d %+v %s", m, status, r.Errors, r.Data)
		}
	}
	// Over a websocket too: a miss is an error message, a known hash runs.
	c := dialWS(t, g, wsDial{})
	if m := wsOperation(t, c, "1", map[string]any{"extensions": pq(sha256Hex(query + "\n")), "variables": vars}); m.Type != "error" || !strings.Contains(string(m.Payload), "PERSISTED_QUERY_NOT_FOUND") {
		t.Errorf("websocket miss: %s %s", m.Type, m.Payload)
	}
	if m := wsOperation(t, c, "2", map[string]any{"extensions": pq(hash), "variables": vars}); m.Type != "next" || !strings.Contains(string(m.Payload), `{"order":null}`) {
		t.Errorf("websocket, the hash alone: %s %s", m.Type, m.Payload)
	}
	// A hash that is not the query's.
	status, _, r = rawGraphQL(t, g, http.MethodPost, map[string]any{"query": query + " ", "extensions": pq(hash), "variables": vars}, "")
	if r.code() != "PERSISTED_QUERY_HASH_MISMATCH" || r.Data != nil {
		t.Errorf("mismatch: %d %+v", status, r)
	}
	status, _, r = rawGraphQL(t, g, http.MethodPost, map[string]any{"extensions": map[string]any{"persistedQuery": map[string]any{"version": 2, "sha256Hash": hash}}}, "")
	if status != 400 || r.code() != "BAD_REQUEST" {
		t.Errorf("version 2: %d %+v", status, r)
	}
	// A mutation registered over POST is still refused over GET by its hash.
	mutation := `mutation { confirmOrder(input: {orderId: "apq-none"}) { userErrors { code } } }`
	if _, _, r = rawGraphQL(t, g, http.MethodPost, map[string]any{"query": mutation, "extensions": pq(sha256Hex(mutation))}, ""); len(r.Errors) > 0 {
		t.Fatalf("register the mutation: %+v", r.Errors)
	}
	status, _, r = rawGraphQL(t, g, http.MethodGet, map[string]any{"extensions": pq(sha256Hex(mutation))}, "")
	if status != 405 || r.code() != "MUTATION_OVER_GET" {
		t.Errorf("a mutation's hash over GET: %d %+v", status, r)
	}

	t.Run("off", func(t *testing.T) {
		cfg := testConfig(t)
		cfg.APQCacheSize = -1 // APQ_CACHE_SIZE=0
		g := startGateway(t, cfg)
		status, _, r := rawGraphQL(t, g, http.MethodPost, map[string]any{"query": query, "extensions": pq(hash), "variables": vars}, "")
		if status != 200 || len(r.Errors) > 0 {
			t.Errorf("query with its hash, APQ off: %d %+v", status, r.Errors)
		}
		status, _, r = rawGraphQL(t, g, http.MethodPost, map[string]any{"extensions": pq(hash), "variables": vars}, "")
		if status != 200 || r.code() != "PERSISTED_QUERY_NOT_SUPPORTED" {
			t.Errorf("hash alone, APQ off: %d %+v", status, r)
		}
	})
}

// TestTrustedDocuments: with TRUSTED_DOCUMENTS_FILE only the manifest's
// documents run, by documentId (POST and GET, sha256:<hash> or bare), by
// APQ hash, or as their text, over HTTP and SSE; any other document is
// refused PERSISTED_QUERY_NOT_IN_LIST (403), an unknown documentId
// PERSISTED_QUERY_NOT_FOUND (404).
func TestTrustedDocuments(t *testing.T) {
	const known = `query Known($id: ID!) { order(id: $id) { id status } }`
	const sub = `subscription Watch($id: ID!) { orderUpdated(id: $id) { id } }`
	hash := sha256Hex(known)
	manifest, _ := json.Marshal(map[string]any{"format": "apollo-persisted-query-manifest", "version": 1, "operations": []map[string]any{
		{"id": hash, "name": "Known", "type": "query", "body": known},
		{"id": sha256Hex(sub), "name": "Watch", "type": "subscription", "body": sub},
	}})
	file := filepath.Join(t.TempDir(), "persisted-query-manifest.json")
	if err := os.WriteFile(file, manifest, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.TrustedDocumentsFile = file
	g := startGateway(t, cfg)
	vars := map[string]any{"id": "trusted-none"}
	ok := func(name string, status int, r gqlResponse) {
		t.Helper()
		if status != 200 || len(r.Errors) > 0 || string(r.Data) != `{"order":null}` {
			t.Errorf("%s: %d %+v %s", name, status, r.Errors, r.Data)
		}
	}
	for _, id := range []string{"sha256:" + hash, hash} {
		status, _, r := rawGraphQL(t, g, http.MethodPost, map[string]any{"documentId": id, "variables": vars}, "")
		ok("POST documentId "+id, status, r)
		status, _, r = rawGraphQL(t, g, http.MethodGet, map[string]any{"documentId": id, "variables": vars}, "")
		ok("GET documentId "+id, status, r)
	}
	status, _, r := rawGraphQL(t, g, http.MethodPost, map[string]any{"extensions": pq(hash), "variables": vars}, "")
	ok("APQ hash of a trusted document", status, r)
	status, _, r = rawGraphQL(t, g, http.MethodPost, map[string]any{"query": known, "variables": vars}, "")
	ok("a trusted document's text", status, r)

	other := `query { order(id: "x") { id } }`
	status, _, r = rawGraphQL(t, g, http.MethodPost, map[string]any{"query": other}, "")
	if status != 403 || r.code() != "PERSISTED_QUERY_NOT_IN_LIST" || r.Data != nil {
		t.Errorf("another document: %d %+v", status, r)
	}
	status, _, r = rawGraphQL(t, g, http.MethodPost, map[string]any{"query": other, "extensions": pq(sha256Hex(other))}, "")
	if status != 403 || r.code() != "PERSISTED_QUERY_NOT_IN_LIST" {
		t.Errorf("another document registered by APQ: %d %+v", status, r)
	}
	status, _, r = rawGraphQL(t, g, http.MethodPost, map[string]any{"documentId": "sha256:" + sha256Hex(other)}, "")
	if status != 404 || r.code() != "PERSISTED_QUERY_NOT_FOUND" {
		t.Errorf("unknown documentId: %d %+v", status, r)
	}
	status, _, r = rawGraphQL(t, g, http.MethodPost, map[string]any{"documentId": hash, "query": known}, "")
	if status != 400 || r.code() != "BAD_REQUEST" {
		t.Errorf("documentId and query: %d %+v", status, r)
	}

	// A websocket: a query by documentId runs, another document is refused
	// with an error message.
	c := dialWS(t, g, wsDial{})
	send := func(id string, payload map[string]any) wsMsg { t.Helper(); return wsOperation(t, c, id, payload) }
	if m := send("1", map[string]any{"documentId": "sha256:" + hash, "variables": vars}); m.Type != "next" || !strings.Contains(string(m.Payload), `{"order":null}`) {
		t.Errorf("websocket documentId: %s %s", m.Type, m.Payload)
	}
	if m := send("2", map[string]any{"query": other}); m.Type != "error" || !strings.Contains(string(m.Payload), "PERSISTED_QUERY_NOT_IN_LIST") {
		t.Errorf("websocket, another document: %s %s", m.Type, m.Payload)
	}

	// SSE: the trusted subscription starts (its first event is the order's
	// state, none here, so the stream stays open), another is refused.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp := sseAs(t, ctx, g, staffToken, sub, vars)
	if resp.StatusCode != 200 {
		t.Errorf("trusted subscription over SSE: %d", resp.StatusCode)
	}
	resp.Body.Close()
	resp = sseAs(t, ctx, g, staffToken, `subscription { orderUpdated(id: "y") { id status } }`, nil)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "PERSISTED_QUERY_NOT_IN_LIST") {
		t.Errorf("untrusted subscription over SSE: %d %s", resp.StatusCode, body)
	}
}

// TestApolloPersistedQueries runs Apollo Client's persisted-queries link
// (testdata/apollo: @apollo/client, its lockfile) under node against a
// gateway: a miss and the retry with the query, the hash alone from a new
// client, GET with the hash only, and mutations kept on POST.
func TestApolloPersistedQueries(t *testing.T) {
	node, errNode := exec.LookPath("node")
	_, errNpm := exec.LookPath("npm")
	if errNode != nil || errNpm != nil {
		t.Skip("node and npm are needed (apt-get install nodejs npm): Apollo Client runs under node")
	}
	dir := nodeModules(t)
	g := startGateway(t, testConfig(t))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "apq.mjs", g.url+"/graphql")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GATEWAY_TOKEN="+staffToken) // staff may place orders for any customer
	out, err := cmd.CombinedOutput()
	t.Logf("node apq.mjs:\n%s", out)
	if err != nil {
		t.Fatalf("node apq.mjs: %v", err)
	}
}

// wsOperation sends a subscribe message with payload and returns the
// operation's first next or error message.
func wsOperation(t *testing.T, c *wsClient, id string, payload map[string]any) wsMsg {
	t.Helper()
	b, _ := json.Marshal(payload)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.send(ctx, wsMsg{ID: id, Type: "subscribe", Payload: b}); err != nil {
		t.Fatal(err)
	}
	m, err := c.tryNext(5*time.Second, func(m wsMsg) bool { return m.ID == id && (m.Type == "next" || m.Type == "error") })
	if err != nil {
		t.Fatalf("websocket operation %s: %v", id, err)
	}
	return m
}

// nodeModules is testdata/apollo with its packages installed (npm ci from
// its lockfile, unless they are there already).
func nodeModules(t *testing.T) string {
	t.Helper()
	dir := filepath.Join("testdata", "apollo")
	for _, p := range []string{"@apollo/client", "graphql-ws", "ws"} {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", p, "package.json")); err == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
		}
		break
	}
	return dir
}
