package app

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ordergateway/gateway/auth"
	"github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/graph"
)

// authSettings are the AUTH_* settings (Config.Auth). With none of
// AUTH_JWT_SECRET, AUTH_JWKS_URL, AUTH_JWKS_FILE and AUTH_DISABLED set,
// the gateway generates a secret in DATA_DIR (zero setup).
func authSettings() []setting {
	str := func(dst func(*Config) *string) func(*Config, string) error {
		return func(c *Config, v string) error { *dst(c) = v; return nil }
	}
	return []setting{
		{"auth-jwt-secret", "AUTH_JWT_SECRET", "", fmt.Sprintf("shared secret of HS256 tokens, at least %d bytes (prefer the environment variable: a flag shows in the process list); empty: see AUTH_JWKS_URL, or one generated in DATA_DIR", auth.MinSecretBytes), func(c *Config, v string) error {
			if v != "" && len(v) < auth.MinSecretBytes {
				return fmt.Errorf("the secret is %d bytes long; it must be at least %d", len(v), auth.MinSecretBytes)
			}
			c.Auth.Secret = []byte(v)
			if v == "" {
				c.Auth.Secret = nil
			}
			return nil
		}},
		{"auth-jwks-url", "AUTH_JWKS_URL", "", "URL of the JWK Set whose keys sign tokens (RS256, ES256, EdDSA...), e.g. an identity provider's jwks_uri", func(c *Config, v string) error {
			if v != "" && !strings.HasPrefix(v, "https://") && !strings.HasPrefix(v, "http://") {
				return errors.New("it is not an http:// or https:// URL")
			}
			c.Auth.JWKSURL = v
			return nil
		}},
		{"auth-jwks-file", "AUTH_JWKS_FILE", "", "file holding the JWK Set whose keys sign tokens; read again when it changes", str(func(c *Config) *string { return &c.Auth.JWKSFile })},
		{"auth-issuer", "AUTH_ISSUER", "", "the iss tokens must carry (empty: not checked)", str(func(c *Config) *string { return &c.Auth.Issuer })},
		{"auth-audience", "AUTH_AUDIENCE", "", "a value the tokens' aud must hold (empty: not checked)", str(func(c *Config) *string { return &c.Auth.Audience })},
		{"auth-role-claim", "AUTH_ROLE_CLAIM", auth.DefaultRoleClaim, "claim holding customer or staff (a name, or a dotted path into nested claims)", nonEmpty(func(c *Config) *string { return &c.Auth.RoleClaim })},
		{"auth-customer-claim", "AUTH_CUSTOMER_CLAIM", auth.DefaultCustomerClaim, "claim holding a customer's id", nonEmpty(func(c *Config) *string { return &c.Auth.CustomerClaim })},
		{"auth-leeway", "AUTH_LEEWAY", auth.DefaultLeeway.String(), "clock skew allowed for a token's exp, nbf and iat, 0 to 10m", func(c *Config, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 || d > 10*time.Minute {
				return fmt.Errorf("%q is not a duration from 0 to 10m", v)
			}
			c.Auth.Leeway = d
			return nil
		}},
		{"auth-disabled", "AUTH_DISABLED", "false", "true turns authentication and authorization off: anyone may read and change every order", func(c *Config, v string) error {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return fmt.Errorf("%q is not true or false", v)
			}
			c.Auth.Disabled = b
			return nil
		}},
	}
}

func nonEmpty(dst func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error {
		if strings.TrimSpace(v) == "" {
			return errors.New("it must not be empty")
		}
		*dst(c) = v
		return nil
	}
}

// checkAuth reports AUTH_* settings that contradict each other. No key
// source at all is fine: the gateway then generates a secret (zero setup).
func checkAuth(a auth.Config) error {
	if a.Disabled || (len(a.Secret) == 0 && a.JWKSURL == "" && a.JWKSFile == "") {
		return nil
	}
	return a.Check()
}

// zeroSetupAuth reports whether no AUTH_* setting names a key source, so the
// gateway keeps a generated secret in DATA_DIR.
func zeroSetupAuth(a auth.Config) bool {
	return !a.Disabled && len(a.Secret) == 0 && a.JWKSURL == "" && a.JWKSFile == ""
}

// ZeroSetupTokenTTL is how long the tokens the gateway logs at start, and
// those `token` mints by default, are valid.
const ZeroSetupTokenTTL = 24 * time.Hour

// signingConfig is c.Auth with the secret tokens are signed with: the
// configured one, or the one generated in DATA_DIR. created reports that
// this call generated it.
func signingConfig(c Config) (a auth.Config, created bool, err error) {
	a = c.Auth
	switch {
	case a.Disabled:
		return a, false, errors.New("AUTH_DISABLED is true: tokens are not checked")
	case a.JWKSURL != "" || a.JWKSFile != "":
		return a, false, errors.New("tokens are verified with a JWK Set (AUTH_JWKS_URL or AUTH_JWKS_FILE): your identity provider issues them")
	case len(a.Secret) > 0:
		return a, false, nil
	}
	a.Secret, created, err = auth.LoadOrCreateSecret(c.DataDir)
	return a, created, err
}

