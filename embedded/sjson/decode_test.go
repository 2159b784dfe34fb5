package sjson

import (
	"bytes"
	"errors"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/ordergateway/gateway/embedded/sjson/sjsontest"
)

// TestDecodeRefuses: what the decoding does not cover, or a value that
// does not match its schema, is ErrUnsupported, never a document read
// wrong; what Encode encodes decodes back to the same BSON.
func TestDecodeRefuses(t *testing.T) {
	for _, stored := range []string{
		`{}`,
		`not json`,
		`{"$s": {"p": {"_id": {"t": "objectId"}}, "$k": ["_id"]}, "_id": "6570a1b2c3d4e5f601234567"}`,
		`{"$s": {"p": {"_id": {"t": "string"}}, "$k": ["_id"]}, "_id": 5}`,
		`{"$s": {"p": {"_id": {"t": "string"}, "n": {"t": "int"}}, "$k": ["_id", "n"]}, "_id": "a", "n": 5000000000}`,
		`{"$s": {"p": {"_id": {"t": "string"}, "n": {"t": "long"}}, "$k": ["_id", "n"]}, "_id": "a", "n": 1.5}`,
		`{"$s": {"p": {"_id": {"t": "string"}}, "$k": ["_id"]}, "_id": "a", "extra": 1}`,
		`{"$s": {"p": {"_id": {"t": "string"}, "x": {"t": "bool"}}, "$k": ["_id", "y"]}, "_id": "a", "x": true}`,
		`{"$s": {"p": {"_id": {"t": "string"}, "a": {"t": "array", "i": [{"t": "int"}]}}, "$k": ["_id", "a"]}, "_id": "a", "a": [1, 2]}`,
		`{"$s": {"p": {"_id": {"t": "string"}, "o": {"t": "object"}}, "$k": ["_id", "o"]}, "_id": "a", "o": {}}`,
		`{"$s": {"p": {"_id": {"t": "string"}, "d": {"t": "double"}}, "$k": ["_id", "d"]}, "_id": "a", "d": "Infinity"}`,
		`{"$s": {"p": {"_id": {"t": "string"}, "z": {"t": "null"}}, "$k": ["_id", "z"]}, "_id": "a", "z": 0}`,
	} {
		if doc, err := Decode([]byte(stored)); !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: %v, %v; want ErrUnsupported", stored, bson.Raw(doc), err)
		}
	}
	for _, d := range sjsontest.Samples() {
		raw := mustMarshal(t, d)
		stored, err := Encode(raw)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Decode(stored)
		if err != nil || !bytes.Equal(back, raw) {
			t.Errorf("%v: encoded and decoded: %v, %v", d[0].Value, bson.Raw(back), err)
		}
	}
}
