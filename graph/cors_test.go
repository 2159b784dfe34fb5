package graph

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// corsRequest runs one request through CORS(patterns) in front of a
// handler that answers 200 and counts its calls.
func corsRequest(t *testing.T, patterns []string, method, origin string, header map[string]string) (*httptest.ResponseRecorder, int) {
	t.Helper()
	calls := 0
	h := CORS(patterns, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		w.WriteHeader(http.StatusOK)
	}))
	r := httptest.NewRequest(method, "http://gateway.internal:8080/graphql", nil)
	if origin != "" {
		r.Header.Set("Origin", origin)
	}
	for k, v := range header {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w, calls
}

// corsHeaders is the Access-Control-* headers of an answer.
func corsHeaders(h http.Header) map[string]string {
	out := map[string]string{}
	for k, v := range h {
		if strings.HasPrefix(k, "Access-Control-") {
			out[k] = strings.Join(v, ", ")
		}
	}
	return out
}

func wantVaryOrigin(t *testing.T, what string, h http.Header) {
	t.Helper()
	for _, v := range h.Values("Vary") {
		for _, f := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(f), "Origin") {
				return
			}
		}
	}
	t.Errorf("%s: no Vary: Origin (Vary: %q)", what, h.Values("Vary"))
}

var corsPreflight = map[string]string{"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization, content-type"}

// TestCORSPreflight: a preflight from a page whose origin's host matches a
// pattern (case-insensitively, any scheme, port wildcards) or is the
// gateway's own host is answered 204 with Allow-Origin (that origin),
// -Methods, -Headers (Authorization and Content-Type among them), -Max-Age
// and Vary: Origin, and goes no further; from any other page (another
// host, a look-alike suffix, "null", a malformed origin) it is answered 403
// ORIGIN_NOT_ALLOWED without any Access-Control-* header.
func TestCORSPreflight(t *testing.T) {
	patterns := []string{"app.example.com", "*.shop.test", "localhost:*"}
	for _, origin := range []string{
		"https://app.example.com", "https://APP.Example.com", "http://app.example.com",
		"https://eu.shop.test", "http://localhost:5173", "http://gateway.internal:8080",
	} {
		w, calls := corsRequest(t, patterns, http.MethodOptions, origin, corsPreflight)
		h := w.Header()
		if w.Code != http.StatusNoContent || calls != 0 {
			t.Errorf("preflight from %s: %d (handler called %d times), want 204 answered by CORS", origin, w.Code, calls)
		}
		if got := h.Get("Access-Control-Allow-Origin"); got != origin {
			t.Errorf("preflight from %s: Allow-Origin %q", origin, got)
		}
		if got := h.Get("Access-Control-Allow-Methods"); !strings.Contains(got, "POST") || !strings.Contains(got, "GET") {
			t.Errorf("preflight from %s: Allow-Methods %q", origin, got)
		}
		allowHeaders := strings.ToLower(h.Get("Access-Control-Allow-Headers"))
		for _, want := range []string{"authorization", "content-type", "x-apollo-operation-name", "apollo-require-preflight"} {
			if !strings.Contains(allowHeaders, want) {
				t.Errorf("preflight from %s: Allow-Headers %q lacks %s", origin, allowHeaders, want)
			}
		}
		if got := h.Get("Access-Control-Max-Age"); got != "600" {
			t.Errorf("preflight from %s: Max-Age %q, want 600", origin, got)
		}
		if got := h.Get("Access-Control-Allow-Credentials"); got != "" {
			t.Errorf("preflight from %s: Allow-Credentials %q: the gateway takes bearer tokens, not cookies", origin, got)
		}
		wantVaryOrigin(t, "preflight from "+origin, h)
	}
	for _, origin := range []string{
		"https://evil.example", "https://app.example.com.evil.example", "https://evilapp.example.com",
		"https://shop.test", "null", "https://", "::not a url", "http://localhost.evil:5173",
	} {
		w, calls := corsRequest(t, patterns, http.MethodOptions, origin, corsPreflight)
		if w.Code != http.StatusForbidden || calls != 0 {
			t.Errorf("preflight from %s: %d (handler called %d times), want 403 answered by CORS", origin, w.Code, calls)
		}
		if got := corsHeaders(w.Header()); len(got) != 0 {
			t.Errorf("preflight from %s: CORS headers %v on a refusal", origin, got)
		}
		var body struct {
			Errors []struct {
				Message    string
				Extensions map[string]any
			}
		}
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || len(body.Errors) != 1 || body.Errors[0].Extensions["code"] != CodeOriginNotAllowed {
			t.Errorf("preflight from %s: body %s, want one error with code %s", origin, w.Body.Bytes(), CodeOriginNotAllowed)
		} else if strings.Contains(body.Errors[0].Message, origin) && origin != "null" {
			t.Errorf("preflight from %s: the message echoes the origin: %q", origin, body.Errors[0].Message)
		}
		if ct := w.Header().Get("Content-Type"); ct != mediaJSON {
			t.Errorf("preflight from %s: Content-Type %q", origin, ct)
		}
		wantVaryOrigin(t, "refused preflight from "+origin, w.Header())
	}
}

