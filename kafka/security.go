package kafka

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/xdg-go/scram"
)

// The SASL mechanisms the gateway's clients speak.
const (
	SASLPlain       = "PLAIN"
	SASLSCRAMSHA256 = "SCRAM-SHA-256"
	SASLSCRAMSHA512 = "SCRAM-SHA-512"
)

// Bounds of the SASL credentials and of the CA file.
const (
	MaxSASLUsername = 255
	MaxSASLPassword = 1024
	maxCAFileBytes  = 1 << 20
)

// Secret is a string that shows as xxxxx wherever it is printed or logged
// (fmt, slog, JSON): only string(s) reveals it.
type Secret string

func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "xxxxx"
}

// GoString hides the secret from %#v.
func (s Secret) GoString() string { return fmt.Sprintf("%q", s.String()) }

// LogValue hides the secret from slog.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText hides the secret from encoders (encoding/json, say).
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Security says how the gateway's Kafka clients connect: over TLS (trusting
// the system's roots, or only the CAs of CAFile) and with SASL (PLAIN,
// SCRAM-SHA-256 or SCRAM-SHA-512). The zero value is a plaintext
// connection without SASL, the default. Load checks it and reads the CA
// file; the *Security it returns configures every client (Config).
type Security struct {
	TLS           bool   // KAFKA_TLS
	CAFile        string // KAFKA_CA_FILE: PEM certificates; "" trusts the system's roots
	SASLMechanism string // KAFKA_SASL_MECHANISM: "", PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
	SASLUsername  string // KAFKA_SASL_USERNAME
	SASLPassword  Secret // KAFKA_SASL_PASSWORD

	roots *x509.CertPool // from CAFile, set by Load
}

// Enabled reports whether s asks for anything but a plaintext connection
// without SASL.
func (s *Security) Enabled() bool {
	return s != nil && (s.TLS || s.CAFile != "" || s.SASLMechanism != "" || s.SASLUsername != "" || s.SASLPassword != "")
}

// Check reports settings that contradict each other or are out of bounds,
// as a ConfigError naming the setting; it never shows the password. It does
// not read the CA file (Load does).
func (s Security) Check() error {
	if s.CAFile != "" && !s.TLS {
		return &ConfigError{Setting: "KAFKA_CA_FILE", Err: errors.New("is set but KAFKA_TLS is not true: the CA is only used for TLS")}
	}
	if err := CheckSASLMechanism(s.SASLMechanism); err != nil {
		return &ConfigError{Setting: "KAFKA_SASL_MECHANISM", Err: err}
	}
	if s.SASLMechanism == "" {
		switch {
		case s.SASLUsername != "":
			return &ConfigError{Setting: "KAFKA_SASL_USERNAME", Err: errors.New("is set but KAFKA_SASL_MECHANISM is not (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)")}
		case s.SASLPassword != "":
			return &ConfigError{Setting: "KAFKA_SASL_PASSWORD", Err: errors.New("is set but KAFKA_SASL_MECHANISM is not (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)")}
		}
		return nil
	}
	if s.SASLUsername == "" {
		return &ConfigError{Setting: "KAFKA_SASL_USERNAME", Err: fmt.Errorf("is empty; KAFKA_SASL_MECHANISM=%s needs a user name", s.SASLMechanism)}
	}
	if err := CheckSASLUsername(s.SASLUsername); err != nil {
		return &ConfigError{Setting: "KAFKA_SASL_USERNAME", Err: err}
	}
	if s.SASLPassword == "" {
		return &ConfigError{Setting: "KAFKA_SASL_PASSWORD", Err: fmt.Errorf("is empty; KAFKA_SASL_MECHANISM=%s needs a password", s.SASLMechanism)}
	}
	if err := CheckSASLPassword(string(s.SASLPassword)); err != nil {
		return &ConfigError{Setting: "KAFKA_SASL_PASSWORD", Err: err}
	}
	if strings.HasPrefix(s.SASLMechanism, "SCRAM-") {
		// SCRAM prepares both with SASLprep (RFC 5802); a name or password
		// it refuses would fail every connection. The error quotes the user
		// name at most, never the password.
		if _, err := scram.SHA256.NewClient(s.SASLUsername, string(s.SASLPassword), ""); err != nil {
			setting := "KAFKA_SASL_PASSWORD"
			if strings.Contains(err.Error(), "username") {
				setting = "KAFKA_SASL_USERNAME"
			}
			return &ConfigError{Setting: setting, Err: fmt.Errorf("SCRAM cannot use it (%v)", err)}
		}
	}
	return nil
}

