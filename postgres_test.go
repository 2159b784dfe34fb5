package main

import (
	"github.com/ordergateway/gateway/app"

	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ordergateway/gateway/embedded"
)

// syncBuffer is a bytes.Buffer for a logger used from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startLoggedGateway is startGateway with the gateway's log kept in logs.
func startLoggedGateway(t *testing.T, cfg app.Config, logs *syncBuffer) *gateway {
	t.Helper()
	m := &app.Main{Config: cfg, Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := m.Run(ctx); err != nil {
		m.Close()
		t.Fatalf("start gateway: %v; log:\n%s", err, logs)
	}
	g := &gateway{Main: m, url: "http://" + m.Addr()}
	t.Cleanup(g.stop)
	return g
}

// TestGatewaysShareAPostgreSQLStore runs two gateways of one deployment with
// STORE_POSTGRESQL_URL: each runs its own embedded store on the same
// PostgreSQL database. What one writes, the other reads; neither locks the
// data folder; neither logs the URL's password; the orders outlive both.
func TestGatewaysShareAPostgreSQLStore(t *testing.T) {
	if testPostgreSQLURL == "" {
		t.Skip("STORE_POSTGRESQL_URL is not set: run STORE_POSTGRESQL_URL=$(scripts/postgres.sh start) go test . to run the suite on PostgreSQL")
	}
	cfg := testConfig(t)
	cfg.MongoURI = ""
	// A password the server does not ask for (scripts/postgres.sh trusts
	// loopback), to see that it is never logged.
	u, err := url.Parse(testPostgreSQLURL)
	if err != nil {
		t.Fatal(err)
	}
	password := fmt.Sprintf("never-logged-%d", time.Now().UnixNano())
	if _, has := u.User.Password(); !has {
		u.User = url.UserPassword(u.User.Username(), password)
	} else {
		password, _ = u.User.Password()
	}
	cfg.StorePostgreSQLURL = u.String()

	// The data folder is taken: only the embedded broker or the store on
	// SQLite would need it.
	lock, err := embedded.LockDir(cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()

	var logs syncBuffer
	a := startLoggedGateway(t, cfg, &logs)
	b := startLoggedGateway(t, cfg, &logs)
	for _, g := range []*gateway{a, b} {
		deadline := time.Now().Add(30 * time.Second)
		for code := httpStatus(t, g.url+"/readyz"); code != http.StatusOK; code = httpStatus(t, g.url+"/readyz") {
			if time.Now().After(deadline) {
				t.Fatalf("/readyz of %s: %d after 30 s", g.url, code)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// Orders placed through either gateway, read through both.
	type placed struct {
		id, customer, token string
		version             int
	}
	var orders []placed
	for i := range 6 {
		g := []*gateway{a, b}[i%2]
		customer := fmt.Sprintf("cust-pg-%d", i%2)
		o := g.mustMutate(t, "placeOrder", placeInput(customer, item("A", 1+i, "2.50")))
		p := g.mutate(t, "confirmOrder", map[string]any{"orderId": o.ID})
		if len(p.UserErrors) > 0 {
			t.Fatalf("confirmOrder: %+v", p.UserErrors)
		}
		orders = append(orders, placed{o.ID, customer, *p.ConsistencyToken, *p.Version})
	}
	for _, o := range orders {
		for _, g := range []*gateway{a, b} {
			if v := g.orderAt(t, o.id, o.token); v == nil || v.Status != "CONFIRMED" || v.Version != o.version {
				t.Fatalf("order %s through %s: %+v", o.id, g.url, v)
			}
		}
	}
	// Customer summaries: the first one written creates the collection,
	// which the other gateway's store learns of within about a second.
	customerCount := func(g *gateway, customer, token string) (int, bool) {
		r := g.do(t, `query($c: ID!, $t: String) { customer(id: $c, consistencyToken: $t) { orderCount } }`, map[string]any{"c": customer, "t": token})
		var out struct{ Customer *struct{ OrderCount int } }
		if len(r.Errors) > 0 || r.Extensions["consistency"] != nil || jsonUnmarshal(r.Data, &out) != nil || out.Customer == nil {
			return 0, false
		}
		return out.Customer.OrderCount, true
	}
	start := time.Now()
	for _, g := range []*gateway{a, b} {
		for _, c := range []string{"cust-pg-0", "cust-pg-1"} {
			for n, ok := customerCount(g, c, ""); !ok || n != 3; n, ok = customerCount(g, c, "") {
				if time.Since(start) > 20*time.Second {
					t.Fatalf("customer %s through %s: %d orders (found: %v) after 20 s, want 3", c, g.url, n, ok)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	t.Logf("both gateways show both customers' summaries after %s (stores restarted to reload their catalog: %d)",
		time.Since(start).Round(10*time.Millisecond), strings.Count(logs.String(), "restarting the store to reload its catalog"))
	// From now on, read-your-writes holds across the gateways at once.
	for i, g := range []*gateway{a, b} {
		o := g.mustMutate(t, "placeOrder", placeInput("cust-pg-0", item("B", 1, "1.00")))
		other := []*gateway{b, a}[i]
		if n, ok := customerCount(other, "cust-pg-0", consistencyTokenFor(o.ID, o.Version)); !ok || n != 4+i {
			t.Fatalf("customer through the other gateway with the token: %d orders (found: %v), want %d", n, ok, 4+i)
		}
	}

	// The orders outlive both gateways.
	a.stop()
	b.stop()
	c := startLoggedGateway(t, cfg, &logs)
	for _, o := range orders {
		if v := c.orderAt(t, o.id, ""); v == nil || v.Version != o.version {
			t.Fatalf("order %s after both gateways stopped: %+v", o.id, v)
		}
	}
	c.stop()

	log := logs.String()
	if strings.Contains(log, password) {
		t.Fatalf("the log shows the PostgreSQL password:\n%s", log)
	}
	if !strings.Contains(log, "postgresql="+u.Scheme+"://"+u.User.Username()+":xxxxx@") {
		t.Fatalf("the ready line does not name the PostgreSQL URL (redacted):\n%s", log)
	}
}

// Run refuses MONGODB_URI with STORE_POSTGRESQL_URL, as ParseConfig does,
// before it starts anything.
func TestRunRejectsTwoStores(t *testing.T) {
	cfg := testConfig(t)
	cfg.MongoURI, cfg.StorePostgreSQLURL = "mongodb://127.0.0.1:1/", "postgres://gw:s3cret@127.0.0.1:1/ferretdb"
	m := &app.Main{Config: cfg, Logger: slog.New(slog.DiscardHandler)}
	err := m.Run(context.Background())
	m.Close()
	if err == nil || !strings.Contains(err.Error(), "MONGODB_URI") || !strings.Contains(err.Error(), "STORE_POSTGRESQL_URL") ||
		strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("want one line naming both settings, got %v", err)
	}
}
