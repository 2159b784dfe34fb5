package domain_test

import (
	"context"
	. "github.com/ordergateway/gateway/domain"
	"strings"
	"testing"
)

func TestAuthorize(t *testing.T) {
	c1 := Principal{Role: RoleCustomer, CustomerID: "c-1"}
	staff := Principal{Role: RoleStaff, Subject: "ops"}
	mine := Order{ID: "o1", CustomerID: "c-1", Version: 1, Status: StatusPending}
	theirs := Order{ID: "o2", CustomerID: "c-2", Version: 1, Status: StatusPending}
	place := func(customer string) Command { return PlaceOrder{OrderID: "o9", CustomerID: customer} }
	ops := []Command{AddOrderItem{OrderID: "o"}, RemoveOrderItem{OrderID: "o"}, ConfirmOrder{OrderID: "o"}, CancelOrder{OrderID: "o"}}
	staffOnly := []Command{ShipOrder{OrderID: "o"}, DeliverOrder{OrderID: "o"}}

	allowed := func(p Principal, cmd Command, state Order) {
		t.Helper()
		if err := Authorize(p, cmd, state); err != nil {
			t.Errorf("%v %T on %q: %v", p, cmd, state.CustomerID, err)
		}
	}
	forbidden := func(p Principal, cmd Command, state Order) {
		t.Helper()
		if err := Authorize(p, cmd, state); ErrorCode(err) != CodeForbidden {
			t.Errorf("%v %T on %q: %v, want FORBIDDEN", p, cmd, state.CustomerID, err)
		}
	}
	allowed(c1, place("c-1"), Order{})
	forbidden(c1, place("c-2"), Order{})
	forbidden(c1, place("c-1"), theirs) // an id taken by another customer
	allowed(staff, place("c-2"), Order{})
	for _, cmd := range ops {
		allowed(c1, cmd, mine)
		allowed(c1, cmd, Order{}) // missing: Decide says NOT_FOUND
		forbidden(c1, cmd, theirs)
		allowed(staff, cmd, theirs)
	}
	for _, cmd := range staffOnly {
		forbidden(c1, cmd, mine)
		forbidden(c1, cmd, Order{})
		allowed(staff, cmd, theirs)
	}
	for _, p := range []Principal{{}, {Role: "admin"}, {Role: RoleCustomer}, {Role: RoleCustomer, CustomerID: "c 1"},
		{Role: RoleStaff, CustomerID: "c-1"}, {Role: RoleCustomer, CustomerID: "c-1", Subject: strings.Repeat("s", 300)}} {
		forbidden(p, ConfirmOrder{OrderID: "o"}, mine)
	}
}

func TestPrincipalWireAndContext(t *testing.T) {
	p := Principal{Role: RoleCustomer, CustomerID: "c-1", Subject: "u-1"}
	got, err := UnmarshalPrincipal(MarshalPrincipal(p))
	if err != nil || got != p {
		t.Fatalf("%+v %v", got, err)
	}
	for _, bad := range []string{"", "null", "{}", `{"role":"staff","customerId":"c-1"}`, `{"role":"customer"}`, "[1]", strings.Repeat(" ", 2000)} {
		if _, err := UnmarshalPrincipal([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, ok := PrincipalFrom(context.Background()); ok {
		t.Error("a principal in the background context")
	}
	if got, ok := PrincipalFrom(WithPrincipal(context.Background(), p)); !ok || got != p {
		t.Error("principal lost in the context")
	}
	if NotFound("o").Message != "order \"o\" does not exist" {
		t.Error(NotFound("o"))
	}
}
