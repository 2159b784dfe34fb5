package sjson

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// objectSchema is the schema of an object as FerretDB 1.24 stores it (see
// Encode): its fields' types, and their order.
type objectSchema struct {
	Props map[string]valueType `json:"p"`
	Keys  []string             `json:"$k"`
}

// valueType is one value's entry in a schema: its type, and the schema of
// an object's fields or an array's items.
type valueType struct {
	T      string        `json:"t"`
	Schema *objectSchema `json:"$s"`
	Items  []valueType   `json:"i"`
}

// Decode decodes one stored document read from FerretDB 1.24's tables
// (PostgreSQL's text of the jsonb: keys in any order, the schema's "$k"
// gives theirs; or SQLite's JSON text) back into the BSON document FerretDB
// would return: the types Encode encodes, keys in their order. Anything
// else (another type FerretDB stores, a value that does not match its
// schema, a key repeated in a schema's "$k" or holding a NUL, text that is
// not JSON) is ErrUnsupported: read it through FerretDB.
//
// data is read once, whatever its nesting (encoding/json's limit, 10,000
// levels, holds): Decode takes time and allocates in proportion to
// len(data) (at most about 32 times it, most of that encoding/json's
// reading of the schema: TestDecodeAllocatesInProportion) and returns at
// most twice len(data) bytes. It does not keep data.
func Decode(data []byte) ([]byte, error) {
	if len(data) > math.MaxInt32 { // the nodes' offsets are int32
		return nil, fmt.Errorf("%w: a document of %d bytes", ErrUnsupported, len(data))
	}
	// Validated first, the parse below only finds where values are, and
	// refuses all that encoding/json refuses.
	if !json.Valid(data) {
		return nil, fmt.Errorf("%w: %v", ErrUnsupported, json.Unmarshal(data, new(any)))
	}
	p := parser{data: data, nodes: make([]node, 0, 1+len(data)/32)}
	p.skipSpace()
	if p.pos >= len(data) || data[p.pos] != '{' {
		return nil, fmt.Errorf("%w: not a JSON object", ErrUnsupported)
	}
	top, err := p.object(true)
	if err != nil {
		return nil, err
	}
	if p.schema == nil {
		return nil, fmt.Errorf("%w: no schema", ErrUnsupported)
	}
	var schema objectSchema
	if err := json.Unmarshal(p.schema, &schema); err != nil {
		return nil, fmt.Errorf("%w: schema: %v", ErrUnsupported, err)
	}
	d := decoder{data: data, nodes: p.nodes}
	return d.appendObject(make([]byte, 0, len(data)), &schema, top)
}

// node is one JSON value of a stored document: where it is in the text and,
// for an object's member, where its key is.
type node struct {
	kind        byte  // '{', '[', '"', '0' (a number), 't', 'f' or 'n' (null)
	start, end  int32 // the value's text
	key, keyEnd int32 // an object member's key's text, with its quotes
	next        int32 // the node after this one's own: its next sibling, if any
	n           int32 // an object's or array's members
}

// parser records the nodes of a JSON text that json.Valid accepted (it
// still returns an error, never panics, on one that it did not). Nodes are
// in document order: an object's or array's first member is the node right
// after it, and each member's next is the member after it.
type parser struct {
	data   []byte
	pos    int
	nodes  []node
	schema []byte // the top-level object's "$s", unparsed
}

var errParse = fmt.Errorf("%w: malformed JSON", ErrUnsupported)

func (p *parser) skipSpace() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

// value records the value at p.pos and those in it, and returns its node.
func (p *parser) value() (int, error) {
	p.skipSpace()
	if p.pos >= len(p.data) {
		return 0, errParse
	}
	switch c := p.data[p.pos]; c {
	case '{':
		return p.object(false)
	case '[':
		return p.array()
	}
	start := p.pos
	kind, err := p.scalar()
	if err != nil {
		return 0, err
	}
	p.nodes = append(p.nodes, node{kind: kind, start: int32(start), end: int32(p.pos), key: -1, next: int32(len(p.nodes) + 1)})
	return len(p.nodes) - 1, nil
}

