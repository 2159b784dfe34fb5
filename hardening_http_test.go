package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// echoMarker is put in hostile requests where an answer that echoed them
// would show it.
const echoMarker = "ECHOMARKER7f3a"

// hostileRequest is one request /graphql must refuse (or answer with a
// request error) with a short answer.
type hostileRequest struct {
	name        string
	method      string
	query       string // the URL's query string
	contentType string
	accept      string
	body        string
	status      int
	code        string // extensions.code of the first error
	message     string // the first error's message, when it is given here
	media       string // the response's Content-Type ("": application/json)
	allow       string // the Allow header, when there must be one
	maxBytes    int    // of the response ("": 1,000)
	maxErrors   int    // errors in the response (0: 1)
}

// TestHostileHTTPRequestsAreRefused: requests that are not GraphQL requests
// (a query that is a number, bodies that are not JSON or not UTF-8, other
// methods and media types, mutations and subscriptions over GET, bodies and
// query strings over their limits), requests that cannot say which
// operation to run, and documents with thousands of mistakes are answered
// with the status and extensions.code README documents, in a short
// response that echoes nothing of the request and has no data entry, never
// with a 5xx; a normal mutation is answered right after each. Request
// errors follow the response's media type (GraphQL over HTTP): 200 for
// application/json (or no Accept), 400 for
// application/graphql-response+json.
func TestHostileHTTPRequestsAreRefused(t *testing.T) {
	g := startGateway(t, testConfig(t))
	const gqlResp = "application/graphql-response+json"
	const appJSON = "application/json"
	post := func(v any) string {
		b, _ := json.Marshal(v)
		return string(b)
	}
	pad := strings.Repeat("p", 900_000) + echoMarker
	longName := strings.Repeat("n", 200) + echoMarker
	var unused strings.Builder
	unused.WriteString("query(")
	for i := range 3000 {
		fmt.Fprintf(&unused, "$v%d: Int ", i)
	}
	unused.WriteString(`) { order(id: "x") { id } }`)
	getMutation := url.Values{"query": {`mutation { cancelOrder(input: {orderId: "o-1", reason: "` + echoMarker + `"}) { version } }`}}.Encode()
	cases := []hostileRequest{
		{name: "query is a number", body: `{"query": 12, "pad": "` + pad + `"}`,
			status: 400, code: "BAD_REQUEST", message: `the request body is not a GraphQL request: "query" must be a string`},
		{name: "query is a number, event stream", accept: "text/event-stream", body: `{"query": 12, "pad": "` + pad + `"}`,
			status: 400, code: "BAD_REQUEST", message: `the request body is not a GraphQL request: "query" must be a string`},
		{name: "variables are a string", body: post(map[string]any{"query": "{ __typename }", "variables": echoMarker}),
			status: 400, code: "BAD_REQUEST", message: `the request body is not a GraphQL request: "variables" must be an object`},
		{name: "900 KB of broken JSON", body: `{"query": "` + pad,
			status: 400, code: "BAD_REQUEST", message: "the request body is not a GraphQL request: it is not valid JSON"},
		{name: "an array", body: `["` + echoMarker + `"]`,
			status: 400, code: "BAD_REQUEST", message: "the request body is not a GraphQL request: it is not a JSON object"},
		{name: "JSON after the request", body: `{"query": "{ __typename }"} {"query": "` + echoMarker + `"}`,
			status: 400, code: "BAD_REQUEST", message: "the request body is not a GraphQL request: it holds more than one JSON value"},
		{name: "no query", body: `{"variables": {"x": "` + echoMarker + `"}}`,
			status: 400, code: "BAD_REQUEST", message: "the request body is not a GraphQL request: it has no query"},
		{name: "empty body", body: "", status: 400, code: "BAD_REQUEST"},
		{name: "invalid UTF-8 in the query", body: "{\"query\": \"{ order(id: \\\"a\xffb" + echoMarker + "\\\") { id } }\"}",
			status: 400, code: "BAD_REQUEST", message: "the request is not valid UTF-8"},
		{name: "invalid UTF-8 in variables", body: "{\"query\": \"query($id: ID!) { order(id: $id) { id } }\", \"variables\": {\"id\": \"a\xc3" + echoMarker + "\"}}",
			status: 400, code: "BAD_REQUEST", message: "the request is not valid UTF-8"},
		{name: "a lone surrogate escape in variables", body: `{"query": "query($id: ID!) { order(id: $id) { id } }", "variables": {"id": "a\udc00` + echoMarker + `"}}`,
			status: 400, code: "BAD_REQUEST", message: "the request is not valid UTF-8"},
		{name: "invalid UTF-8 over GET", method: "GET", query: "query=%7B%20order(id:%20%22a%FFb%22)%20%7B%20id%20%7D%20%7D&operationName=" + echoMarker,
			status: 400, code: "BAD_REQUEST", message: "the request is not valid UTF-8"},
		{name: "GET without a query", method: "GET", query: "operationName=" + echoMarker,
			status: 400, code: "BAD_REQUEST", message: "the query string is not a GraphQL request: it has no query"},
		{name: "GET variables that are not an object", method: "GET", query: url.Values{"query": {"{ __typename }"}, "variables": {"[\"" + echoMarker + "\"]"}}.Encode(),
			status: 400, code: "BAD_REQUEST", message: `the query string is not a GraphQL request: "variables" must be a JSON object`},
		{name: "text/plain", contentType: "text/plain", body: post(map[string]any{"query": "{ __typename }"}),
			status: 415, code: "UNSUPPORTED_MEDIA_TYPE"},
		{name: "no content type", contentType: "-", body: post(map[string]any{"query": "{ __typename }"}),
			status: 415, code: "UNSUPPORTED_MEDIA_TYPE"},
		{name: "JSON in UTF-16", contentType: "application/json; charset=utf-16", body: post(map[string]any{"query": "{ __typename }"}),
			status: 415, code: "UNSUPPORTED_MEDIA_TYPE"},
		{name: "form", contentType: "application/x-www-form-urlencoded", accept: gqlResp, body: "query=" + echoMarker,
			status: 415, code: "UNSUPPORTED_MEDIA_TYPE", media: gqlResp},
		{name: "PUT", method: "PUT", body: post(map[string]any{"query": "{ __typename }"}),
			status: 405, code: "METHOD_NOT_ALLOWED", allow: "GET, POST, OPTIONS"},
		{name: "DELETE", method: "DELETE", status: 405, code: "METHOD_NOT_ALLOWED", allow: "GET, POST, OPTIONS"},
		{name: "mutation over GET", method: "GET", query: getMutation,
			status: 405, code: "MUTATION_OVER_GET", allow: "POST"},
		{name: "mutation over GET, graphql-response+json", method: "GET", query: getMutation, accept: gqlResp,
			status: 405, code: "MUTATION_OVER_GET", allow: "POST", media: gqlResp},
		{name: "subscription over GET", method: "GET", query: url.Values{"query": {`subscription { orderUpdated(id: "x") { id } }`}}.Encode(),
			status: 406, code: "NOT_ACCEPTABLE"},
		{name: "subscription over POST without an event stream", body: post(map[string]any{"query": `subscription { orderUpdated(id: "x") { id } }`}),
			status: 406, code: "NOT_ACCEPTABLE"},
		{name: "body over 1 MiB", body: post(map[string]any{"query": "{ __typename }", "pad": strings.Repeat("p", 1<<20) + echoMarker}),
			status: 413, code: "REQUEST_TOO_LARGE"},
		{name: "GET query string over 1 MiB", method: "GET", query: "query=" + strings.Repeat("a", 1<<20) + echoMarker,
			status: 414, code: "REQUEST_TOO_LARGE"},
		{name: "two operations, no operationName", body: post(map[string]any{"query": "query A { __typename } query B { __typename }"}),
			status: 200, code: "OPERATION_RESOLUTION_FAILURE", message: "the document has several operations; name one in operationName"},
		{name: "two operations, no operationName, graphql-response+json", accept: gqlResp, body: post(map[string]any{"query": "query A { __typename } query B { __typename }"}),
			status: 400, code: "OPERATION_RESOLUTION_FAILURE", media: gqlResp},
		{name: "an unknown operationName", body: post(map[string]any{"query": "query A { __typename }", "operationName": longName}),
			status: 200, code: "OPERATION_RESOLUTION_FAILURE"},
		{name: "an unknown operationName over GET", method: "GET", query: url.Values{"query": {"query A { __typename }"}, "operationName": {longName}}.Encode(),
			status: 200, code: "OPERATION_RESOLUTION_FAILURE"},
		{name: "3,000 unused variables", body: post(map[string]any{"query": unused.String()}),
			status: 200, code: "GRAPHQL_VALIDATION_FAILED", maxBytes: 6_000, maxErrors: 21},
		{name: "3,000 unused variables, graphql-response+json", accept: gqlResp, body: post(map[string]any{"query": unused.String()}),
			status: 400, code: "GRAPHQL_VALIDATION_FAILED", maxBytes: 6_000, maxErrors: 21, media: gqlResp},
		{name: "a 100 KB field name", body: post(map[string]any{"query": "{ " + strings.Repeat("f", 100_000) + echoMarker + " }"}),
			status: 200, code: "GRAPHQL_VALIDATION_FAILED"},
		{name: "a parse error", body: post(map[string]any{"query": "{ order(id: "}),
			status: 200, code: "GRAPHQL_PARSE_FAILED"},
		{name: "a parse error, graphql-response+json", accept: gqlResp, body: post(map[string]any{"query": "{ order(id: "}),
			status: 400, code: "GRAPHQL_PARSE_FAILED", media: gqlResp},
		{name: "a parse error, graphql-response+json preferred", accept: gqlResp + ", application/json;q=0.9", body: post(map[string]any{"query": "{ order(id: "}),
			status: 400, code: "GRAPHQL_PARSE_FAILED", media: gqlResp},
		{name: "a parse error, application/json asked", accept: appJSON, body: post(map[string]any{"query": "{ order(id: "}),
			status: 200, code: "GRAPHQL_PARSE_FAILED"},
		{name: "a validation error", body: post(map[string]any{"query": "{ nope }"}),
			status: 200, code: "GRAPHQL_VALIDATION_FAILED"},
		{name: "a validation error, graphql-response+json", accept: gqlResp, body: post(map[string]any{"query": "{ nope }"}),
			status: 400, code: "GRAPHQL_VALIDATION_FAILED", media: gqlResp},
		{name: "a validation error over GET, graphql-response+json", method: "GET", accept: gqlResp, query: url.Values{"query": {"{ nope }"}}.Encode(),
			status: 400, code: "GRAPHQL_VALIDATION_FAILED", media: gqlResp},
		{name: "a missing variable", body: post(map[string]any{"query": "query($id: ID!) { order(id: $id) { id } }"}),
			status: 200, code: "GRAPHQL_VALIDATION_FAILED"},
		{name: "a missing variable, graphql-response+json", accept: gqlResp, body: post(map[string]any{"query": "query($id: ID!) { order(id: $id) { id } }"}),
			status: 400, code: "GRAPHQL_VALIDATION_FAILED", media: gqlResp},
		{name: "a variable of the wrong type, graphql-response+json", accept: gqlResp, body: post(map[string]any{"query": "query($n: Int) { orders(first: $n) { totalCount } }", "variables": map[string]any{"n": echoMarker}}),
			status: 400, code: "GRAPHQL_VALIDATION_FAILED", media: gqlResp},
		{name: "too complex, graphql-response+json", accept: gqlResp, body: post(map[string]any{"query": `{ order(id: "x") { ` + strings.Repeat("id ", 300) + "} }"}),
			status: 400, code: "QUERY_TOO_COMPLEX", media: gqlResp},
	}
	client := &http.Client{Timeout: 20 * time.Second}
	for i, c := range cases {
		status, header, raw := c.do(t, client, g.url)
		var r struct {
			Errors []gqlError `json:"errors"`
		}
		var entries map[string]json.RawMessage
		err := json.Unmarshal(raw, &r)
		if err == nil {
			err = json.Unmarshal(raw, &entries)
		}
		_, hasData := entries["data"]
		code := ""
		if err == nil && len(r.Errors) > 0 {
			code, _ = r.Errors[0].Extensions["code"].(string)
		}
		maxBytes, maxErrors, media := cmp.Or(c.maxBytes, 1_000), cmp.Or(c.maxErrors, 1), cmp.Or(c.media, appJSON)
		switch {
		case err != nil:
			t.Errorf("%s: HTTP %d, the response is not JSON: %.200q", c.name, status, raw)
		case status != c.status || code != c.code:
			t.Errorf("%s: HTTP %d %s, want %d %s: %.300s", c.name, status, code, c.status, c.code, raw)
		case c.message != "" && r.Errors[0].Message != c.message:
			t.Errorf("%s: message %q, want %q", c.name, r.Errors[0].Message, c.message)
		case len(raw) > maxBytes || len(r.Errors) > maxErrors:
			t.Errorf("%s: %d bytes, %d errors; want at most %d, %d", c.name, len(raw), len(r.Errors), maxBytes, maxErrors)
		case bytes.Contains(raw, []byte(echoMarker)):
			t.Errorf("%s: the response echoes the request: %.300s", c.name, raw)
		case hasData:
			t.Errorf("%s: the response has a data entry: %.300s", c.name, raw)
		case header.Get("Content-Type") != media:
			t.Errorf("%s: Content-Type %q, want %q", c.name, header.Get("Content-Type"), media)
		case c.allow != "" && header.Get("Allow") != c.allow:
			t.Errorf("%s: Allow %q, want %q", c.name, header.Get("Allow"), c.allow)
		}
		for _, e := range r.Errors {
			if len(e.Message) > maxMessageLength || strings.Contains(e.Message, "Go ") || strings.Contains(e.Message, "RawParams") {
				t.Errorf("%s: message %.400q", c.name, e.Message)
			}
		}
		if maxErrors > 1 && (len(r.Errors) != maxErrors || r.Errors[maxErrors-1].Extensions["code"] != "TOO_MANY_ERRORS") {
			t.Errorf("%s: %d errors, want %d, the last TOO_MANY_ERRORS", c.name, len(r.Errors), maxErrors)
		}
		t.Logf("%s: HTTP %d %s (%d bytes): %.120s", c.name, status, code, len(raw), firstMessage(gqlResponse{Errors: r.Errors}))
		t0 := time.Now()
		g.mustMutate(t, "placeOrder", placeInput(fmt.Sprintf("c-http-%d", i), item("A", 1, "1")))
		if d := time.Since(t0); d > 5*time.Second {
			t.Errorf("after %s: a mutation took %v", c.name, d)
		}
	}
}

