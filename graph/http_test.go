package graph

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// TestNegotiate: the response's media type follows Accept's weights, and is
// application/json without Accept, for wildcards and for types we do not
// serve.
func TestNegotiate(t *testing.T) {
	for accept, want := range map[string]string{
		"":                                  mediaJSON,
		"application/json":                  mediaJSON,
		"application/graphql-response+json": mediaGraphQLResponse,
		"application/graphql-response+json, application/json;q=0.9": mediaGraphQLResponse,
		"application/json, application/graphql-response+json":       mediaJSON,
		"application/json;q=0.5, application/graphql-response+json": mediaGraphQLResponse,
		"*/*": mediaJSON,
		"application/graphql-response+json;q=0, */*": mediaJSON,
		"text/html": mediaJSON,
		"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8": mediaJSON,
		"text/event-stream":                            mediaJSON,
		"application/graphql-response+json;q=nonsense": mediaJSON,
	} {
		r, _ := http.NewRequest(http.MethodPost, "/graphql", nil)
		if accept != "" {
			r.Header.Set("Accept", accept)
		}
		if got := negotiate(r); got != want {
			t.Errorf("Accept %q: %s, want %s", accept, got, want)
		}
	}
}

// TestValidText: invalid UTF-8 and JSON escapes of lone surrogates are
// refused (encoding/json would turn both into U+FFFD); pairs, other escapes
// and an escaped backslash before a "u" are not.
func TestValidText(t *testing.T) {
	for in, want := range map[string]bool{
		`{"query": "{ order(id: \"ab\") { id } }"}`: true,
		"{\"a\": \"a\xffb\"}":                       false,
		"{\"a\": \"\xc3\"}":                         false,
		`{"a": "é😀"}`:                               true,
		`{"a": "\u00e9"}`:                           true,
		`{"a": "\ud83d\ude00"}`:                     true,
		`{"a": "\uD83D\uDE00"}`:                     true,
		`{"a": "\ud83d"}`:                           false,
		`{"a": "\ud83dx"}`:                          false,
		`{"a": "\ud83d\u0041"}`:                     false,
		`{"a": "\ude00"}`:                           false,
		`{"a": "x\ude00\ud83d"}`:                    false,
		`{"a": "\\ud83d"}`:                          true, // a backslash, then "ud83d"
		`{"a": "\\\ud83d"}`:                         false,
		`{"a": "\n\t\"\\"}`:                         true,
		`{"a": "\u12"}`:                             true, // malformed: the decoder refuses it
		`\`:                                         true,
		`{"a": "\ud83d\`:                            false,
	} {
		if got := validText([]byte(in)); got != want {
			t.Errorf("validText(%q) = %v, want %v", in, got, want)
		}
	}
}

// TestDecodeParams: a body that is not a GraphQL request is refused with
// BAD_REQUEST in a short message that quotes none of it and names no Go
// type.
func TestDecodeParams(t *testing.T) {
	secret := strings.Repeat("s", 1000)
	for body, want := range map[string]string{
		`{"query": 12}`: `"query" must be a string`,
		`{"query": "{ a }", "operationName": ["` + secret + `"]}`: `"operationName" must be a string`,
		`{"query": "{ a }", "variables": "` + secret + `"}`:       `"variables" must be an object`,
		`{"query": "{ a }", "extensions": 1}`:                     `"extensions" must be an object`,
		`["` + secret + `"]`:                                      "it is not a JSON object",
		`"` + secret + `"`:                                        "it is not a JSON object",
		`{"query": "` + secret:                                    "it is not valid JSON",
		`{"query": "{ a }"} {"query": "{ b }"}`:                   "it holds more than one JSON value",
		`{"query": "{ a }"} ` + secret:                            "it holds more than one JSON value",
		``:                                                        "it is empty",
		`   `:                                                     "it is empty",
		`{}`:                                                      "it has no query",
		`{"query": null}`:                                         "it has no query",
		"{\"query\": \"" + secret + "\xff\"}":                     "the request is not valid UTF-8",
		`{"query": "\udfff` + secret + `"}`:                       "the request is not valid UTF-8",
	} {
		p, e := decodeParams([]byte(body))
		if p != nil || e == nil {
			t.Errorf("%.60q: decoded", body)
			continue
		}
		if e.Extensions["code"] != CodeBadRequest || !strings.HasSuffix(e.Message, want) || len(e.Message) > 100 || strings.Contains(e.Message, "sss") || strings.Contains(e.Message, "Go ") || strings.Contains(e.Message, "RawParams") {
			t.Errorf("%.60q: %q %v, want BAD_REQUEST ending %q", body, e.Message, e.Extensions, want)
		}
	}
	p, e := decodeParams([]byte(`{"query": "query($n: Int) { a }", "operationName": "", "variables": {"n": 12}, "extensions": {}, "other": 1}` + "\n"))
	if e != nil || p.Query != "query($n: Int) { a }" || fmt.Sprint(p.Variables["n"]) != "12" {
		t.Errorf("a GraphQL request: %+v %v", p, e)
	}
}

// TestErrorCap: a response carries at most MaxErrors errors, then one that
// says how many were left out.
func TestErrorCap(t *testing.T) {
	c := errorCap{max: MaxErrors}
	for _, n := range []int{0, 1, MaxErrors, MaxErrors + 1, 12_000} {
		errs := make(gqlerror.List, n)
		for i := range errs {
			errs[i] = &gqlerror.Error{Message: fmt.Sprint("error ", i)}
		}
		resp := c.InterceptResponse(context.Background(), func(context.Context) *graphql.Response {
			return &graphql.Response{Errors: errs}
		})
		if n <= MaxErrors {
			if len(resp.Errors) != n {
				t.Errorf("%d errors: %d in the response", n, len(resp.Errors))
			}
			continue
		}
		last := resp.Errors[len(resp.Errors)-1]
		if len(resp.Errors) != MaxErrors+1 || resp.Errors[MaxErrors-1].Message != fmt.Sprint("error ", MaxErrors-1) ||
			last.Extensions["code"] != CodeTooManyErrors || !strings.HasPrefix(last.Message, fmt.Sprint(n-MaxErrors, " more errors")) {
			t.Errorf("%d errors: %d in the response, the last %q %v", n, len(resp.Errors), last.Message, last.Extensions)
		}
	}
	if resp := c.InterceptResponse(context.Background(), func(context.Context) *graphql.Response { return nil }); resp != nil {
		t.Errorf("the end of a stream became %+v", resp)
	}
}

// TestTruncate cuts on character boundaries and stays within its bound.
func TestTruncate(t *testing.T) {
	for _, s := range []string{"", "abc", strings.Repeat("a", 300), strings.Repeat("a", 301), strings.Repeat("é", 200), strings.Repeat("😀", 100)} {
		got := truncate(s, 300)
		if len(got) > 300 || !utf8.ValidString(got) || (len(s) <= 300) != (got == s) || (got != s && !strings.HasSuffix(got, "…")) {
			t.Errorf("truncate(%d bytes) = %d bytes %.20q…", len(s), len(got), got)
		}
	}
}

// TestOperationResolution: a request that does not say which of several
// operations to run, or names one the document lacks, is refused with
// OPERATION_RESOLUTION_FAILURE, quoting at most maxQuotedName bytes of the
// name; a document without operations is left to gqlgen.
func TestOperationResolution(t *testing.T) {
	c := newLimitChecker(DefaultLimits, 10)
	long := strings.Repeat("N", 10_000)
	for _, p := range []struct{ query, name, want string }{
		{"query A { __typename } query B { __typename }", "", "the document has several operations; name one in operationName"},
		{"query A { __typename }", "B", `the document has no operation named "B"`},
		{"{ __typename }", long, `the document has no operation named "` + strings.Repeat("N", maxQuotedName-len("…")) + `…"`},
		{"fragment F on Query { __typename }", "", ""},
		{"query A { __typename } query B { __typename }", "B", ""},
		{"{ __typename }", "", ""},
	} {
		e := c.MutateOperationParameters(context.Background(), &graphql.RawParams{Query: p.query, OperationName: p.name})
		switch {
		case p.want == "" && e != nil:
			t.Errorf("%q %.20q: %v", p.query, p.name, e)
		case p.want != "" && (e == nil || e.Message != p.want || e.Extensions["code"] != CodeOperationResolution):
			t.Errorf("%q %.20q: %v, want %q", p.query, p.name, e, p.want)
		}
	}
}
