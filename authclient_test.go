package main

import (
	"net/http"
	"strings"
	"time"

	"github.com/ordergateway/gateway/auth"
	"github.com/ordergateway/gateway/domain"
)

// The tests' gateways verify tokens signed with testSecret (testConfig sets
// it, and gateway processes get it as AUTH_JWT_SECRET). Their clients act
// as staff unless a test says otherwise: every request to /graphql that
// names no Authorization header gets the staff token (http.DefaultTransport
// is wrapped below), and tryDialWS puts it in connection_init. A request
// that must go without a token sets withoutToken.
var testSecret = auth.Secret("order-gateway-test-secret-0123456789abcdef")

// testAuth is the auth configuration of the tests' gateways.
func testAuth() auth.Config { return auth.Config{Secret: testSecret} }

// tokenFor mints a token for p signed with testSecret, valid for ttl (a
// negative ttl: it expired that long ago).
func tokenFor(p domain.Principal, ttl time.Duration) string {
	now := time.Now()
	if ttl <= 0 {
		now, ttl = now.Add(ttl-time.Minute), time.Minute
	}
	tok, err := auth.Mint(testAuth(), p, ttl, now)
	if err != nil {
		panic(err)
	}
	return tok
}

// customerToken is a token for customer id, valid for an hour.
func customerToken(id string) string {
	return tokenFor(domain.Principal{Role: domain.RoleCustomer, CustomerID: id}, time.Hour)
}

// staffToken is what the tests' clients send by default.
var staffToken = tokenFor(domain.Principal{Role: domain.RoleStaff, Subject: "tests"}, 24*time.Hour)

// withoutToken marks h so the default client sends no Authorization.
func withoutToken(h http.Header) { h["Authorization"] = nil }

func init() {
	http.DefaultTransport = bearerTransport{http.DefaultTransport}
}

// bearerTransport adds the staff token to requests for /graphql that name
// no Authorization header (withoutToken names one, empty).
type bearerTransport struct{ base http.RoundTripper }

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if _, named := r.Header["Authorization"]; named || !strings.HasSuffix(r.URL.Path, "/graphql") {
		return b.base.RoundTrip(r)
	}
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+staffToken)
	return b.base.RoundTrip(r)
}

// withStaffToken wraps a transport of a test's own with bearerTransport.
func withStaffToken(tr http.RoundTripper) http.RoundTripper { return bearerTransport{tr} }
