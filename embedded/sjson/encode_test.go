package sjson

import (
	"errors"
	"math"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ordergateway/gateway/embedded/sjson/sjsontest"
)

// TestEncodeRefuses: what the encoding does not cover is refused, never
// written wrong.
func TestEncodeRefuses(t *testing.T) {
	for _, d := range []bson.D{
		{{Key: "n", Value: 1}, {Key: "_id", Value: "late"}},
		{{Key: "_id", Value: "oid"}, {Key: "o", Value: bson.NewObjectID()}},
		{{Key: "_id", Value: "bin"}, {Key: "b", Value: bson.Binary{Data: []byte{1}}}},
		{{Key: "_id", Value: "nan"}, {Key: "f", Value: math.NaN()}},
		{{Key: "_id", Value: "inf"}, {Key: "a", Value: bson.A{math.Inf(1)}}},
		{{Key: "_id", Value: "key"}, {Key: `a"b`, Value: 1}},
		{{Key: "_id", Value: "nested array"}, {Key: "a", Value: bson.A{bson.A{1}}}},
		{{Key: "_id", Value: "dollar"}, {Key: "$s", Value: 1}},
		{{Key: "_id", Value: "dot"}, {Key: "d", Value: bson.D{{Key: "a.b", Value: 1}}}},
		{{Key: "_id", Value: "empty key"}, {Key: "", Value: 1}},
		{{Key: "_id", Value: "repeat"}, {Key: "a", Value: 1}, {Key: "a", Value: 2}},
		{{Key: "_id", Value: "repeat nested"}, {Key: "items", Value: bson.A{bson.D{{Key: "x", Value: 1}, {Key: "x", Value: 1}}}}},
		{{Key: "_id", Value: "repeat late"}, {Key: "d", Value: sjsontest.ManyKeys(40, "k7")}},
		{{Key: "_id", Value: "nul"}, {Key: "s", Value: "a\x00b"}},
		{{Key: "_id", Value: "huge"}, {Key: "s", Value: strings.Repeat("x", 16<<20)}},
		{{Key: "_id", Value: "nested key"}, {Key: "d", Value: bson.D{{Key: "é", Value: 1}}}},
	} {
		raw, err := bson.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		if j, err := Encode(raw); !errors.Is(err, ErrUnsupported) {
			t.Errorf("%v: %s, %v; want ErrUnsupported", d, j, err)
		}
	}
}

// TestEncodeMalformed: a document cut anywhere, or with a length that lies,
// is an error, never a panic or a read past its end.
func TestEncodeMalformed(t *testing.T) {
	for _, d := range sjsontest.Samples() {
		raw := mustMarshal(t, d)
		for n := range len(raw) {
			cut := append([]byte(nil), raw[:n]...)
			if _, err := Encode(cut); err == nil {
				t.Fatalf("%v cut at %d of %d bytes: no error", d[0].Value, n, len(raw))
			}
		}
		for i := 4; i < len(raw)-1; i++ {
			bad := append([]byte(nil), raw...)
			bad[i] ^= 0xff
			_, _ = Encode(bad) // must not panic
		}
	}
}

func mustMarshal(t testing.TB, d bson.D) []byte {
	t.Helper()
	b, err := bson.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
