package graph

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ordergateway/gateway/view"
)

// fixedViews answers every order lookup with one document, so that
// BenchmarkOrderQueryHTTP measures the GraphQL layer alone (the store has its
// own figures in cmd/bench).
type fixedViews struct{ d view.OrderDoc }

func (f fixedViews) Order(context.Context, string) (*view.OrderDoc, error) { return &f.d, nil }
func (f fixedViews) Orders(context.Context, view.OrderFilter, int, string, bool) (view.Page, error) {
	return view.Page{}, nil
}
func (f fixedViews) Customer(context.Context, string) (*view.CustomerDoc, error) { return nil, nil }

const benchOrderQuery = `{"query":"query($id: ID!) { order(id: $id) { id customerId status items { sku name quantity unitPrice { amount currencyCode } lineTotal { amount currencyCode } } itemCount total { amount currencyCode } shippingAddress { name line1 line2 city postalCode country } trackingNumber cancellationReason history { status at reason } version createdAt updatedAt } }","variables":{"id":"ord_1"}}`

// BenchmarkOrderQueryHTTP is the cost of the GraphQL endpoint over loopback
// HTTP for order(id) with every field of an order, next to its baseline in
// the same run: the empty query { __typename }.
//
//	go test -run '^$' -bench OrderQueryHTTP ./graph
func BenchmarkOrderQueryHTTP(b *testing.B) {
	at := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	d := view.OrderDoc{ID: "ord_1", CustomerID: "c1", Status: "SHIPPED", Currency: "EUR",
		Items:     []view.ItemDoc{{SKU: "A", Name: "a", Quantity: 2, UnitPrice: 1234, LineTotal: 2468}, {SKU: "B", Name: "b", Quantity: 1, UnitPrice: 999, LineTotal: 999}},
		ItemCount: 3, Total: 3467, ShippingAddress: &view.AddressDoc{Name: "n", Line1: "l", City: "c", PostalCode: "p", Country: "DE"},
		TrackingNumber: "T1", History: []view.ChangeDoc{{Status: "PENDING", At: at}, {Status: "CONFIRMED", At: at}, {Status: "SHIPPED", At: at}},
		Version: 3, CreatedAt: at, UpdatedAt: at}
	srv := httptest.NewServer(NewServer(&Resolver{Views: fixedViews{d}}, WebsocketOptions{}))
	defer srv.Close()
	client := srv.Client()
	for _, q := range []struct{ name, body string }{{"order", benchOrderQuery}, {"empty", `{"query":"{ __typename }"}`}} {
		b.Run(q.name, func(b *testing.B) {
			for b.Loop() {
				resp, err := client.Post(srv.URL, "application/json", strings.NewReader(q.body))
				if err != nil {
					b.Fatal(err)
				}
				var buf [8192]byte
				for {
					if _, err := resp.Body.Read(buf[:]); err != nil {
						break
					}
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatal(resp.Status)
				}
			}
		})
	}
}
