// Package kafkatest starts, for tests, a Kafka-protocol broker (kfake) that
// takes only TLS connections and SASL-authenticated clients, with a
// throwaway CA generated on the spot.
package kafkatest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/ordergateway/gateway/kafka"
)

// CA is a throwaway certificate authority.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	PEM  []byte
}

// NewCA makes a CA named name.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &CA{Cert: cert, Key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// WriteFile writes the CA's certificate in PEM to a file in dir and
// returns its path.
func (ca *CA) WriteFile(t testing.TB, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(p, ca.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// ServerConfig is a server TLS configuration with a certificate the CA
// signed for 127.0.0.1 and localhost.
func (ca *CA) ServerConfig(t testing.TB) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano() + 1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// User is a SASL user of the broker: Mechanism is PLAIN, SCRAM-SHA-256 or
// SCRAM-SHA-512.
type User struct{ Mechanism, Name, Password string }

// Broker is a running secured broker.
type Broker struct {
	Addr   string
	CAFile string // the PEM certificate of the CA that signed the broker's
	CA     *CA
}

// Start starts a broker that takes TLS connections only (if tls) and only
// clients authenticated as one of users (if any; superusers, so ACLs do not
// apply), with the group session timeouts the embedded broker has. It
// stops when the test ends.
func Start(t testing.TB, withTLS bool, users ...User) *Broker {
	t.Helper()
	ca := NewCA(t, "order-gateway test CA")
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.GroupMinSessionTimeout(time.Second),
		kfake.GroupMaxSessionTimeout(30 * time.Minute),
	}
	if withTLS {
		opts = append(opts, kfake.TLS(ca.ServerConfig(t)))
	}
	if len(users) > 0 {
		opts = append(opts, kfake.EnableSASL())
		for _, u := range users {
			opts = append(opts, kfake.Superuser(u.Mechanism, u.Name, u.Password))
		}
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return &Broker{Addr: c.ListenAddrs()[0], CAFile: ca.WriteFile(t, t.TempDir()), CA: ca}
}

// SendToPartitions writes msgs, each to the partition it names (the
// manual partitioner), in order, with a producer of its own that it closes;
// the test fails if any is not written.
func SendToPartitions(t testing.TB, brokers []string, msgs ...*sarama.ProducerMessage) {
	t.Helper()
	sc := kafka.Config("test-send", 20*time.Millisecond)
	sc.Producer.Return.Successes = true
	sc.Producer.Partitioner = sarama.NewManualPartitioner
	prod, err := sarama.NewSyncProducer(brokers, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	if err := prod.SendMessages(msgs); err != nil {
		t.Fatalf("send %d records: %v", len(msgs), err)
	}
}
