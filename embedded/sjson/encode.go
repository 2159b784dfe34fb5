// Package sjson encodes BSON documents into FerretDB 1.24's JSON storage
// format ("sjson": the values as JSON beside a schema of their BSON types
// and key order), as its PostgreSQL and SQLite backends store them, and
// decodes such rows back into BSON. It covers the types the gateway's views
// use and refuses the rest (ErrUnsupported): the caller then goes through
// FerretDB.
//
// It does not import FerretDB (whose internal/handler/sjson cannot be
// imported anyway), so that it fuzzes fast; the tests that compare the
// encoding with what FerretDB itself stores are in package embedded
// (TestSJSONMatchesFerretDB*).
package sjson

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"
	"unsafe"
)

// Encode encodes a BSON document the way FerretDB 1.24's PostgreSQL backend
// stores it in its _jsonb column (and its SQLite backend in
// _ferretdb_sjson): the values as JSON, beside a schema under "$s" that
// keeps each value's BSON type and the keys' order.
//
//	{"$s": {"p": {"_id": {"t": "string"}, "n": {"t": "long"}}, "$k": ["_id", "n"]}, "_id": "o-1", "n": 5}
//
// It encodes the types the views use: double, string, document, array,
// bool, datetime (milliseconds since the epoch), null, int32 and int64.
// Anything else (ObjectId, binary, timestamps, decimals...), an array in an
// array (which FerretDB 1.24 refuses as well), a key that JSON would have
// to escape, a first key other than _id, and a double that is not finite
// are refused with ErrUnsupported: the caller writes such a document
// through FerretDB instead. The JSON may differ from FerretDB's in
// spelling (escapes, number formats) but not in value, which is what
// PostgreSQL's jsonb keeps: embedded.TestSJSONMatchesFerretDB compares the
// two as jsonb. A document over MaxDocumentBytes is refused, and malformed
// BSON is an error, never a panic or a read past doc's end.
//
// It walks the BSON bytes itself (the views' documents are written a batch
// at a time, and the driver's element lists cost an allocation per level).
func Encode(doc []byte) ([]byte, error) {
	return AppendEncode(make([]byte, 0, EstimateEncodedLen(doc)), doc)
}

// EstimateEncodedLen is about the size of doc's encoding (Encode), to size
// a buffer: the schema spells every key and type again beside the values.
func EstimateEncodedLen(doc []byte) int { return 4 * len(doc) }

