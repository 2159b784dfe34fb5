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

// introspectionQuery is graphql-js 16's getIntrospectionQuery() (with
// descriptions, specifiedByURL, directive repeatability, schema
// description and input value deprecation, as GraphiQL 4 sends it).
const introspectionQuery = `query IntrospectionQuery {
  __schema {
    description
    queryType { name }
    mutationType { name }
    subscriptionType { name }
    types { ...FullType }
    directives { name description isRepeatable locations args(includeDeprecated: true) { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description specifiedByURL
  fields(includeDeprecated: true) { name description args(includeDeprecated: true) { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason }
  inputFields(includeDeprecated: true) { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue isDeprecated deprecationReason }
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } } }
}`

// The introspection query of GraphiQL, codegen and Apollo's tools nests
// deeper than DefaultLimits.Depth allows the schema's own fields; it has a
// depth of its own, and every other limit still holds under __schema.
func TestLimitsLetTheIntrospectionQueryThrough(t *testing.T) {
	c := newLimitChecker(DefaultLimits, 10)
	ctx := context.Background()
	if err := c.MutateOperationParameters(ctx, &graphql.RawParams{Query: introspectionQuery}); err != nil {
		t.Fatalf("graphql-js's introspection query: %v", err)
	}
	deep := "{ __schema { types { " + strings.Repeat("ofType { ", 30) + "name" + strings.Repeat(" }", 30) + " } } }"
	if err := c.MutateOperationParameters(ctx, &graphql.RawParams{Query: deep}); err == nil || err.Extensions["code"] != CodeQueryTooComplex {
		t.Errorf("introspection 32 deep: %v, want %s", err, CodeQueryTooComplex)
	}
	// Under __type, and in a fragment, too.
	deepType := "{ ...Q } fragment Q on Query { __type(name: \"Order\") { " + strings.Repeat("ofType { ", 30) + "name" + strings.Repeat(" }", 30) + " } }"
	if err := c.MutateOperationParameters(ctx, &graphql.RawParams{Query: deepType}); err == nil || err.Extensions["code"] != CodeQueryTooComplex {
		t.Errorf("__type 31 deep in a fragment: %v, want %s", err, CodeQueryTooComplex)
	}
	// The schema's own fields keep their depth.
	deepOrders := "{ __typename orders { edges { node { " + strings.Repeat("items { ", 12) + "sku" + strings.Repeat(" }", 12) + " } } } }"
	if err := c.MutateOperationParameters(ctx, &graphql.RawParams{Query: deepOrders}); err == nil || err.Extensions["code"] != CodeQueryTooComplex {
		t.Errorf("orders 16 deep: %v, want %s", err, CodeQueryTooComplex)
	}
}