// TestGETQueryStringOverTheServerLimit: a query string larger than the HTTP
// server reads in headers (1 MiB) is refused by it (431), in a short
// answer, and the gateway keeps answering.
func TestGETQueryStringOverTheServerLimit(t *testing.T) {
	g := startGateway(t, testConfig(t))
	c := hostileRequest{method: "GET", query: "query=" + strings.Repeat("a", 3<<20) + echoMarker}
	status, _, raw := c.do(t, &http.Client{Timeout: 20 * time.Second}, g.url)
	if status != http.StatusRequestHeaderFieldsTooLarge || len(raw) > 1000 || bytes.Contains(raw, []byte(echoMarker)) {
		t.Errorf("a 3 MiB query string: HTTP %d %.200q", status, raw)
	}
	g.mustMutate(t, "placeOrder", placeInput("c-http", item("A", 1, "1")))
}

// TestGraphQLOverHTTPMediaTypes: a request is answered in the media type
// its Accept prefers, 200 with data, and OPTIONS names the methods.
func TestGraphQLOverHTTPMediaTypes(t *testing.T) {
	g := startGateway(t, testConfig(t))
	client := &http.Client{Timeout: 20 * time.Second}
	for accept, want := range map[string]string{
		"": "application/json", "application/json": "application/json", "*/*": "application/json",
		"application/graphql-response+json":                         "application/graphql-response+json",
		"application/json;q=0.5, application/graphql-response+json": "application/graphql-response+json",
		"text/html": "application/json",
	} {
		for _, c := range []hostileRequest{
			{accept: accept, body: `{"query": "{ __typename }"}`},
			{method: "GET", accept: accept, query: "query=%7B%20__typename%20%7D"},
		} {
			status, header, raw := c.do(t, client, g.url)
			if status != 200 || header.Get("Content-Type") != want || string(raw) != `{"data":{"__typename":"Query"}}` {
				t.Errorf("%s with Accept %q: HTTP %d %q %s, want 200 %s", cmp.Or(c.method, "POST"), accept, status, header.Get("Content-Type"), raw, want)
			}
		}
	}
	// A field error is still 200 with data, in both media types.
	for _, accept := range []string{"application/json", "application/graphql-response+json"} {
		c := hostileRequest{accept: accept, body: `{"query": "{ orders(first: 10, after: \"not a cursor\") { totalCount } }"}`}
		status, _, raw := c.do(t, client, g.url)
		var r gqlResponse
		if json.Unmarshal(raw, &r) != nil || status != 200 || r.Data == nil || len(r.Errors) == 0 {
			t.Errorf("a field error with Accept %s: HTTP %d %.300s, want 200 with data", accept, status, raw)
		}
	}
	status, header, _ := (&hostileRequest{method: "OPTIONS"}).do(t, client, g.url)
	if status != 200 || header.Get("Allow") != "GET, POST, OPTIONS" {
		t.Errorf("OPTIONS: HTTP %d, Allow %q", status, header.Get("Allow"))
	}
}

