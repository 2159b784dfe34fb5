package domain

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// Role is what a caller may do: a customer acts on their own orders, staff
// on every order.
type Role string

const (
	RoleCustomer Role = "customer"
	RoleStaff    Role = "staff"
)

// Principal is who sends a request: the gateway learns it from a verified
// token, and it travels with each command (a header on the commands topic),
// so the command handler checks it too.
type Principal struct {
	Role Role `json:"role"`
	// CustomerID is the customer a customer principal is (empty for staff).
	CustomerID string `json:"customerId,omitempty"`
	// Subject names the caller for the logs (the token's sub); it grants
	// nothing.
	Subject string `json:"sub,omitempty"`
}

// Authorization codes: returned to clients as top-level GraphQL errors.
const (
	// CodeUnauthenticated: no token, or one that is not valid.
	CodeUnauthenticated Code = "UNAUTHENTICATED"
	// CodeForbidden: the caller is known but may not do this.
	CodeForbidden Code = "FORBIDDEN"
	// CodeTokenExpired ends a subscription stream whose token expired.
	CodeTokenExpired Code = "TOKEN_EXPIRED"
)

// Check reports a principal that is not one the gateway issues: an unknown
// role, a customer without a valid customer id, or fields too long to log.
func (p Principal) Check() error {
	switch p.Role {
	case RoleCustomer:
		if err := checkID(p.CustomerID, nil, "customer id"); err != nil {
			return errors.New("the customer id is not valid (1 to 100 bytes, no spaces or control characters)")
		}
	case RoleStaff:
		if p.CustomerID != "" {
			return errors.New("a staff principal has no customer id")
		}
	default:
		return errors.New("the role is neither customer nor staff")
	}
	if len(p.Subject) > 256 {
		return errors.New("the subject is longer than 256 bytes")
	}
	return nil
}

// String names the principal for logs.
func (p Principal) String() string {
	if p.Role == RoleCustomer {
		return "customer " + p.CustomerID
	}
	return fmt.Sprintf("%s %s", p.Role, p.Subject)
}

// StaffOnly reports whether only staff may send cmd (fulfilment).
func StaffOnly(cmd Command) bool {
	switch cmd.(type) {
	case ShipOrder, DeliverOrder:
		return true
	}
	return false
}

// Authorize reports whether p may send cmd to an order in state (the zero
// Order when it does not exist, or is not known yet). It is pure, and the
// rule of both sides: the gateway applies it before it sends a command (with
// the zero Order), the command handler with the order's state. Staff may do
// everything; a customer may place orders for themselves and act on their
// own orders, but not ship or deliver them. A refusal is a FORBIDDEN
// *Error; the gateway shows a customer another customer's order as a
// missing one (NotFound), so ids cannot be probed.
func Authorize(p Principal, cmd Command, state Order) error {
	if err := p.Check(); err != nil {
		return Errorf(CodeForbidden, "the command's principal is not valid: %v", err)
	}
	if p.Role == RoleStaff {
		return nil
	}
	if StaffOnly(cmd) {
		return Errorf(CodeForbidden, "only staff may %s orders", staffVerb(cmd))
	}
	if place, ok := cmd.(PlaceOrder); ok && place.CustomerID != p.CustomerID {
		return &Error{Code: CodeForbidden, Message: "a customer may place orders only for themselves", Field: path("input", "customerId")}
	}
	if state.Exists() && state.CustomerID != p.CustomerID {
		return Errorf(CodeForbidden, "the order belongs to another customer")
	}
	return nil
}

func staffVerb(cmd Command) string {
	if _, ok := cmd.(ShipOrder); ok {
		return "ship"
	}
	return "deliver"
}

// NotFound is the error for an order that does not exist, the same whether
// it is missing or another customer's.
func NotFound(orderID string) *Error {
	return Errorf(CodeNotFound, "order %q does not exist", orderID)
}

// AlreadyExists is the error for placing an order whose id is taken.
func AlreadyExists(orderID string) *Error {
	return Errorf(CodeInvalidTransition, "order %q already exists", orderID)
}

// MarshalPrincipal is the principal's wire form (the commands topic's
// principal header).
func MarshalPrincipal(p Principal) []byte {
	b, _ := json.Marshal(p)
	return b
}

// UnmarshalPrincipal reads a principal header; it fails for anything that
// is not a valid principal.
func UnmarshalPrincipal(b []byte) (Principal, error) {
	var p Principal
	if len(b) > 1024 {
		return p, errors.New("the principal is longer than 1024 bytes")
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return p, errors.New("the principal is not a JSON object")
	}
	return p, p.Check()
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p: the principal a request acts as.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal ctx carries, if any.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}
