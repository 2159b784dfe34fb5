// Package sjsontest holds the documents that the tests of package sjson and
// those of package embedded, which compare the encoding with what FerretDB
// stores, share.
package sjsontest

import (
	"fmt"
	"math"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Samples are documents with every type sjson.Encode encodes, nested in
// documents and arrays, each with a distinct string _id first.
func Samples() []bson.D {
	at := time.Date(2026, 12, 6, 18, 30, 1, 234_000_000, time.UTC)
	return []bson.D{
		{{Key: "_id", Value: "plain"}},
		{{Key: "_id", Value: "types"}, {Key: "s", Value: `quotes " \ <b>&amp; é 日本 ` + "\t\n\x01\x1f\u2028 😀"}, {Key: "i32", Value: int32(-7)}, {Key: "i64", Value: int64(math.MaxInt64)},
			{Key: "f", Value: 1.5}, {Key: "whole", Value: 3.0}, {Key: "big", Value: 1e300}, {Key: "tiny", Value: 5e-324}, {Key: "yes", Value: true}, {Key: "no", Value: false},
			{Key: "at", Value: at}, {Key: "before1970", Value: time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC)}, {Key: "nothing", Value: nil}},
		{{Key: "_id", Value: "nested"}, {Key: "empty", Value: bson.D{}}, {Key: "none", Value: bson.A{}},
			{Key: "items", Value: bson.A{bson.D{{Key: "sku", Value: "a"}, {Key: "q", Value: int32(2)}}, bson.D{{Key: "sku", Value: "b"}, {Key: "price", Value: int64(1999)}}}},
			{Key: "mixed", Value: bson.A{"x", int32(1), 2.5, nil, true, at, bson.D{{Key: "deep", Value: bson.D{{Key: "deeper", Value: bson.A{}}}}}}},
			{Key: "address", Value: bson.D{{Key: "name", Value: "A"}, {Key: "lines", Value: bson.A{"1", "2"}}}}},
	}
}

// ManyKeys is a document with n keys k0, k1... and then extra.
func ManyKeys(n int, extra string) bson.D {
	var d bson.D
	for i := range n {
		d = append(d, bson.E{Key: fmt.Sprintf("k%d", i), Value: i})
	}
	return append(d, bson.E{Key: extra, Value: n})
}

// OrderView is a document of the shape the views write: order id, with
// items, history and a total.
func OrderView(id string) bson.D {
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
	return bson.D{{Key: "_id", Value: id}, {Key: "customerId", Value: "c-42"}, {Key: "status", Value: "CONFIRMED"}, {Key: "items", Value: items},
		{Key: "itemCount", Value: int32(6)}, {Key: "total", Value: bson.D{{Key: "amount", Value: "75.00"}, {Key: "currencyCode", Value: "EUR"}}},
		{Key: "history", Value: history}, {Key: "version", Value: int64(3)}, {Key: "createdAt", Value: at}, {Key: "updatedAt", Value: at}}
}
