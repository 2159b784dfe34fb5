package command

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/ordergateway/gateway/embedded"
)

// The package's tests talk to a real Kafka-protocol broker: the one named by
// KAFKA_BROKERS (comma-separated) if set, else an embedded broker shared by
// the whole test binary. Each test uses its own topic prefix.
var (
	testBrokers []string
	testKafka   string // "embedded" or "external", for the test log
)

func TestMain(m *testing.M) {
	checkReplaces = true // every committed batch checks the local store against what it was decided on
	if b := os.Getenv("KAFKA_BROKERS"); b != "" {
		testBrokers, testKafka = strings.Split(b, ","), "external"
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "command-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	k, err := embedded.StartKafka(dir, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	testBrokers, testKafka = []string{k.Addr()}, "embedded"
	code := m.Run()
	k.Close()
	os.RemoveAll(dir)
	os.Exit(code)
}

// restoredOrders is every order in partition p's local store after a
// restore.
func restoredOrders(t testing.TB, ws *workingSet, p int32) map[string]*orderState {
	t.Helper()
	ps := ws.stores[p]
	if ps == nil {
		t.Fatalf("no store for partition %d", p)
	}
	orders, err := ps.all()
	if err != nil {
		t.Fatal(err)
	}
	return orders
}
