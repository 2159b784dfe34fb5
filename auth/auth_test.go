package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/ordergateway/gateway/domain"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef-test")

func newVerifier(t testing.TB, cfg Config) *Verifier {
	t.Helper()
	v, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

func sign(t testing.TB, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func customerClaims(id string, exp time.Time) jwt.MapClaims {
	return jwt.MapClaims{"sub": id, "role": "customer", "exp": exp.Unix(), "iat": time.Now().Add(-time.Minute).Unix()}
}

// wantRefused checks that token is refused with UNAUTHENTICATED and a
// message that contains want and quotes nothing of the token.
func wantRefused(t *testing.T, v *Verifier, token, want string) {
	t.Helper()
	_, _, err := v.Authenticate("Bearer " + token)
	de, ok := err.(*domain.Error)
	if !ok || de.Code != domain.CodeUnauthenticated {
		t.Fatalf("token accepted or wrong error: %v", err)
	}
	if !strings.Contains(de.Message, want) {
		t.Errorf("message %q, want it to say %q", de.Message, want)
	}
	for _, part := range strings.Split(token, ".") {
		if len(part) > 8 && strings.Contains(de.Message, part) {
			t.Errorf("message %q quotes the token", de.Message)
		}
	}
	if len(de.Message) > 160 {
		t.Errorf("message is %d bytes long", len(de.Message))
	}
}

func TestSecretTokens(t *testing.T) {
	v := newVerifier(t, Config{Secret: testSecret, Issuer: "https://id.example", Audience: "orders", Leeway: time.Second})
	exp := time.Now().Add(time.Hour)
	good := func() jwt.MapClaims {
		c := customerClaims("c-1", exp)
		c["iss"], c["aud"] = "https://id.example", []string{"other", "orders"}
		return c
	}
	p, gotExp, err := v.Authenticate("Bearer " + sign(t, jwt.SigningMethodHS256, testSecret, "", good()))
	if err != nil || p.Role != domain.RoleCustomer || p.CustomerID != "c-1" || gotExp.Unix() != exp.Unix() {
		t.Fatalf("valid token: %+v %v %v", p, gotExp, err)
	}
	staff := good()
	staff["role"], staff["sub"] = []any{"admin", "staff"}, "alice"
	if p, _, err := v.Authenticate("bearer " + sign(t, jwt.SigningMethodHS256, testSecret, "", staff)); err != nil || p.Role != domain.RoleStaff || p.CustomerID != "" || p.Subject != "alice" {
		t.Fatalf("staff token: %+v %v", p, err)
	}

	valid := sign(t, jwt.SigningMethodHS256, testSecret, "", good())
	parts := strings.Split(valid, ".")
	claims, _ := base64.RawURLEncoding.DecodeString(parts[1])
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(claims), `"c-1"`, `"c-2"`, 1))) + "." + parts[2]
	wantRefused(t, v, tampered, "signature")

	cases := []struct {
		name, want string
		edit       func(jwt.MapClaims)
	}{
		{"expired", "expired", func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Minute).Unix() }},
		{"no exp", "no expiry", func(c jwt.MapClaims) { delete(c, "exp") }},
		{"not yet valid", "not valid yet", func(c jwt.MapClaims) { c["nbf"] = time.Now().Add(time.Minute).Unix() }},
		{"issued in the future", "not valid yet", func(c jwt.MapClaims) { c["iat"] = time.Now().Add(time.Minute).Unix() }},
		{"wrong issuer", "issuer", func(c jwt.MapClaims) { c["iss"] = "https://evil.example" }},
		{"no issuer", "issuer", func(c jwt.MapClaims) { delete(c, "iss") }},
		{"wrong audience", "audience", func(c jwt.MapClaims) { c["aud"] = "billing" }},
		{"no role", "neither customer nor staff", func(c jwt.MapClaims) { delete(c, "role") }},
		{"unknown role", "neither customer nor staff", func(c jwt.MapClaims) { c["role"] = "admin" }},
		{"bad customer id", "not a customer id", func(c jwt.MapClaims) { c["sub"] = "c 1" }},
		{"no customer id", "not a customer id", func(c jwt.MapClaims) { delete(c, "sub") }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			claims := good()
			c.edit(claims)
			wantRefused(t, v, sign(t, jwt.SigningMethodHS256, testSecret, "", claims), c.want)
		})
	}
	t.Run("other secret", func(t *testing.T) {
		wantRefused(t, v, sign(t, jwt.SigningMethodHS256, []byte("another secret that is 32 bytes long!"), "", good()), "signature")
	})
	t.Run("alg none", func(t *testing.T) {
		wantRefused(t, v, sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "", good()), "algorithm")
	})
	t.Run("HS512", func(t *testing.T) {
		wantRefused(t, v, sign(t, jwt.SigningMethodHS512, testSecret, "", good()), "algorithm")
	})
	t.Run("RS256 with the secret mode", func(t *testing.T) {
		k, _ := rsa.GenerateKey(rand.Reader, 2048)
		wantRefused(t, v, sign(t, jwt.SigningMethodRS256, k, "", good()), "algorithm")
	})
	for _, h := range []string{"", "Basic dXNlcjpwYXNz", "Bearer", "Bearer not.a.jwt", "Bearer " + strings.Repeat("a", MaxTokenBytes+1)} {
		if _, _, err := v.Authenticate(h); domain.ErrorCode(err) != domain.CodeUnauthenticated {
			t.Errorf("%.20q: %v", h, err)
		}
	}
}

