package sjson

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"strconv"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/ordergateway/gateway/embedded/sjson/sjsontest"
)

// FuzzSJSONDecode: whatever a row holds, Decode returns valid BSON, no
// more than twice the row's size and with no key twice in an object, or an
// error, never a panic; it reads each row as decodeReference does, or
// refuses what that one read wrong; and what it decodes encodes back to the
// same stored form (a document FerretDB would read the same). Besides, as
// the text of a JSON string, the input unquotes as encoding/json reads it,
// and Decode's parser, before the validation, returns at worst an error.
func FuzzSJSONDecode(f *testing.F) {
	for _, d := range sjsontest.Samples() {
		stored, err := Encode(mustMarshal(f, d))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(stored)
	}
	f.Add([]byte(`{"$s": {"p": {"_id": {"t": "string"}, "a": {"t": "array", "i": [{"t": "object", "$s": {}}]}}, "$k": ["_id", "a"]}, "_id": "x", "a": [{}]}`))
	// Keys and strings as PostgreSQL's jsonb spells them: escaped, in any order.
	f.Add([]byte(`{"_id": "x\u00e9", "$s": {"$k": ["_id", "k\u0041\n"], "p": {"_id": {"t": "string"}, "k\u0041\n": {"t": "long"}}}, "k\u0041\n": -1}`))
	f.Add([]byte(`\ud83d\ude00 \ud83d \ude00\u00e9\"\\\/\b\f\n\r\t\u0000 ` + "\xff\xed\xa0\x80")) // a JSON string's text
	f.Fuzz(func(t *testing.T, stored []byte) {
		if quoted := append(append([]byte{'"'}, stored...), '"'); json.Valid(quoted) {
			var want string
			if err := json.Unmarshal(quoted, &want); err != nil {
				t.Fatal(err)
			}
			if got, err := unquote(quoted); got != want || err != nil {
				t.Fatalf("%s unquotes as %q, %v; encoding/json reads %q", quoted, got, err, want)
			}
		}
		// The parser alone, on text that json.Valid may refuse: an error,
		// never a panic.
		p := parser{data: stored}
		_, _ = p.value()

		doc, err := Decode(stored)
		want, panicked, wantErr := referenceOutcome(stored)
		switch {
		case err != nil:
			if wantErr == nil && !panicked && !repeatedKey(t, want) {
				t.Fatalf("Decode refuses %q (%v), which decodeReference reads as %v", stored, err, bson.Raw(want))
			}
			return
		case panicked || wantErr != nil:
			t.Fatalf("Decode reads %q as %v, which decodeReference refuses (%v) or panics on (%v)", stored, bson.Raw(doc), wantErr, panicked)
		case !bytes.Equal(doc, want):
			t.Fatalf("Decode reads %q as %v, decodeReference as %v", stored, bson.Raw(doc), bson.Raw(want))
		}
		if err := bsoncore.Document(doc).Validate(); err != nil {
			t.Fatalf("decoded %q into invalid BSON: %v", stored, err)
		}
		if repeatedKey(t, doc) {
			t.Fatalf("decoded %q into %v, with a key twice", stored, bson.Raw(doc))
		}
		if len(doc) > 2*len(stored) {
			t.Fatalf("decoded %d bytes into %d", len(stored), len(doc))
		}
		again, err := Encode(doc)
		if err != nil {
			return // decodable but not what the writer writes (a first key other than _id, say)
		}
		back, err := Decode(again)
		if err != nil || !bytes.Equal(back, doc) {
			t.Fatalf("%q: decoded, encoded and decoded again differs: %v, %v", stored, bson.Raw(back), err)
		}
	})
}

// referenceOutcome is what decodeReference does with stored.
func referenceOutcome(stored []byte) (doc []byte, panicked bool, err error) {
	defer func() {
		if recover() != nil {
			doc, panicked, err = nil, true, nil
		}
	}()
	doc, err = decodeReference(stored)
	return doc, false, err
}

