package app

import (
	"io"
	"strings"
	"testing"
	"time"
)

func TestLagTracker(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var l lagTracker
	// Partition 0 grows by 10 records a second; partition 1 is idle at 5.
	for i := range 10 {
		l.add(t0.Add(time.Duration(i)*time.Second), map[int32]int64{0: int64(10*i + 1), 1: 5})
	}
	now := t0.Add(9 * time.Second)
	cases := []struct {
		committed map[int32]int64
		want      time.Duration
	}{
		{map[int32]int64{0: 90, 1: 4}, 0},               // at the last stable offsets (less the marker)
		{map[int32]int64{0: 60, 1: 4}, 2 * time.Second}, // 61..90 stable since t0+7s
		{map[int32]int64{0: 0, 1: 4}, 8 * time.Second},  // since the second sample
		{map[int32]int64{0: 90, 1: 2}, 9 * time.Second}, // behind since the first sample (the window)
		{map[int32]int64{0: -1, 1: -1}, 0},              // nothing committed: no measure
	}
	for _, c := range cases {
		if got := l.behind(now, c.committed); got != c.want {
			t.Errorf("behind(%v) = %s, want %s", c.committed, got, c.want)
		}
	}
	for i := range 2 * lagSamples {
		l.add(t0.Add(time.Duration(i)*time.Millisecond), nil)
	}
	if len(l.samples) != lagSamples {
		t.Fatalf("%d samples kept, want at most %d", len(l.samples), lagSamples)
	}
}

// TestAdminAddrIsLoopbackUnlessAllowed: ADMIN_ADDR must be a loopback
// address unless ADMIN_ALLOW_REMOTE, which needs ADMIN_TOKEN.
func TestAdminAddrIsLoopbackUnlessAllowed(t *testing.T) {
	cases := []struct {
		env  map[string]string
		want string // "" for accepted
	}{
		{map[string]string{"ADMIN_ADDR": "127.0.0.1:9091"}, ""},
		{map[string]string{"ADMIN_ADDR": "[::1]:9091"}, ""},
		{map[string]string{"ADMIN_ADDR": "localhost:9091"}, ""},
		{map[string]string{"ADMIN_ADDR": ":9091"}, "not a loopback address"},
		{map[string]string{"ADMIN_ADDR": "10.0.0.5:9091"}, "not a loopback address"},
		{map[string]string{"ADMIN_ADDR": "0.0.0.0:9091", "ADMIN_ALLOW_REMOTE": "true"}, "needs ADMIN_TOKEN"},
		{map[string]string{"ADMIN_ADDR": "0.0.0.0:9091", "ADMIN_ALLOW_REMOTE": "true", "ADMIN_TOKEN": "0123456789abcdef0123"}, ""},
		{map[string]string{"ADMIN_TOKEN": "short"}, "16 to 1024 bytes"},
	}
	for _, c := range cases {
		cfg, err := ParseConfig(nil, func(k string) string { return c.env[k] }, io.Discard)
		if err == nil {
			err = cfg.check()
		}
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%v: %v", c.env, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%v: %v, want an error with %q", c.env, err, c.want)
		}
	}
}