// AppendEncode appends doc's encoding (Encode) to b and returns the
// extended buffer. On an error it returns nil, and what it may have
// written in b's spare capacity is not to be used.
func AppendEncode(b []byte, doc []byte) ([]byte, error) {
	if len(doc) > MaxDocumentBytes {
		return nil, fmt.Errorf("%w: a document over %d bytes", ErrUnsupported, MaxDocumentBytes)
	}
	body, err := bsonBody(doc)
	if err != nil {
		return nil, err
	}
	first, err := nextElement(body)
	if err != nil {
		return nil, err
	}
	if first.key != "_id" {
		return nil, fmt.Errorf("%w: the document's first field is not _id", ErrUnsupported)
	}
	b = append(b, `{"$s":`...)
	if b, err = appendSchema(b, body); err != nil {
		return nil, err
	}
	for rest := body; len(rest) > 0; {
		e, err := nextElement(rest)
		if err != nil {
			return nil, err
		}
		rest = rest[e.size:]
		b = append(b, ',')
		if b, err = appendKey(b, e.key); err != nil {
			return nil, err
		}
		if b, err = appendValue(b, e); err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}

// MaxDocumentBytes is MongoDB's (and FerretDB's) largest document, in BSON
// bytes: Encode refuses a larger one.
const MaxDocumentBytes = 16 << 20

// ErrUnsupported: the document (or the stored row) holds something Encode
// (or Decode) does not cover; write (or read) it through FerretDB.
var ErrUnsupported = errors.New("not encodable for the store's tables")

var errBSON = errors.New("malformed BSON")

// BSON element types Encode encodes.
const (
	bsonDouble   = 0x01
	bsonString   = 0x02
	bsonDocument = 0x03
	bsonArray    = 0x04
	bsonBool     = 0x08
	bsonDateTime = 0x09
	bsonNull     = 0x0A
	bsonInt32    = 0x10
	bsonInt64    = 0x12
)

// bsonBody is a document's elements: doc without its length and its final
// zero byte.
func bsonBody(doc []byte) ([]byte, error) {
	if len(doc) < 5 || int(binary.LittleEndian.Uint32(doc)) != len(doc) || doc[len(doc)-1] != 0 {
		return nil, errBSON
	}
	return doc[4 : len(doc)-1], nil
}

// element is one element of a document's body.
type element struct {
	typ   byte
	key   string // a view of the document's bytes (see nextElement)
	value []byte // the value's bytes (a document's or array's whole, with its length)
	size  int    // of the whole element in the body
}

// nextElement reads the element at the start of body.
func nextElement(body []byte) (element, error) {
	if len(body) < 2 {
		return element{}, errBSON
	}
	e := element{typ: body[0]}
	end := 1
	for end < len(body) && body[end] != 0 {
		end++
	}
	if end == len(body) {
		return element{}, errBSON
	}
	// The key is a view of the document's bytes, which nobody changes
	// while they are encoded: a copy would cost an allocation per field.
	e.key = unsafe.String(&body[1], end-1)
	v := body[end+1:]
	n := 0
	switch e.typ {
	case bsonDouble, bsonDateTime, bsonInt64:
		n = 8
	case bsonInt32:
		n = 4
	case bsonBool:
		n = 1
	case bsonNull:
	case bsonString:
		if len(v) < 4 {
			return element{}, errBSON
		}
		n = 4 + int(int32(binary.LittleEndian.Uint32(v)))
		if n < 5 {
			return element{}, errBSON
		}
	case bsonDocument, bsonArray:
		if len(v) < 4 {
			return element{}, errBSON
		}
		n = int(int32(binary.LittleEndian.Uint32(v)))
		if n < 5 {
			return element{}, errBSON
		}
	default:
		return element{}, fmt.Errorf("%w: BSON type 0x%02x", ErrUnsupported, e.typ)
	}
	if n > len(v) {
		return element{}, errBSON
	}
	e.value = v[:n]
	e.size = end + 1 + n
	return e, nil
}

// appendKey appends key as a JSON string and a colon. Refused: keys that
// JSON would escape (FerretDB writes its top-level keys unescaped), and
// those FerretDB refuses to store (document_validation.go): empty, starting
// with $ (a top-level "$s" would even replace the schema), or holding a dot.
func appendKey(b []byte, key string) ([]byte, error) {
	if key == "" || key[0] == '$' {
		return nil, fmt.Errorf("%w: a field name that is empty or starts with $", ErrUnsupported)
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c < 0x20 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' || c == '.' || c >= 0x80 {
			return nil, fmt.Errorf("%w: a field name with character %q", ErrUnsupported, c)
		}
	}
	b = append(b, '"')
	b = append(b, key...)
	return append(b, `":`...), nil
}

// appendSchema appends the schema of a document's body: {} when it has no
// fields.
func appendSchema(b []byte, body []byte) ([]byte, error) {
	if len(body) == 0 {
		return append(b, "{}"...), nil
	}
	b = append(b, `{"p":{`...)
	var few [16]string // the keys seen at this level, to refuse repeats
	var many map[string]struct{}
	for rest, i := body, 0; len(rest) > 0; i++ {
		e, err := nextElement(rest)
		if err != nil {
			return nil, err
		}
		rest = rest[e.size:]
		if repeated(few[:min(i, len(few))], &many, e.key, i) {
			// jsonb keeps one of them, and FerretDB then cannot read the row.
			return nil, fmt.Errorf("%w: a field name repeated", ErrUnsupported)
		}
		if i < len(few) {
			few[i] = e.key
		}
		if i > 0 {
			b = append(b, ',')
		}
		if b, err = appendKey(b, e.key); err != nil {
			return nil, err
		}
		if b, err = appendType(b, e); err != nil {
			return nil, err
		}
	}
	b = append(b, `},"$k":[`...)
	for rest, i := body, 0; len(rest) > 0; i++ {
		e, _ := nextElement(rest) // read above
		rest = rest[e.size:]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, e.key...) // checked by appendKey above
		b = append(b, '"')
	}
	return append(b, "]}"...), nil
}

// repeated reports whether key is among the keys seen before it: the first
// len(few) in few, the others in many (made when needed, and key added).
func repeated(few []string, many *map[string]struct{}, key string, i int) bool {
	for _, k := range few {
		if k == key {
			return true
		}
	}
	if i < 16 {
		return false
	}
	if *many == nil {
		*many = map[string]struct{}{}
	}
	if _, ok := (*many)[key]; ok {
		return true
	}
	(*many)[key] = struct{}{}
	return false
}

