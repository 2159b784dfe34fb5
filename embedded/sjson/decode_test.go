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
		// A key twice in "$k" (and another left out), a key with a NUL
		// (which BSON cannot hold: the driver panicked), at the top or
		// nested.
		`{"$s": {"p": {"_id": {"t": "string"}, "a": {"t": "int"}}, "$k": ["_id", "_id"]}, "_id": "x", "a": 1}`,
		`{"$s": {"p": {"_id": {"t": "string"}, "o": {"t": "object", "$s": {"p": {"a": {"t": "int"}, "b": {"t": "int"}}, "$k": ["a", "a"]}}}, "$k": ["_id", "o"]}, "_id": "x", "o": {"a": 1, "b": 2}}`,
		`{"$s": {"p": {"_id": {"t": "string"}, "a\u0000b": {"t": "int"}}, "$k": ["_id", "a\u0000b"]}, "_id": "x", "a\u0000b": 1}`,
		`{"$s": {"p": {"_id": {"t": "string"}, "o": {"t": "object", "$s": {"p": {"\u0000": {"t": "int"}}, "$k": ["\u0000"]}}}, "$k": ["_id", "o"]}, "_id": "x", "o": {"\u0000": 1}}`,
		// Not one JSON value.
		`{"$s": {"p": {"_id": {"t": "string"}}, "$k": ["_id"]}, "_id": "x"} {}`,
		`{"$s": {"p": {"_id": {"t": "string"}}, "$k": ["_id"]}, "_id": "x"`,
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

// TestDecodeReadsAnySpelling: a row reads the same however its JSON is
// spelled: keys in any order (PostgreSQL's jsonb prints the shorter
// first) with spaces, escapes in keys and strings, invalid UTF-8 read as
// U+FFFD, the schema not first; of a key written twice the last value
// counts, as in jsonb.
func TestDecodeReadsAnySpelling(t *testing.T) {
	stored := []byte("{\"n\": 1, \"_id\": \"caf\\u00e9\", \"t\\u00e9\": [{\"z\": null, \"a\": \"x\\\"\xff\"}], \"n\": 2, " +
		`"$s": {"$k": ["_id", "té", "n"], "p": {"n": {"t": "long"}, "_id": {"t": "string"}, "té": {"t": "array", "i": [{"t": "object", "$s": {"p": {"a": {"t": "string"}, "z": {"t": "null"}}, "$k": ["a", "z"]}}]}}}}`)
	want := mustMarshal(t, bson.D{{Key: "_id", Value: "café"}, {Key: "té", Value: bson.A{bson.D{{Key: "a", Value: "x\"\uFFFD"}, {Key: "z", Value: nil}}}}, {Key: "n", Value: int64(2)}})
	got, err := Decode(stored)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("%s: %v, %v; want %v", stored, bson.Raw(got), err, bson.Raw(want))
	}
}
