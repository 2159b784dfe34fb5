package graph

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/ordergateway/gateway/tracing"
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
// the same run: the empty query { __typename }; and order(id) again with
// every trace sampled and its span exported as JSON by the console exporter
// to /dev/null, as OTEL_TRACES_EXPORTER=console OTEL_TRACES_SAMPLER=always_on
// does (order-traced: the query's server span; the fixed views send no store
// command).
//
//	go test -run '^$' -bench OrderQueryHTTP -benchmem ./graph
func BenchmarkOrderQueryHTTP(b *testing.B) {
	at := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	d := view.OrderDoc{ID: "ord_1", CustomerID: "c1", Status: "SHIPPED", Currency: "EUR",
		Items:     []view.ItemDoc{{SKU: "A", Name: "a", Quantity: 2, UnitPrice: 1234, LineTotal: 2468}, {SKU: "B", Name: "b", Quantity: 1, UnitPrice: 999, LineTotal: 999}},
		ItemCount: 3, Total: 3467, ShippingAddress: &view.AddressDoc{Name: "n", Line1: "l", City: "c", PostalCode: "p", Country: "DE"},
		TrackingNumber: "T1", History: []view.ChangeDoc{{Status: "PENDING", At: at}, {Status: "CONFIRMED", At: at}, {Status: "SHIPPED", At: at}},
		Version: 3, CreatedAt: at, UpdatedAt: at}
	srv := httptest.NewServer(NewServer(&Resolver{Views: fixedViews{d}}, WebsocketOptions{}))
	defer srv.Close()
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer devNull.Close()
	exp, err := stdouttrace.New(stdouttrace.WithWriter(devNull))
	if err != nil {
		b.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	defer tp.Shutdown(context.Background())
	traced := httptest.NewServer(NewServer(&Resolver{Views: fixedViews{d}, Tracer: tracing.New(tp)}, WebsocketOptions{}))
	defer traced.Close()
	client := srv.Client()
	for _, q := range []struct{ name, body, url string }{
		{"order", benchOrderQuery, srv.URL}, {"empty", `{"query":"{ __typename }"}`, srv.URL}, {"order-traced", benchOrderQuery, traced.URL},
	} {
		b.Run(q.name, func(b *testing.B) {
			for b.Loop() {
				resp, err := client.Post(q.url, "application/json", strings.NewReader(q.body))
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