// scalar moves past the string, number or literal at p.pos and returns
// its kind.
func (p *parser) scalar() (byte, error) {
	start := p.pos
	switch c := p.data[p.pos]; {
	case c == '"':
		return '"', p.str()
	case c == '-' || c >= '0' && c <= '9':
		for p.pos++; p.pos < len(p.data); p.pos++ {
			if c := p.data[p.pos]; !(c >= '0' && c <= '9' || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-') {
				break
			}
		}
		return '0', nil
	case c == 't' || c == 'n': // true, null
		p.pos += 4
	case c == 'f': // false
		p.pos += 5
	default:
		return 0, errParse
	}
	if p.pos > len(p.data) {
		return 0, errParse
	}
	return p.data[start], nil
}

// skip moves past the value at p.pos, recording nothing.
func (p *parser) skip() error {
	p.skipSpace()
	if p.pos >= len(p.data) {
		return errParse
	}
	if c := p.data[p.pos]; c != '{' && c != '[' {
		_, err := p.scalar()
		return err
	}
	for depth := 0; p.pos < len(p.data); {
		switch p.data[p.pos] {
		case '"':
			if err := p.str(); err != nil {
				return err
			}
			continue
		case '{', '[':
			depth++
		case '}', ']':
			if depth--; depth == 0 {
				p.pos++
				return nil
			}
		}
		p.pos++
	}
	return errParse
}

// str moves past the string at p.pos.
func (p *parser) str() error {
	for p.pos++; p.pos < len(p.data); p.pos++ {
		switch p.data[p.pos] {
		case '\\':
			p.pos++ // what is escaped, whatever it is, ends no string
		case '"':
			p.pos++
			return nil
		}
	}
	return errParse
}

// object records the object at p.pos; at the top (top), a member "$s" is
// not recorded but kept in p.schema (the last one, as encoding/json keeps).
func (p *parser) object(top bool) (int, error) {
	i := len(p.nodes)
	p.nodes = append(p.nodes, node{kind: '{', start: int32(p.pos), key: -1})
	p.pos++ // {
	for n := 0; ; n++ {
		p.skipSpace()
		if p.pos < len(p.data) && p.data[p.pos] == '}' && n == 0 {
			break
		}
		if p.pos >= len(p.data) || p.data[p.pos] != '"' {
			return 0, errParse
		}
		key := p.pos
		if err := p.str(); err != nil {
			return 0, err
		}
		keyEnd := p.pos
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != ':' {
			return 0, errParse
		}
		p.pos++
		if top && isSchemaKey(p.data[key:keyEnd]) {
			// Not a field: its text is the schema, read apart.
			p.skipSpace()
			from := p.pos
			if err := p.skip(); err != nil {
				return 0, err
			}
			p.schema = p.data[from:p.pos]
		} else {
			v, err := p.value()
			if err != nil {
				return 0, err
			}
			p.nodes[v].key, p.nodes[v].keyEnd = int32(key), int32(keyEnd)
			p.nodes[i].n++
		}
		p.skipSpace()
		if p.pos < len(p.data) && p.data[p.pos] == ',' {
			p.pos++
			continue
		}
		if p.pos < len(p.data) && p.data[p.pos] == '}' {
			break
		}
		return 0, errParse
	}
	p.pos++ // }
	p.nodes[i].end, p.nodes[i].next = int32(p.pos), int32(len(p.nodes))
	return i, nil
}

// array records the array at p.pos.
func (p *parser) array() (int, error) {
	i := len(p.nodes)
	p.nodes = append(p.nodes, node{kind: '[', start: int32(p.pos), key: -1})
	p.pos++ // [
	for n := 0; ; n++ {
		p.skipSpace()
		if p.pos < len(p.data) && p.data[p.pos] == ']' && n == 0 {
			break
		}
		if _, err := p.value(); err != nil {
			return 0, err
		}
		p.nodes[i].n++
		p.skipSpace()
		if p.pos < len(p.data) && p.data[p.pos] == ',' {
			p.pos++
			continue
		}
		if p.pos < len(p.data) && p.data[p.pos] == ']' {
			break
		}
		return 0, errParse
	}
	p.pos++ // ]
	p.nodes[i].end, p.nodes[i].next = int32(p.pos), int32(len(p.nodes))
	return i, nil
}

// isSchemaKey reports whether the JSON string key is "$s", however
// spelled.
func isSchemaKey(key []byte) bool {
	if string(key) == `"$s"` {
		return true
	}
	if bytes.IndexByte(key, '\\') < 0 {
		return false
	}
	s, err := unquote(key)
	return err == nil && s == "$s"
}