// CheckSASLMechanism reports a mechanism the gateway does not speak.
func CheckSASLMechanism(m string) error {
	switch m {
	case "", SASLPlain, SASLSCRAMSHA256, SASLSCRAMSHA512:
		return nil
	}
	shown := m
	if len(shown) > 40 {
		shown = shown[:40] + "…"
	}
	return fmt.Errorf("%q is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", shown)
}

// CheckSASLUsername reports a user name out of bounds: 1 to 255 bytes of
// UTF-8 without control characters.
func CheckSASLUsername(u string) error {
	if u == "" || len(u) > MaxSASLUsername || !utf8.ValidString(u) || strings.ContainsFunc(u, isControl) {
		return fmt.Errorf("is not a user name of 1 to %d bytes of UTF-8 without control characters", MaxSASLUsername)
	}
	return nil
}

// CheckSASLPassword reports a password out of bounds (1 to 1024 bytes of
// UTF-8 without NUL, which PLAIN uses as its separator), without showing
// any of it.
func CheckSASLPassword(p string) error {
	if p == "" || len(p) > MaxSASLPassword || !utf8.ValidString(p) || strings.ContainsRune(p, 0) {
		return fmt.Errorf("is not 1 to %d bytes of UTF-8 without NUL (its value is not shown)", MaxSASLPassword)
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// Load checks s and reads its CA file: the *Security it returns is ready
// to configure clients. Errors are ConfigErrors naming the setting.
func (s Security) Load() (*Security, error) {
	if err := s.Check(); err != nil {
		return nil, err
	}
	if s.CAFile != "" {
		roots, err := LoadCAFile(s.CAFile)
		if err != nil {
			return nil, &ConfigError{Setting: "KAFKA_CA_FILE", Err: err}
		}
		s.roots = roots
	}
	return &s, nil
}

// LoadCAFile reads PEM certificates (at most 1 MiB of them) into a pool.
func LoadCAFile(path string) (*x509.CertPool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read it: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCAFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", path, err)
	}
	if len(b) > maxCAFileBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes: it should hold a few PEM certificates", path, maxCAFileBytes)
	}
	pool := x509.NewCertPool()
	n := 0
	for rest := b; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s holds a certificate that does not parse: %v", path, err)
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("%s holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path)
	}
	return pool, nil
}

// TLSConfig is the client TLS configuration of s (nil without TLS): TLS 1.2
// or newer, the broker's certificate verified against the CA file or the
// system's roots, and its name against the broker's address.
func (s *Security) TLSConfig() *tls.Config {
	if s == nil || !s.TLS {
		return nil
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: s.roots}
}

// Config is the base configuration (see the package's Config) of a client
// that connects as s says; a nil s connects in plaintext without SASL, as
// Config does. Every client of the gateway is made from it.
func (s *Security) Config(clientID string, fetchWait time.Duration) *sarama.Config {
	c := Config(clientID, fetchWait)
	s.apply(c)
	return c
}

