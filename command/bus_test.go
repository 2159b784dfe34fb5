package command

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/metrics"
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

// TestLoneCommandsAreWrittenAtOnce: a command sent while no other is being
// written goes to the producer that writes at once; commands sent while
// others are being written go to the gathering one, which waits up to
// gatherDelay for more. Either way each is written (no handler runs here:
// they time out waiting for their outcome).
func TestLoneCommandsAreWrittenAtOnce(t *testing.T) {
	topics := fenceTestTopics(t, "busgather")
	m := metrics.NewCommands(prometheus.NewRegistry())
	b, err := NewBus(BusConfig{Brokers: testBrokers, Topics: topics, Timeout: 200 * time.Millisecond, FetchWait: 20 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler), Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	send := func() {
		if _, err := b.Send(context.Background(), domain.ConfirmOrder{OrderID: "ord_gather"}, ""); domain.ErrorCode(err) != domain.CodeCommandTimeout {
			t.Errorf("send: %v, want COMMAND_TIMEOUT", err)
		}
	}
	for range 5 {
		send()
	}
	if n := testutil.ToFloat64(m.Gathered); n != 0 {
		t.Fatalf("%v of 5 commands sent one after another were gathered, want none", n)
	}
	const concurrent = 50
	var wg sync.WaitGroup
	for range concurrent {
		wg.Go(send)
	}
	wg.Wait()
	if n := testutil.ToFloat64(m.Gathered); n == 0 || n >= concurrent {
		t.Fatalf("%v of %d commands sent together were gathered, want some, and not the first", n, concurrent)
	}
	if n := testutil.ToFloat64(m.Unsent); n != 0 {
		t.Fatalf("%v commands not written", n)
	}
}
