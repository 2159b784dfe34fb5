package embedded

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// sjsonDocument encodes a BSON document the way FerretDB 1.24's PostgreSQL
// backend stores it in its _jsonb column (its internal/handler/sjson
// package, which cannot be imported): the values as JSON, beside a schema
// under "$s" that keeps each value's BSON type and the keys' order.
//
//	{"$s": {"p": {"_id": {"t": "string"}, "n": {"t": "long"}}, "$k": ["_id", "n"]}, "_id": "o-1", "n": 5}
//
// It encodes the types the views use: double, string, document, array,
// bool, datetime (milliseconds since the epoch), null, int32 and int64.
// Anything else (ObjectId, binary, timestamps, decimals...), an array in an
// array (which FerretDB 1.24 refuses as well), a key that
// JSON would have to escape, a first key other than _id, and a double that
// is not finite are refused with errSJSONUnsupported: the caller writes
// such a document through FerretDB instead. TestSJSONMatchesFerretDB
// compares the encoding with what FerretDB itself stores.
func sjsonDocument(doc bson.Raw) ([]byte, error) {
	elems, err := doc.Elements()
	if err != nil {
		return nil, err
	}
	if len(elems) == 0 || elems[0].Key() != "_id" {
		return nil, fmt.Errorf("%w: the document's first field is not _id", errSJSONUnsupported)
	}
	var b bytes.Buffer
	b.Grow(2 * len(doc))
	b.WriteString(`{"$s":`)
	if err := sjsonSchema(&b, elems); err != nil {
		return nil, err
	}
	for _, e := range elems {
		b.WriteByte(',')
		if err := sjsonKey(&b, e.Key()); err != nil {
			return nil, err
		}
		if err := sjsonValue(&b, e.Value()); err != nil {
			return nil, err
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// errSJSONUnsupported: the document holds something sjsonDocument does not
// encode.
var errSJSONUnsupported = errors.New("not encodable for the store's tables")

// sjsonKey writes key as a JSON string and a colon; keys that JSON would
// escape are refused (FerretDB writes its top-level keys unescaped).
func sjsonKey(b *bytes.Buffer, key string) error {
	for i := 0; i < len(key); i++ {
		if c := key[i]; c < 0x20 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' || c >= 0x80 {
			return fmt.Errorf("%w: a field name with character %q", errSJSONUnsupported, c)
		}
	}
	b.WriteByte('"')
	b.WriteString(key)
	b.WriteString(`":`)
	return nil
}

// sjsonSchema writes a document's schema: {} when it has no fields.
func sjsonSchema(b *bytes.Buffer, elems []bson.RawElement) error {
	if len(elems) == 0 {
		b.WriteString("{}")
		return nil
	}
	b.WriteString(`{"p":{`)
	for i, e := range elems {
		if i > 0 {
			b.WriteByte(',')
		}
		if err := sjsonKey(b, e.Key()); err != nil {
			return err
		}
		if err := sjsonElem(b, e.Value()); err != nil {
			return err
		}
	}
	b.WriteString(`},"$k":[`)
	for i, e := range elems {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		b.WriteString(e.Key()) // checked by sjsonKey above
		b.WriteByte('"')
	}
	b.WriteString("]}")
	return nil
}

// sjsonElem writes one value's type in a schema.
func sjsonElem(b *bytes.Buffer, v bson.RawValue) error {
	switch v.Type {
	case bson.TypeEmbeddedDocument:
		elems, err := v.Document().Elements()
		if err != nil {
			return err
		}
		b.WriteString(`{"t":"object","$s":`)
		if err := sjsonSchema(b, elems); err != nil {
			return err
		}
		b.WriteByte('}')
	case bson.TypeArray:
		values, err := v.Array().Values()
		if err != nil {
			return err
		}
		b.WriteString(`{"t":"array","i":[`)
		for i, item := range values {
			if i > 0 {
				b.WriteByte(',')
			}
			if item.Type == bson.TypeArray { // FerretDB refuses them too
				return fmt.Errorf("%w: an array in an array", errSJSONUnsupported)
			}
			if err := sjsonElem(b, item); err != nil {
				return err
			}
		}
		b.WriteString("]}")
	case bson.TypeDouble:
		b.WriteString(`{"t":"double"}`)
	case bson.TypeString:
		b.WriteString(`{"t":"string"}`)
	case bson.TypeBoolean:
		b.WriteString(`{"t":"bool"}`)
	case bson.TypeDateTime:
		b.WriteString(`{"t":"date"}`)
	case bson.TypeNull:
		b.WriteString(`{"t":"null"}`)
	case bson.TypeInt32:
		b.WriteString(`{"t":"int"}`)
	case bson.TypeInt64:
		b.WriteString(`{"t":"long"}`)
	default:
		return fmt.Errorf("%w: BSON type %s", errSJSONUnsupported, v.Type)
	}
	return nil
}

// sjsonValue writes one value as JSON.
func sjsonValue(b *bytes.Buffer, v bson.RawValue) error {
	switch v.Type {
	case bson.TypeEmbeddedDocument:
		elems, err := v.Document().Elements()
		if err != nil {
			return err
		}
		b.WriteByte('{')
		for i, e := range elems {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := sjsonKey(b, e.Key()); err != nil {
				return err
			}
			if err := sjsonValue(b, e.Value()); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	case bson.TypeArray:
		values, err := v.Array().Values()
		if err != nil {
			return err
		}
		b.WriteByte('[')
		for i, item := range values {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := sjsonValue(b, item); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	case bson.TypeDouble:
		f := v.Double()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("%w: a double that is not finite", errSJSONUnsupported)
		}
		j, err := json.Marshal(f) // FerretDB's own encoding of doubles
		if err != nil {
			return err
		}
		b.Write(j)
	case bson.TypeString:
		j, err := json.Marshal(v.StringValue())
		if err != nil {
			return err
		}
		b.Write(j)
	case bson.TypeBoolean:
		b.WriteString(strconv.FormatBool(v.Boolean()))
	case bson.TypeDateTime:
		b.WriteString(strconv.FormatInt(v.DateTime(), 10))
	case bson.TypeNull:
		b.WriteString("null")
	case bson.TypeInt32:
		b.WriteString(strconv.FormatInt(int64(v.Int32()), 10))
	case bson.TypeInt64:
		b.WriteString(strconv.FormatInt(v.Int64(), 10))
	default:
		return fmt.Errorf("%w: BSON type %s", errSJSONUnsupported, v.Type)
	}
	return nil
}
