package sjson

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// decodeReference is Decode as it was first written, kept as FuzzSJSONDecode's
// oracle: it follows FerretDB's own reading of a row (internal/handler/sjson:
// each object's fields into a map of raw JSON, then each value read again
// with its type), which makes it easy to check against FerretDB but read
// a row once per level of nesting, copying it each time: a 1 MB row nested
// 1,000 levels deep allocated 1 GB. Decode must read every row it reads as
// decodeReference does; it refuses besides a key repeated in a schema's
// "$k" (which decodeReference read as a document with a field twice and
// another left out) and a key holding a NUL (on which it panicked).
func decodeReference(data []byte) ([]byte, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnsupported, err)
	}
	raw, ok := top["$s"]
	if !ok {
		return nil, fmt.Errorf("%w: no schema", ErrUnsupported)
	}
	var schema objectSchema
	if err := json.Unmarshal(raw, &schema); err != nil {
		return nil, fmt.Errorf("%w: schema: %v", ErrUnsupported, err)
	}
	delete(top, "$s")
	return referenceObject(make([]byte, 0, len(data)), &schema, top)
}

// referenceObject appends the BSON document of an object's values.
func referenceObject(b []byte, schema *objectSchema, values map[string]json.RawMessage) ([]byte, error) {
	if schema == nil || len(schema.Keys) != len(values) || len(schema.Props) != len(values) {
		return nil, fmt.Errorf("%w: an object and its schema differ", ErrUnsupported)
	}
	idx, b := bsoncore.AppendDocumentStart(b)
	for _, k := range schema.Keys {
		v, ok := values[k]
		t, typed := schema.Props[k]
		if !ok || !typed {
			return nil, fmt.Errorf("%w: an object and its schema differ", ErrUnsupported)
		}
		var err error
		if b, err = referenceValue(b, k, t, v); err != nil {
			return nil, err
		}
	}
	return bsoncore.AppendDocumentEnd(b, idx)
}

// referenceValue appends one element: key, and the value v of type t.
func referenceValue(b []byte, key string, t valueType, v json.RawMessage) ([]byte, error) {
	bad := func(err error) ([]byte, error) {
		return nil, fmt.Errorf("%w: a %s value: %v", ErrUnsupported, t.T, err)
	}
	switch t.T {
	case "object":
		var values map[string]json.RawMessage
		if err := json.Unmarshal(v, &values); err != nil || values == nil {
			return bad(err)
		}
		b = bsoncore.AppendHeader(b, bsoncore.TypeEmbeddedDocument, key)
		return referenceObject(b, t.Schema, values)
	case "array":
		var items []json.RawMessage
		if err := json.Unmarshal(v, &items); err != nil || items == nil || len(items) != len(t.Items) {
			return bad(err)
		}
		b = bsoncore.AppendHeader(b, bsoncore.TypeArray, key)
		idx, b := bsoncore.AppendArrayStart(b)
		for i, item := range items {
			var err error
			if b, err = referenceValue(b, strconv.Itoa(i), t.Items[i], item); err != nil {
				return nil, err
			}
		}
		return bsoncore.AppendArrayEnd(b, idx)
	case "string":
		var s string
		if err := json.Unmarshal(v, &s); err != nil || string(v) == "null" {
			return bad(err)
		}
		return bsoncore.AppendStringElement(b, key, s), nil
	case "double":
		f, err := strconv.ParseFloat(string(v), 64)
		if err != nil || math.IsInf(f, 0) {
			return bad(err)
		}
		return bsoncore.AppendDoubleElement(b, key, f), nil
	case "int":
		n, err := strconv.ParseInt(string(v), 10, 32)
		if err != nil {
			return bad(err)
		}
		return bsoncore.AppendInt32Element(b, key, int32(n)), nil
	case "long", "date": // a date in milliseconds since the epoch
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			return bad(err)
		}
		if t.T == "date" {
			return bsoncore.AppendDateTimeElement(b, key, n), nil
		}
		return bsoncore.AppendInt64Element(b, key, n), nil
	case "bool":
		switch string(v) {
		case "true":
			return bsoncore.AppendBooleanElement(b, key, true), nil
		case "false":
			return bsoncore.AppendBooleanElement(b, key, false), nil
		}
		return bad(fmt.Errorf("%.20q", v))
	case "null":
		if string(v) != "null" {
			return bad(fmt.Errorf("%.20q", v))
		}
		return bsoncore.AppendNullElement(b, key), nil
	}
	return nil, fmt.Errorf("%w: type %.20q", ErrUnsupported, t.T)
}