func (s *Security) apply(c *sarama.Config) {
	if s == nil {
		return
	}
	if s.TLS {
		c.Net.TLS.Enable = true
		c.Net.TLS.Config = s.TLSConfig()
	}
	if s.SASLMechanism == "" {
		return
	}
	c.Net.SASL.Enable = true
	c.Net.SASL.Handshake = true
	c.Net.SASL.Version = sarama.SASLHandshakeV1 // Apache Kafka 4 has no v0
	c.Net.SASL.User = s.SASLUsername
	c.Net.SASL.Password = string(s.SASLPassword)
	switch s.SASLMechanism {
	case SASLPlain:
		c.Net.SASL.Mechanism = sarama.SASLTypePlaintext
	case SASLSCRAMSHA256:
		c.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA256
		c.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.SHA256} }
	case SASLSCRAMSHA512:
		c.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA512
		c.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.SHA512} }
	}
}

// Describe is s for the start log: TLS and its CA, the mechanism and the
// user, never the password.
func (s *Security) Describe() string {
	if !s.Enabled() {
		return "plaintext"
	}
	var parts []string
	switch {
	case s.TLS && s.CAFile != "":
		parts = append(parts, "TLS (CA "+s.CAFile+")")
	case s.TLS:
		parts = append(parts, "TLS (system roots)")
	default:
		parts = append(parts, "plaintext")
	}
	if s.SASLMechanism != "" {
		parts = append(parts, fmt.Sprintf("SASL %s as %q", s.SASLMechanism, s.SASLUsername))
	}
	return strings.Join(parts, ", ")
}

// scramClient is sarama's SCRAM client on github.com/xdg-go/scram, as in
// sarama's own examples.
type scramClient struct {
	hash scram.HashGeneratorFcn
	conv *scram.ClientConversation
}

func (x *scramClient) Begin(user, password, authzID string) error {
	c, err := x.hash.NewClient(user, password, authzID)
	if err != nil {
		return err
	}
	x.conv = c.NewConversation()
	return nil
}

func (x *scramClient) Step(challenge string) (string, error) { return x.conv.Step(challenge) }
func (x *scramClient) Done() bool                            { return x.conv.Done() }

// Refusal says, as a ConfigError naming the setting, why connecting to
// brokers failed when no retry can help: the broker refused the
// credentials or the mechanism, its certificate is not trusted, it does not
// speak TLS, or it speaks TLS or wants SASL where s has neither. What the
// client's error does not tell is found by asking a broker directly (a TLS
// handshake, a SASL handshake and authentication: see diagnose). It
// returns nil for anything else (an unreachable broker, say), which is
// worth retrying. The error never shows the password.
func (s *Security) Refusal(err error, brokers []string) error {
	if err == nil {
		return nil
	}
	if r := s.refusalOf(err, ""); r != nil {
		return r
	}
	if isRefusedConnection(err) {
		return nil
	}
	for _, b := range brokers {
		if r := s.diagnose(b); r != nil {
			return r
		}
	}
	return nil
}

