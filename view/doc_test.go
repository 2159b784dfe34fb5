package view

import "testing"

func TestCustomerDocIncludes(t *testing.T) {
	var c CustomerDoc
	for _, id := range []string{"ord_c", "ord_a", "ord_b"} {
		c.Apply(OrderDoc{ID: id, CustomerID: "cust", Status: "PENDING", Currency: "EUR", Version: 2})
	}
	var none *CustomerDoc
	for _, tc := range []struct {
		doc     *CustomerDoc
		id      string
		version int
		want    bool
	}{
		{&c, "ord_a", 1, true},
		{&c, "ord_b", 2, true},
		{&c, "ord_c", 3, false},
		{&c, "ord_d", 1, false},
		{none, "ord_a", 1, false},
	} {
		if got := tc.doc.Includes(tc.id, tc.version); got != tc.want {
			t.Errorf("Includes(%s, %d) = %v, want %v", tc.id, tc.version, got, tc.want)
		}
	}
}
