package view

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

func TestCustomerOrdersBSON(t *testing.T) {
	in := CustomerDoc{ID: "c1", Orders: CustomerOrders{
		{OrderID: "ord_a", Status: "DELIVERED", Total: 1999, Currency: "EUR", Version: 7},
		{OrderID: "ünïcode\x00id", Status: "PENDING", Total: -5, Currency: "JPY", Version: 1},
		{OrderID: strings.Repeat("x", 300), Status: "CANCELLED", Total: 1 << 40, Currency: "USD", Version: 1 << 20},
	}, OrderCount: 3, Rev: 8 + 1<<20}
	raw, err := bson.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if typ := bson.Raw(raw).Lookup("orders").Type; typ != bson.TypeBinary {
		t.Fatalf("orders stored as %v, want one binary value", typ)
	}
	var out CustomerDoc
	if err := bson.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip:\n in %+v\nout %+v", in, out)
	}

	// No orders: stored and read back as none.
	raw, _ = bson.Marshal(CustomerDoc{ID: "c2"})
	out = CustomerDoc{}
	if err := bson.Unmarshal(raw, &out); err != nil || len(out.Orders) != 0 {
		t.Fatalf("empty: %+v %v", out, err)
	}

	// The earlier format, an array of sub-documents, still reads.
	legacy := struct {
		ID     string          `bson:"_id"`
		Orders []CustomerOrder `bson:"orders"`
		Rev    int64           `bson:"rev"`
	}{"c3", []CustomerOrder(in.Orders), 9}
	raw, _ = bson.Marshal(legacy)
	out = CustomerDoc{}
	if err := bson.Unmarshal(raw, &out); err != nil || !reflect.DeepEqual(out.Orders, in.Orders) || out.Rev != 9 {
		t.Fatalf("legacy array: %+v %v", out, err)
	}

	// Damaged or foreign values are errors, not panics or partial entries.
	_, full, _ := in.Orders.MarshalBSONValue()
	var bin bson.Binary
	if err := bson.UnmarshalValue(bson.TypeBinary, full, &bin); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct {
		name string
		val  any
	}{
		{"truncated", bson.Binary{Subtype: customerOrdersSubtype, Data: bin.Data[:len(bin.Data)-2]}},
		{"a length past the end", bson.Binary{Subtype: customerOrdersSubtype, Data: []byte{0xff, 0xff, 0x03, 'a'}}},
		{"another binary subtype", bson.Binary{Subtype: 0x00, Data: bin.Data}},
		{"a string", "ord_a"},
	} {
		raw, _ := bson.Marshal(bson.D{{Key: "_id", Value: "c4"}, {Key: "orders", Value: bad.val}})
		var d CustomerDoc
		if err := bson.Unmarshal(raw, &d); err == nil {
			t.Errorf("%s: decoded without an error: %+v", bad.name, d.Orders)
		}
	}
}

// A summary stored in the earlier format (orders as sub-documents) reads,
// takes a change, and is written back packed, through the real store.
func TestStoreMigratesLegacySummaries(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	legacy := bson.D{
		{Key: "_id", Value: "c-legacy"},
		{Key: "orders", Value: bson.A{bson.D{{Key: "orderId", Value: "o1"}, {Key: "status", Value: "PENDING"}, {Key: "total", Value: int64(500)}, {Key: "currency", Value: "EUR"}, {Key: "version", Value: 1}}}},
		{Key: "orderCount", Value: 1}, {Key: "openOrderCount", Value: 1},
		{Key: "countsByStatus", Value: bson.A{bson.D{{Key: "status", Value: "PENDING"}, {Key: "count", Value: 1}}}},
		{Key: "lifetimeValue", Value: bson.A{}}, {Key: "rev", Value: int64(1)},
	}
	if _, err := s.customers.InsertOne(ctx, legacy); err != nil {
		t.Fatal(err)
	}
	c, err := s.Customer(ctx, "c-legacy")
	if err != nil || c == nil || !c.Includes("o1", 1) || c.OrderCount != 1 {
		t.Fatalf("legacy summary: %+v %v", c, err)
	}
	prev := c.Rev
	o := testOrder("o2", 1)
	o.CustomerID, o.Status, o.Total = "c-legacy", "DELIVERED", 700
	if !c.Apply(o) {
		t.Fatal("Apply of a new order changed nothing")
	}
	if err := s.PutCustomers(ctx, []CustomerWrite{{Doc: *c, Prev: prev}}); err != nil {
		t.Fatal(err)
	}
	raw, err := s.customers.FindOne(ctx, bson.D{{Key: "_id", Value: "c-legacy"}}).Raw()
	if err != nil {
		t.Fatal(err)
	}
	if typ := raw.Lookup("orders").Type; typ != bson.TypeBinary {
		t.Fatalf("rewritten summary stores orders as %v, want binary", typ)
	}
	c, err = s.Customer(ctx, "c-legacy")
	if err != nil || !c.Includes("o1", 1) || !c.Includes("o2", 1) || c.OrderCount != 2 || len(c.LifetimeValue) != 1 || c.LifetimeValue[0].Amount != 700 {
		t.Fatalf("after the write: %+v %v", c, err)
	}
}
