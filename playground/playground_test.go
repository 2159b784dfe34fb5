package playground

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/ordergateway/gateway/graph"
)

func newServer(t *testing.T, opts Options) *httptest.Server {
	t.Helper()
	h, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

var (
	attrURL    = regexp.MustCompile(`(?:src|href)="([^"]*)"`)
	anyScheme  = regexp.MustCompile(`(?i)(?:https?:|wss?:)?//[a-z0-9.-]+`)
	configJSON = regexp.MustCompile(`(?s)<script type="application/json" id="playground-config">(.*?)</script>`)
)

// TestPageIsSelfContained: the page names no other origin, and every script
// and stylesheet it references is served here, with its media type, cached
// for good; the page itself is not cached and carries a strict policy.
func TestPageIsSelfContained(t *testing.T) {
	srv := newServer(t, Options{Title: "Order gateway", Endpoint: "/graphql"})
	resp, page := get(t, srv.URL+"/")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("GET /: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("page Cache-Control %q", cc)
	}
	if m := anyScheme.FindAllString(page, -1); len(m) > 0 {
		t.Errorf("the page names other origins: %q", m)
	}
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self';", "connect-src 'self';", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-") || strings.Contains(csp, "http") {
		t.Errorf("Content-Security-Policy %q allows too much", csp)
	}
	// Inline scripts and styles would be refused by that policy: the only
	// <script> without src is the JSON data block.
	if n := strings.Count(page, "<script"); n != strings.Count(page, "<script src=")+1 {
		t.Errorf("inline script in the page:\n%s", page)
	}
	if strings.Contains(page, "<style") || strings.Contains(page, "style=") {
		t.Errorf("inline style in the page:\n%s", page)
	}

	refs := attrURL.FindAllStringSubmatch(page, -1)
	want := map[string]string{
		"graphiql.min.js": "text/javascript", "react.production.min.js": "text/javascript",
		"react-dom.production.min.js": "text/javascript", "page.js": "text/javascript",
		"graphiql.min.css": "text/css", "page.css": "text/css",
	}
	seen := map[string]bool{}
	for _, m := range refs {
		u := m[1]
		if strings.HasPrefix(u, "data:") {
			continue
		}
		if !strings.HasPrefix(u, Prefix) {
			t.Errorf("reference %q is not under %s", u, Prefix)
			continue
		}
		base := u[strings.LastIndex(u, "/")+1:]
		resp, body := get(t, srv.URL+u)
		if resp.StatusCode != 200 {
			t.Errorf("GET %s: %d", u, resp.StatusCode)
			continue
		}
		ct := resp.Header.Get("Content-Type")
		if wantType, ok := want[base]; !ok || !strings.HasPrefix(ct, wantType+";") {
			t.Errorf("GET %s: Content-Type %q, want %q", u, ct, want[base])
		}
		if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "max-age=31536000") || !strings.Contains(cc, "immutable") {
			t.Errorf("GET %s: Cache-Control %q", u, cc)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no nosniff", u)
		}
		if len(body) == 0 {
			t.Errorf("GET %s: empty", u)
		}
		seen[base] = true
	}
	for base := range want {
		if !seen[base] {
			t.Errorf("the page does not reference %s", base)
		}
	}
}

// TestTabsAreTheExamples: the page's configuration holds every example of
// tabs/, in order, with its variables, and no headers unless given.
func TestTabsAreTheExamples(t *testing.T) {
	srv := newServer(t, Options{Endpoint: "/graphql"})
	first, page := get(t, srv.URL+"/")
	var cfg struct {
		Endpoint   string `json:"endpoint"`
		Headers    string `json:"headers"`
		StyleNonce string `json:"styleNonce"`
		Tabs       []tab  `json:"tabs"`
	}
	m := configJSON.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no configuration in the page:\n%s", page)
	}
	if err := json.Unmarshal([]byte(m[1]), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Endpoint != "/graphql" || cfg.Headers != "" || len(cfg.StyleNonce) < 16 {
		t.Errorf("configuration %+v", cfg)
	}
	names := []string{"mutation PlaceOrder", "subscription WatchCustomer", "mutation ConfirmOrder", "query Order"}
	if len(cfg.Tabs) != len(names) {
		t.Fatalf("%d tabs, want %d", len(cfg.Tabs), len(names))
	}
	for i, n := range names {
		if !strings.Contains(cfg.Tabs[i].Query, n+"(") && !strings.Contains(cfg.Tabs[i].Query, n+" {") {
			t.Errorf("tab %d is not %s:\n%s", i, n, cfg.Tabs[i].Query)
		}
		if cfg.Tabs[i].Headers != "" {
			t.Errorf("tab %d has headers %q", i, cfg.Tabs[i].Headers)
		}
	}
	if !strings.Contains(cfg.Tabs[0].Variables, `"customerId": "c-1"`) {
		t.Errorf("PlaceOrder's variables: %s", cfg.Tabs[0].Variables)
	}
	if !strings.Contains(first.Header.Get("Content-Security-Policy"), "'nonce-"+cfg.StyleNonce+"'") {
		t.Error("the policy does not carry the page's style nonce")
	}
	_, again := get(t, srv.URL+"/")
	if configJSON.FindStringSubmatch(again)[1] == m[1] {
		t.Error("two pages have the same nonce")
	}
}

