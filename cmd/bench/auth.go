package main

import (
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/ordergateway/gateway/auth"
	"github.com/ordergateway/gateway/domain"
)

// The gateways the benchmark starts check tokens as a user's would: they
// verify HS256 tokens signed with benchSecret (random per run), and the
// benchmark's clients send a staff token (they act on many customers'
// orders), so every request pays for its token's verification and every
// command for the handler's check. Commands sent with command.Bus directly
// carry the staff principal (benchStaff).
var (
	benchSecret = func() auth.Secret {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		return auth.Secret(hex.EncodeToString(b))
	}()
	benchStaff = domain.Principal{Role: domain.RoleStaff, Subject: "bench"}
	benchToken = func() string {
		tok, err := auth.Mint(auth.Config{Secret: benchSecret}, benchStaff, 48*time.Hour, time.Now())
		if err != nil {
			panic(err)
		}
		return tok
	}()
)
