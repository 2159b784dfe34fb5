package main

import (
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// preflight sends a browser's CORS preflight for a POST to /graphql from
// origin and returns the status and the Access-Control-* headers.
func preflight(t *testing.T, g *gateway, origin string) (int, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodOptions, g.url+"/graphql", nil)
	req.Header.Set("Origin", origin)
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
	withoutToken(req.Header) // a browser's preflight carries no credentials
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	cors := http.Header{}
	for k, v := range resp.Header {
		if strings.HasPrefix(k, "Access-Control-") || k == "Vary" {
			cors[k] = v
		}
	}
	return resp.StatusCode, cors
}

// TestCORSOnTheServer: /graphql answers CORS preflights (which carry no
// token) as CORS_ALLOWED_ORIGINS says: by default the ALLOWED_ORIGINS list (the
// tests' localhost:* and 127.0.0.1:*), a list of its own, or "none" (only
// the gateway's own origin); a JSON request from an allowed page gets
// Access-Control-Allow-Origin with its answer, one from another page none.
func TestCORSOnTheServer(t *testing.T) {
	wantPreflight := func(t *testing.T, g *gateway, origin string, allowed bool) {
		t.Helper()
		status, h := preflight(t, g, origin)
		switch {
		case allowed && (status != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != origin ||
			h.Get("Access-Control-Allow-Methods") == "" || h.Get("Access-Control-Allow-Headers") == "" || h.Get("Access-Control-Max-Age") == ""):
			t.Errorf("preflight from %s: %d %v, want 204 with Allow-Origin, -Methods, -Headers and Max-Age", origin, status, h)
		case !allowed && (status != http.StatusForbidden || h.Get("Access-Control-Allow-Origin") != "" || h.Get("Access-Control-Allow-Methods") != ""):
			t.Errorf("preflight from %s: %d %v, want 403 without CORS headers", origin, status, h)
		}
		if !strings.Contains(strings.Join(h.Values("Vary"), ","), "Origin") {
			t.Errorf("preflight from %s: no Vary: Origin (%v)", origin, h)
		}
	}
	t.Run("default: ALLOWED_ORIGINS", func(t *testing.T) {
		g := startGateway(t, testConfig(t))
		wantPreflight(t, g, "http://localhost:5173", true)
		wantPreflight(t, g, "http://127.0.0.1:3000", true)
		wantPreflight(t, g, "https://evil.example", false)
		// A query from an allowed page may be read by it; from another
		// page it is answered (CORS is not access control) without the
		// header, so the browser keeps the answer from the page.
		for origin, allowed := range map[string]bool{"http://localhost:5173": true, "https://evil.example": false} {
			req, _ := http.NewRequest(http.MethodPost, g.url+"/graphql", strings.NewReader(`{"query": "{ __typename }"}`))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Origin", origin)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := resp.Header.Get("Access-Control-Allow-Origin"); resp.StatusCode != http.StatusOK || (got == origin) != allowed || (!allowed && got != "") {
				t.Errorf("POST from %s: %d, Allow-Origin %q", origin, resp.StatusCode, got)
			}
		}
	})
	t.Run("a list of its own", func(t *testing.T) {
		cfg := testConfig(t)
		cfg.CORSAllowedOrigins = []string{"shop.example.com", "*.shop.example.com"}
		g := startGateway(t, cfg)
		wantPreflight(t, g, "https://shop.example.com", true)
		wantPreflight(t, g, "https://eu.shop.example.com", true)
		wantPreflight(t, g, "http://localhost:5173", false) // in ALLOWED_ORIGINS, not in CORS_ALLOWED_ORIGINS
		wantPreflight(t, g, "https://shop.example.com.evil.example", false)
	})
	t.Run("none", func(t *testing.T) {
		cfg := testConfig(t)
		cfg.CORSAllowedOrigins = []string{}
		g := startGateway(t, cfg)
		wantPreflight(t, g, "http://localhost:5173", false)
		wantPreflight(t, g, "https://shop.example.com", false)
		wantPreflight(t, g, "http://"+strings.TrimPrefix(g.url, "http://"), true) // the gateway's own origin
	})
}

