// Package command is the write side's runtime: the Bus sends a command to
// Kafka and awaits its outcome; the Handler consumes commands, decides with
// domain.Decide and writes events, snapshots, replies and its consumer offset
// in one Kafka transaction.
package command

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"strings"

	"github.com/ordergateway/gateway/domain"
)

// Header names on the commands topic.
const (
	HeaderCommandID      = "command-id"
	HeaderIdempotencyKey = "idempotency-key"
	HeaderReplyTo        = "reply-to"
	HeaderReplyPartition = "reply-partition"
	// HeaderPrincipal is who sent the command (domain.MarshalPrincipal):
	// the handler checks it against the order (domain.Authorize).
	HeaderPrincipal = "principal"
)

// envelope is the wire form of a command on the commands topic.
type envelope struct {
	CommandID      string          `json:"commandId"`
	Type           string          `json:"type"`
	OrderID        string          `json:"orderId"`
	IdempotencyKey string          `json:"idempotencyKey"`
	Data           json.RawMessage `json:"data"`
}

// payloadHash identifies what a command asks for, so that a reused
// idempotency key with a different payload is recognised.
func (e envelope) payloadHash() string {
	h := sha256.New()
	h.Write([]byte(e.Type))
	h.Write([]byte{0})
	h.Write(e.Data)
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Reply is the wire form of a command's outcome on the replies topic.
type Reply struct {
	CommandID string        `json:"commandId"`
	OrderID   string        `json:"orderId"`
	Version   int           `json:"version"`
	Order     *domain.Order `json:"order,omitempty"`
	Error     *domain.Error `json:"error,omitempty"`
	// Replayed is set when the outcome is the recorded one of an earlier
	// command with the same idempotency key.
	Replayed bool `json:"replayed,omitempty"`
}

// newID returns a random, URL-safe identifier with a prefix.
func newID(prefix string) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return prefix + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// PlaceOrderID derives the id of an order placed without a client-chosen id.
// With an idempotency key it is a function of customer and key, so a retried
// placeOrder lands on the same order (and partition) and is deduplicated
// there; without one it is random.
func PlaceOrderID(customerID, idempotencyKey string) string {
	if idempotencyKey == "" {
		return newID("ord_")
	}
	sum := sha256.Sum256([]byte(customerID + "\x00" + idempotencyKey))
	return "ord_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:16]))
}
