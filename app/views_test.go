package app

import (
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