// unquote is the JSON string s's value, as encoding/json reads it (invalid
// UTF-8 and lone surrogates replaced by U+FFFD): a view of s's bytes when
// nothing in it is escaped or replaced, which is for reading during Decode
// only. s is one that json.Valid accepted; another is an error.
func unquote(s []byte) (string, error) {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return "", errParse
	}
	in := s[1 : len(s)-1]
	if bytes.IndexByte(in, '\\') < 0 && utf8.Valid(in) {
		return unsafe.String(unsafe.SliceData(in), len(in)), nil
	}
	out := make([]byte, 0, len(in)+utf8.UTFMax)
	for r := 0; r < len(in); {
		switch c := in[r]; {
		case c == '\\':
			if r+1 >= len(in) {
				return "", errParse
			}
			r += 2
			switch e := in[r-1]; e {
			case '"', '\\', '/':
				out = append(out, e)
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				u := hex4(in[r:])
				if u < 0 {
					return "", errParse
				}
				r += 4
				if utf16.IsSurrogate(u) {
					// A pair is one character; a surrogate alone is U+FFFD.
					if r+1 < len(in) && in[r] == '\\' && in[r+1] == 'u' {
						if pair := utf16.DecodeRune(u, hex4(in[r+2:])); pair != utf8.RuneError {
							out = utf8.AppendRune(out, pair)
							r += 6
							break
						}
					}
					u = utf8.RuneError
				}
				out = utf8.AppendRune(out, u)
			default:
				return "", errParse
			}
		case c < ' ' || c == '"':
			return "", errParse
		case c < utf8.RuneSelf:
			out = append(out, c)
			r++
		default:
			u, n := utf8.DecodeRune(in[r:])
			out = utf8.AppendRune(out, u) // U+FFFD for each byte that is not UTF-8
			r += n
		}
	}
	return unsafe.String(unsafe.SliceData(out), len(out)), nil
}

// hex4 is the number that the four hexadecimal digits b starts with
// spell, or -1.
func hex4(b []byte) rune {
	if len(b) < 4 {
		return -1
	}
	var u rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return -1
		}
		u = u<<4 | rune(c)
	}
	return u
}

// decoder writes the BSON of a parsed document.
type decoder struct {
	data  []byte
	nodes []node
}

// text is node i's text.
func (d *decoder) text(i int) []byte { return d.data[d.nodes[i].start:d.nodes[i].end] }

// appendObject appends the BSON document of object node i, whose fields
// are as schema says: each key in "$k" once, each with its type in "p", no
// other field. Of a key written twice in the object the last value counts,
// as encoding/json and PostgreSQL's jsonb keep it.
func (d *decoder) appendObject(b []byte, schema *objectSchema, i int) ([]byte, error) {
	if schema == nil || len(schema.Keys) != len(schema.Props) {
		return nil, errDiffer
	}
	m, err := d.members(i)
	if err != nil {
		return nil, err
	}
	if m.distinct() != len(schema.Keys) {
		return nil, errDiffer
	}
	idx, b := bsoncore.AppendDocumentStart(b)
	for _, k := range schema.Keys {
		v, ok := m.take(k)
		t, typed := schema.Props[k]
		if !ok || !typed {
			// Missing, or taken already: a key twice in "$k" would
			// leave one of the fields out.
			return nil, errDiffer
		}
		if b, err = d.appendValue(b, k, t, v); err != nil {
			return nil, err
		}
	}
	return bsoncore.AppendDocumentEnd(b, idx)
}

var errDiffer = fmt.Errorf("%w: an object and its schema differ", ErrUnsupported)

// members are an object's fields in the object's order, a key looked up
// in a map past the first few.
type members struct {
	fields []field
	index  map[string]int // the last field with each key, when many
}

type field struct {
	key   string // a view of the text (unquote)
	node  int
	taken bool
}

// members reads object node i's fields.
func (d *decoder) members(i int) (members, error) {
	m := members{fields: make([]field, d.nodes[i].n)}
	for j, c := 0, i+1; j < len(m.fields); j, c = j+1, int(d.nodes[c].next) {
		k, err := unquote(d.data[d.nodes[c].key:d.nodes[c].keyEnd])
		if err != nil {
			return members{}, err
		}
		m.fields[j] = field{key: k, node: c}
	}
	if len(m.fields) > 16 {
		m.index = make(map[string]int, len(m.fields))
		for j, f := range m.fields {
			m.index[f.key] = j
		}
	}
	return m, nil
}