func TestLeewayAndClaimNames(t *testing.T) {
	v := newVerifier(t, Config{Secret: testSecret, Leeway: time.Minute, RoleClaim: "realm_access.roles", CustomerClaim: "https://shop.example/customer"})
	c := jwt.MapClaims{"exp": time.Now().Add(-30 * time.Second).Unix(), "realm_access": map[string]any{"roles": []any{"offline", "customer"}},
		"https://shop.example/customer": "c-9", "sub": "auth0|123"}
	p, _, err := v.Authenticate("Bearer " + sign(t, jwt.SigningMethodHS256, testSecret, "", c))
	if err != nil || p.Role != domain.RoleCustomer || p.CustomerID != "c-9" || p.Subject != "auth0|123" {
		t.Fatalf("within the leeway, nested role claim: %+v %v", p, err)
	}
	tok, err := Mint(Config{Secret: testSecret, RoleClaim: "realm_access.roles", CustomerClaim: "https://shop.example/customer"},
		domain.Principal{Role: domain.RoleCustomer, CustomerID: "c-42"}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if p, _, err := v.Verify(tok); err != nil || p.CustomerID != "c-42" {
		t.Fatalf("minted token: %+v %v", p, err)
	}
}

func TestMint(t *testing.T) {
	cfg := Config{Secret: testSecret, Issuer: "gw", Audience: "orders"}
	v := newVerifier(t, cfg)
	for _, p := range []domain.Principal{{Role: domain.RoleCustomer, CustomerID: "c-42"}, {Role: domain.RoleStaff, Subject: "ops"}} {
		tok, err := Mint(cfg, p, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		got, exp, err := v.Verify(tok)
		if err != nil || got.Role != p.Role || got.CustomerID != p.CustomerID || time.Until(exp) < 59*time.Minute {
			t.Errorf("%v: %+v %v %v", p, got, exp, err)
		}
	}
	if _, err := Mint(Config{JWKSFile: "x"}, domain.Principal{Role: domain.RoleStaff}, time.Hour, time.Now()); err == nil {
		t.Error("minted without a secret")
	}
	if _, err := Mint(cfg, domain.Principal{Role: domain.RoleCustomer}, time.Hour, time.Now()); err == nil {
		t.Error("minted a customer without an id")
	}
}

func TestConfigCheck(t *testing.T) {
	for _, c := range []Config{{}, {Secret: []byte("short")}, {Secret: testSecret, JWKSFile: "f"}, {JWKSURL: "u", JWKSFile: "f"}, {Secret: testSecret, Leeway: -1}} {
		err := c.Check()
		if err == nil {
			t.Errorf("%+v accepted", c)
		} else if len(c.Secret) > 0 && strings.Contains(err.Error(), string(c.Secret)) {
			t.Errorf("error shows the secret: %v", err)
		}
	}
	if err := (Config{Disabled: true}).Check(); err != nil {
		t.Error(err)
	}
	if _, err := New(Config{JWKSURL: "ftp://x"}, nil); err == nil {
		t.Error("ftp JWKS URL accepted")
	}
	if _, err := New(Config{JWKSFile: filepath.Join(t.TempDir(), "missing.json")}, nil); err == nil {
		t.Error("missing JWKS file accepted")
	}
}

func TestSecretFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s, created, err := LoadOrCreateSecret(dir)
	if err != nil || !created || len(s) < MinSecretBytes {
		t.Fatalf("%q %v %v", s, created, err)
	}
	st, err := os.Stat(filepath.Join(dir, SecretFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", st.Mode(), err)
	}
	again, created, err := LoadOrCreateSecret(dir)
	if err != nil || created || string(again) != string(s) {
		t.Fatalf("second load: %v %v", created, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("left files behind: %v", entries)
	}
}

// keySet is a JWK Set with private keys to sign with.
type keySet struct {
	rsa map[string]*rsa.PrivateKey
	ec  map[string]*ecdsa.PrivateKey
	ed  map[string]ed25519.PrivateKey
}

func (k keySet) json(t testing.TB) []byte {
	t.Helper()
	var set jwkset.JWKSMarshal
	add := func(kid string, key any, alg jwkset.ALG) {
		jwk, err := jwkset.NewJWKFromKey(key, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: kid, ALG: alg, USE: jwkset.UseSig}})
		if err != nil {
			t.Fatal(err)
		}
		set.Keys = append(set.Keys, jwk.Marshal())
	}
	for kid, key := range k.rsa {
		add(kid, &key.PublicKey, jwkset.AlgRS256)
	}
	for kid, key := range k.ec {
		add(kid, &key.PublicKey, jwkset.AlgES256)
	}
	for kid, key := range k.ed {
		add(kid, key.Public(), jwkset.AlgEdDSA)
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newRSA(t testing.TB) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestJWKSFileRotation(t *testing.T) {
	old := UnknownKeyRefresh
	UnknownKeyRefresh = 200 * time.Millisecond
	t.Cleanup(func() { UnknownKeyRefresh = old })
	k1, k2 := newRSA(t), newRSA(t)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	path := filepath.Join(t.TempDir(), "jwks.json")
	write := func(ks keySet) {
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, ks.json(t), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write(keySet{rsa: map[string]*rsa.PrivateKey{"k1": k1}, ec: map[string]*ecdsa.PrivateKey{"e1": ec}, ed: map[string]ed25519.PrivateKey{"d1": ed}})
	v := newVerifier(t, Config{JWKSFile: path})
	exp := time.Now().Add(time.Hour)
	k1Token := sign(t, jwt.SigningMethodRS256, k1, "k1", customerClaims("c-1", exp))
	for _, tok := range []string{
		k1Token,
		sign(t, jwt.SigningMethodES256, ec, "e1", customerClaims("c-1", exp)),
		sign(t, jwt.SigningMethodEdDSA, ed, "d1", customerClaims("c-1", exp)),
	} {
		if _, _, err := v.Verify(tok); err != nil {
			t.Fatalf("token of the first key set: %v", err)
		}
	}
	t.Run("HS256 signed with the RSA public key", func(t *testing.T) {
		der, _ := x509.MarshalPKIXPublicKey(&k1.PublicKey)
		pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
		for _, secret := range [][]byte{pemKey, der, k1.PublicKey.N.Bytes()} {
			wantRefused(t, v, sign(t, jwt.SigningMethodHS256, secret, "k1", customerClaims("c-1", exp)), "algorithm")
			wantRefused(t, v, sign(t, jwt.SigningMethodHS256, secret, "", customerClaims("c-1", exp)), "algorithm")
		}
	})
	t.Run("alg none", func(t *testing.T) {
		wantRefused(t, v, sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "k1", customerClaims("c-1", exp)), "algorithm")
	})
	t.Run("RS256 with the wrong key under a known kid", func(t *testing.T) {
		wantRefused(t, v, sign(t, jwt.SigningMethodRS256, k2, "k1", customerClaims("c-1", exp)), "signature")
	})

	// Rotation: k2 replaces k1. A token of k2 is accepted at once (its kid
	// is unknown, so the file is read again), k1's no longer once the file
	// has been read again.
	write(keySet{rsa: map[string]*rsa.PrivateKey{"k2": k2}})
	if _, _, err := v.Verify(sign(t, jwt.SigningMethodRS256, k2, "k2", customerClaims("c-1", exp))); err != nil {
		t.Fatalf("token of the rotated key: %v", err)
	}
	wantRefused(t, v, k1Token, "key is not known") // verified and remembered before
	// A broken file keeps the keys read before.
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(250 * time.Millisecond)
	if _, _, err := v.Verify(sign(t, jwt.SigningMethodRS256, k2, "k2", customerClaims("c-1", exp))); err != nil {
		t.Fatalf("after a broken file: %v", err)
	}
}

func TestJWKSURLRotation(t *testing.T) {
	old := UnknownKeyRefresh
	UnknownKeyRefresh = 100 * time.Millisecond
	t.Cleanup(func() { UnknownKeyRefresh = old })
	k1, k2, k3 := newRSA(t), newRSA(t), newRSA(t)
	var current atomic.Pointer[[]byte]
	var fetches atomic.Int64
	set := func(ks keySet) { b := ks.json(t); current.Store(&b) }
	set(keySet{rsa: map[string]*rsa.PrivateKey{"k1": k1}})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(*current.Load())
	}))
	defer srv.Close()
	v := newVerifier(t, Config{JWKSURL: srv.URL + "/jwks.json", Audience: "orders"})
	exp := time.Now().Add(time.Hour)
	claims := func() jwt.MapClaims { c := customerClaims("c-7", exp); c["aud"] = "orders"; return c }
	k1Token := sign(t, jwt.SigningMethodRS256, k1, "k1", claims())
	if p, _, err := v.Verify(k1Token); err != nil || p.CustomerID != "c-7" {
		t.Fatalf("first key: %+v %v", p, err)
	}
	wantRefused(t, v, sign(t, jwt.SigningMethodHS256, []byte(string(k1.PublicKey.N.Bytes())), "k1", claims()), "algorithm")

	set(keySet{rsa: map[string]*rsa.PrivateKey{"k2": k2}})
	before := fetches.Load()
	if _, _, err := v.Verify(sign(t, jwt.SigningMethodRS256, k2, "k2", claims())); err != nil {
		t.Fatalf("rotated key: %v", err)
	}
	if fetches.Load() != before+1 {
		t.Errorf("fetches for an unknown kid: %d, want 1", fetches.Load()-before)
	}
	// k1 left the set with that fetch: its token, verified (and remembered)
	// before, is refused.
	wantRefused(t, v, k1Token, "key is not known")
	// Unknown kids right after: refused at once, without another fetch.
	before = fetches.Load()
	for range 20 {
		start := time.Now()
		wantRefused(t, v, sign(t, jwt.SigningMethodRS256, k3, "k3", claims()), "key is not known")
		if d := time.Since(start); d > 100*time.Millisecond {
			t.Fatalf("an unknown kid waited %s", d)
		}
	}
	if n := fetches.Load() - before; n > 1 {
		t.Errorf("%d fetches for 20 unknown kids within the rate limit", n)
	}
}
