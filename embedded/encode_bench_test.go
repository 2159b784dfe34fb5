package embedded

import (
	"fmt"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ordergateway/gateway/embedded/sjson/sjsontest"
)

// BenchmarkEncodeDocs encodes a projector batch: 16 order views of the
// shape the views write (items, history, a total), as the direct writes do.
func BenchmarkEncodeDocs(b *testing.B) {
	var ids []string
	var docs [][]byte
	for i := range 16 {
		id := fmt.Sprintf("ord_%026d", i)
		d, err := bson.Marshal(sjsontest.OrderView(id))
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