// TestCrossSiteMutationsDoNotRun: what a page of another site can send
// without a preflight (a POST of text/plain, application/x-www-form-
// urlencoded or multipart/form-data, or a GET) never runs a mutation, with
// or without Apollo's preflight headers (the gateway takes JSON bodies
// only, which is stricter than Apollo's rule): each is refused (415, or
// 405 for GET) and no order is placed, whether it carries no token (as a
// browser's would) or the customer's own (so only the media type stops it).
// The same mutation sent as application/json with the token runs.
func TestCrossSiteMutationsDoNotRun(t *testing.T) {
	g := startGateway(t, testConfig(t))
	const customer = "c-csrf"
	mutation := `mutation { placeOrder(input: {customerId: "` + customer + `", currencyCode: "USD", items: [{sku: "X", name: "X", quantity: 1, unitPrice: "1.00"}]}) { order { id } userErrors { code } } }`
	body, _ := json.Marshal(map[string]any{"query": mutation})

	var multi bytes.Buffer
	mw := multipart.NewWriter(&multi)
	mw.WriteField("operations", string(body)) // the GraphQL multipart request spec's field
	mw.WriteField("map", "{}")
	mw.Close()

	type attempt struct {
		name, method, contentType, body string
		header                          map[string]string
		status                          int
		code                            string
	}
	var attempts []attempt
	bearer := "Bearer " + customerToken(customer)
	for _, h := range []map[string]string{
		{"Authorization": ""}, {"Authorization": bearer},
		{"Authorization": bearer, "Apollo-Require-Preflight": "true"}, {"Authorization": bearer, "X-Apollo-Operation-Name": "placeOrder"},
	} {
		suffix := ", no token"
		if h["Authorization"] != "" {
			suffix = ", the customer's token"
		}
		for k := range h {
			if k != "Authorization" {
				suffix += ", " + k
			}
		}
		attempts = append(attempts,
			attempt{name: "text/plain" + suffix, method: "POST", contentType: "text/plain", body: string(body), header: h, status: 415, code: "UNSUPPORTED_MEDIA_TYPE"},
			attempt{name: "text/plain;charset=UTF-8" + suffix, method: "POST", contentType: "text/plain;charset=UTF-8", body: string(body), header: h, status: 415, code: "UNSUPPORTED_MEDIA_TYPE"},
			attempt{name: "form" + suffix, method: "POST", contentType: "application/x-www-form-urlencoded", body: url.Values{"query": {mutation}}.Encode(), header: h, status: 415, code: "UNSUPPORTED_MEDIA_TYPE"},
			attempt{name: "form holding JSON" + suffix, method: "POST", contentType: "application/x-www-form-urlencoded", body: string(body), header: h, status: 415, code: "UNSUPPORTED_MEDIA_TYPE"},
			attempt{name: "multipart" + suffix, method: "POST", contentType: mw.FormDataContentType(), body: multi.String(), header: h, status: 415, code: "UNSUPPORTED_MEDIA_TYPE"},
			attempt{name: "GET" + suffix, method: "GET", body: "", header: h, status: 405, code: "MUTATION_OVER_GET"},
		)
	}
	for _, a := range attempts {
		target := g.url + "/graphql"
		if a.method == "GET" {
			target += "?" + url.Values{"query": {mutation}}.Encode()
		}
		req, _ := http.NewRequest(a.method, target, strings.NewReader(a.body))
		if a.contentType != "" {
			req.Header.Set("Content-Type", a.contentType)
		}
		req.Header.Set("Origin", "https://evil.example")
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		for k, v := range a.header {
			req.Header.Set(k, v)
		}
		if a.header["Authorization"] == "" {
			withoutToken(req.Header)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var r gqlResponse
		_ = json.Unmarshal(raw, &r)
		code := ""
		if len(r.Errors) > 0 {
			code, _ = r.Errors[0].Extensions["code"].(string)
		}
		switch {
		case a.header["Authorization"] == "" && resp.StatusCode == http.StatusUnauthorized && code == "UNAUTHENTICATED" && len(r.Data) == 0:
			// refused for want of a token before its media type was looked at
		case resp.StatusCode != a.status || code != a.code || len(r.Data) != 0:
			t.Errorf("%s: %d %s %.200s, want %d %s without data", a.name, resp.StatusCode, code, raw, a.status, a.code)
		}
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "" {
			t.Errorf("%s: Access-Control-Allow-Origin %q for another site", a.name, got)
		}
	}

	// The same mutation as JSON with the customer's token runs; afterwards
	// the customer has exactly that one order, read once the views include
	// it.
	var placed struct {
		PlaceOrder struct {
			Order      *struct{ ID string }
			UserErrors []UserError
		}
	}
	req, _ := http.NewRequest(http.MethodPost, g.url+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", "http://localhost:5173") // an allowed page, after its preflight
	req.Header.Set("Authorization", bearer)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Data   json.RawMessage
		Errors []gqlError
	}
	err = json.NewDecoder(resp.Body).Decode(&r)
	resp.Body.Close()
	if err != nil || len(r.Errors) > 0 || json.Unmarshal(r.Data, &placed) != nil || placed.PlaceOrder.Order == nil || len(placed.PlaceOrder.UserErrors) > 0 {
		t.Fatalf("the mutation as application/json: %d %v %+v %+v", resp.StatusCode, err, r.Errors, placed.PlaceOrder)
	}
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "http://localhost:5173" {
		t.Errorf("the JSON mutation from an allowed page: Access-Control-Allow-Origin %q", got)
	}
	p := g.mutate(t, "confirmOrder", map[string]any{"orderId": placed.PlaceOrder.Order.ID})
	if p.ConsistencyToken == nil {
		t.Fatalf("confirmOrder: %+v", p.UserErrors)
	}
	time.Sleep(500 * time.Millisecond) // time for a command that should not exist to be applied too
	var list struct {
		Orders struct {
			TotalCount int
			Edges      []struct{ Node struct{ ID string } }
		}
	}
	g.data(t, `query($t: String) { orders(filter: {customerId: "`+customer+`"}, consistencyToken: $t) { totalCount edges { node { id } } } }`,
		map[string]any{"t": *p.ConsistencyToken}, &list)
	if list.Orders.TotalCount != 1 {
		t.Errorf("customer %s has %d orders after %d refused cross-site mutations and one JSON one, want 1: %+v",
			customer, list.Orders.TotalCount, len(attempts), list.Orders)
	}
	t.Logf("%d cross-site attempts refused; the JSON mutation placed %s", len(attempts), placed.PlaceOrder.Order.ID)
}
