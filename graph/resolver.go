// Package graph is the GraphQL edge: resolvers translate GraphQL into
// commands (mutations), view reads (queries) and hub subscriptions, one
// error presenter turns domain errors into GraphQL errors, and the server
// (NewServer) carries the transports, among them our own websocket and
// server-sent events transports, built for many idle subscribers
// (websocket.go, sse.go).
package graph

//go:generate go tool gqlgen generate

import (
	"context"
	"log/slog"
	"time"

	"github.com/ordergateway/gateway/command"
	"github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/metrics"
	"github.com/ordergateway/gateway/tracing"
	"github.com/ordergateway/gateway/view"
)

// Commands sends a command and returns its outcome; *command.Bus implements it.
type Commands interface {
	Send(ctx context.Context, cmd domain.Command, idempotencyKey string) (command.Reply, error)
}

// Views is the read model the queries use; *view.Store implements it.
type Views interface {
	Order(ctx context.Context, id string) (*view.OrderDoc, error)
	Orders(ctx context.Context, f view.OrderFilter, first int, after string, count bool) (view.Page, error)
	Customer(ctx context.Context, id string) (*view.CustomerDoc, error)
}

// Waiter blocks until the views include an order at a version, or ctx ends.
// It returns whether the views got there.
type Waiter interface {
	WaitForOrder(ctx context.Context, orderID string, version int) bool
}

// Resolver holds the resolvers' dependencies.
type Resolver struct {
	Commands Commands
	Views    Views
	// Waiter and ConsistencyTimeout serve consistencyToken; a nil Waiter
	// answers at once.
	Waiter             Waiter
	ConsistencyTimeout time.Duration
	// Live feeds the subscriptions; Snapshots, if set, reads their first
	// state (sharing reads between concurrent subscribers of one order).
	Live      Live
	Snapshots interface {
		Order(ctx context.Context, id string) (*view.OrderDoc, error)
	}
	Logger *slog.Logger
	// Auth verifies tokens (auth.go); nil: authentication and
	// authorization are off (AUTH_DISABLED) and anyone may do anything.
	Auth Authenticator
	// Metrics counts operations and subscription updates; nil: counted
	// nowhere.
	Metrics *metrics.GraphQL
	// Tracer gives queries and mutations their spans; nil: off.
	Tracer *tracing.Tracer
	// Traces, with Tracer, gives subscription updates their parent span.
	Traces TraceSource

	waits waitSlots // consistency waits in progress (MaxConsistencyWaits)
}