// TokenCommand is `order-gateway token`: it prints a token signed with the
// gateway's secret (AUTH_JWT_SECRET, or the one generated in DATA_DIR). Its
// own flags are --customer ID or --staff, --subject and --ttl; the others
// are the gateway's settings (DATA_DIR, AUTH_*...). It returns the exit
// code.
func TokenCommand(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	var customer, subject, ttlText string
	staff := false
	ttlText = ZeroSetupTokenTTL.String()
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") {
			rest = append(rest, a)
			continue
		}
		switch name {
		case "customer", "subject", "ttl":
			if !hasValue {
				if i+1 >= len(args) {
					fmt.Fprintf(stderr, "order-gateway token: --%s needs a value\n", name)
					return 2
				}
				i++
				value = args[i]
			}
			switch name {
			case "customer":
				customer = value
			case "subject":
				subject = value
			default:
				ttlText = value
			}
		case "staff":
			b, err := strconv.ParseBool(value)
			if !hasValue {
				b, err = true, nil
			}
			if err != nil {
				fmt.Fprintf(stderr, "order-gateway token: --staff=%q is not true or false\n", value)
				return 2
			}
			staff = b
		case "h", "help":
			fmt.Fprintln(stdout, "usage: order-gateway token (--customer ID | --staff) [--subject NAME] [--ttl 24h] [gateway settings]")
			fmt.Fprintln(stdout, "Prints a token signed with AUTH_JWT_SECRET, or with the secret the gateway generates in DATA_DIR,")
			fmt.Fprintln(stdout, "carrying AUTH_ISSUER, AUTH_AUDIENCE and the AUTH_ROLE_CLAIM and AUTH_CUSTOMER_CLAIM claims.")
			return 0
		default:
			rest = append(rest, a)
		}
	}
	cfg, err := ParseConfig(rest, getenv, io.Discard)
	if err != nil {
		fmt.Fprintln(stderr, "order-gateway token: config:", err)
		return 2
	}
	ttl, err := time.ParseDuration(ttlText)
	if err != nil || ttl <= 0 {
		fmt.Fprintf(stderr, "order-gateway token: --ttl %q is not a positive duration such as 24h\n", ttlText)
		return 2
	}
	var p domain.Principal
	switch {
	case staff && customer == "":
		p = domain.Principal{Role: domain.RoleStaff, Subject: cmp.Or(subject, "staff")}
	case !staff && customer != "":
		p = domain.Principal{Role: domain.RoleCustomer, CustomerID: customer, Subject: subject}
	default:
		fmt.Fprintln(stderr, "order-gateway token: give --customer ID or --staff (see --help)")
		return 2
	}
	a, _, err := signingConfig(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "order-gateway token:", err)
		return 1
	}
	tok, err := auth.Mint(a, p, ttl, time.Now())
	if err != nil {
		fmt.Fprintln(stderr, "order-gateway token:", err)
		return 1
	}
	fmt.Fprintln(stdout, tok)
	return 0
}

// startAuth makes the verifier of Config.Auth: with AUTH_DISABLED, none
// (and a warning); with no key source, one for the secret kept in DATA_DIR
// (zero setup), whose tokens Run logs once the gateway is ready.
func (m *Main) startAuth() error {
	if m.Config.Auth.Disabled {
		m.Logger.Warn("AUTH_DISABLED is true: authentication and authorization are off; anyone who can reach the gateway can read and change every order")
		return nil
	}
	a := m.Config.Auth
	if zeroSetupAuth(a) {
		var created bool
		var err error
		if a, created, err = signingConfig(m.Config); err != nil {
			return fmt.Errorf("auth: %v", err)
		}
		m.mintWith = &a
		if created {
			m.Logger.Info("auth: generated a signing secret for tokens", "file", filepath.Join(m.Config.DataDir, auth.SecretFile))
		}
	}
	v, err := auth.New(a, m.Logger)
	if err != nil {
		return fmt.Errorf("auth: %v", err)
	}
	m.verifier = v
	return nil
}

// logZeroSetupTokens logs a customer token (for c-1) and a staff token
// signed with the generated secret, and how to mint more.
func (m *Main) logZeroSetupTokens() {
	if m.mintWith == nil {
		return
	}
	now := time.Now()
	customer, err1 := auth.Mint(*m.mintWith, domain.Principal{Role: domain.RoleCustomer, CustomerID: "c-1"}, ZeroSetupTokenTTL, now)
	staff, err2 := auth.Mint(*m.mintWith, domain.Principal{Role: domain.RoleStaff, Subject: "staff"}, ZeroSetupTokenTTL, now)
	if err := errors.Join(err1, err2); err != nil {
		m.Logger.Error("auth: could not mint the start tokens", "err", err)
		return
	}
	m.Logger.Info("auth: no AUTH_* setting, so tokens are HS256 signed with the secret in DATA_DIR; send one as Authorization: Bearer <token> (valid 24h; mint more with `go run . token --customer c-42` or `go run . token --staff`)",
		"customer_token", customer, "customer", "c-1", "staff_token", staff)
}

// authenticator is what the GraphQL server verifies tokens with: nil with
// AUTH_DISABLED (a nil *auth.Verifier must not become a non-nil
// interface).
func (m *Main) authenticator() graph.Authenticator {
	if m.verifier == nil {
		return nil
	}
	return m.verifier
}

// describeAuth names how tokens are checked, for the start log.
func (m *Main) describeAuth() string {
	switch {
	case m.verifier == nil:
		return "DISABLED (AUTH_DISABLED=true)"
	case m.mintWith != nil:
		return m.verifier.Describe() + " (generated in DATA_DIR)"
	}
	return m.verifier.Describe()
}

// authStatus is /readyz's "auth" entry.
func (m *Main) authStatus() string {
	if m.Config.Auth.Disabled {
		return "DISABLED: anyone may read and change every order (AUTH_DISABLED=true)"
	}
	return "on"
}
