package view

import (
	"encoding/binary"
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// CustomerOrders is a summary's per-order entries, sorted by order id. In
// MongoDB they are one binary value, not an array of sub-documents: the
// summary is rewritten on every change of any of the customer's orders, and
// FerretDB's cost of reading and writing a document grows with its number
// of fields (a customer with 100 orders had 500), which made summaries the
// projector's bottleneck. A stored array of sub-documents (the earlier
// format) still decodes; the next write stores the packed form.
//
// The packed form is, per entry, in order: the order id, version, status,
// total and currency, each string as a uvarint length and its bytes, the
// version as a uvarint and the total as a varint.
type CustomerOrders []CustomerOrder

// customerOrdersSubtype marks the packed form (a user-defined binary
// subtype, so nothing mistakes it for anything else).
const customerOrdersSubtype = 0x80

func (o CustomerOrders) MarshalBSONValue() (byte, []byte, error) {
	b := make([]byte, 0, 4+len(o)*48)
	for _, e := range o {
		b = appendString(b, e.OrderID)
		b = binary.AppendUvarint(b, uint64(e.Version))
		b = appendString(b, e.Status)
		b = binary.AppendVarint(b, e.Total)
		b = appendString(b, e.Currency)
	}
	_, data, err := bson.MarshalValue(bson.Binary{Subtype: customerOrdersSubtype, Data: b})
	return byte(bson.TypeBinary), data, err
}

func (o *CustomerOrders) UnmarshalBSONValue(typ byte, data []byte) error {
	switch bson.Type(typ) {
	case bson.TypeNull:
		*o = nil
		return nil
	case bson.TypeArray: // the earlier format
		var entries []CustomerOrder
		if err := bson.UnmarshalValue(bson.TypeArray, data, &entries); err != nil {
			return err
		}
		*o = entries
		return nil
	case bson.TypeBinary:
	default:
		return fmt.Errorf("customer orders: unexpected BSON type %v", bson.Type(typ))
	}
	var bin bson.Binary
	if err := bson.UnmarshalValue(bson.TypeBinary, data, &bin); err != nil {
		return err
	}
	if bin.Subtype != customerOrdersSubtype {
		return fmt.Errorf("customer orders: binary subtype %#x, want %#x", bin.Subtype, customerOrdersSubtype)
	}
	out, err := unpackCustomerOrders(bin.Data)
	if err != nil {
		return fmt.Errorf("customer orders: %w", err)
	}
	*o = out
	return nil
}

var errTruncated = errors.New("truncated entry")

func unpackCustomerOrders(b []byte) (CustomerOrders, error) {
	var out CustomerOrders
	for len(b) > 0 {
		var e CustomerOrder
		var ok bool
		if e.OrderID, b, ok = readString(b); !ok {
			return nil, errTruncated
		}
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return nil, errTruncated
		}
		e.Version, b = int(v), b[n:]
		if e.Status, b, ok = readString(b); !ok {
			return nil, errTruncated
		}
		t, n := binary.Varint(b)
		if n <= 0 {
			return nil, errTruncated
		}
		e.Total, b = t, b[n:]
		if e.Currency, b, ok = readString(b); !ok {
			return nil, errTruncated
		}
		out = append(out, e)
	}
	return out, nil
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

func readString(b []byte) (string, []byte, bool) {
	n, k := binary.Uvarint(b)
	if k <= 0 || uint64(len(b)-k) < n {
		return "", nil, false
	}
	return string(b[k : k+int(n)]), b[k+int(n):], true
}
