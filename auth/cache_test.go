package auth

import (
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ordergateway/gateway/domain"
)

// countKeyLookups makes v count its key lookups: one per token parsed.
func countKeyLookups(v *Verifier) *int {
	n := new(int)
	keys := v.keys
	v.keys = func(t *jwt.Token) (any, error) { *n++; return keys(t) }
	return n
}

// A token the secret verified is remembered until it expires: its next
// uses are not parsed again, and answer the same principal and expiry.
func TestVerifiedTokensAreRemembered(t *testing.T) {
	v := newVerifier(t, Config{Secret: testSecret})
	parsed := countKeyLookups(v)
	p := domain.Principal{Role: domain.RoleCustomer, CustomerID: "c-1"}
	tok, err := Mint(Config{Secret: testSecret}, p, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var exps []time.Time
	for i := 0; i < 3; i++ {
		got, exp, err := v.Verify(tok)
		if err != nil || got.CustomerID != "c-1" || got.Role != domain.RoleCustomer {
			t.Fatalf("use %d: %+v, %v", i, got, err)
		}
		exps = append(exps, exp)
	}
	if *parsed != 1 {
		t.Errorf("the token was parsed %d times in 3 uses, want once", *parsed)
	}
	if !exps[0].Equal(exps[2]) || exps[0].IsZero() {
		t.Errorf("expiry %v, then %v from memory", exps[0], exps[2])
	}

	// Past its expiry the memory does not answer: the parser does again
	// (here it still accepts: only the memory's clock moved).
	v.cache.now = func() time.Time { return exps[0].Add(time.Second) }
	if _, _, err := v.Verify(tok); err != nil {
		t.Fatal(err)
	}
	if *parsed != 2 {
		t.Errorf("after its expiry the token was answered from memory (%d parses)", *parsed)
	}

	// A refused token is not remembered.
	v.cache.now = time.Now
	n := v.cache.len()
	bad := sign(t, jwt.SigningMethodHS256, []byte("another secret, 32 bytes or more."), "", customerClaims("c-2", time.Now().Add(time.Hour)))
	for i := 0; i < 2; i++ {
		wantRefused(t, v, bad, "signature")
	}
	if v.cache.len() != n {
		t.Errorf("a refused token was remembered")
	}
}

// The memory holds at most its bound; an expired token gives its place
// first, else any one does.
func TestVerifiedTokensAreBounded(t *testing.T) {
	v := newVerifier(t, Config{Secret: testSecret})
	v.cache.max = 3
	parsed := countKeyLookups(v)
	var toks []string
	for i := 0; i < 5; i++ {
		tok, err := Mint(Config{Secret: testSecret}, domain.Principal{Role: domain.RoleCustomer, CustomerID: "c-" + string(rune('a'+i))}, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		toks = append(toks, tok)
		if _, _, err := v.Verify(tok); err != nil {
			t.Fatal(err)
		}
		if n := v.cache.len(); n > 3 {
			t.Fatalf("%d tokens remembered, bound 3", n)
		}
	}
	before := *parsed
	if _, _, err := v.Verify(toks[4]); err != nil || *parsed != before {
		t.Errorf("the newest token was not remembered (%v)", err)
	}

	// Expired entries make room before live ones.
	v.cache.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	short, err := Mint(Config{Secret: testSecret}, domain.Principal{Role: domain.RoleStaff}, 3*time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := v.Verify(short); err != nil {
		t.Fatal(err)
	}
	if n := v.cache.len(); n != 1 {
		t.Errorf("%d tokens remembered after the expired ones made room, want 1", n)
	}
}

// Tokens checked with a JWK Set are not remembered (a key removed from
// the set stops its tokens at once: TestJWKSFileRotation).
func TestJWKSTokensAreNotRemembered(t *testing.T) {
	if v := newVerifier(t, Config{JWKSURL: "http://127.0.0.1:1/jwks.json"}); v.cache != nil {
		t.Error("a JWK Set verifier remembers tokens")
	}
}
