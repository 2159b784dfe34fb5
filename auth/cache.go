package auth

import (
	"crypto/sha256"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ordergateway/gateway/domain"
)

// MaxVerifiedTokens bounds the tokens a Verifier remembers as verified.
const MaxVerifiedTokens = 10_000

// verifiedTokens remembers the tokens a Verifier verified, by their
// SHA-256, so that a client's next request with the same token skips
// parsing it and checking its signature (3.6% of the gateway's CPU under
// load with HS256; RS256 and ES256 cost more). A token is remembered until
// it expires: what the parser checks besides the signature (nbf, iat, iss,
// aud, the claims) cannot turn a verified token bad before then. The key
// can: a shared secret cannot change while the process runs, but a key can
// leave a JWK Set, and its tokens must stop at once. So a token a JWK Set's
// key verified is remembered with that key and its kid, and is taken from
// here only while the set still gives the same key for that kid
// (Verifier.stillSigns); a token without a kid is not remembered. Refused
// tokens are not remembered either. At most MaxVerifiedTokens: past it, a
// new token takes the place of an expired one or, failing that, of any
// one.
type verifiedTokens struct {
	mu  sync.Mutex
	m   map[[sha256.Size]byte]verifiedToken
	max int
	now func() time.Time
}

type verifiedToken struct {
	principal domain.Principal
	exp       time.Time
	// key is the JWK Set's key that verified the token, and lookup the
	// token's header naming it (kid and alg), built once to ask the key
	// source again on each use; both nil with a shared secret.
	key    any
	lookup *jwt.Token
}

func newVerifiedTokens() *verifiedTokens {
	return &verifiedTokens{m: map[[sha256.Size]byte]verifiedToken{}, max: MaxVerifiedTokens, now: time.Now}
}

// get returns what verifying the token with this digest returned, while the
// token has not expired.
func (c *verifiedTokens) get(digest [sha256.Size]byte) (verifiedToken, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.m[digest]
	if !ok {
		return verifiedToken{}, false
	}
	if !c.now().Before(t.exp) {
		delete(c.m, digest)
		return verifiedToken{}, false
	}
	return t, true
}

func (c *verifiedTokens) put(digest [sha256.Size]byte, t verifiedToken) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[digest]; !ok && len(c.m) >= c.max {
		now, evicted := c.now(), false
		for d, old := range c.m {
			if !now.Before(old.exp) {
				delete(c.m, d)
				evicted = true
			}
		}
		if !evicted {
			for d := range c.m {
				delete(c.m, d)
				break
			}
		}
	}
	c.m[digest] = t
}

// forget drops the token with this digest.
func (c *verifiedTokens) forget(digest [sha256.Size]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, digest)
}

func (c *verifiedTokens) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