// repeatedKey reports whether a document of doc's, doc included, has a key
// twice.
func repeatedKey(t *testing.T, doc bsoncore.Document) bool {
	elems, err := doc.Elements()
	if err != nil {
		t.Fatalf("%v: %v", bson.Raw(doc), err)
	}
	seen := map[string]bool{}
	for _, e := range elems {
		if seen[e.Key()] {
			return true
		}
		seen[e.Key()] = true
		switch v := e.Value(); v.Type {
		case bsoncore.TypeEmbeddedDocument, bsoncore.TypeArray:
			if repeatedKey(t, v.Data) {
				return true
			}
		}
	}
	return false
}

// FuzzSJSONRoundTrip: whatever BSON Encode takes, Decode reads back as the
// same document, but for what the encoding cannot keep (an array's keys,
// which are its indexes again; invalid UTF-8, which is U+FFFD; a true that
// is not 1); and what Encode refuses is an error, never a panic.
func FuzzSJSONRoundTrip(f *testing.F) {
	for _, d := range sjsontest.Samples() {
		f.Add(mustMarshal(f, d))
	}
	f.Add(mustMarshal(f, bson.D{{Key: "_id", Value: "bad utf-8 \xff\xc3"}, {Key: "a", Value: bson.D{{Key: "0", Value: bson.A{}}}}}))
	f.Fuzz(func(t *testing.T, doc []byte) {
		stored, err := Encode(doc)
		if err != nil {
			return
		}
		back, err := Decode(stored)
		if err != nil {
			t.Fatalf("%v encoded as %s, which does not decode: %v", bson.Raw(doc), stored, err)
		}
		if want := normalized(t, doc); !bytes.Equal(back, want) {
			t.Fatalf("%v encoded as %s decodes as %v, want %v", bson.Raw(doc), stored, bson.Raw(back), bson.Raw(want))
		}
	})
}

// normalized is doc (which Encode took) as the encoding keeps it: arrays
// keyed by their indexes, strings' invalid UTF-8 bytes replaced by U+FFFD
// each, booleans 0 or 1.
func normalized(t *testing.T, doc []byte) []byte {
	t.Helper()
	var appendBody func(b, body []byte, array bool) []byte
	appendBody = func(b, body []byte, array bool) []byte {
		for i := 0; len(body) > 0; i++ {
			e, err := nextElement(body)
			if err != nil {
				t.Fatalf("Encode took %v: %v", bson.Raw(doc), err)
			}
			body = body[e.size:]
			key := e.key
			if array {
				key = strconv.Itoa(i)
			}
			switch e.typ {
			case bsonDocument, bsonArray:
				inner, err := bsonBody(e.value)
				if err != nil {
					t.Fatalf("Encode took %v: %v", bson.Raw(doc), err)
				}
				b = bsoncore.AppendHeader(b, bsoncore.Type(e.typ), key)
				idx, nb := bsoncore.ReserveLength(b)
				nb = appendBody(nb, inner, e.typ == bsonArray)
				b, _ = bsoncore.AppendDocumentEnd(nb, idx)
			case bsonString:
				b = bsoncore.AppendStringElement(b, key, string([]rune(string(e.value[4:len(e.value)-1]))))
			case bsonBool:
				b = bsoncore.AppendBooleanElement(b, key, e.value[0] != 0)
			default: // the value's bytes as they were
				b = bsoncore.AppendHeader(b, bsoncore.Type(e.typ), key)
				b = append(b, e.value...)
			}
		}
		return b
	}
	body, err := bsonBody(doc)
	if err != nil {
		t.Fatalf("Encode took %v: %v", bson.Raw(doc), err)
	}
	out := appendBody(make([]byte, 4, len(doc)), body, false)
	out = append(out, 0)
	binary.LittleEndian.PutUint32(out, uint32(len(out)))
	return out
}