// do sends the request (POST of JSON unless told otherwise) and returns the
// status, headers and the first 100 KB of the response.
func (c *hostileRequest) do(t *testing.T, client *http.Client, base string) (int, http.Header, []byte) {
	t.Helper()
	target := base + "/graphql"
	if c.query != "" {
		target += "?" + c.query
	}
	req, err := http.NewRequest(cmp.Or(c.method, http.MethodPost), target, strings.NewReader(c.body))
	if err != nil {
		t.Fatal(err)
	}
	switch c.contentType {
	case "-":
	case "":
		if req.Method == http.MethodPost {
			req.Header.Set("Content-Type", "application/json")
		}
	default:
		req.Header.Set("Content-Type", c.contentType)
	}
	if c.accept != "" {
		req.Header.Set("Accept", c.accept)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Errorf("%s: %v", c.name, err)
		return 0, http.Header{}, nil
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 100<<10))
	return resp.StatusCode, resp.Header, raw
}

// PLAYGROUND=false takes the playground (whose page holds the schema, for
// anyone who can reach the address) off / and /playground/; /graphql is
// unchanged. By default it is served.
func TestPlaygroundCanBeTurnedOff(t *testing.T) {
	status := func(url string) int {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	on := startGateway(t, testConfig(t))
	if got := status(on.url + "/"); got != http.StatusOK {
		t.Errorf("default: GET / = %d, want 200", got)
	}
	cfg := testConfig(t)
	cfg.NoPlayground = true
	off := startGateway(t, cfg)
	for _, path := range []string{"/", "/playground/", "/playground/graphiql.min.js"} {
		if got := status(off.url + path); got != http.StatusNotFound {
			t.Errorf("PLAYGROUND=false: GET %s = %d, want 404", path, got)
		}
	}
	if r := off.do(t, `{ __typename }`, nil); len(r.Errors) > 0 {
		t.Errorf("PLAYGROUND=false: /graphql: %v", r.Errors)
	}
}
