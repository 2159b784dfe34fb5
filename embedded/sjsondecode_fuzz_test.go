package embedded

import (
	"bytes"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// FuzzSJSONDecode: whatever a row holds, bsonFromSJSON returns valid BSON
// or an error, never a panic; and what it decodes encodes back to the same
// stored form (a document FerretDB would read the same). Plain `go test`
// runs the seeds; fuzzing this package is slow (a few inputs a second: the
// coverage of a binary with FerretDB in it), so .ci/run does not.
func FuzzSJSONDecode(f *testing.F) {
	for _, d := range sjsonSamples() {
		raw, err := bson.Marshal(d)
		if err != nil {
			f.Fatal(err)
		}
		stored, err := sjsonDocument(raw)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(stored)
	}
	f.Add([]byte(`{"$s": {"p": {"_id": {"t": "string"}, "a": {"t": "array", "i": [{"t": "object", "$s": {}}]}}, "$k": ["_id", "a"]}, "_id": "x", "a": [{}]}`))
	f.Fuzz(func(t *testing.T, stored []byte) {
		doc, err := bsonFromSJSON(stored)
		if err != nil {
			return
		}
		if err := bsoncore.Document(doc).Validate(); err != nil {
			t.Fatalf("decoded %q into invalid BSON: %v", stored, err)
		}
		again, err := sjsonDocument(doc)
		if err != nil {
			return // decodable but not what the writer writes (a first key other than _id, say)
		}
		back, err := bsonFromSJSON(again)
		if err != nil || !bytes.Equal(back, doc) {
			t.Fatalf("%q: decoded, encoded and decoded again differs: %v, %v", stored, bson.Raw(back), err)
		}
	})
}
