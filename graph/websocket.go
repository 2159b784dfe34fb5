package graph

import (
	"context"
	"net/http"
	"time"

	"github.com/99designs/gqlgen/graphql/handler/transport"
)

// WebsocketOptions configures the websocket transport.
type WebsocketOptions struct {
	// AllowedOrigins are host patterns (path.Match syntax, e.g.
	// "app.example.com" or "localhost:*") of pages that may open a
	// websocket; the server's own origin is always allowed.
	AllowedOrigins      []string
	InitTimeout         time.Duration
	PingInterval        time.Duration
	MaxSubscriptionsPer int
}

// Websocket is the websocket transport: graphql-transport-ws (graphql-ws,
// Apollo, urql, Relay) and the legacy graphql-ws protocol
// (subscriptions-transport-ws), with keep-alives, an init timeout, an origin
// allowlist, a cap on subscriptions per connection, and the close codes
// clients expect (4400 bad message, 4408 init timeout).
func Websocket(o WebsocketOptions) transport.Websocket {
	return transport.Websocket{
		Implementation:        closeCodes{gorillaImplementation{allowedOrigins: o.AllowedOrigins}},
		InitTimeout:           o.InitTimeout,
		KeepAlivePingInterval: o.PingInterval, // legacy protocol: "ka"
		PingPongInterval:      o.PingInterval, // graphql-transport-ws: ping, and a dropped peer is closed
		InitFunc: func(ctx context.Context, _ transport.InitPayload) (context.Context, *transport.InitPayload, error) {
			return WithSubscriptionLimit(ctx, o.MaxSubscriptionsPer), nil, nil
		},
	}
}

// closeCodes maps gqlgen's generic protocol-error close (1002) to the codes
// of the graphql-transport-ws protocol.
type closeCodes struct {
	transport.WebsocketImplementation
}

func (c closeCodes) Accept(w http.ResponseWriter, r *http.Request, o transport.WebsocketAcceptOptions) (transport.WebsocketConn, error) {
	conn, err := c.WebsocketImplementation.Accept(w, r, o)
	if err != nil {
		return nil, err
	}
	return codedConn{conn}, nil
}

type codedConn struct {
	transport.WebsocketConn
}

func (c codedConn) WriteClose(code int, message string) error {
	if code == transport.WebsocketCloseProtocolError {
		code = 4400
		if message == "connection initialisation timeout" {
			code = 4408
		}
	}
	return c.WebsocketConn.WriteClose(code, message)
}

// SetReadLimit and SetReadDeadline pass through the optional interfaces
// gqlgen uses for the payload limit and missed pongs.
func (c codedConn) SetReadLimit(limit int64) {
	if l, ok := c.WebsocketConn.(transport.WebsocketReadLimiter); ok {
		l.SetReadLimit(limit)
	}
}

func (c codedConn) SetReadDeadline(t time.Time) error {
	if d, ok := c.WebsocketConn.(transport.WebsocketReadDeadliner); ok {
		return d.SetReadDeadline(t)
	}
	return nil
}
