package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/ordergateway/gateway/command"
	"github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/graph"
)

// memCommands decides commands in memory (validate, domain.Decide,
// domain.Evolve) and answers at once: with it the gateway's GraphQL server
// is measured without Kafka. The mutation latency of any gateway that takes
// GraphQL over HTTP and puts the command through Kafka is at least this
// plus the raw hop, which is what the latency scenario's lower-bound row
// says.
type memCommands struct {
	mu     sync.Mutex
	orders map[string]domain.Order
}

func (m *memCommands) Send(_ context.Context, cmd domain.Command, key string) (command.Reply, error) {
	if p, ok := cmd.(domain.PlaceOrder); ok && p.OrderID == "" {
		p.OrderID = command.PlaceOrderID(p.CustomerID, key)
		cmd = p
	}
	if err := domain.Validate(cmd); err != nil {
		return command.Reply{OrderID: cmd.TargetOrderID(), Error: err.(*domain.Error)}, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	id := cmd.TargetOrderID()
	state := m.orders[id]
	r := command.Reply{OrderID: id}
	events, err := domain.Decide(state, cmd, time.Now().UTC().Truncate(time.Millisecond))
	var de *domain.Error
	if errors.As(err, &de) {
		r.Error = de
	} else if err != nil {
		return r, err
	}
	for _, e := range events {
		state = domain.Evolve(state, e)
	}
	m.orders[id] = state
	r.Version = state.Version
	if state.Exists() {
		r.Order = &state
	}
	return r, nil
}

// rawHopCommands decides commands in memory (memCommands) and then puts
// each through one raw hop keyed by its order (rawClient.hop): behind the
// GraphQL server, the least a gateway that sends its commands through
// Kafka does per mutation.
type rawHopCommands struct {
	mem *memCommands
	cl  *rawClient
}

func (r rawHopCommands) Send(ctx context.Context, cmd domain.Command, key string) (command.Reply, error) {
	rep, err := r.mem.Send(ctx, cmd, key)
	if err == nil {
		err = r.cl.hop(ctx, rep.OrderID)
	}
	return rep, err
}

// graphqlAlone serves the gateway's GraphQL server (the same transports and
// extensions as the gateway) over loopback HTTP, with memCommands for the
// bus and nothing else; stop shuts it down.
func graphqlAlone() (url string, stop func(), err error) {
	return graphqlServer(&memCommands{orders: map[string]domain.Order{}})
}

// graphqlServer serves the gateway's GraphQL server over loopback HTTP with
// cmds for the bus and no views.
func graphqlServer(cmds graph.Commands) (url string, stop func(), err error) {
	srv := graph.NewServer(&graph.Resolver{Commands: cmds}, graph.WebsocketOptions{})
	mux := http.NewServeMux()
	mux.Handle("/graphql", srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = hs.Serve(ln)
	}()
	return "http://" + ln.Addr().String() + "/graphql", func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(ctx)
		<-done
	}, nil
}
