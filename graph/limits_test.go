package graph

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/99designs/gqlgen/graphql"
)

// hostileDocuments are documents that cost a GraphQL server far more than
// their size: each must be refused before gqlgen parses, validates or
// measures it.
func hostileDocuments() map[string]string {
	var frags strings.Builder
	frags.WriteString("query { order(id: \"x\") { ...F0 } }\n")
	for i := range 30 { // each fragment spreads the next one twice: 2^30 fields
		fmt.Fprintf(&frags, "fragment F%d on Order { id ...F%d ...F%d }\n", i, i+1, i+1)
	}
	frags.WriteString("fragment F30 on Order { id }\n")

	aliases := strings.Builder{}
	aliases.WriteString("{")
	for i := range 333 {
		fmt.Fprintf(&aliases, " a%d: orders(first: 100) { edges { node { id status items { sku } } } }", i)
	}
	aliases.WriteString(" }")

	wide := "{ order(id: \"x\") { " + strings.Repeat("id ", 5000) + "} }"
	deep := "{ order(id: \"x\") { " + strings.Repeat("items { ", 20) + "sku" + strings.Repeat(" }", 20) + " } }"
	tokens := "{ " + strings.Repeat("order(id: \"x\") { id } ", 4000) + "}"
	customers := "{"
	for i := range 1000 {
		customers += fmt.Sprintf(" c%d: customer(id: \"c\", consistencyToken: \"ct1.x\") { orderCount }", i)
	}
	customers += " }"
	return map[string]string{
		"fragments spread twice, 30 levels": frags.String(),
		"333 aliases of orders(first: 100)": aliases.String(),
		"5,000 fields in one selection":     wide,
		"selections 21 deep":                deep,
		"4,000 root fields (tokens)":        tokens,
		"1,000 customer aliases":            customers,
	}
}

// TestLimitsRefuseHostileDocuments: every hostile document is refused with
// QUERY_TOO_COMPLEX and a message that quotes none of it; the schema's own
// examples pass.
func TestLimitsRefuseHostileDocuments(t *testing.T) {
	c := newLimitChecker(DefaultLimits, 10)
	ctx := context.Background()
	for name, q := range hostileDocuments() {
		err := c.MutateOperationParameters(ctx, &graphql.RawParams{Query: q})
		if err == nil || err.Extensions["code"] != CodeQueryTooComplex {
			t.Errorf("%s (%d bytes): %v, want %s", name, len(q), err, CodeQueryTooComplex)
			continue
		}
		if len(err.Message) > 150 {
			t.Errorf("%s: message of %d bytes", name, len(err.Message))
		}
		t.Logf("%s (%d bytes): %s", name, len(q), err.Message)
	}
	if c.docs.Len() != 0 {
		t.Errorf("%d refused documents were kept", c.docs.Len())
	}
	fine := []struct {
		q    string
		vars map[string]any
	}{
		{`query { order(id: "ord_1", consistencyToken: "ct1.x") { id status items { sku quantity lineTotal { amount } } history { status at } } }`, nil},
		{`query { orders(filter: {customerId: "c-1", status: [PENDING, CONFIRMED]}, first: 10) { totalCount edges { cursor node { id status } } pageInfo { hasNextPage endCursor } } }`, nil},
		{`query($n: Int) { orders(first: $n) { edges { node { id status total { amount currencyCode } items { sku name quantity unitPrice { amount } } } } } }`, map[string]any{"n": 100}},
		{`mutation { placeOrder(input: {customerId: "c-1", currencyCode: "EUR", items: [{sku: "TEA", name: "Green tea", quantity: 2, unitPrice: "4.50"}]}) { order { id status total { amount currencyCode } } version consistencyToken userErrors { code message field } } }`, nil},
		{`subscription { ordersUpdated(customerId: "c-1", status: [PENDING, CONFIRMED]) { id status version } }`, nil},
	}
	for _, f := range fine {
		if err := c.MutateOperationParameters(ctx, &graphql.RawParams{Query: f.q, Variables: f.vars}); err != nil {
			t.Errorf("%.60s…: refused: %v", f.q, err)
		}
	}
	// The cost depends on the variables: the same document with a page
	// size that makes it too costly is refused.
	big := `query($n: Int) { a: orders(first: $n) { edges { node { ` + strings.Repeat("id ", 150) + `} } } }`
	if err := c.MutateOperationParameters(ctx, &graphql.RawParams{Query: big, Variables: map[string]any{"n": 10}}); err != nil {
		t.Errorf("150 fields of 10 orders: %v", err)
	}
	if err := c.MutateOperationParameters(ctx, &graphql.RawParams{Query: big, Variables: map[string]any{"n": 100}}); err == nil {
		t.Errorf("150 fields of 100 orders (cost 15,000): accepted")
	}
}