// refusalOf is the ConfigError err means by itself, or nil (also for a
// nil err).
func (s *Security) refusalOf(err error, addr string) error {
	if err == nil {
		return nil
	}
	var (
		unknownCA    x509.UnknownAuthorityError
		badHost      x509.HostnameError
		badCert      x509.CertificateInvalidError
		verification *tls.CertificateVerificationError
		notTLS       tls.RecordHeaderError
	)
	user, mechanism, trusted := "", "", "the system's roots"
	if s != nil {
		user, mechanism = s.SASLUsername, s.SASLMechanism
		if s.CAFile != "" {
			trusted = s.CAFile
		}
	}
	at := ""
	if addr != "" {
		at = " at " + addr
	}
	switch {
	case errors.Is(err, sarama.ErrSASLAuthenticationFailed), errors.Is(err, kerr.SaslAuthenticationFailed):
		return &ConfigError{Setting: "KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD", Err: fmt.Errorf("the broker%s refused user %q with this password (%s)", at, user, mechanism)}
	case errors.Is(err, sarama.ErrUnsupportedSASLMechanism):
		return &ConfigError{Setting: "KAFKA_SASL_MECHANISM", Err: fmt.Errorf("the broker%s does not enable %s on this listener", at, mechanism)}
	case errors.Is(err, sarama.ErrIllegalSASLState), errors.Is(err, kerr.IllegalSaslState):
		return &ConfigError{Setting: "KAFKA_SASL_MECHANISM", Err: fmt.Errorf("the broker%s takes no SASL on this listener (a PLAINTEXT or SSL listener?): unset KAFKA_SASL_MECHANISM or use its SASL listener", at)}
	case errors.As(err, &unknownCA), errors.As(err, &badHost), errors.As(err, &badCert), errors.As(err, &verification):
		return &ConfigError{Setting: "KAFKA_CA_FILE", Err: fmt.Errorf("the broker's certificate%s is not trusted (checked against %s): %v", at, trusted, tlsReason(err))}
	case errors.As(err, &notTLS):
		return &ConfigError{Setting: "KAFKA_TLS", Err: fmt.Errorf("the broker%s does not answer with TLS on this port (a PLAINTEXT or SASL_PLAINTEXT listener?): unset KAFKA_TLS or use its SSL listener", at)}
	case strings.Contains(err.Error(), "remote error: tls:"):
		return &ConfigError{Setting: "KAFKA_TLS", Err: fmt.Errorf("the broker%s refused the TLS handshake (%s; client certificates are not supported)", at, tlsReason(err))}
	}
	return nil
}

// tlsReason is the last part of a TLS error, without sarama's wrapping.
func tlsReason(err error) string {
	msg := strings.ReplaceAll(err.Error(), "\n", " ")
	if i := strings.Index(msg, "tls: "); i >= 0 {
		msg = msg[i:]
	} else if i := strings.Index(msg, "x509: "); i >= 0 {
		msg = msg[i:]
	}
	return strings.TrimSpace(msg)
}

func isRefusedConnection(err error) bool {
	var dnsErr *net.DNSError
	return errors.Is(err, syscall.ECONNREFUSED) || errors.As(err, &dnsErr) || strings.Contains(err.Error(), "connection refused") ||
		strings.Contains(err.Error(), "no such host")
}

// probeTimeout bounds each probe of a broker.
const probeTimeout = 3 * time.Second

