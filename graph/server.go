package graph

import (
	"net/http"

	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/vektah/gqlparser/v2/ast"
)

// NewServer is the GraphQL endpoint: the schema with r's resolvers, the
// websocket, SSE, GET and POST transports, a query cache, a complexity
// limit, the error presenter and a 1 MiB request limit. The server and the
// benchmark both serve it, so they measure and run the same thing.
func NewServer(r *Resolver, ws WebsocketOptions) http.Handler {
	srv := handler.New(NewExecutableSchema(Config{Resolvers: r}))
	if ws.Logger == nil {
		ws.Logger = r.logger()
	}
	srv.AddTransport(NewWebsocket(ws))
	srv.AddTransport(transport.SSE{KeepAlivePingInterval: ws.PingInterval}) // keeps idle streams open through proxies
	srv.AddTransport(transport.Options{})
	srv.AddTransport(transport.GET{})
	srv.AddTransport(transport.POST{})
	srv.SetQueryCache(lru.New[*ast.QueryDocument](1000))
	srv.Use(extension.Introspection{})
	srv.Use(extension.FixedComplexityLimit(2000))
	srv.SetErrorPresenter(ErrorPresenter)
	srv.SetRecoverFunc(RecoverFunc(r.logger()))
	return http.MaxBytesHandler(srv, 1<<20)
}