// appendType appends one value's type in a schema.
func appendType(b []byte, e element) ([]byte, error) {
	switch e.typ {
	case bsonDocument:
		body, err := bsonBody(e.value)
		if err != nil {
			return nil, err
		}
		b = append(b, `{"t":"object","$s":`...)
		if b, err = appendSchema(b, body); err != nil {
			return nil, err
		}
		return append(b, '}'), nil
	case bsonArray:
		body, err := bsonBody(e.value)
		if err != nil {
			return nil, err
		}
		b = append(b, `{"t":"array","i":[`...)
		for rest, i := body, 0; len(rest) > 0; i++ {
			item, err := nextElement(rest)
			if err != nil {
				return nil, err
			}
			rest = rest[item.size:]
			if item.typ == bsonArray { // FerretDB refuses them too
				return nil, fmt.Errorf("%w: an array in an array", ErrUnsupported)
			}
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = appendType(b, item); err != nil {
				return nil, err
			}
		}
		return append(b, "]}"...), nil
	case bsonDouble:
		return append(b, `{"t":"double"}`...), nil
	case bsonString:
		return append(b, `{"t":"string"}`...), nil
	case bsonBool:
		return append(b, `{"t":"bool"}`...), nil
	case bsonDateTime:
		return append(b, `{"t":"date"}`...), nil
	case bsonNull:
		return append(b, `{"t":"null"}`...), nil
	case bsonInt32:
		return append(b, `{"t":"int"}`...), nil
	case bsonInt64:
		return append(b, `{"t":"long"}`...), nil
	}
	return nil, fmt.Errorf("%w: BSON type 0x%02x", ErrUnsupported, e.typ)
}

// appendValue appends one value as JSON.
func appendValue(b []byte, e element) ([]byte, error) {
	switch e.typ {
	case bsonDocument, bsonArray:
		body, err := bsonBody(e.value)
		if err != nil {
			return nil, err
		}
		open, end := byte('{'), byte('}')
		if e.typ == bsonArray {
			open, end = '[', ']'
		}
		b = append(b, open)
		for rest, i := body, 0; len(rest) > 0; i++ {
			item, err := nextElement(rest)
			if err != nil {
				return nil, err
			}
			rest = rest[item.size:]
			if i > 0 {
				b = append(b, ',')
			}
			if e.typ == bsonDocument {
				if b, err = appendKey(b, item.key); err != nil {
					return nil, err
				}
			}
			if b, err = appendValue(b, item); err != nil {
				return nil, err
			}
		}
		return append(b, end), nil
	case bsonDouble:
		f := math.Float64frombits(binary.LittleEndian.Uint64(e.value))
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("%w: a double that is not finite", ErrUnsupported)
		}
		return strconv.AppendFloat(b, f, 'g', -1, 64), nil // the shortest that reads back as f
	case bsonString:
		s := e.value[4 : len(e.value)-1] // without its length and final zero byte
		if bytes.IndexByte(s, 0) >= 0 {
			// PostgreSQL's jsonb refuses \u0000, which would fail the whole
			// statement; FerretDB fails on it alone.
			return nil, fmt.Errorf("%w: a string with a NUL character", ErrUnsupported)
		}
		return AppendString(b, s), nil
	case bsonBool:
		return strconv.AppendBool(b, e.value[0] != 0), nil
	case bsonDateTime, bsonInt64:
		return strconv.AppendInt(b, int64(binary.LittleEndian.Uint64(e.value)), 10), nil
	case bsonNull:
		return append(b, "null"...), nil
	case bsonInt32:
		return strconv.AppendInt(b, int64(int32(binary.LittleEndian.Uint32(e.value))), 10), nil
	}
	return nil, fmt.Errorf("%w: BSON type 0x%02x", ErrUnsupported, e.typ)
}

// AppendString appends s as a JSON string, as encoding/json reads it
// back: quotes, backslashes and control characters escaped, invalid UTF-8
// replaced by U+FFFD (as encoding/json, and so FerretDB, does). The store
// on SQLite matches an _id as this JSON text.
func AppendString(b []byte, s []byte) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && n == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return append(b, '"')
}