func resp(t *testing.T, url string) *http.Response {
	r, _ := get(t, url)
	return r
}

// TestHeadersOption: headers given by Options.Headers start every tab and
// new ones, escaped so they cannot end the data block.
func TestHeadersOption(t *testing.T) {
	srv := newServer(t, Options{Headers: func(*http.Request) map[string]string {
		return map[string]string{"Authorization": "Bearer </script><b>x"}
	}})
	_, page := get(t, srv.URL+"/")
	if strings.Contains(page, "</script><b>") {
		t.Fatal("a header value ended the data block")
	}
	var cfg struct {
		Headers string `json:"headers"`
		Tabs    []tab  `json:"tabs"`
	}
	if err := json.Unmarshal([]byte(configJSON.FindStringSubmatch(page)[1]), &cfg); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(cfg.Headers, `"Authorization": "Bearer \u003c/script\u003e\u003cb\u003ex"`) && !strings.Contains(cfg.Headers, `"Authorization": "Bearer </script><b>x"`) {
		t.Errorf("headers %q", cfg.Headers)
	}
	for i, tb := range cfg.Tabs {
		if tb.Headers != cfg.Headers {
			t.Errorf("tab %d headers %q", i, tb.Headers)
		}
	}
}

// TestUnknownPaths: anything but the page and the current assets is 404,
// including an asset under another hash and the source map the bundle names.
func TestUnknownPaths(t *testing.T) {
	h, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	js := h.URL("assets/graphiql/graphiql.min.js")
	if js == "" {
		t.Fatal("no URL for graphiql.min.js")
	}
	dir := js[:strings.LastIndex(js, "/")+1]
	for _, p := range []string{
		Prefix, Prefix + "graphiql/graphiql.min.js", Prefix + "000000000000/graphiql/graphiql.min.js",
		dir + "index.umd.js.map", dir + "../tabs/1-place-order.graphql", "/index.html", "/favicon.ico",
		js + "x", js + "/",
	} {
		if r := resp(t, srv.URL+p); r.StatusCode != 404 {
			t.Errorf("GET %s: %d, want 404", p, r.StatusCode)
		}
	}
	for _, lic := range []string{"assets/graphiql/LICENSE", "assets/react/LICENSE", "assets/react-dom/LICENSE", "assets/PACKAGES"} {
		u := h.URL(lic)
		r, body := get(t, srv.URL+u)
		if r.StatusCode != 200 || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/plain") || len(body) == 0 {
			t.Errorf("GET %s (%s): %d %q", u, lic, r.StatusCode, r.Header.Get("Content-Type"))
		}
	}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/", nil)
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /: %d", r.StatusCode)
	}
}

// TestSchemaInThePage: with Options.Schema the page loads the schema's
// introspection from schema.js (made in process, so GraphiQL sends no
// introspection request), served like every asset.
func TestSchemaInThePage(t *testing.T) {
	h, err := New(Options{Schema: graph.NewExecutableSchema(graph.Config{})})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	u := h.URL("schema.js")
	_, page := get(t, srv.URL+"/")
	if u == "" || !strings.Contains(page, `<script src="`+u+`" defer></script>`) {
		t.Fatalf("the page does not load schema.js (%q):\n%s", u, page)
	}
	if strings.Index(page, u) > strings.Index(page, h.URL("page.js")) {
		t.Error("schema.js comes after page.js")
	}
	r, body := get(t, srv.URL+u)
	if r.StatusCode != 200 || r.Header.Get("Content-Type") != "text/javascript; charset=utf-8" || !strings.Contains(r.Header.Get("Cache-Control"), "immutable") {
		t.Fatalf("GET %s: %d %q %q", u, r.StatusCode, r.Header.Get("Content-Type"), r.Header.Get("Cache-Control"))
	}
	js, ok := strings.CutPrefix(body, "window.playgroundSchema = ")
	if !ok {
		t.Fatalf("schema.js starts %.60q", body)
	}
	var data struct {
		Schema struct {
			QueryType        struct{ Name string }
			SubscriptionType struct{ Name string }
			Types            []struct{ Name string }
		} `json:"__schema"`
	}
	if err := json.Unmarshal([]byte(strings.TrimSuffix(js, ";\n")), &data); err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, ty := range data.Schema.Types {
		names[ty.Name] = true
	}
	if data.Schema.QueryType.Name != "Query" || data.Schema.SubscriptionType.Name != "Subscription" || !names["Order"] || !names["PlaceOrderInput"] {
		t.Errorf("introspection: %+v", data.Schema.QueryType)
	}
}
