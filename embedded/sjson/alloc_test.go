package sjson

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// row is a stored document: _id "x", then a field o of type t (its schema
// entry) and value v (as JSON).
func row(t, v string) []byte {
	return []byte(`{"$s":{"p":{"_id":{"t":"string"},"o":` + t + `},"$k":["_id","o"]},"_id":"x","o":` + v + `}`)
}

// nested is a row whose o holds levels objects or arrays one in the other,
// the innermost holding a string of n bytes.
func nested(levels, n int, arrays bool) []byte {
	t, v := `{"t":"string"}`, `"`+strings.Repeat("x", n)+`"`
	for range levels {
		if arrays {
			t, v = `{"t":"array","i":[`+t+`]}`, `[`+v+`]`
		} else {
			t, v = `{"t":"object","$s":{"p":{"o":`+t+`},"$k":["o"]}}`, `{"o":`+v+`}`
		}
	}
	return row(t, v)
}

// wide is a row whose o is an array of n values v, each of type t.
func wide(n int, t, v string) []byte {
	return row(`{"t":"array","i":[`+strings.TrimSuffix(strings.Repeat(t+",", n), ",")+`]}`, `[`+strings.TrimSuffix(strings.Repeat(v+",", n), ",")+`]`)
}

// manyFields is a row whose o is an object with n fields.
func manyFields(n int) []byte {
	var p, k, v []string
	for i := range n {
		p, k, v = append(p, fmt.Sprintf(`"k%d":{"t":"long"}`, i)), append(k, fmt.Sprintf(`"k%d"`, i)), append(v, fmt.Sprintf(`"k%d":%d`, i, i))
	}
	return row(`{"t":"object","$s":{"p":{`+strings.Join(p, ",")+`},"$k":[`+strings.Join(k, ",")+`]}}`, `{`+strings.Join(v, ",")+`}`)
}

// TestDecodeAllocatesInProportion: however a row nests or repeats, Decode
// allocates at most 32 times its size, most of it encoding/json's reading
// of the schema (a row nested 1,000 levels deep made the first decoder,
// decodeReference, allocate its size a thousand times over), and returns
// at most twice its size.
func TestDecodeAllocatesInProportion(t *testing.T) {
	for name, stored := range map[string][]byte{
		"objects in objects":   nested(1000, 256<<10, false),
		"arrays in arrays":     nested(1000, 256<<10, true),
		"as deep as JSON goes": nested(3000, 1<<10, false),
		"empty objects":        wide(20_000, `{"t":"object","$s":{}}`, `{}`),
		"empty arrays":         wide(20_000, `{"t":"array","i":[]}`, `[]`),
		"nulls":                wide(20_000, `{"t":"null"}`, `null`),
		"numbers":              wide(20_000, `{"t":"int"}`, `0`),
		"escaped strings":      wide(20_000, `{"t":"string"}`, `"\u00e9"`),
		"fields":               manyFields(20_000),
	} {
		doc, err := Decode(stored)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(doc) > 2*len(stored) {
			t.Errorf("%s: %d bytes decoded into %d", name, len(stored), len(doc))
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, _ = Decode(stored)
		runtime.ReadMemStats(&after)
		got := after.TotalAlloc - before.TotalAlloc
		t.Logf("%s: %d bytes, %d allocated (%.1f times)", name, len(stored), got, float64(got)/float64(len(stored)))
		if got > 32*uint64(len(stored)) {
			t.Errorf("%s: %d bytes allocated for a row of %d", name, got, len(stored))
		}
	}
}
