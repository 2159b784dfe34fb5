package graph

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCloseReasonFitsAFrame(t *testing.T) {
	for _, in := range []string{"", "short", strings.Repeat("x", 123), strings.Repeat("x", 124), strings.Repeat("é", 100), "Subscriber for " + strings.Repeat("日本", 40) + " already exists"} {
		out := closeReason(in)
		if len(out) > 123 || !utf8.ValidString(out) || !strings.HasPrefix(in, out) {
			t.Errorf("closeReason(%d bytes) = %d bytes %q", len(in), len(out), out)
		}
		if len(in) <= 123 && out != in {
			t.Errorf("closeReason cut a reason that fits: %q", in)
		}
	}
}

// The outbox refuses what would take it past its bound, and counts what it
// hands to the writer as gone.
func TestOutboxIsBounded(t *testing.T) {
	c := &wsConn{writing: true} // no writer goroutine: nothing drains
	chunk := make([]byte, 1<<20)
	n := 0
	for c.queueLocked([][]byte{chunk}) {
		n++
		if n > 100 {
			t.Fatal("the outbox took more than 100 MiB")
		}
	}
	if n != maxOutboxBytes>>20 {
		t.Fatalf("the outbox took %d MiB, want %d", n, maxOutboxBytes>>20)
	}
	if msgs := c.takeOutbox(); len(msgs) != n || c.outboxBytes != 0 {
		t.Fatalf("takeOutbox returned %d messages and left %d bytes counted", len(msgs), c.outboxBytes)
	}
	if !c.queueLocked([][]byte{chunk}) {
		t.Fatal("the emptied outbox refused a message")
	}
}
