package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"github.com/ordergateway/gateway/command"
	"github.com/ordergateway/gateway/graph"
	"github.com/ordergateway/gateway/kafka"
	"github.com/ordergateway/gateway/live"
	"github.com/ordergateway/gateway/projector"
	"github.com/ordergateway/gateway/view"
)

// Settings shared by every component the benchmark starts; they are the
// server's defaults (see config.go).
// fetchWait is set by -fetch-wait (default: the server's FETCH_WAIT),
// projectorLinger by -projector-linger (default: PROJECTOR_LINGER).
var (
	fetchWait       = 20 * time.Millisecond
	projectorLinger = 2 * time.Millisecond
)

const (
	sessionTimeout     = 10 * time.Second
	commandTimeout     = 5 * time.Second
	consistencyTimeout = 3 * time.Second
	partitions         = 6
	replicationFactor  = -1
)

// gateway is the order gateway assembled in this process exactly as
// server.go's Main.Run does it (bus, handler, projector, views feed, gqlgen
// handler with the same transports and extensions, behind net/http on a
// loopback port), minus the embedded broker and store, which the benchmark
// starts once and shares.
type gateway struct {
	url       string
	store     *view.Store
	bus       *command.Bus
	handler   *command.Handler
	projector *projector.Projector
	feed      *live.Feed
	srv       *http.Server
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// ensureTopics creates prefix's topics, retrying for up to 30 s as
// server.go does (Apache Kafka creates topics asynchronously, so describing
// them right after creation can fail for a moment).
func ensureTopics(brokers []string, prefix string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := func() error {
			admin, err := sarama.NewClusterAdmin(brokers, kafka.Config("bench-admin", fetchWait))
			if err != nil {
				return fmt.Errorf("kafka admin: %w", err)
			}
			defer admin.Close()
			return kafka.EnsureTopics(admin, kafka.NewTopics(prefix), kafka.TopicSettings{Partitions: partitions, ReplicationFactor: replicationFactor})
		}()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func startGateway(ctx context.Context, e *env, prefix, database string) (*gateway, error) {
	return startGatewayOpts(ctx, e, prefix, database, true)
}

// startGatewayOpts can leave the projector out (a diagnostic: what the
// command path does without the projector competing for CPU and broker).
func startGatewayOpts(ctx context.Context, e *env, prefix, database string, withProjector bool) (*gateway, error) {
	logger := e.logger
	topics := kafka.NewTopics(prefix)
	if err := ensureTopics(e.brokers, prefix); err != nil {
		return nil, err
	}
	g := &gateway{}
	ok := false
	defer func() {
		if !ok {
			g.Close()
		}
	}()
	store, err := view.Open(e.mongoURI, database, e.storeOptions()...)
	if err != nil {
		return nil, err
	}
	g.store = store
	if err := store.EnsureIndexes(ctx); err != nil {
		return nil, fmt.Errorf("ensure indexes: %w", err)
	}
	if err := e.indexIDs(ctx); err != nil {
		return nil, err
	}
	if g.bus, err = command.NewBus(command.BusConfig{Brokers: e.brokers, Topics: topics, Timeout: commandTimeout, FetchWait: fetchWait, Logger: logger}); err != nil {
		return nil, err
	}
	if g.handler, err = command.NewHandler(command.HandlerConfig{Brokers: e.brokers, Topics: topics, Group: prefix + ".command-handler",
		FetchWait: fetchWait, SessionTimeout: sessionTimeout, Logger: logger, Local: g.bus}); err != nil {
		return nil, err
	}
	g.bus.Attach(g.handler)
	if withProjector {
		if g.projector, err = projector.New(projector.Config{Brokers: e.brokers, Topics: topics, Group: prefix + ".projector",
			FetchWait: fetchWait, SessionTimeout: sessionTimeout, Linger: projectorLinger, Logger: logger}, store); err != nil {
			return nil, err
		}
	}
	if g.feed, err = live.NewFeed(live.FeedConfig{Brokers: e.brokers, Topics: topics, FetchWait: fetchWait, Logger: logger}); err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	g.goRun(logger, func() error { return g.handler.Run(runCtx) })
	if g.projector != nil {
		g.goRun(logger, func() error { return g.projector.Run(runCtx) })
	}

	gql := graph.NewServer(&graph.Resolver{
		Commands: g.bus, Views: store, Logger: logger,
		Waiter: live.Waiter{Feed: g.feed, Store: store}, ConsistencyTimeout: consistencyTimeout,
		Live: g.feed.Hub(), Snapshots: &live.Snapshots{Store: store},
	}, graph.WebsocketOptions{AllowedOrigins: []string{"localhost:*", "127.0.0.1:*"},
		InitTimeout: 10 * time.Second, PingInterval: 15 * time.Second, MaxSubscriptionsPer: 100})
	mux := http.NewServeMux()
	mux.Handle("/graphql", gql)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	g.url = "http://" + ln.Addr().String() + "/graphql"
	g.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	g.goRun(logger, func() error {
		if err := g.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	// Ready as /readyz sees it: both groups joined.
	deadline := time.Now().Add(60 * time.Second)
	for !g.handler.Ready() || (g.projector != nil && !g.projector.Ready()) {
		if time.Now().After(deadline) {
			return nil, errors.New("gateway: command handler or projector did not join its group within 60s")
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	ok = true
	return g, nil
}

func (g *gateway) goRun(logger *slog.Logger, f func() error) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := f(); err != nil {
			logger.Error("gateway component stopped", "err", err)
		}
	}()
}

// Close stops the gateway in server.go's order. Safe on a partly started one.
func (g *gateway) Close() { g.closeOnce.Do(g.close) }

func (g *gateway) close() {
	if g.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		_ = g.srv.Shutdown(ctx)
		cancel()
	}
	if g.feed != nil {
		g.feed.Close()
	}
	if g.cancel != nil {
		g.cancel()
	}
	if g.handler != nil {
		g.handler.Close()
	}
	if g.projector != nil {
		g.projector.Close()
	}
	g.wg.Wait()
	if g.bus != nil {
		g.bus.Close()
	}
	if g.store != nil {
		g.store.Close(context.Background())
	}
}

// gql is a GraphQL-over-HTTP client (POST, JSON, keep-alive).
type gql struct {
	url    string
	client *http.Client
}

func newGQL(url string, conns int) *gql {
	tr := &http.Transport{MaxIdleConns: conns + 16, MaxIdleConnsPerHost: conns + 16, IdleConnTimeout: 90 * time.Second, DisableCompression: true}
	return &gql{url: url, client: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

func (c *gql) close() { c.client.CloseIdleConnections() }

type gqlResp struct {
	Data   json.RawMessage `json:"data"`
	Errors []struct {
		Message    string         `json:"message"`
		Extensions map[string]any `json:"extensions"`
	} `json:"errors"`
	Extensions map[string]any `json:"extensions"`
}

// do posts query and decodes data into out. HTTP failures, non-200 statuses
// and GraphQL errors are errors.
func (c *gql) do(ctx context.Context, query string, vars any, out any) error {
	body, err := json.Marshal(struct {
		Query     string `json:"query"`
		Variables any    `json:"variables,omitempty"`
	}{query, vars})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, raw)
	}
	var r gqlResp
	if err := json.Unmarshal(raw, &r); err != nil {
		return fmt.Errorf("response is not JSON: %.200s", raw)
	}
	if len(r.Errors) > 0 {
		return fmt.Errorf("GraphQL error: %s %v", r.Errors[0].Message, r.Errors[0].Extensions)
	}
	if r.Extensions["consistency"] != nil {
		return fmt.Errorf("consistency not reached: %v", r.Extensions["consistency"])
	}
	if out != nil {
		return json.Unmarshal(r.Data, out)
	}
	return nil
}

const (
	placeQuery = `mutation($in: PlaceOrderInput!) { m: placeOrder(input: $in) {
  order { id status version total { amount currencyCode } } version consistencyToken userErrors { code message field } } }`
	confirmQuery = `mutation($in: ConfirmOrderInput!) { m: confirmOrder(input: $in) {
  order { id status version total { amount currencyCode } } version consistencyToken userErrors { code message field } } }`
	orderFields = `id customerId status items { sku name quantity unitPrice { amount currencyCode } lineTotal { amount currencyCode } }
  itemCount total { amount currencyCode } shippingAddress { name line1 line2 city postalCode country }
  trackingNumber cancellationReason history { status at reason } version createdAt updatedAt`
	orderQuery  = `query($id: ID!) { order(id: $id) { ` + orderFields + ` } }`
	ordersQuery = `query($f: OrderFilter) { orders(filter: $f, first: 20) { totalCount
  edges { cursor node { id customerId status itemCount total { amount currencyCode } createdAt } } pageInfo { hasNextPage endCursor } } }`
	emptyQuery = `{ __typename }`
)

type payload struct {
	M struct {
		Order *struct {
			ID      string `json:"id"`
			Status  string `json:"status"`
			Version int    `json:"version"`
		} `json:"order"`
		Version    *int `json:"version"`
		UserErrors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"userErrors"`
	} `json:"m"`
}

type itemIn struct {
	SKU       string `json:"sku"`
	Name      string `json:"name"`
	Quantity  int    `json:"quantity"`
	UnitPrice string `json:"unitPrice"`
}

var benchItems = []itemIn{{"TEA-1", "Green tea", 2, "4.50"}, {"MUG-2", "Mug", 1, "12.00"}}

// placeOrder places an order for customer with a fresh idempotency key and
// returns its id and version.
func (c *gql) placeOrder(ctx context.Context, customer, key string) (string, int, error) {
	var p payload
	in := map[string]any{"customerId": customer, "currencyCode": "EUR", "idempotencyKey": key, "items": benchItems}
	if err := c.do(ctx, placeQuery, map[string]any{"in": in}, &p); err != nil {
		return "", 0, err
	}
	return checkPayload("placeOrder", p)
}

func (c *gql) confirmOrder(ctx context.Context, id string, expected int) (int, error) {
	var p payload
	if err := c.do(ctx, confirmQuery, map[string]any{"in": map[string]any{"orderId": id, "expectedVersion": expected}}, &p); err != nil {
		return 0, err
	}
	_, v, err := checkPayload("confirmOrder", p)
	return v, err
}

func checkPayload(name string, p payload) (string, int, error) {
	if len(p.M.UserErrors) > 0 {
		return "", 0, fmt.Errorf("%s: userError %s: %s", name, p.M.UserErrors[0].Code, p.M.UserErrors[0].Message)
	}
	if p.M.Order == nil || p.M.Version == nil {
		return "", 0, fmt.Errorf("%s: no order in payload", name)
	}
	return p.M.Order.ID, *p.M.Version, nil
}
