package graph

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/graph/model"
)

// Authenticator verifies a request's credentials, an Authorization value
// ("Bearer <token>"), and returns who sends it and until when the token is
// valid; its error is an UNAUTHENTICATED *domain.Error whose message
// quotes nothing of the token. *auth.Verifier implements it.
type Authenticator interface {
	Authenticate(authorization string) (domain.Principal, time.Time, error)
}

// Authentication happens at the edge, once per request or connection:
//
//   - HTTP (GET, POST, SSE): the Authorization header. Without a valid
//     token the answer is 401 with WWW-Authenticate: Bearer and one error
//     of code UNAUTHENTICATED; nothing runs.
//   - websocket: the connection_init payload's "authorization" (or
//     "Authorization") entry, or, when it has none, the upgrade request's
//     Authorization header. Without a valid token the connection is
//     closed with 4403 instead of being acknowledged.
//
// The principal goes into the context of every operation (domain.
// WithPrincipal): the resolvers authorize with it, and the bus sends it
// with each command, for the handler to check again. A subscription ends
// when its token expires: the websocket is closed with 4403 "token
// expired", an SSE stream gets a last result with the error TOKEN_EXPIRED,
// then complete.

// closeForbidden is graphql-ws's close code for a connection whose
// connection_init the server refuses (and for an expired token).
const closeForbidden = 4403

// msgTokenExpired is the close reason (and the SSE error's message) when a
// stream's token expires.
const msgTokenExpired = "token expired"

type expiryKey struct{}

// withExpiry marks ctx with the expiry of the token it was authenticated
// with.
func withExpiry(ctx context.Context, exp time.Time) context.Context {
	return context.WithValue(ctx, expiryKey{}, exp)
}

// expiryFrom is the expiry withExpiry set; ok is false without one.
func expiryFrom(ctx context.Context) (exp time.Time, ok bool) {
	exp, ok = ctx.Value(expiryKey{}).(time.Time)
	return exp, ok && !exp.IsZero()
}

// authenticate checks an HTTP request's token (not a websocket's: its
// token comes in connection_init) and returns the request with the
// principal and the token's expiry in its context. Without a valid token it
// answers 401 and returns false.
func authenticate(a Authenticator, w http.ResponseWriter, r *http.Request) (*http.Request, bool) {
	authorization := r.Header.Get("Authorization")
	p, exp, err := a.Authenticate(authorization)
	if err != nil {
		challenge := "Bearer"
		if authorization != "" {
			challenge = `Bearer error="invalid_token"`
		}
		w.Header().Set("WWW-Authenticate", challenge)
		if r.ContentLength != 0 {
			// The body is not read, and the connection is closed rather
			// than kept for a body a client may send slowly, or never:
			// net/http drains up to 256 KiB of an unread body after the
			// handler even when the answer closes the connection, and with
			// no read deadline (no ReadTimeout: it would end SSE streams)
			// that drain would wait on the client. The deadline ends it.
			w.Header().Set("Connection", "close")
			_ = http.NewResponseController(w).SetReadDeadline(time.Now())
		}
		refuse(w, negotiate(r), http.StatusUnauthorized, string(domain.CodeUnauthenticated), unauthenticatedMessage(err))
		return r, false
	}
	ctx := withExpiry(domain.WithPrincipal(r.Context(), p), exp)
	return r.WithContext(ctx), true
}

func unauthenticatedMessage(err error) string {
	if de, ok := err.(*domain.Error); ok {
		return truncate(de.Message, 120)
	}
	return "the token is not valid"
}

// initAuthorization reads the token of a connection_init payload: its
// "authorization" entry, or "Authorization" (also in any other case).
func initAuthorization(payload json.RawMessage) string {
	var fields map[string]json.RawMessage
	if len(payload) == 0 || json.Unmarshal(payload, &fields) != nil {
		return ""
	}
	raw, ok := fields["authorization"]
	if !ok {
		raw, ok = fields["Authorization"]
	}
	if !ok {
		for k, v := range fields {
			if strings.EqualFold(k, "authorization") {
				raw, ok = v, true
				break
			}
		}
	}
	var s string
	if !ok || json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

// tokenExpired is the last result of an SSE stream whose token expired.
func tokenExpired() *gqlerror.Error {
	return &gqlerror.Error{Message: "the token expired; subscribe again with a fresh one",
		Extensions: map[string]any{"code": string(domain.CodeTokenExpired)}}
}

// caller is who sends the request being resolved. on is false when
// authentication is off (AUTH_DISABLED: everyone may do everything); with
// it on, a request without a principal (which the transports never let
// through) is refused.
func (r *Resolver) caller(ctx context.Context) (p domain.Principal, on bool, err error) {
	if r.Auth == nil {
		return p, false, nil
	}
	p, ok := domain.PrincipalFrom(ctx)
	if !ok {
		return p, true, &domain.Error{Code: domain.CodeUnauthenticated, Message: "the request carries no token"}
	}
	return p, true, nil
}

// ownCustomer is the customer a request's reads are limited to: the
// caller's customer id for a customer, "" (no limit) for staff and with
// authentication off.
func (r *Resolver) ownCustomer(ctx context.Context) (string, error) {
	p, on, err := r.caller(ctx)
	if err != nil || !on || p.Role != domain.RoleCustomer {
		return "", err
	}
	return p.CustomerID, nil
}

// authorize refuses (FORBIDDEN) a command the caller may not send whatever
// the order's state: a customer's shipOrder or deliverOrder, or placeOrder
// for another customer. Whether the order is the caller's own is for the
// command handler to say, which knows the order.
func (r *Resolver) authorize(ctx context.Context, cmd domain.Command) error {
	p, on, err := r.caller(ctx)
	if err != nil || !on {
		return err
	}
	return domain.Authorize(p, cmd, domain.Order{})
}

// authDirective implements @auth(role: …): a field marked STAFF is refused
// to customers (FORBIDDEN), before its resolver runs.
func (r *Resolver) authDirective(ctx context.Context, _ any, next graphql.Resolver, role model.Role) (any, error) {
	p, on, err := r.caller(ctx)
	if err != nil {
		return nil, err
	}
	if on && role == model.RoleStaff && p.Role != domain.RoleStaff {
		return nil, &domain.Error{Code: domain.CodeForbidden, Message: "only staff may call " + graphql.GetFieldContext(ctx).Field.Name}
	}
	return next(ctx)
}
