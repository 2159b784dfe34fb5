package live

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ordergateway/gateway/view"
)

// countingStore answers each read with the next version, after the test
// releases it.
type countingStore struct {
	reads   atomic.Int64
	started chan struct{}
	release chan struct{}
}

func (s *countingStore) Order(ctx context.Context, id string) (*view.OrderDoc, error) {
	n := s.reads.Add(1)
	s.started <- struct{}{}
	<-s.release
	return &view.OrderDoc{ID: id, Version: int(n)}, nil
}

// TestSnapshotsShareReadsButNeverAnEarlierOne: callers that arrive while a
// read is in flight share the next read (never the one that started before
// they asked), and a crowd costs one read, not one each.
func TestSnapshotsShareReadsButNeverAnEarlierOne(t *testing.T) {
	store := &countingStore{started: make(chan struct{}, 10), release: make(chan struct{})}
	s := &Snapshots{Store: store}
	ctx := context.Background()

	first := make(chan int)
	go func() {
		d, _ := s.Order(ctx, "o1")
		first <- d.Version
	}()
	<-store.started // read 1 is in flight

	const crowd = 50
	var wg sync.WaitGroup
	got := make([]int, crowd)
	for i := range crowd {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, _ := s.Order(ctx, "o1")
			got[i] = d.Version
		}()
	}
	time.Sleep(50 * time.Millisecond) // let the crowd queue behind read 1
	close(store.release)
	if v := <-first; v != 1 {
		t.Fatalf("first caller got version %d, want 1", v)
	}
	wg.Wait()
	for i, v := range got {
		if v < 2 {
			t.Fatalf("caller %d arrived during read 1 but got its result (version %d)", i, v)
		}
	}
	if n := store.reads.Load(); n > 10 {
		t.Fatalf("%d reads for 1+%d callers, want at most a few", n, crowd)
	}
	t.Logf("1+%d callers served by %d store reads", crowd, store.reads.Load())
}