// find is the index of the last field with key k.
func (m *members) find(k string) (int, bool) {
	if m.index != nil {
		j, ok := m.index[k]
		return j, ok
	}
	for j := len(m.fields) - 1; j >= 0; j-- {
		if m.fields[j].key == k {
			return j, true
		}
	}
	return 0, false
}

// distinct is the number of distinct keys.
func (m *members) distinct() int {
	if m.index != nil {
		return len(m.index)
	}
	n := 0
	for j, f := range m.fields {
		if last, _ := m.find(f.key); last == j {
			n++
		}
	}
	return n
}

// take returns the value node of the last field with key k, once.
func (m *members) take(k string) (int, bool) {
	j, ok := m.find(k)
	if !ok || m.fields[j].taken {
		return 0, false
	}
	m.fields[j].taken = true
	return m.fields[j].node, true
}

// appendValue appends one element: key, and node v's value of type t.
func (d *decoder) appendValue(b []byte, key string, t valueType, v int) ([]byte, error) {
	if strings.IndexByte(key, 0) >= 0 {
		// BSON keys end at a NUL; the driver panics on one.
		return nil, fmt.Errorf("%w: a field name with a NUL character", ErrUnsupported)
	}
	bad := func(err error) ([]byte, error) {
		return nil, fmt.Errorf("%w: a %s value: %v", ErrUnsupported, t.T, err)
	}
	kind := d.nodes[v].kind
	mismatch := func() ([]byte, error) { return bad(fmt.Errorf("%.20q", d.text(v))) }
	switch t.T {
	case "object":
		if kind != '{' {
			return mismatch()
		}
		b = bsoncore.AppendHeader(b, bsoncore.TypeEmbeddedDocument, key)
		return d.appendObject(b, t.Schema, v)
	case "array":
		if kind != '[' || int(d.nodes[v].n) != len(t.Items) {
			return mismatch()
		}
		b = bsoncore.AppendHeader(b, bsoncore.TypeArray, key)
		idx, b := bsoncore.AppendArrayStart(b)
		var digits [20]byte
		for i, c := 0, v+1; i < len(t.Items); i, c = i+1, int(d.nodes[c].next) {
			k := strconv.AppendInt(digits[:0], int64(i), 10)
			var err error
			if b, err = d.appendValue(b, unsafe.String(&k[0], len(k)), t.Items[i], c); err != nil {
				return nil, err
			}
		}
		return bsoncore.AppendArrayEnd(b, idx)
	case "string":
		if kind != '"' {
			return mismatch()
		}
		s, err := unquote(d.text(v))
		if err != nil {
			return bad(err)
		}
		return bsoncore.AppendStringElement(b, key, s), nil
	case "double":
		if kind != '0' {
			return mismatch()
		}
		f, err := strconv.ParseFloat(string(d.text(v)), 64)
		if err != nil || math.IsInf(f, 0) {
			return bad(err)
		}
		return bsoncore.AppendDoubleElement(b, key, f), nil
	case "int":
		if kind != '0' {
			return mismatch()
		}
		n, err := strconv.ParseInt(string(d.text(v)), 10, 32)
		if err != nil {
			return bad(err)
		}
		return bsoncore.AppendInt32Element(b, key, int32(n)), nil
	case "long", "date": // a date in milliseconds since the epoch
		if kind != '0' {
			return mismatch()
		}
		n, err := strconv.ParseInt(string(d.text(v)), 10, 64)
		if err != nil {
			return bad(err)
		}
		if t.T == "date" {
			return bsoncore.AppendDateTimeElement(b, key, n), nil
		}
		return bsoncore.AppendInt64Element(b, key, n), nil
	case "bool":
		switch kind {
		case 't':
			return bsoncore.AppendBooleanElement(b, key, true), nil
		case 'f':
			return bsoncore.AppendBooleanElement(b, key, false), nil
		}
		return mismatch()
	case "null":
		if kind != 'n' {
			return mismatch()
		}
		return bsoncore.AppendNullElement(b, key), nil
	}
	return nil, fmt.Errorf("%w: type %.20q", ErrUnsupported, t.T)
}
