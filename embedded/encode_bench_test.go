package embedded

import (
	"fmt"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// BenchmarkEncodeDocs encodes a projector batch: 16 order views of the
// shape the views write (items, history, a total), as the direct writes do.
func BenchmarkEncodeDocs(b *testing.B) {
	var ids []string
	var docs [][]byte
	for i := range 16 {
		id := fmt.Sprintf("ord_%026d", i)
		items := bson.A{}
		for j := range 3 {
			items = append(items, bson.D{{Key: "sku", Value: fmt.Sprintf("SKU-%d", j)}, {Key: "name", Value: "A thing"}, {Key: "quantity", Value: int32(2)},
				{Key: "unitPrice", Value: bson.D{{Key: "amount", Value: "12.50"}, {Key: "currencyCode", Value: "EUR"}}}})
		}
		history := bson.A{}
		for v := range 3 {
			history = append(history, bson.D{{Key: "version", Value: int32(v + 1)}, {Key: "status", Value: "CONFIRMED"}, {Key: "at", Value: bson.DateTime(time.Now().UnixMilli())}})
		}
		d, err := bson.Marshal(bson.D{{Key: "_id", Value: id}, {Key: "customerId", Value: "c-42"}, {Key: "status", Value: "CONFIRMED"}, {Key: "items", Value: items},
			{Key: "itemCount", Value: int32(6)}, {Key: "total", Value: bson.D{{Key: "amount", Value: "75.00"}, {Key: "currencyCode", Value: "EUR"}}},
			{Key: "history", Value: history}, {Key: "version", Value: int64(3)}, {Key: "createdAt", Value: bson.DateTime(time.Now().UnixMilli())}, {Key: "updatedAt", Value: bson.DateTime(time.Now().UnixMilli())}})
		if err != nil {
			b.Fatal(err)
		}
		ids, docs = append(ids, id), append(docs, d)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := encodeDocs(ids, docs); err != nil {
			b.Fatal(err)
		}
	}
}
