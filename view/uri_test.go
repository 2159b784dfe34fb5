package view

import (
	"strings"
	"testing"
)

// Hardening item 8: Open names a malformed MongoDB URI without its
// password (it printed the whole URI).
func TestOpenShowsNoPassword(t *testing.T) {
	for _, uri := range []string{
		"mongodb://user:secret@host:notaport/db",
		"mongodb://user:sec:ret@host/db",
		"mongodb://user:se/cret@host/db",
		"mongodb://user:secret@h1:27017,h2:x/db",
		"mongodb://user:sec%zzret@host/db",
		"mongodb://user:secret@host/db?tls=maybe",
		"mongodb//user:secret@host/db",
		"user:secret@host",
	} {
		_, err := Open(uri, "orders")
		if err == nil {
			t.Errorf("Open(%q): want an error", uri)
			continue
		}
		msg := err.Error()
		t.Logf("%s", msg)
		for _, s := range []string{"secret", "sec:ret", "se/cret", "sec%zzret"} {
			if strings.Contains(msg, s) {
				t.Errorf("Open(%q): the error shows the password: %q", uri, msg)
			}
		}
		if !strings.Contains(msg, "host") {
			t.Errorf("Open(%q): want the error to name the host, got %q", uri, msg)
		}
	}
}
