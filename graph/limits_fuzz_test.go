package graph

import (
	"context"
	"testing"

	"github.com/99designs/gqlgen/graphql"
)

// FuzzQueryLimits: any document (and operation name) gets through the
// pre-parse limits without a panic, and one the checker lets through is
// within every static limit when walked again.
func FuzzQueryLimits(f *testing.F) {
	for _, q := range []string{
		`{ order(id: "x") { id status } }`,
		`query Q($f: Int) { orders(first: $f) { edges { node { id items { sku } } } } }`,
		`fragment F on Order { id ...F } { order(id: "x") { ...F } }`,
		`{ a: order(id: "1") { id } b: order(id: "2") { id } }`,
		`subscription { ordersUpdated { id } }`,
		`{ {{{{{{{{{{`, ``, `query A { x } query B { y }`,
	} {
		f.Add(q, "")
	}
	f.Fuzz(func(t *testing.T, query, operation string) {
		c := newLimitChecker(Limits{Tokens: 500, Depth: 6, Fields: 100, Width: 20, RootFields: 5, Cost: 300}, 16)
		p := &graphql.RawParams{Query: query, OperationName: operation, Variables: map[string]any{"f": 100}}
		if e := c.MutateOperationParameters(context.Background(), p); e != nil {
			if e.Message == "" || len(e.Message) > 500 { // a quoted value is cut, but escaping can make it four times as long
				t.Fatalf("refusal message of %d bytes: %q", len(e.Message), e.Message)
			}
			return
		}
		if doc, ok := c.docs.Get(query); ok {
			if e := c.checkStatic(doc); e != nil {
				t.Fatalf("a document let through is over a limit: %v", e)
			}
		}
	})
}
