package graph

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/metrics"
)

// Server is the GraphQL endpoint: authentication (Resolver.Auth, see
// auth.go), the schema with its resolvers, the websocket, SSE and HTTP
// (GET, POST) transports, a query cache, the
// document limits, the error presenter, at most MaxErrors errors per
// response and a 1 MiB request limit. The gateway and the benchmark both
// serve it, so they measure and run the same thing.
type Server struct {
	handler     http.Handler
	ws          *Websocket
	bodyTimeout time.Duration
	auth        Authenticator // nil: off
	metrics     *metrics.GraphQL
	persisted   *PersistedQueries

	mu      sync.Mutex
	streams map[net.Conn]int // connections with SSE requests in progress
	closing bool
}

// NewServer returns the endpoint for r's resolvers.
func NewServer(r *Resolver, ws WebsocketOptions) *Server {
	srv := handler.New(NewExecutableSchema(Config{Resolvers: r, Directives: DirectiveRoot{Auth: r.authDirective}}))
	if ws.Logger == nil {
		ws.Logger = r.logger()
	}
	ws.auth = r.Auth
	if r.Metrics == nil {
		r.Metrics = metrics.NewGraphQL(nil)
	}
	ws.metrics = r.Metrics
	ws.push = pushTracer{t: r.Tracer, sources: r.Traces}
	s := &Server{ws: NewWebsocket(ws), streams: map[net.Conn]int{}, bodyTimeout: ws.BodyTimeout, auth: r.Auth, metrics: r.Metrics}
	srv.AddTransport(s.ws)
	srv.AddTransport(&SSE{KeepAlive: ws.PingInterval, shared: &s.ws.shared, metrics: r.Metrics, push: ws.push}) // keep-alives keep idle streams open through proxies
	// Last: it takes (or refuses) every other request.
	srv.AddTransport(httpTransport{})
	srv.SetQueryCache(lru.New[*ast.QueryDocument](1000))
	// First: it puts the document of a hash or documentId in the request.
	s.persisted = newPersistedQueries()
	srv.Use(s.persisted)
	// The limits replace gqlgen's complexity limit, whose walk visits a
	// fragment again at every spread (exponential in nested spreads).
	srv.SetParserTokenLimit(DefaultLimits.Tokens)
	srv.Use(newLimitChecker(DefaultLimits, 1000))
	srv.Use(extension.Introspection{})
	srv.Use(opMetrics{m: r.Metrics})
	if r.Tracer != nil {
		srv.Use(opTracing{t: r.Tracer})
	}
	srv.Use(errorCap{max: MaxErrors})
	srv.SetErrorPresenter(ErrorPresenter)
	srv.SetRecoverFunc(RecoverFunc(r.logger()))
	s.handler = srv
	return s
}

// PersistedQueries configures automatic persisted queries and trusted
// documents (persisted.go), before the server serves.
func (s *Server) PersistedQueries() *PersistedQueries { return s.persisted }

// MaxRequestBytes bounds a request's body.
const MaxRequestBytes = 1 << 20

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.auth != nil && r.Header.Get("Upgrade") == "" && (r.Method == http.MethodGet || r.Method == http.MethodPost) {
		// Before the body is read: a request without a valid token gets
		// 401 and nothing else (a websocket's token is in connection_init).
		var ok bool
		if r, ok = authenticate(s.auth, w, r); !ok {
			s.metrics.Request(metrics.OpUnknown, metrics.OutcomeUserError, string(domain.CodeUnauthenticated))
			return
		}
	}
	if r.Method == http.MethodPost {
		// The body is read here, within its timeout (a client that sends it
		// slowly keeps a connection for no longer), and one over the limit
		// is answered 413 (gqlgen would answer 200 with a GraphQL error).
		rc := http.NewResponseController(w)
		_ = rc.SetReadDeadline(time.Now().Add(cmp.Or(s.bodyTimeout, 10*time.Second)))
		body, err := io.ReadAll(io.LimitReader(r.Body, MaxRequestBytes+1))
		if err != nil {
			w.Header().Set("Connection", "close") // what is left of the body is not read
			refuse(w, negotiate(r), http.StatusBadRequest, CodeBadRequest, "the request body could not be read in time")
			return
		}
		if len(body) > MaxRequestBytes {
			w.Header().Set("Connection", "close")
			refuse(w, negotiate(r), http.StatusRequestEntityTooLarge, CodeRequestTooLarge, fmt.Sprintf("the request body is larger than %d bytes", MaxRequestBytes))
			return
		}
		_ = rc.SetReadDeadline(time.Time{})
		r.Body = io.NopCloser(bytes.NewReader(body))
		r = r.WithContext(withBody(r.Context(), body))
	}
	if r.Header.Get("Upgrade") == "" && strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
		if conn, ok := r.Context().Value(connKey{}).(net.Conn); ok {
			if !s.track(conn) {
				http.Error(w, "the server is shutting down", http.StatusServiceUnavailable)
				return
			}
			defer s.untrack(conn)
		}
	}
	s.handler.ServeHTTP(w, r)
}

type connKey struct{}

// ConnContext is for http.Server.ConnContext: it lets CloseStreams find the
// connections of server-sent event streams.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.streams[c]++
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.streams[c]--; s.streams[c] <= 0 {
		delete(s.streams, c)
	}
}

// WebsocketConnections is the number of websocket connections open.
func (s *Server) WebsocketConnections() int {
	s.ws.mu.Lock()
	defer s.ws.mu.Unlock()
	return len(s.ws.conns)
}

// CloseStreams ends every subscription stream for a shutdown, without
// completing the subscriptions: websockets are closed with 1001 (going
// away) and the connections of server-sent event streams are cut, so
// clients take it for a dropped connection, reconnect (to another
// instance) and subscribe again, instead of taking it for the end of the
// subscription. New streams are refused (503) from then on. Without it,
// http.Server.Shutdown would wait its whole timeout for SSE requests,
// which never end by themselves. SSE streams are only found when the
// http.Server's ConnContext is ConnContext. A websocket's queries and
// mutations in progress get until deadline to finish first; new operations
// on it are refused (UNAVAILABLE) meanwhile.
func (s *Server) CloseStreams(deadline time.Time) {
	s.mu.Lock()
	s.closing = true
	conns := s.streams
	s.streams = map[net.Conn]int{}
	s.mu.Unlock()
	for c := range conns {
		_ = c.Close()
	}
	s.ws.closeAll(1001, "server shutting down", deadline)
}
