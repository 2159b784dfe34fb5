package auth

import (
	"crypto/rsa"
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ordergateway/gateway/domain"
)

// countKeyLookups makes v count the key lookups of the tokens it parses
// (not those that check a remembered token's key, which parse nothing).
func countKeyLookups(v *Verifier) *int {
	n := new(int)
	keys := v.keys
	v.keys = func(t *jwt.Token) (any, error) {
		if t.Raw != "" {
			*n++
		}
		return keys(t)
	}
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

// A token a JWK Set's key verified is remembered while the set still
// gives that key for its kid: once the key has left the set, the same
// token is refused at once, and it is parsed again (never answered from
// memory). A token without a kid is not remembered.
func TestJWKSTokensAreRememberedWhileTheirKeyIs(t *testing.T) {
	old := FileCheck
	FileCheck = 50 * time.Millisecond
	t.Cleanup(func() { FileCheck = old })
	k1, k2 := newRSA(t), newRSA(t)
	path := filepath.Join(t.TempDir(), "jwks.json")
	write := func(ks keySet) {
		if err := os.WriteFile(path+".tmp", ks.json(t), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
	}
	write(keySet{rsa: map[string]*rsa.PrivateKey{"k1": k1, "k2": k2}})
	v := newVerifier(t, Config{JWKSFile: path})
	parsed := countKeyLookups(v)
	exp := time.Now().Add(time.Hour)
	tok := sign(t, jwt.SigningMethodRS256, k1, "k1", customerClaims("c-1", exp))
	for range 3 {
		p, e, err := v.Verify(tok)
		if err != nil || p.CustomerID != "c-1" || !e.Equal(exp.Truncate(time.Second)) {
			t.Fatalf("Verify: %+v, %v, %v", p, e, err)
		}
	}
	if *parsed != 1 || v.cache.len() != 1 {
		t.Fatalf("3 uses of a token: parsed %d times, %d remembered; want 1 and 1", *parsed, v.cache.len())
	}

	// k1 leaves the set (k2 stays): once the file has been read again,
	// its remembered token is refused.
	write(keySet{rsa: map[string]*rsa.PrivateKey{"k2": k2}})
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, _, err := v.Verify(tok); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the token of a key removed from the file is still accepted after 5 s")
		}
	}
	wantRefused(t, v, tok, "key is not known")
	if *parsed != 3 || v.cache.len() != 0 {
		t.Errorf("the token of a removed key: parsed %d times in all, %d remembered; want 3 (checked again each time, not answered from memory) and none", *parsed, v.cache.len())
	}

	// A token without a kid is checked against every key, every time.
	noKid := sign(t, jwt.SigningMethodRS256, k2, "", customerClaims("c-2", exp))
	for range 2 {
		if _, _, err := v.Verify(noKid); err != nil {
			t.Fatalf("a token without a kid: %v", err)
		}
	}
	if *parsed != 5 {
		t.Errorf("a token without a kid, twice: parsed %d times in all, want 5", *parsed)
	}
}

// BenchmarkVerifyJWKS: a client's RS256 token of a JWK Set, remembered
// (its key looked up again) and parsed and checked afresh.
func BenchmarkVerifyJWKS(b *testing.B) {
	k := newRSA(b)
	path := filepath.Join(b.TempDir(), "jwks.json")
	if err := os.WriteFile(path, keySet{rsa: map[string]*rsa.PrivateKey{"k1": k}}.json(b), 0o600); err != nil {
		b.Fatal(err)
	}
	v := newVerifier(b, Config{JWKSFile: path})
	tok := sign(b, jwt.SigningMethodRS256, k, "k1", customerClaims("c-1", time.Now().Add(time.Hour)))
	for _, remembered := range []bool{true, false} {
		b.Run(map[bool]string{true: "remembered", false: "checked"}[remembered], func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if !remembered {
					v.cache.forget(sha256.Sum256([]byte(tok)))
				}
				if _, _, err := v.Verify(tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
