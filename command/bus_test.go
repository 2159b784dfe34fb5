package command

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ordergateway/gateway/domain"
)

// TestSendDuringAndAfterClose: commands sent while the bus closes, and
// after (a request that outlived the server's shutdown timeout), get an
// error instead of a panic on the closed producer (which, in a goroutine of
// its own, took the whole process down at shutdown).
func TestSendDuringAndAfterClose(t *testing.T) {
	topics := fenceTestTopics(t, "busclose")
	b, err := NewBus(BusConfig{Brokers: testBrokers, Topics: topics, Timeout: 2 * time.Second, FetchWait: 20 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%2 == 1 {
				time.Sleep(time.Duration(i) * 50 * time.Microsecond)
			}
			_, err := b.Send(context.Background(), domain.ConfirmOrder{OrderID: "ord_close"}, "")
			errs <- err
		}()
	}
	time.Sleep(2 * time.Millisecond)
	if err := b.Close(); err != nil {
		t.Logf("close: %v", err)
	}
	wg.Wait()
	close(errs)
	codes := map[domain.Code]int{}
	for err := range errs {
		codes[domain.ErrorCode(err)]++
	}
	_, err = b.Send(context.Background(), domain.ConfirmOrder{OrderID: "ord_close"}, "")
	if domain.ErrorCode(err) != domain.CodeUnavailable {
		t.Errorf("a send after Close: %v, want UNAVAILABLE", err)
	}
	t.Logf("sends around Close ended with %v (none is answered: no handler runs)", codes)
}