// diagnose asks the broker at addr, as s would connect, what a client's
// error does not say: whether it speaks TLS, whether it wants SASL and
// which mechanisms, and whether it takes s's credentials. It returns a
// ConfigError for a setting that cannot work with this broker, or nil
// (unreachable, or nothing wrong found). All of it takes at most
// probeTimeout.
func (s *Security) diagnose(addr string) error {
	deadline := time.Now().Add(probeTimeout)
	withTLS := s != nil && s.TLS
	// Plaintext first: a TLS listener refuses it at once, where a TLS
	// ClientHello would be read by a plaintext one as a ~370 MB request.
	_, err := probeConn(addr, nil, deadline, kmsg.NewPtrApiVersionsRequest())
	plaintext := err == nil
	switch {
	case plaintext && withTLS:
		return &ConfigError{Setting: "KAFKA_TLS", Err: fmt.Errorf("the broker at %s answers without TLS on this port (a PLAINTEXT or SASL_PLAINTEXT listener?): unset KAFKA_TLS or use its SSL listener", addr)}
	case !plaintext && !withTLS:
		if probeTLS(addr, deadline) {
			return &ConfigError{Setting: "KAFKA_TLS", Err: fmt.Errorf("the broker at %s answers with TLS: set KAFKA_TLS=true (and KAFKA_CA_FILE for a private CA)", addr)}
		}
		return nil
	}
	if s == nil || s.SASLMechanism == "" {
		// Does the listener take a request without SASL? A SASL listener
		// closes the connection instead (Apache Kafka, kfake).
		p, err := dialProbe(addr, s.TLSConfig(), deadline)
		if err != nil {
			return s.refusalOf(err, addr)
		}
		md := kmsg.NewPtrMetadataRequest()
		md.Version, md.Topics = 7, []kmsg.MetadataRequestTopic{}
		_, err = p.request(md)
		p.Close()
		if err == nil {
			return nil
		}
		// Ask for a mechanism no broker has: the answer lists those it has.
		hs := kmsg.NewPtrSASLHandshakeRequest()
		hs.Version, hs.Mechanism = 1, "ORDER-GATEWAY-PROBE"
		resp, err := probeConn(addr, s.TLSConfig(), deadline, hs)
		if err != nil {
			return nil
		}
		if h := resp.(*kmsg.SASLHandshakeResponse); len(h.SupportedMechanisms) > 0 {
			return &ConfigError{Setting: "KAFKA_SASL_MECHANISM", Err: fmt.Errorf("the broker at %s wants SASL (it enables %s): set KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD",
				addr, strings.Join(h.SupportedMechanisms, ", "))}
		}
		return nil
	}
	p, err := dialProbe(addr, s.TLSConfig(), deadline)
	if err != nil {
		return s.refusalOf(err, addr)
	}
	defer p.Close()
	hs := kmsg.NewPtrSASLHandshakeRequest()
	hs.Version, hs.Mechanism = 1, s.SASLMechanism
	resp, err := p.request(hs)
	if err != nil {
		return nil
	}
	h := resp.(*kmsg.SASLHandshakeResponse)
	switch herr := kerr.ErrorForCode(h.ErrorCode); {
	case errors.Is(herr, kerr.UnsupportedSaslMechanism):
		return &ConfigError{Setting: "KAFKA_SASL_MECHANISM", Err: fmt.Errorf("the broker at %s does not enable %s on this listener (it enables %s)", addr, s.SASLMechanism, strings.Join(h.SupportedMechanisms, ", "))}
	case herr != nil:
		return s.refusalOf(herr, addr)
	}
	err = p.authenticate(s)
	if errors.Is(err, kerr.SaslAuthenticationFailed) && answersWithoutSASL(addr, s.TLSConfig(), deadline) {
		// Apache Kafka answers a SaslHandshake on a listener without SASL
		// with ILLEGAL_SASL_STATE (above); kfake (the embedded broker)
		// accepts it and then fails the authentication, which looks like
		// refused credentials. A listener that answers a request without
		// SASL takes none: a SASL listener closes the connection instead.
		return &ConfigError{Setting: "KAFKA_SASL_MECHANISM", Err: fmt.Errorf("the broker at %s takes no SASL on this listener (a PLAINTEXT or SSL listener?): unset KAFKA_SASL_MECHANISM or use its SASL listener", addr)}
	}
	return s.refusalOf(err, addr) // nil when authenticated: nothing wrong found
}

// answersWithoutSASL reports whether the listener at addr answers a
// Metadata request sent without SASL authentication (over TLS with tc,
// unless tc is nil).
func answersWithoutSASL(addr string, tc *tls.Config, deadline time.Time) bool {
	md := kmsg.NewPtrMetadataRequest()
	md.Version, md.Topics = 7, []kmsg.MetadataRequestTopic{}
	_, err := probeConn(addr, tc, deadline, md)
	return err == nil
}

// probeTLS reports whether addr completes a TLS handshake. Nothing is sent
// after it, and the certificate is not checked: this only tells a TLS
// listener from a plaintext one.
func probeTLS(addr string, deadline time.Time) bool {
	conn, err := net.DialTimeout("tcp", addr, time.Until(deadline))
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(deadline)
	tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true, ServerName: hostOf(addr)}) //nolint:gosec // a probe: nothing is sent over it
	return tc.Handshake() == nil
}

