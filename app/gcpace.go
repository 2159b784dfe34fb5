package app

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// GCHeadroom is how far the heap may grow past the live data before the
// garbage collector runs, at least, when PaceGC paces it. The gateway's
// live heap is small (its caches are bounded: tens of MiB under load), so
// Go's default (collect when the heap has doubled) collected several times
// a second under load and took a sixth of the gateway's CPU. A fixed
// headroom keeps the heap within live + 64 MiB, or twice the live heap when
// that is larger (GOGC 100 at least, gcMaxPercent at most).
const GCHeadroom = 64 << 20

// gcMaxPercent bounds the GOGC that PaceGC sets, and gcLiveFloor is the
// least live heap it assumes: GOGC applies to the live heap of the next
// collection, which can be larger than the one it was set from (a second
// before, with a burst of work in between), so the heap's target is at
// most 5 times the live heap, not 11 (GOGC 1000) when the heap was almost
// empty.
const (
	gcMaxPercent = 400
	gcLiveFloor  = 16 << 20
)

// gcPercentFor is the GOGC that lets a heap of live bytes (at least
// gcLiveFloor) grow by headroom before the next collection, between 100 and
// gcMaxPercent.
func gcPercentFor(live, headroom uint64) int {
	live = max(live, gcLiveFloor)
	return int(min(max(headroom*100/live, 100), gcMaxPercent))
}

// PaceGC sets the garbage collector's GOGC every interval from the live
// heap (gcPercentFor with GCHeadroom), until ctx ends, when it restores the
// GOGC it found. The binary runs it unless GOGC is set in its environment:
// an operator's GOGC is kept, and GOMEMLIMIT still caps the heap either
// way.
func PaceGC(ctx context.Context, interval time.Duration) {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	initial := debug.SetGCPercent(100)
	current := 100
	defer debug.SetGCPercent(initial)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		metrics.Read(sample)
		if sample[0].Value.Kind() == metrics.KindUint64 {
			if p := gcPercentFor(sample[0].Value.Uint64(), GCHeadroom); p != current {
				debug.SetGCPercent(p)
				current = p
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
