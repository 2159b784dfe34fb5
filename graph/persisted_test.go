package graph

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/99designs/gqlgen/graphql"
)

func apqParams(query, hash string) *graphql.RawParams {
	return &graphql.RawParams{Query: query, Extensions: map[string]any{"persistedQuery": map[string]any{"version": 1.0, "sha256Hash": hash}}}
}

// TestAPQCacheIsBounded: the cache keeps at most its size of documents and
// APQCacheBytes of them, dropping the least recently used.
func TestAPQCacheIsBounded(t *testing.T) {
	p := newPersistedQueries()
	p.Configure(3, nil)
	ctx := context.Background()
	doc := func(i int) string { return fmt.Sprintf("{ order(id: \"%d\") { id } }", i) }
	register := func(i int) {
		if e := p.MutateOperationParameters(ctx, apqParams(doc(i), sha256Hex(doc(i)))); e != nil {
			t.Fatalf("register %d: %v", i, e)
		}
	}
	known := func(i int) bool {
		params := apqParams("", sha256Hex(doc(i)))
		e := p.MutateOperationParameters(ctx, params)
		if e == nil && params.Query != doc(i) {
			t.Fatalf("hash of %d gave %q", i, params.Query)
		}
		return e == nil
	}
	for i := range 3 {
		register(i)
	}
	if !known(0) { // 0 is now the most recently used
		t.Fatal("0 missing")
	}
	register(3) // drops 1, the least recently used
	if known(1) || !known(0) || !known(2) || !known(3) || p.Len() != 3 {
		t.Errorf("after a 4th document: 1 known %v, len %d", known(1), p.Len())
	}

	// The byte bound: documents of 6 MiB, at most two fit in 16 MiB.
	p.Configure(100, nil)
	big := func(i int) string { return fmt.Sprintf("{ order(id: \"%d\") { id } }", i) + strings.Repeat(" ", 6<<20) }
	for i := range 3 {
		if e := p.MutateOperationParameters(ctx, apqParams(big(i), sha256Hex(big(i)))); e != nil {
			t.Fatal(e)
		}
	}
	if p.Len() != 2 || p.bytes > APQCacheBytes {
		t.Errorf("3 documents of 6 MiB: %d kept, %d bytes", p.Len(), p.bytes)
	}
}

func TestParseTrustedDocuments(t *testing.T) {
	q := "query A { order(id: \"1\") { id } }"
	h := sha256Hex(q)
	for name, manifest := range map[string]string{
		"apollo":  fmt.Sprintf(`{"format":"apollo-persisted-query-manifest","version":1,"operations":[{"id":%q,"name":"A","type":"query","body":%q}]}`, h, q),
		"codegen": fmt.Sprintf(`{%q: %q}`, h, q),
	} {
		td, err := ParseTrustedDocuments([]byte(manifest))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, id := range []string{h, "sha256:" + h, "sha256:" + strings.ToUpper(h)} {
			if d, ok := td.byID(id); !ok || d != q {
				t.Errorf("%s: byID(%s) = %q, %v", name, id, d, ok)
			}
		}
	}
	for name, bad := range map[string]string{
		"not JSON":       `[`,
		"empty":          `{}`,
		"wrong hash":     fmt.Sprintf(`{%q: %q}`, sha256Hex("other"), q),
		"not a string":   `{"a": 1}`,
		"other format":   `{"format":"other","version":1,"operations":[]}`,
		"empty document": `{"a": ""}`,
	} {
		if _, err := ParseTrustedDocuments([]byte(bad)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
