package sjson

import (
	"fmt"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// orderView is a document of the shape the views write: an order with
// items, history and a total.
func orderView(b *testing.B) []byte {
	at := bson.DateTime(time.Date(2026, 12, 6, 18, 30, 0, 0, time.UTC).UnixMilli())
	items := bson.A{}
	for j := range 3 {
		items = append(items, bson.D{{Key: "sku", Value: fmt.Sprintf("SKU-%d", j)}, {Key: "name", Value: "A thing"}, {Key: "quantity", Value: int32(2)},
			{Key: "unitPrice", Value: bson.D{{Key: "amount", Value: "12.50"}, {Key: "currencyCode", Value: "EUR"}}}})
	}
	history := bson.A{}
	for v := range 3 {
		history = append(history, bson.D{{Key: "version", Value: int32(v + 1)}, {Key: "status", Value: "CONFIRMED"}, {Key: "at", Value: at}})
	}
	return mustMarshal(b, bson.D{{Key: "_id", Value: "ord_00000000000000000000000042"}, {Key: "customerId", Value: "c-42"}, {Key: "status", Value: "CONFIRMED"}, {Key: "items", Value: items},
		{Key: "itemCount", Value: int32(6)}, {Key: "total", Value: bson.D{{Key: "amount", Value: "75.00"}, {Key: "currencyCode", Value: "EUR"}}},
		{Key: "history", Value: history}, {Key: "version", Value: int64(3)}, {Key: "createdAt", Value: at}, {Key: "updatedAt", Value: at}})
}

// BenchmarkDecode decodes one order view, as a direct read does.
func BenchmarkDecode(b *testing.B) {
	stored, err := Encode(orderView(b))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(stored)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(stored); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncode encodes one order view, as a direct write does.
func BenchmarkEncode(b *testing.B) {
	doc := orderView(b)
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encode(doc); err != nil {
			b.Fatal(err)
		}
	}
}
