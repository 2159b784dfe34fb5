package app

import (
	"context"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestGCPercentFor(t *testing.T) {
	for _, c := range []struct {
		live, headroom uint64
		want           int
	}{
		{0, 64 << 20, gcMaxPercent},       // nothing live yet: the floor's
		{1 << 20, 64 << 20, gcMaxPercent}, // 6,400% wanted: capped
		{16 << 20, 64 << 20, 400},
		{20 << 20, 64 << 20, 320},
		{32 << 20, 64 << 20, 200},
		{64 << 20, 64 << 20, 100},
		{1 << 30, 64 << 20, 100}, // a large live heap: Go's default, never less
	} {
		if got := gcPercentFor(c.live, c.headroom); got != c.want {
			t.Errorf("gcPercentFor(%d, %d) = %d, want %d", c.live, c.headroom, got, c.want)
		}
	}
}

// TestPaceGC: PaceGC sets GOGC from the live heap while it runs and puts
// back the GOGC it found when it stops.
func TestPaceGC(t *testing.T) {
	read := func(name string) uint64 {
		s := []metrics.Sample{{Name: name}}
		metrics.Read(s)
		return s[0].Value.Uint64()
	}
	prev := debug.SetGCPercent(77)
	defer debug.SetGCPercent(prev)
	// 40 MiB live: GOGC about 160, neither bound.
	ballast := make([]byte, 40<<20)
	defer runtime.KeepAlive(ballast)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		PaceGC(ctx, 5*time.Millisecond)
	}()
	var gogc, live uint64
	paced := false
	for deadline := time.Now().Add(5 * time.Second); !paced && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		runtime.GC()
		gogc, live = read("/gc/gogc:percent"), read("/gc/heap/live:bytes")
		paced = gogc == uint64(gcPercentFor(live, GCHeadroom))
	}
	if !paced || gogc <= 100 || gogc >= gcMaxPercent {
		t.Fatalf("GOGC while PaceGC runs: %d, want gcPercentFor of the live heap (%d bytes): %d", gogc, live, gcPercentFor(live, GCHeadroom))
	}
	cancel()
	<-stopped
	if got := read("/gc/gogc:percent"); got != 77 {
		t.Errorf("GOGC after PaceGC stopped: %d, want the 77 it found", got)
	}
}