// probeConn sends addr one request (over TLS with tc, unless tc is nil)
// and returns its response.
func probeConn(addr string, tc *tls.Config, deadline time.Time, req kmsg.Request) (kmsg.Response, error) {
	p, err := dialProbe(addr, tc, deadline)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	return p.request(req)
}

// probe is a bare Kafka connection for diagnose: requests one at a time,
// in non-flexible versions, until a deadline.
type probe struct {
	net.Conn
	correlation int32
}

func dialProbe(addr string, tc *tls.Config, deadline time.Time) (*probe, error) {
	conn, err := net.DialTimeout("tcp", addr, time.Until(deadline))
	if err != nil {
		return nil, err
	}
	_ = conn.SetDeadline(deadline)
	if tc != nil {
		tc = tc.Clone()
		tc.ServerName = hostOf(addr)
		c := tls.Client(conn, tc)
		if err := c.Handshake(); err != nil {
			conn.Close()
			return nil, err
		}
		conn = c
	}
	return &probe{Conn: conn}, nil
}

func (p *probe) request(req kmsg.Request) (kmsg.Response, error) {
	p.correlation++
	msg := binary.BigEndian.AppendUint16(nil, uint16(req.Key()))
	msg = binary.BigEndian.AppendUint16(msg, uint16(req.GetVersion()))
	msg = binary.BigEndian.AppendUint32(msg, uint32(p.correlation))
	const clientID = "order-gateway-probe"
	msg = binary.BigEndian.AppendUint16(msg, uint16(len(clientID)))
	msg = append(msg, clientID...)
	msg = req.AppendTo(msg)
	if _, err := p.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(msg))), msg...)); err != nil {
		return nil, err
	}
	head := make([]byte, 8)
	if _, err := io.ReadFull(p, head); err != nil {
		return nil, err
	}
	size := binary.BigEndian.Uint32(head)
	if size < 4 || size > 1<<20 || int32(binary.BigEndian.Uint32(head[4:])) != p.correlation {
		return nil, errors.New("not a Kafka response")
	}
	body := make([]byte, size-4)
	if _, err := io.ReadFull(p, body); err != nil {
		return nil, err
	}
	resp := req.ResponseKind()
	resp.SetVersion(req.GetVersion())
	if err := resp.ReadFrom(body); err != nil {
		return nil, err
	}
	return resp, nil
}

// authenticate runs s's SASL authentication after a SaslHandshake the
// broker accepted. A broker that closes the connection instead of answering
// (as kfake does) refused the credentials too.
func (p *probe) authenticate(s *Security) error {
	step := func(b []byte) ([]byte, error) {
		req := kmsg.NewPtrSASLAuthenticateRequest()
		req.Version, req.SASLAuthBytes = 1, b
		resp, err := p.request(req)
		if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
			return nil, kerr.SaslAuthenticationFailed
		}
		if err != nil {
			return nil, err
		}
		r := resp.(*kmsg.SASLAuthenticateResponse)
		if err := kerr.ErrorForCode(r.ErrorCode); err != nil {
			return nil, err
		}
		return r.SASLAuthBytes, nil
	}
	if s.SASLMechanism == SASLPlain {
		_, err := step([]byte("\x00" + s.SASLUsername + "\x00" + string(s.SASLPassword)))
		return err
	}
	hash := scram.SHA256
	if s.SASLMechanism == SASLSCRAMSHA512 {
		hash = scram.SHA512
	}
	c, err := hash.NewClient(s.SASLUsername, string(s.SASLPassword), "")
	if err != nil {
		return err
	}
	conv := c.NewConversation()
	var challenge []byte
	for {
		out, err := conv.Step(string(challenge))
		if err != nil {
			return kerr.SaslAuthenticationFailed // the server's proof or nonce did not check out
		}
		if conv.Done() {
			return nil
		}
		if challenge, err = step([]byte(out)); err != nil {
			return err
		}
	}
}

func hostOf(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}
