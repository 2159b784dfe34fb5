package main

import (
	"github.com/ordergateway/gateway/app"

	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ordergateway/gateway/embedded"
)

// The tests talk to real protocol servers: by default an embedded broker and
// store shared by the whole test binary (each test gets its own topic prefix
// and database); with KAFKA_BROKERS and/or MONGODB_URI set, external ones.
// With STORE_POSTGRESQL_URL (and no MONGODB_URI), the shared store is the
// embedded store on that PostgreSQL database instead of SQLite.
var (
	testBrokers  []string
	testMongoURI string
	testKafka    string // "embedded" or "external", for the test log
	// testPostgreSQLURL is STORE_POSTGRESQL_URL ("" without it). TestMain
	// unsets the variable, so that the gateway processes the tests start
	// (with MONGODB_URI, or their own SQLite store) do not read it.
	testPostgreSQLURL string
)

func TestMain(m *testing.M) {
	testPostgreSQLURL = os.Getenv("STORE_POSTGRESQL_URL")
	os.Unsetenv("STORE_POSTGRESQL_URL")
	if testPostgreSQLURL != "" && os.Getenv("MONGODB_URI") != "" {
		fmt.Fprintln(os.Stderr, "MONGODB_URI and STORE_POSTGRESQL_URL are both set: set one")
		os.Exit(2)
	}
	dir, err := os.MkdirTemp("", "gateway-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var closers []func()
	testKafka = "external"
	if b := os.Getenv("KAFKA_BROKERS"); b != "" {
		testBrokers = strings.Split(b, ",")
	} else {
		k, err := embedded.StartKafka(filepath.Join(dir, "kafka"), 0)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		closers = append(closers, k.Close)
		testBrokers, testKafka = []string{k.Addr()}, "embedded"
	}
	switch u := os.Getenv("MONGODB_URI"); {
	case u != "":
		testMongoURI = u
	case testPostgreSQLURL != "":
		// One store for every test's database, as with SQLite: gateways
		// that start their own store on PostgreSQL are in postgres_test.go.
		mg, err := embedded.StartMongoPostgreSQL(testPostgreSQLURL, "127.0.0.1:0", nil)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		closers = append(closers, mg.Close)
		testMongoURI = mg.URI()
		fmt.Fprintf(os.Stderr, "tests: the store is the embedded store on PostgreSQL at %s\n", embedded.RedactURL(testPostgreSQLURL))
	default:
		mg, err := embedded.StartMongo(filepath.Join(dir, "mongodb"), "127.0.0.1:0", nil)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		closers = append(closers, mg.Close)
		testMongoURI = mg.URI()
	}
	code := m.Run()
	for i := len(closers) - 1; i >= 0; i-- {
		closers[i]()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

var testSeq atomic.Int64

// testConfig is a gateway configuration with its own topics and database on
// the shared broker and store.
func testConfig(t testing.TB) app.Config {
	id := fmt.Sprintf("t%d%d", time.Now().UnixNano()%1e6, testSeq.Add(1))
	return app.Config{
		ListenAddr: "127.0.0.1:0", DataDir: t.TempDir(),
		KafkaBrokers: testBrokers, MongoURI: testMongoURI, MongoDatabase: id, TopicPrefix: id,
		Partitions: 3, ReplicationFactor: 1,
		CommandTimeout: 10 * time.Second, ConsistencyTimeout: 10 * time.Second,
		StartupTimeout: 30 * time.Second, ShutdownTimeout: 10 * time.Second,
		FetchWait: 20 * time.Millisecond, SessionTimeout: 6 * time.Second, StallTimeout: 30 * time.Second,
		HTTPReadTimeout: 10 * time.Second, HTTPIdleTimeout: 60 * time.Second, MaxConnections: 10000,
		EmbeddedMongoAddr: "127.0.0.1:0", LogLevel: slog.LevelWarn,
		AllowedOrigins: []string{"localhost:*", "127.0.0.1:*"}, WSInitTimeout: 2 * time.Second,
		WSPingInterval: 2 * time.Second, WSWriteTimeout: 10 * time.Second, MaxSubscriptions: 100,
		Auth: testAuth(), // the clients send a staff token (authclient_test.go)
	}
}

// gateway is a running Main with a GraphQL client.
type gateway struct {
	*app.Main
	url  string
	once sync.Once
}

// startGateway runs a gateway with cfg and closes it when the test ends.
func startGateway(t testing.TB, cfg app.Config) *gateway {
	t.Helper()
	return startMain(t, &app.Main{Config: cfg})
}

// startMain is startGateway for a Main with options of its own.
func startMain(t testing.TB, m *app.Main) *gateway {
	t.Helper()
	if m.Logger == nil {
		m.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: m.Config.LogLevel}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := m.Run(ctx); err != nil {
		m.Close()
		t.Fatalf("start gateway: %v", err)
	}
	g := &gateway{Main: m, url: "http://" + m.Addr()}
	t.Cleanup(g.stop)
	return g
}

// stop closes the gateway gracefully; later calls do nothing.
func (g *gateway) stop() {
	g.once.Do(func() {
		if err := g.Main.Close(); err != nil {
			g.Logger.Warn("gateway close", "err", err)
		}
	})
}

type gqlError struct {
	Message    string         `json:"message"`
	Path       []any          `json:"path"`
	Extensions map[string]any `json:"extensions"`
}

type gqlResponse struct {
	Data       json.RawMessage `json:"data"`
	Errors     []gqlError      `json:"errors"`
	Extensions map[string]any  `json:"extensions"`
	Status     int             `json:"-"`
}

// do posts a GraphQL request and decodes the response.
func (g *gateway) do(t testing.TB, query string, vars map[string]any) gqlResponse {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	resp, err := http.Post(g.url+"/graphql", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST /graphql: %v", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var r gqlResponse
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("response is not JSON (%d): %s", resp.StatusCode, raw)
	}
	r.Status = resp.StatusCode
	return r
}

// data posts a request that must succeed and decodes its data into out.
func (g *gateway) data(t testing.TB, query string, vars map[string]any, out any) {
	t.Helper()
	r := g.do(t, query, vars)
	if len(r.Errors) > 0 {
		t.Fatalf("GraphQL errors: %+v", r.Errors)
	}
	if err := json.Unmarshal(r.Data, out); err != nil {
		t.Fatalf("decode data %s: %v", r.Data, err)
	}
}

// Order is the GraphQL Order as the tests read it.
type Order struct {
	ID         string `json:"id"`
	CustomerID string `json:"customerId"`
	Status     string `json:"status"`
	Items      []struct {
		SKU       string `json:"sku"`
		Name      string `json:"name"`
		Quantity  int    `json:"quantity"`
		UnitPrice Money  `json:"unitPrice"`
		LineTotal Money  `json:"lineTotal"`
	} `json:"items"`
	ItemCount       int   `json:"itemCount"`
	Total           Money `json:"total"`
	ShippingAddress *struct {
		Name, Line1, City, PostalCode, Country string
		Line2                                  *string
	} `json:"shippingAddress"`
	TrackingNumber     *string `json:"trackingNumber"`
	CancellationReason *string `json:"cancellationReason"`
	History            []struct {
		Status string    `json:"status"`
		At     time.Time `json:"at"`
		Reason *string   `json:"reason"`
	} `json:"history"`
	Version   int       `json:"version"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

type Money struct {
	Amount       string `json:"amount"`
	CurrencyCode string `json:"currencyCode"`
}

type UserError struct {
	Code    string   `json:"code"`
	Message string   `json:"message"`
	Field   []string `json:"field"`
}

type Payload struct {
	Order            *Order      `json:"order"`
	Version          *int        `json:"version"`
	ConsistencyToken *string     `json:"consistencyToken"`
	UserErrors       []UserError `json:"userErrors"`
}

const orderFields = `id customerId status items { sku name quantity unitPrice { amount currencyCode } lineTotal { amount currencyCode } }
  itemCount total { amount currencyCode } shippingAddress { name line1 line2 city postalCode country }
  trackingNumber cancellationReason history { status at reason } version createdAt updatedAt`

const payloadFields = `order { ` + orderFields + ` } version consistencyToken userErrors { code message field }`

// mutate runs one mutation (e.g. "confirmOrder") with input and returns its
// payload.
func (g *gateway) mutate(t testing.TB, name string, input map[string]any) Payload {
	t.Helper()
	inputType := strings.ToUpper(name[:1]) + name[1:] + "Input"
	q := fmt.Sprintf("mutation($input: %s!) { m: %s(input: $input) { %s } }", inputType, name, payloadFields)
	var out struct{ M Payload }
	g.data(t, q, map[string]any{"input": input}, &out)
	return out.M
}

// mustMutate runs a mutation that must succeed and returns its order.
func (g *gateway) mustMutate(t testing.TB, name string, input map[string]any) Order {
	t.Helper()
	p := g.mutate(t, name, input)
	if len(p.UserErrors) > 0 || p.Order == nil {
		t.Fatalf("%s(%v): userErrors %+v", name, input, p.UserErrors)
	}
	return *p.Order
}

// orderAt reads an order from the views once they include version.
func (g *gateway) orderAt(t testing.TB, id string, token string) *Order {
	t.Helper()
	var out struct{ Order *Order }
	r := g.do(t, `query($id: ID!, $t: String) { order(id: $id, consistencyToken: $t) { `+orderFields+` } }`, map[string]any{"id": id, "t": token})
	if len(r.Errors) > 0 {
		t.Fatalf("order(%s): %+v", id, r.Errors)
	}
	if r.Extensions["consistency"] != nil {
		t.Fatalf("order(%s): views did not catch up: %v", id, r.Extensions["consistency"])
	}
	if err := json.Unmarshal(r.Data, &out); err != nil {
		t.Fatal(err)
	}
	return out.Order
}

func placeInput(customer string, items ...map[string]any) map[string]any {
	return map[string]any{"customerId": customer, "currencyCode": "USD", "items": append([]map[string]any{}, items...)}
}

func item(sku string, qty int, price string) map[string]any {
	return map[string]any{"sku": sku, "name": "Item " + sku, "quantity": qty, "unitPrice": price}
}
