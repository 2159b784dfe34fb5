// Package auth verifies the bearer tokens (JWTs) callers present and turns
// them into a domain.Principal, with golang-jwt/jwt/v5 and, for keys
// published as a JWK Set, MicahParks/keyfunc/v3: no JOSE of our own. It also
// mints tokens signed with a shared secret (the zero-setup secret the
// gateway keeps in its data folder, or AUTH_JWT_SECRET).
package auth

import (
	"context"
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ordergateway/gateway/domain"
)

// Config is how tokens are verified. Exactly one key source is set: Secret
// (HS256), JWKSURL or JWKSFile (RS256, ES256, EdDSA and their kin).
type Config struct {
	// Secret verifies (and mints) HS256 tokens; at least MinSecretBytes.
	Secret Secret
	// JWKSURL is a JWK Set (an identity provider's jwks_uri), fetched at
	// start, every JWKSRefresh and (at most every UnknownKeyRefresh) when a
	// token names an unknown kid.
	JWKSURL string
	// JWKSFile is a JWK Set in a file, read again when it changes (checked
	// every FileCheck) and when a token names an unknown kid.
	JWKSFile string
	// Issuer and Audience, when set, must be the token's iss and among its
	// aud.
	Issuer, Audience string
	// RoleClaim holds "customer" or "staff" (a string, or an array holding
	// one of them); default "role". CustomerClaim holds a customer's id;
	// default "sub". A name is looked up as it is, and if there is no such
	// claim and the name has dots, as a path into nested objects
	// ("realm_access.roles").
	RoleClaim, CustomerClaim string
	// Leeway is the clock skew allowed for exp, nbf and iat.
	Leeway time.Duration
	// Disabled turns checks off: every request may do everything.
	Disabled bool
}

// Secret is a signing secret; it prints (with %v, or as JSON) as
// "(secret)", so a logged or printed configuration shows none.
type Secret []byte

func (Secret) String() string   { return "(secret)" }
func (Secret) GoString() string { return "(secret)" }
func (s Secret) MarshalJSON() ([]byte, error) {
	if len(s) == 0 {
		return []byte(`""`), nil
	}
	return []byte(`"(secret)"`), nil
}

// MinSecretBytes is the shortest HS256 secret accepted (RFC 7518, 3.2: a
// key at least as long as the hash).
const MinSecretBytes = 32

// MaxTokenBytes bounds a token; a longer one is refused unparsed.
const MaxTokenBytes = 16 << 10

// Defaults of the claim names and the leeway.
const (
	DefaultRoleClaim     = "role"
	DefaultCustomerClaim = "sub"
	DefaultLeeway        = 30 * time.Second
)

// Intervals of the key sources.
var (
	JWKSRefresh       = 15 * time.Minute
	FileCheck         = 10 * time.Second
	UnknownKeyRefresh = 10 * time.Second
)

// The algorithms each key source accepts. A secret accepts HS256 only and a
// JWK Set no HMAC at all, so a token signed with HS256 and a public key
// (the HS/RS confusion) is refused either way, and "none" never is
// accepted.
var (
	secretAlgorithms = []string{"HS256"}
	jwksAlgorithms   = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)

// Check reports a configuration that cannot work, in one line that shows
// no secret.
func (c Config) Check() error {
	if c.Disabled {
		return nil
	}
	sources := 0
	for _, set := range []bool{len(c.Secret) > 0, c.JWKSURL != "", c.JWKSFile != ""} {
		if set {
			sources++
		}
	}
	switch {
	case sources == 0:
		return errors.New("no key to verify tokens with: set AUTH_JWT_SECRET, AUTH_JWKS_URL or AUTH_JWKS_FILE (or AUTH_DISABLED=true)")
	case sources > 1:
		return errors.New("AUTH_JWT_SECRET, AUTH_JWKS_URL and AUTH_JWKS_FILE are exclusive: set one")
	case len(c.Secret) > 0 && len(c.Secret) < MinSecretBytes:
		return fmt.Errorf("AUTH_JWT_SECRET is %d bytes long; it must be at least %d", len(c.Secret), MinSecretBytes)
	case c.Leeway < 0 || c.Leeway > 10*time.Minute:
		return errors.New("AUTH_LEEWAY must be from 0 to 10m")
	}
	return nil
}

// Verifier checks tokens. Close stops its key refreshes.
type Verifier struct {
	cfg    Config
	parser *jwt.Parser
	keys   jwt.Keyfunc
	stop   context.CancelFunc
	file   *fileKeys
	logger *slog.Logger
	cache  *verifiedTokens
}