// TestCORSRequests: requests other than preflights reach the handler;
// those from an allowed page get Access-Control-Allow-Origin (so the page
// may read the answer), those from any other page and those without an
// Origin get none; every answer has Vary: Origin. An OPTIONS without
// Access-Control-Request-Method is not a preflight.
func TestCORSRequests(t *testing.T) {
	patterns := []string{"app.example.com"}
	for _, c := range []struct {
		method, origin string
		allow          bool
	}{
		{http.MethodPost, "https://app.example.com", true},
		{http.MethodGet, "https://app.example.com", true},
		{http.MethodPost, "http://gateway.internal:8080", true},
		{http.MethodPost, "https://evil.example", false},
		{http.MethodGet, "https://evil.example", false},
		{http.MethodPost, "null", false},
		{http.MethodPost, "", false},
		{http.MethodOptions, "https://evil.example", false},
	} {
		w, calls := corsRequest(t, patterns, c.method, c.origin, nil)
		what := c.method + " from " + c.origin
		if calls != 1 || w.Code != http.StatusOK {
			t.Errorf("%s: %d, handler called %d times; want it to reach the handler", what, w.Code, calls)
		}
		got := corsHeaders(w.Header())
		switch {
		case c.allow && (len(got) != 1 || got["Access-Control-Allow-Origin"] != c.origin):
			t.Errorf("%s: CORS headers %v, want only Access-Control-Allow-Origin: %s", what, got, c.origin)
		case !c.allow && len(got) != 0:
			t.Errorf("%s: CORS headers %v, want none", what, got)
		}
		wantVaryOrigin(t, what, w.Header())
	}
}

// TestCORSWithoutPatterns: with no pattern (CORS_ALLOWED_ORIGINS=none)
// only the gateway's own host is allowed.
func TestCORSWithoutPatterns(t *testing.T) {
	for _, patterns := range [][]string{nil, {}} {
		if w, _ := corsRequest(t, patterns, http.MethodOptions, "https://app.example.com", corsPreflight); w.Code != http.StatusForbidden {
			t.Errorf("patterns %#v: a preflight from another host got %d, want 403", patterns, w.Code)
		}
		if w, _ := corsRequest(t, patterns, http.MethodOptions, "http://gateway.internal:8080", corsPreflight); w.Code != http.StatusNoContent {
			t.Errorf("patterns %#v: a preflight from the gateway's own host got %d, want 204", patterns, w.Code)
		}
		if w, _ := corsRequest(t, patterns, http.MethodPost, "https://app.example.com", nil); len(corsHeaders(w.Header())) != 0 {
			t.Errorf("patterns %#v: a request from another host got CORS headers %v", patterns, corsHeaders(w.Header()))
		}
	}
}
