package graph

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/gorilla/websocket"
)

// gorillaImplementation accepts websockets with gorilla/websocket, sized for
// many mostly idle subscribers: a connection reads through a 1 KiB buffer and
// borrows a write buffer from a pool only while it writes, and a read
// deadline is a socket deadline, not a timer. (gqlgen's default, coder/
// websocket, keeps 4 KiB read and write buffers and a goroutine per
// connection.)
type gorillaImplementation struct {
	allowedOrigins []string
}

// writeBuffers is shared by all connections; each holds one only while it
// writes a message.
var writeBuffers sync.Pool

func (g gorillaImplementation) Accept(w http.ResponseWriter, r *http.Request, o transport.WebsocketAcceptOptions) (transport.WebsocketConn, error) {
	up := websocket.Upgrader{
		ReadBufferSize:  1024,
		WriteBufferSize: 4096,
		WriteBufferPool: &writeBuffers,
		Subprotocols:    o.Subprotocols,
		CheckOrigin:     func(r *http.Request) bool { return originAllowed(r, g.allowedOrigins) },
	}
	c, err := up.Upgrade(w, r, o.ResponseHeader)
	if err != nil {
		return nil, err
	}
	return gorillaConn{c}, nil
}

// originAllowed admits requests without an Origin (not from a browser), from
// the server's own host, or from a host matching one of patterns
// (path.Match syntax, case-insensitive).
func originAllowed(r *http.Request, patterns []string) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	host := strings.ToLower(u.Host)
	for _, p := range patterns {
		if ok, err := path.Match(strings.ToLower(p), host); err == nil && ok {
			return true
		}
	}
	return false
}

// gorillaConn adapts a gorilla connection to gqlgen. gqlgen serialises its
// writes, as gorilla requires.
type gorillaConn struct {
	c *websocket.Conn
}

var (
	_ transport.WebsocketReadLimiter   = gorillaConn{}
	_ transport.WebsocketReadDeadliner = gorillaConn{}
)

func (g gorillaConn) Close() error { return g.c.Close() }

// NextReader returns transport.ErrWebsocketClosed when the peer closed
// normally, so gqlgen ends the connection quietly.
func (g gorillaConn) NextReader() (int, io.Reader, error) {
	t, r, err := g.c.NextReader()
	if websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseNoStatusReceived) {
		return t, nil, transport.ErrWebsocketClosed
	}
	return t, r, err
}

// writeTimeout bounds one message write: a client whose connection has not
// taken a message for this long (it stopped reading, and the socket buffers
// are full) is disconnected instead of holding its goroutines forever.
const writeTimeout = 10 * time.Second

func (g gorillaConn) WriteJSON(v any) error {
	if err := g.c.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
		return err
	}
	return g.c.WriteJSON(v)
}

// WriteClose sends a close frame; it waits at most a second for a peer that
// does not read.
func (g gorillaConn) WriteClose(code int, message string) error {
	err := g.c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, message), time.Now().Add(time.Second))
	if errors.Is(err, websocket.ErrCloseSent) {
		return nil
	}
	return err
}

func (g gorillaConn) Subprotocol() string               { return g.c.Subprotocol() }
func (g gorillaConn) SetReadLimit(limit int64)          { g.c.SetReadLimit(limit) }
func (g gorillaConn) SetReadDeadline(t time.Time) error { return g.c.SetReadDeadline(t) }