// New returns a Verifier for cfg (which must pass Check and not be
// Disabled). A JWK Set URL that does not answer yet is not an error: it is
// fetched again on the first token that needs it and on schedule.
func New(cfg Config, logger *slog.Logger) (*Verifier, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	if cfg.Disabled {
		return nil, errors.New("auth is disabled")
	}
	if logger == nil {
		logger = slog.Default()
	}
	if cfg.RoleClaim == "" {
		cfg.RoleClaim = DefaultRoleClaim
	}
	if cfg.CustomerClaim == "" {
		cfg.CustomerClaim = DefaultCustomerClaim
	}
	ctx, stop := context.WithCancel(context.Background())
	v := &Verifier{cfg: cfg, stop: stop, logger: logger, cache: newVerifiedTokens()}
	methods := jwksAlgorithms
	switch {
	case len(cfg.Secret) > 0:
		methods = secretAlgorithms
		secret := append([]byte(nil), cfg.Secret...)
		v.keys = func(*jwt.Token) (any, error) { return secret, nil }
	case cfg.JWKSURL != "":
		kf, err := newURLKeys(ctx, cfg.JWKSURL, logger)
		if err != nil {
			stop()
			return nil, err
		}
		v.keys = kf
	default:
		f, err := newFileKeys(ctx, cfg.JWKSFile, logger)
		if err != nil {
			stop()
			return nil, err
		}
		v.file, v.keys = f, f.keyfunc
	}
	opts := []jwt.ParserOption{jwt.WithValidMethods(methods), jwt.WithExpirationRequired(), jwt.WithLeeway(cfg.Leeway), jwt.WithIssuedAt()}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	v.parser = jwt.NewParser(opts...)
	return v, nil
}

// Close stops the key source's refreshes.
func (v *Verifier) Close() {
	if v != nil {
		v.stop()
	}
}

// Describe names the key source for the start log.
func (v *Verifier) Describe() string {
	switch {
	case len(v.cfg.Secret) > 0:
		return "HS256 tokens signed with a shared secret"
	case v.cfg.JWKSURL != "":
		return "tokens signed with the keys of the JWK Set at " + v.cfg.JWKSURL
	default:
		return "tokens signed with the keys of the JWK Set in " + v.cfg.JWKSFile
	}
}

// Authenticate verifies an Authorization value ("Bearer <token>") and
// returns its principal and the token's expiry. Its error is an
// UNAUTHENTICATED *domain.Error whose short message quotes nothing of the
// token.
func (v *Verifier) Authenticate(authorization string) (domain.Principal, time.Time, error) {
	if strings.TrimSpace(authorization) == "" {
		return domain.Principal{}, time.Time{}, unauthenticated("no bearer token: send Authorization: Bearer <token>")
	}
	scheme, token, ok := strings.Cut(strings.TrimSpace(authorization), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return domain.Principal{}, time.Time{}, unauthenticated("the credentials are not a bearer token: send Authorization: Bearer <token>")
	}
	return v.Verify(strings.TrimSpace(token))
}

// Verify checks a token (without "Bearer "). A verified token is
// remembered until it expires, or, for a JWK Set's key, while the set
// holds that key (see verifiedTokens).
func (v *Verifier) Verify(token string) (domain.Principal, time.Time, error) {
	if len(token) > MaxTokenBytes {
		return domain.Principal{}, time.Time{}, unauthenticated(fmt.Sprintf("the token is longer than %d bytes", MaxTokenBytes))
	}
	digest := sha256.Sum256([]byte(token))
	if t, ok := v.cache.get(digest); ok {
		if v.stillSigns(t) {
			return t.principal, t.exp, nil
		}
		v.cache.forget(digest) // its key has left the set: check it again
	}
	claims := jwt.MapClaims{}
	var key any
	parsed, err := v.parser.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		k, err := v.keys(t)
		key = k
		return k, err
	})
	if err != nil {
		e := v.refusal(err, claims)
		v.logger.Debug("auth: token refused", "reason", e.Message, "err", err)
		return domain.Principal{}, time.Time{}, e
	}
	exp, _ := claims.GetExpirationTime() // required and checked by the parser
	p, err := v.principal(claims)
	if err != nil {
		return domain.Principal{}, time.Time{}, err
	}
	remembered := verifiedToken{principal: p, exp: exp.Time}
	if len(v.cfg.Secret) == 0 {
		kid, _ := parsed.Header["kid"].(string)
		if _, one := key.(interface{ Equal(crypto.PublicKey) bool }); kid == "" || !one {
			return p, exp.Time, nil // a key found some other way: not remembered
		}
		remembered.key = key
		remembered.lookup = &jwt.Token{Header: map[string]any{"kid": kid, "alg": parsed.Method.Alg()}, Method: parsed.Method}
	}
	v.cache.put(digest, remembered)
	return p, exp.Time, nil
}

