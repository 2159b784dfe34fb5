package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/IBM/sarama"

	"github.com/ordergateway/gateway/app"
	"github.com/ordergateway/gateway/auth"
	"github.com/ordergateway/gateway/command"
	"github.com/ordergateway/gateway/kafka"
)

// Settings shared by every component the benchmark starts; they are the
// server's defaults (see app/config.go).
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

// gateway is the order gateway started in this process through app.Main,
// the assembly the server's main uses, on the benchmark's shared broker and
// store (so the raw baselines run on the same ones).
type gateway struct {
	*app.Main
	url string
	bus *command.Bus
}

// ensureTopics creates prefix's topics, retrying for up to 30 s as
// app.Main does (Apache Kafka creates topics asynchronously, so describing
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
	cfg := app.Config{
		ListenAddr: "127.0.0.1:0", DataDir: e.dir, KafkaBrokers: e.brokers, MongoURI: e.mongoURI, MongoDatabase: database,
		TopicPrefix: prefix, Partitions: partitions, ReplicationFactor: replicationFactor,
		CommandTimeout: commandTimeout, ConsistencyTimeout: consistencyTimeout, StartupTimeout: 30 * time.Second, ShutdownTimeout: 15 * time.Second,
		FetchWait: fetchWait, ProjectorLinger: projectorLinger, SessionTimeout: sessionTimeout, StallTimeout: 30 * time.Second,
		HTTPReadTimeout: 10 * time.Second, HTTPIdleTimeout: 60 * time.Second, MaxConnections: 100_000, EmbeddedMongoAddr: "127.0.0.1:0",
		LogLevel: slog.LevelWarn, AllowedOrigins: []string{"localhost:*", "127.0.0.1:*"},
		WSInitTimeout: 10 * time.Second, WSPingInterval: 15 * time.Second, WSWriteTimeout: 10 * time.Second, MaxSubscriptions: 100,
		Auth: auth.Config{Secret: benchSecret}, // the clients send benchToken (auth.go)
	}
	m := &app.Main{Config: cfg, Logger: e.logger, StoreOptions: e.storeOptions(), WithoutProjector: !withProjector}
	if err := m.Run(ctx); err != nil {
		m.Close()
		return nil, err
	}
	if err := e.indexIDs(ctx); err != nil {
		m.Close()
		return nil, err
	}
	// Ready as /readyz sees it: both groups joined.
	deadline := time.Now().Add(60 * time.Second)
	for !m.Ready() {
		if time.Now().After(deadline) {
			m.Close()
			return nil, errors.New("gateway: command handler or projector did not join its group within 60s")
		}
		select {
		case <-ctx.Done():
			m.Close()
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return &gateway{Main: m, url: "http://" + m.Addr() + "/graphql", bus: m.Bus()}, nil
}

// Close stops the gateway.
func (g *gateway) Close() { _ = g.Main.Close() }

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
	req.Header.Set("Authorization", "Bearer "+benchToken)
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
