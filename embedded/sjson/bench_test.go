package sjson

import (
	"testing"

	"github.com/ordergateway/gateway/embedded/sjson/sjsontest"
)

// orderView is an order view as the views write it.
func orderView(b *testing.B) []byte {
	return mustMarshal(b, sjsontest.OrderView("ord_00000000000000000000000042"))
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
