package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"sync"
	"time"

	"github.com/ordergateway/gateway/auth"
	"github.com/ordergateway/gateway/domain"
)

// The gateway checks a bearer token on every request, so the load's
// clients send one as a frontend would: each client the token of its
// customer (so the gateway checks, on every mutation and list, that the
// order is the customer's), and the query scenario, which reads orders of
// every customer, a staff token, as a support dashboard would. They are
// HS256 tokens signed with AUTH_JWT_SECRET: the one the load passes to the
// systems it starts (a random one unless AUTH_JWT_SECRET is set), or, with
// -url, the gateway's (set AUTH_JWT_SECRET to it; a zero-setup gateway
// keeps it in the file auth-secret of its DATA_DIR).
var tokens *tokenSet

type tokenSet struct {
	secret auth.Secret
	staff  string

	mu         sync.Mutex
	byCustomer map[string]string
}

// tokenTTL outlasts any run.
const tokenTTL = 48 * time.Hour

// newTokens signs with AUTH_JWT_SECRET, or with a random secret when it is
// unset (then only systems the load starts accept the tokens: url says
// whether it drives a running gateway instead).
func newTokens(url string) (*tokenSet, error) {
	secret := auth.Secret(os.Getenv("AUTH_JWT_SECRET"))
	if len(secret) == 0 {
		if url != "" {
			return nil, errors.New("-url: set AUTH_JWT_SECRET to the secret the gateway verifies tokens with (a zero-setup gateway keeps it in the file auth-secret of its DATA_DIR)")
		}
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		secret = auth.Secret(hex.EncodeToString(b))
	}
	t := &tokenSet{secret: secret, byCustomer: map[string]string{}}
	var err error
	t.staff, err = auth.Mint(auth.Config{Secret: secret}, domain.Principal{Role: domain.RoleStaff, Subject: "load"}, tokenTTL, time.Now())
	return t, err
}

// env is the setting that makes a started system verify the tokens.
func (t *tokenSet) env() string { return "AUTH_JWT_SECRET=" + string(t.secret) }

// customer is the token of customer id.
func (t *tokenSet) customer(id string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	tok, ok := t.byCustomer[id]
	if !ok {
		var err error
		if tok, err = auth.Mint(auth.Config{Secret: t.secret}, domain.Principal{Role: domain.RoleCustomer, CustomerID: id}, tokenTTL, time.Now()); err != nil {
			panic(err) // the load's customer ids are valid
		}
		t.byCustomer[id] = tok
	}
	return tok
}