// stillSigns reports whether a remembered token's key is still the one its
// key source gives for its kid (always, with a shared secret).
func (v *Verifier) stillSigns(t verifiedToken) bool {
	if t.key == nil {
		return true
	}
	k, err := v.keys(t.lookup) // the key sources only read the header
	if err != nil {
		return false
	}
	same, ok := k.(interface{ Equal(crypto.PublicKey) bool })
	return ok && same.Equal(t.key)
}

// principal reads the role and customer claims.
func (v *Verifier) principal(claims jwt.MapClaims) (domain.Principal, error) {
	sub, _ := claims["sub"].(string)
	if len(sub) > 256 {
		sub = sub[:256]
	}
	p := domain.Principal{Subject: sub}
	switch roles := claimStrings(lookup(claims, v.cfg.RoleClaim)); {
	case contains(roles, string(domain.RoleStaff)):
		p.Role = domain.RoleStaff
	case contains(roles, string(domain.RoleCustomer)):
		p.Role = domain.RoleCustomer
		id, _ := lookup(claims, v.cfg.CustomerClaim).(string)
		p.CustomerID = id
	default:
		return p, unauthenticated(fmt.Sprintf("the token's %q claim is neither customer nor staff", v.cfg.RoleClaim))
	}
	if err := p.Check(); err != nil {
		return p, unauthenticated(fmt.Sprintf("the token's %q claim is not a customer id (1 to 100 bytes, no spaces or control characters)", v.cfg.CustomerClaim))
	}
	return p, nil
}

// lookup finds a claim by its name, or else by a dotted path into nested
// objects.
func lookup(claims map[string]any, name string) any {
	if v, ok := claims[name]; ok {
		return v
	}
	var cur any = claims
	for part := range strings.SplitSeq(name, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[part]
	}
	return cur
}

// claimStrings reads a claim that is a string or an array of strings.
func claimStrings(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

func contains(ss []string, s string) bool {
	for _, e := range ss {
		if e == s {
			return true
		}
	}
	return false
}

func unauthenticated(message string) *domain.Error {
	return &domain.Error{Code: domain.CodeUnauthenticated, Message: message}
}

// refusal turns a parser error into a short message.
func (v *Verifier) refusal(err error, claims jwt.MapClaims) *domain.Error {
	switch {
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing) && claims["exp"] == nil:
		return unauthenticated("the token has no expiry (exp)")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing) && v.cfg.Issuer != "" && claims["iss"] == nil:
		return unauthenticated("the token's issuer is not accepted")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing) && v.cfg.Audience != "" && claims["aud"] == nil:
		return unauthenticated("the token's audience is not accepted")
	case errors.Is(err, jwt.ErrTokenMalformed):
		return unauthenticated("the token is malformed")
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return unauthenticated("the token's key is not known")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return unauthenticated("the token's signature or algorithm is not accepted")
	case errors.Is(err, jwt.ErrTokenExpired):
		return unauthenticated("the token has expired")
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return unauthenticated("the token is not valid yet")
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return unauthenticated("the token's issuer is not accepted")
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return unauthenticated("the token's audience is not accepted")
	}
	return unauthenticated("the token is not valid")
}

// Mint returns a token for p, valid for ttl from now, signed with cfg's
// Secret (HS256) and carrying cfg's issuer, audience and claim names.
func Mint(cfg Config, p domain.Principal, ttl time.Duration, now time.Time) (string, error) {
	if len(cfg.Secret) < MinSecretBytes {
		return "", errors.New("tokens can be minted only with a shared secret (AUTH_JWT_SECRET, or the one the gateway generates in DATA_DIR)")
	}
	if err := p.Check(); err != nil {
		return "", err
	}
	if ttl <= 0 {
		return "", errors.New("the token's lifetime must be positive")
	}
	roleClaim, customerClaim := cmpOr(cfg.RoleClaim, DefaultRoleClaim), cmpOr(cfg.CustomerClaim, DefaultCustomerClaim)
	claims := jwt.MapClaims{
		"iat":     now.Unix(),
		"exp":     now.Add(ttl).Unix(),
		roleClaim: string(p.Role),
	}
	switch {
	case p.Role == domain.RoleCustomer:
		claims[customerClaim] = p.CustomerID
		if customerClaim != "sub" && p.Subject != "" {
			claims["sub"] = p.Subject
		}
	case p.Subject != "":
		claims["sub"] = p.Subject
	}
	if cfg.Issuer != "" {
		claims["iss"] = cfg.Issuer
	}
	if cfg.Audience != "" {
		claims["aud"] = cfg.Audience
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(cfg.Secret))
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
