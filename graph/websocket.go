package graph

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/gorilla/websocket"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/ordergateway/gateway/domain"
	"github.com/ordergateway/gateway/metrics"
)

// WebsocketOptions configures the websocket transport.
type WebsocketOptions struct {
	// AllowedOrigins are host patterns (path.Match syntax, e.g.
	// "app.example.com" or "localhost:*") of pages that may open a
	// websocket; the server's own origin is always allowed.
	AllowedOrigins []string
	// InitTimeout closes a connection that sends no connection_init in
	// time (4408).
	InitTimeout time.Duration
	// PingInterval is how often the server pings (graphql-transport-ws)
	// or sends "ka" and a websocket ping frame (graphql-ws, whose clients
	// send nothing of their own; every websocket client answers a ping
	// frame). A client that sends nothing, not even a pong, for two
	// intervals is disconnected: a peer gone without closing (a laptop shut,
	// a dropped network) is not kept for the kernel's retransmission
	// timeout (about 15 minutes).
	PingInterval time.Duration
	// WriteTimeout is how long one message write may wait for a client
	// that does not read (its socket buffers are full) before the
	// connection is closed; 0 means 10s.
	WriteTimeout time.Duration
	// MaxSubscriptionsPer caps a connection's subscriptions (0: only the
	// cap on operations in flight, which is this plus 100).
	MaxSubscriptionsPer int
	// BodyTimeout is how long a client may take to send a POST's body
	// (0: 10s); the HTTP server bounds the headers.
	BodyTimeout time.Duration
	Logger      *slog.Logger

	auth Authenticator // Resolver.Auth (NewServer sets it); nil: off
	// metrics counts the updates written (NewServer sets it).
	metrics *metrics.GraphQL
	push    pushTracer // spans of the updates written (NewServer sets it)
}

// Websocket close codes of graphql-transport-ws (graphql-ws's PROTOCOL.md).
const (
	closeBadRequest      = 4400
	closeUnauthorized    = 4401
	closeInitTimeout     = 4408
	closeDuplicateID     = 4409
	closeTooManyInits    = 4429
	closeNoPong          = 4499 // the code graphql-ws clients use for their own keep-alive timeout
	closeInternalError   = 4500
	protoTransportWS     = "graphql-transport-ws"
	protoLegacyGraphqlWS = "graphql-ws" // subscriptions-transport-ws
	websocketReadLimit   = 1 << 20
	defaultWriteTimeout  = 10 * time.Second
)

// Websocket is the websocket transport: graphql-transport-ws (graphql-ws,
// Apollo, urql, Relay) and the legacy graphql-ws protocol
// (subscriptions-transport-ws), with keep-alives, an init timeout, an origin
// allowlist, a cap on subscriptions per connection, and the protocol's
// close codes (4400 bad message, 4401 subscribe before init, 4403 no valid
// token in connection_init or the token expired (auth.go), 4408 init
// timeout, 4409 duplicate id, 4429 second init).
//
// It is built for many mostly idle subscribers. A connection has one
// goroutine, its reader. Subscriptions have no goroutine: the hub wakes the
// connection, and its writer pulls each update through the executor (so
// GraphQL selection, errors and the error presenter apply as usual) and
// writes it. The writer runs on a few shared fan-out workers, whose writes
// never wait; a connection whose socket is full continues on a goroutine of
// its own, each write within WriteTimeout, so a client that stops reading
// is dropped, not waited on (websocket_write.go). Keep-alives are timers;
// missed pongs and the init timeout are socket read deadlines.
type Websocket struct {
	opts     WebsocketOptions
	upgrader websocket.Upgrader
	shared   sharedResults
	fan      *fanout

	mu      sync.Mutex
	conns   map[*wsConn]struct{}
	closing bool
}

// NewWebsocket returns the transport.
func NewWebsocket(o WebsocketOptions) *Websocket {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = defaultWriteTimeout
	}
	if o.metrics == nil {
		o.metrics = metrics.NewGraphQL(nil)
	}
	return &Websocket{opts: o, conns: map[*wsConn]struct{}{}, fan: newFanout(runtime.GOMAXPROCS(0)), upgrader: websocket.Upgrader{
		ReadBufferSize:  256, // clients send small messages; a larger one takes more reads
		WriteBufferSize: 4096,
		WriteBufferPool: &writeBuffers,
		Subprotocols:    []string{protoTransportWS, protoLegacyGraphqlWS},
		CheckOrigin:     func(r *http.Request) bool { return originAllowed(r, o.AllowedOrigins) },
	}}
}

// writeBuffers is shared by all connections; each holds one only while it
// writes a message.
var writeBuffers sync.Pool

var _ graphql.Transport = (*Websocket)(nil)

// Supports takes every upgrade request.
func (t *Websocket) Supports(r *http.Request) bool { return r.Header.Get("Upgrade") != "" }

// Do upgrades the request (the upgrader answers a refused one, e.g. 403 for
// an origin not allowed) and starts the connection's reader. It returns at
// once, so the HTTP server's goroutine and its grown stack go away.
func (t *Websocket) Do(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor) {
	t.mu.Lock()
	closing := t.closing
	t.mu.Unlock()
	if closing {
		http.Error(w, "the server is shutting down", http.StatusServiceUnavailable)
		return
	}
	hw := &hijackWriter{ResponseWriter: w}
	ws, err := t.upgrader.Upgrade(hw, r, nil)
	if err != nil {
		return
	}
	hw.conn.upgraded.Store(true)
	ws.SetReadLimit(websocketReadLimit)
	// The request's context ends when Do returns; the connection keeps its
	// values (the operation trace) but not its cancellation.
	// The connection keeps nothing else of the upgrade request: not its
	// context, which ends when Do returns, nor its other headers, which it
	// would hold for its whole life.
	ctx, cancel := context.WithCancel(context.Background())
	c := &wsConn{t: t, ws: ws, exec: exec, ctx: ctx, cancel: cancel, writeLock: make(chan struct{}, 1),
		legacy: ws.Subprotocol() != protoTransportWS, ops: map[string]*wsOp{}}
	if a := r.Header.Get("Authorization"); len(a) <= maxUpgradeAuthorization {
		c.upgradeAuthorization = a
	}
	c.nc = hw.conn.Conn
	c.raw = rawConn(c.nc)
	// Control frames go through the writer too (see websocket_write.go):
	// a pong is queued, and the answer to the peer's close is the close
	// frame the reader sends when it stops (readFailed echoes the code).
	ws.SetPingHandler(func(data string) error {
		c.enqueue(appendFrame(nil, websocket.PongMessage, []byte(data)))
		return nil
	})
	ws.SetCloseHandler(func(int, string) error { return nil })
	ws.SetPongHandler(func(string) error { // runs in the reader, between reads
		c.extendReadDeadline()
		return nil
	})
	t.mu.Lock()
	if t.closing {
		t.mu.Unlock()
		c.closeWith(websocket.CloseGoingAway, "server shutting down")
		return
	}
	t.conns[c] = struct{}{}
	t.mu.Unlock()
	go c.read()
}

// closeAll closes every connection with code, without completing their
// subscriptions, and refuses new ones; it returns when all are closed (each
// close waits at most a second for its peer).
func (t *Websocket) closeAll(code int, reason string, deadline time.Time) {
	t.mu.Lock()
	t.closing = true
	conns := t.conns
	t.conns = map[*wsConn]struct{}{}
	t.mu.Unlock()
	var wg sync.WaitGroup
	for c := range conns {
		wg.Go(func() {
			c.awaitQueriesAndMutations(deadline)
			c.closeWith(code, reason)
		})
	}
	wg.Wait()
}

// awaitQueriesAndMutations waits until the connection runs no query or
// mutation (subscriptions do not count: they never end by themselves) and
// has written what it queued, or until deadline. New operations are
// refused meanwhile (closing).
func (c *wsConn) awaitQueriesAndMutations(deadline time.Time) {
	for time.Now().Before(deadline) {
		c.mu.Lock()
		busy := false
		for _, op := range c.ops {
			if op.stream == nil && !op.stopped.Load() {
				busy = true
				break
			}
		}
		busy = busy || len(c.outbox) > 0 || c.writing // their results are not all written yet
		closed := c.closed
		c.mu.Unlock()
		if !busy || closed {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
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

// wsConn is one websocket connection. The reader goroutine owns the
// protocol state; mu guards what the writer, the hub and timers share.
type wsConn struct {
	t      *Websocket
	ws     *websocket.Conn
	exec   graphql.GraphExecutor
	ctx    context.Context
	cancel context.CancelFunc
	legacy bool // graphql-ws (subscriptions-transport-ws) rather than graphql-transport-ws

	initialised bool // reader only
	// upgradeAuthorization is the upgrade request's Authorization header
	// (at most maxUpgradeAuthorization bytes; a longer one is dropped): the
	// token of a connection_init without one. Browsers cannot set it;
	// other clients (graphql-ws under node, mobile apps) often do.
	upgradeAuthorization string

	// write side; see websocket_write.go
	nc        net.Conn        // the socket, for the writer's frames (ws writes nothing after the upgrade)
	raw       syscall.RawConn // the same, for writes that must not wait; nil when it is not one (then no worker writes)
	writeLock chan struct{}   // capacity 1: held for each write to the socket
	partial   []byte          // guarded by writeLock: the rest of a frame partly written
	closeSent bool            // guarded by writeLock: the close (connection_error, close frame) is out or was given up; nothing more goes

	mu          sync.Mutex
	ops         map[string]*wsOp
	outbox      [][]byte // whole messages, in order
	outboxBytes int
	ready       []*wsOp // subscriptions woken since the writer last looked
	spareReady  []*wsOp // an emptied ready list, for reuse
	writing     bool    // a writer turn is running
	closed      bool
	keepAlive   *time.Timer
	expiry      *time.Timer // closes the connection when its token expires
}

// wsMessage is a message of either protocol.
type wsMessage struct {
	Type    string          `json:"type"`
	ID      string          `json:"id,omitempty"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// read is the connection's goroutine: it reads and handles client messages
// until the connection ends, then frees everything the connection holds.
func (c *wsConn) read() {
	defer func() {
		if p := recover(); p != nil {
			c.t.opts.Logger.Error("websocket connection panicked", "panic", p)
			c.closeWith(closeInternalError, "internal error")
		}
		c.closeWith(websocket.CloseNormalClosure, "")
	}()
	if d := c.t.opts.InitTimeout; d > 0 {
		_ = c.ws.SetReadDeadline(time.Now().Add(d))
	}
	for {
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			c.readFailed(err)
			return
		}
		c.extendReadDeadline()
		var m wsMessage
		if err := json.Unmarshal(data, &m); err != nil || m.Type == "" {
			c.protocolError("invalid message: want a JSON object with a type")
			return
		}
		if !c.handle(m) {
			return
		}
	}
}

// readFailed closes the connection after a failed read with the code that
// says why: the init timeout, missed pongs, an oversized message, a frame
// that breaks the websocket protocol, the peer's own close (echoed), or
// (for a dropped network) nothing more to say.
func (c *wsConn) readFailed(err error) {
	var ne net.Error
	var ce *websocket.CloseError
	switch {
	case errors.As(err, &ne) && ne.Timeout() && !c.initialised:
		c.closeWith(closeInitTimeout, "Connection initialisation timeout")
	case errors.As(err, &ne) && ne.Timeout():
		c.closeWith(closeNoPong, fmt.Sprintf("no pong within %s", 2*c.t.opts.PingInterval))
	case errors.As(err, &ce):
		c.closeWith(echoCode(ce.Code), "")
	case errors.Is(err, websocket.ErrReadLimit):
		c.closeWith(websocket.CloseMessageTooBig, fmt.Sprintf("message larger than %d bytes", websocketReadLimit))
	case errors.As(err, &ne):
		// the network failed: no one to tell
	default: // the library found a frame that breaks the protocol; its own close frame was dropped (hijackedConn)
		c.closeWith(websocket.CloseProtocolError, strings.TrimPrefix(err.Error(), "websocket: "))
	}
}

// echoCode is the code of the close frame that answers the peer's: its own,
// unless that may not be sent (1006 is what the library reports for a
// connection that ended without a close frame).
func echoCode(code int) int {
	switch code {
	case websocket.CloseAbnormalClosure, websocket.CloseTLSHandshake:
		return websocket.CloseNormalClosure
	}
	return code
}

// hijackWriter hands the websocket library a connection whose writes are
// dropped once the upgrade response is out. After that the library writes
// only close frames of its own accord (on an oversized message or a
// protocol error it reads), and those would go around the writer: into the
// middle of a frame partly written, or holding the socket while a fan-out
// worker waits for it. The reader sends the close frame instead
// (readFailed), through the writer.
type hijackWriter struct {
	http.ResponseWriter
	conn *hijackedConn
}

func (w *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("websocket: the response cannot be hijacked")
	}
	nc, brw, err := h.Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.conn = &hijackedConn{Conn: nc}
	return w.conn, brw, nil
}

type hijackedConn struct {
	net.Conn
	upgraded atomic.Bool
}

func (h *hijackedConn) Write(p []byte) (int, error) {
	if h.upgraded.Load() {
		return len(p), nil
	}
	return h.Conn.Write(p)
}

// handle acts on one message and reports whether the connection goes on.
func (c *wsConn) handle(m wsMessage) bool {
	switch {
	case m.Type == "connection_init":
		if c.initialised {
			if c.legacy {
				return true // subscriptions-transport-ws acknowledges again; nothing to do
			}
			c.closeWith(closeTooManyInits, "Too many initialisation requests")
			return false
		}
		c.initialised = true
		if c.t.opts.auth != nil && !c.authenticate(m.Payload) {
			return false
		}
		if c.t.opts.MaxSubscriptionsPer > 0 {
			c.ctx = WithSubscriptionLimit(c.ctx, c.t.opts.MaxSubscriptionsPer)
		}
		_ = c.ws.SetReadDeadline(time.Time{})
		c.extendReadDeadline()
		c.enqueue(frame("connection_ack", "", nil))
		if c.legacy {
			c.enqueue(frame("ka", "", nil))
		}
		c.startKeepAlive()
		return true
	case m.Type == "ping" && !c.legacy:
		c.enqueue(frame("pong", "", nil)) // the payload is optional; echoing it would let a client make the server queue what it sends
		return true
	case m.Type == "pong" && !c.legacy:
		return true // the read deadline has moved on
	case m.Type == "connection_terminate" && c.legacy:
		c.closeWith(websocket.CloseNormalClosure, "terminated")
		return false
	case (m.Type == "subscribe" && !c.legacy) || (m.Type == "start" && c.legacy):
		if !c.initialised {
			if c.legacy {
				c.connectionError("connection_init must come first", closeBadRequest, "connection_init must come first")
			} else {
				c.closeWith(closeUnauthorized, "Unauthorized")
			}
			return false
		}
		if m.ID == "" {
			c.protocolError(m.Type + " without an id")
			return false
		}
		c.t.mu.Lock()
		draining := c.t.closing
		c.t.mu.Unlock()
		if draining {
			c.enqueue(frame("error", m.ID, errorsPayload(gqlerror.List{{Message: "the server is shutting down; send it again on a new connection",
				Extensions: map[string]any{"code": "UNAVAILABLE"}}})))
			return true
		}
		c.mu.Lock()
		old, running := c.ops[m.ID], len(c.ops)
		c.mu.Unlock()
		if old == nil && running >= c.maxOps() {
			c.enqueue(frame("error", m.ID, errorsPayload(gqlerror.List{{Message: fmt.Sprintf("a connection may run at most %d operations at once", c.maxOps()),
				Extensions: map[string]any{"code": "INVALID_INPUT"}}})))
			return true
		}
		if old != nil {
			if !c.legacy {
				c.closeWith(closeDuplicateID, fmt.Sprintf("Subscriber for %s already exists", m.ID))
				return false
			}
			c.stop(old) // subscriptions-transport-ws replaces an operation started again
		}
		c.start(m.ID, m.Payload)
		return true
	case (m.Type == "complete" && !c.legacy) || (m.Type == "stop" && c.legacy):
		c.mu.Lock()
		op := c.ops[m.ID]
		c.mu.Unlock()
		if op != nil && c.stop(op) && c.legacy {
			c.enqueue(frame("complete", op.id, nil))
		}
		return true
	default:
		c.connectionError("unexpected message "+m.Type, closeBadRequest, fmt.Sprintf("unexpected message type %q", m.Type))
		return false
	}
}

// authenticate checks the token of connection_init's payload. Without a
// valid one it closes the connection with 4403 (graphql-ws's Forbidden;
// a legacy client first gets connection_error) and returns false. With
// one, the connection's operations act as its principal, and a timer
// closes the connection with 4403 "token expired" when the token expires.
// Only the reader calls it.
func (c *wsConn) authenticate(payload json.RawMessage) bool {
	token := initAuthorization(payload)
	if token == "" {
		token = c.upgradeAuthorization
	}
	c.upgradeAuthorization = "" // read once
	p, exp, err := c.t.opts.auth.Authenticate(token)
	reason := ""
	switch {
	case err != nil:
		reason = "Forbidden: " + unauthenticatedMessage(err)
	case !time.Now().Before(exp): // accepted within the leeway, yet expired
		reason = msgTokenExpired
	}
	if reason != "" {
		c.connectionError(reason, closeForbidden, reason)
		return false
	}
	c.ctx = withExpiry(domain.WithPrincipal(c.ctx, p), exp)
	c.mu.Lock()
	if !c.closed {
		c.expiry = time.AfterFunc(time.Until(exp), func() { c.closeWith(closeForbidden, msgTokenExpired) })
	}
	c.mu.Unlock()
	return true
}

// maxUpgradeAuthorization bounds the upgrade request's Authorization
// header a websocket keeps until its connection_init (8 KiB: a JWT of a
// few dozen claims).
const maxUpgradeAuthorization = 8 << 10

// maxOps caps a connection's operations in flight (subscriptions, and
// queries or mutations still running) at its subscriptions and 100 more,
// so a client cannot make the server run or queue without bound.
func (c *wsConn) maxOps() int {
	return max(c.t.opts.MaxSubscriptionsPer, 0) + 100
}

// closeReason fits reason into a close frame (at most 123 bytes, cut at a
// rune boundary); a longer one would make the close frame fail.
func closeReason(reason string) string {
	if len(reason) <= 123 {
		return reason
	}
	cut := 123
	for cut > 0 && !utf8.RuneStart(reason[cut]) {
		cut--
	}
	return reason[:cut]
}

// extendReadDeadline gives an initialised connection two ping intervals
// from now to send something (a message, or a pong to a ping frame). Only
// the reader calls it.
func (c *wsConn) extendReadDeadline() {
	if c.initialised && c.t.opts.PingInterval > 0 {
		_ = c.ws.SetReadDeadline(time.Now().Add(2 * c.t.opts.PingInterval))
	}
}

// protocolError closes the connection with 4400 and the reason.
func (c *wsConn) protocolError(reason string) { c.closeWith(closeBadRequest, reason) }

// connectionError closes the connection with code and reason; a legacy
// (graphql-ws) client first gets connection_error with msg, as the last
// message before the close frame (closeAfter).
func (c *wsConn) connectionError(msg string, code int, reason string) {
	var last []byte
	if c.legacy {
		last = frame("connection_error", "", errorPayload(msg))
	}
	c.closeAfter(last, code, reason)
}

// startKeepAlive pings (graphql-transport-ws) or sends "ka" (graphql-ws)
// every interval, from a timer rather than a goroutine.
func (c *wsConn) startKeepAlive() {
	d := c.t.opts.PingInterval
	if d <= 0 {
		return
	}
	msg := frame("ping", "", nil)
	if c.legacy {
		msg = append(frame("ka", "", nil), appendFrame(nil, websocket.PingMessage, nil)...)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.keepAlive = time.AfterFunc(d, func() {
		c.mu.Lock()
		if !c.closed {
			c.keepAlive.Reset(d)
		}
		c.mu.Unlock()
		c.enqueue(msg)
	})
}

// wsOp is one operation a client started.
type wsOp struct {
	id      string
	idJSON  []byte
	conn    *wsConn
	cancel  context.CancelFunc
	ctx     context.Context
	respond graphql.ResponseHandler

	// guarded by conn.mu; stream and group, once live, are read by the
	// writer without it
	stream pullStream // a pulled subscription; nil for a query or mutation
	group  *resultGroup
	live   bool // set up: the writer may pull
	queued bool // in conn.ready
	// stopped is set under conn.mu, so checks under it see it in step with
	// the rest; it is atomic so the writer can check it per update without
	// the lock.
	stopped atomic.Bool
}

var _ pullTarget = (*wsOp)(nil)

// attach is called by the resolver, on the reader's goroutine; a stream
// attached after the operation stopped is closed at once.
func (op *wsOp) attach(s pullStream) {
	op.conn.mu.Lock()
	stopped := op.stopped.Load()
	op.stream = s
	op.conn.mu.Unlock()
	if stopped {
		s.close()
	}
}

func (op *wsOp) attached() bool {
	op.conn.mu.Lock()
	defer op.conn.mu.Unlock()
	return op.stream != nil
}

// wake is the hub's callback: it queues the operation for the writer.
func (op *wsOp) wake() {
	c := op.conn
	c.mu.Lock()
	defer c.mu.Unlock()
	if op.stopped.Load() || c.closed {
		return
	}
	if !op.live { // start wakes it once it is
		return
	}
	if !op.queued {
		op.queued = true
		c.ready = append(c.ready, op)
	}
	c.startWriter()
}

// start registers an operation and runs it on a goroutine of its own, so
// the reader goes on reading (and its stack stays small).
func (c *wsConn) start(id string, payload json.RawMessage) {
	received := graphql.Now()
	ctx, cancel := context.WithCancel(c.ctx)
	op := &wsOp{id: id, idJSON: jsonString(id), conn: c, cancel: cancel}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		cancel()
		return
	}
	c.ops[id] = op
	c.mu.Unlock()
	go c.execute(ctx, op, payload, received)
}

// execute runs an operation. A query or mutation runs to its end and sends
// its result. A subscription attaches to the hub and returns: the writer
// then pulls its updates.
func (c *wsConn) execute(ctx context.Context, op *wsOp, payload json.RawMessage, received time.Time) {
	defer c.recoverOp(op)
	params, perr := decodeParams(payload) // as a POST body: no Go types, no echo, UTF-8 only
	if perr != nil {
		perr.Message = strings.Replace(perr.Message, "the request body", "the payload", 1)
		c.fail(op, errorsPayload(gqlerror.List{perr}))
		return
	}
	params.ReadTime = graphql.TraceTiming{Start: received, End: graphql.Now()}
	ctx = graphql.StartOperationTrace(ctx)
	rc, errs := c.exec.CreateOperationContext(ctx, params)
	if errs != nil {
		resp := c.exec.DispatchError(graphql.WithOperationContext(ctx, rc), errs)
		if errcode.GetErrorKind(errs) == errcode.KindProtocol {
			c.fail(op, errorsPayload(resp.Errors))
			return
		}
		c.enqueueFor(op, frame(c.dataType(), op.id, responsePayload(resp)))
		c.finish(op)
		return
	}
	ctx = graphql.WithOperationContext(ctx, rc)
	if rc.Operation.Operation != ast.Subscription {
		respond, ctx := c.exec.DispatchOperation(ctx, rc)
		if resp := respond(ctx); resp != nil {
			c.enqueueFor(op, frame(c.dataType(), op.id, responsePayload(resp)))
		}
		c.finish(op)
		return
	}
	op.respond, op.ctx = c.exec.DispatchOperation(withPullTarget(ctx, op), rc)
	c.mu.Lock()
	pulled := op.stream != nil
	c.mu.Unlock()
	if !pulled { // an error response, or a stream that pushes
		c.relay(op)
		return
	}
	group := c.t.shared.join(shareKey(params.Query, params.OperationName, rc.Variables))
	c.mu.Lock()
	if op.stopped.Load() {
		c.mu.Unlock()
		c.t.shared.leave(group)
		return
	}
	op.group, op.live = group, true
	c.mu.Unlock()
	op.wake() // the first state, and anything the hub buffered meanwhile
}

// relay sends the results of a subscription that did not attach a pull
// stream: an error result (e.g. the subscription limit), or a stream with
// its own goroutine.
func (c *wsConn) relay(op *wsOp) {
	for {
		resp := op.respond(op.ctx)
		if resp == nil || !c.enqueueFor(op, frame(c.dataType(), op.id, responsePayload(resp))) {
			break
		}
	}
	c.finish(op)
}

// fail ends an operation with an "error" message, which (unlike a result
// with errors) needs no complete after it.
func (c *wsConn) fail(op *wsOp, errs []byte) {
	if c.stop(op) {
		c.enqueue(frame("error", op.id, errs))
	}
}

func (c *wsConn) recoverOp(op *wsOp) {
	if p := recover(); p != nil {
		c.t.opts.Logger.Error("websocket operation panicked", "id", op.id, "panic", p)
		c.closeWith(closeInternalError, "internal error")
	}
}

// finish ends an operation that ran to its end: it sends complete unless
// the client stopped it first.
func (c *wsConn) finish(op *wsOp) {
	if c.stop(op) {
		c.enqueue(frame("complete", op.id, nil))
	}
}

// stop ends an operation and frees what it holds; it reports whether this
// call stopped it (false if it had already stopped).
func (c *wsConn) stop(op *wsOp) bool {
	c.mu.Lock()
	if op.stopped.Load() {
		c.mu.Unlock()
		return false
	}
	op.stopped.Store(true)
	if c.ops[op.id] == op {
		delete(c.ops, op.id)
	}
	stream, group := op.stream, op.group // stop acts once, so it leaves the group once
	c.mu.Unlock()
	op.cancel()
	if stream != nil {
		stream.close()
	}
	c.t.shared.leave(group)
	return true
}

func (c *wsConn) isStopped(op *wsOp) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return op.stopped.Load() || c.closed
}

func (c *wsConn) dataType() string {
	if c.legacy {
		return "data"
	}
	return "next"
}

// closeWith sends a close frame (waiting at most a second for a peer that
// does not read), closes the socket and frees every operation. Only the
// first call acts. What is still queued is dropped.
func (c *wsConn) closeWith(code int, reason string) { c.closeAfter(nil, code, reason) }

// closeAfter is closeWith with the frame last (nil: none) just before the
// close frame. The connection is marked closed first, which stops the
// keep-alive and makes the writer take nothing more, and writeClose sends
// both under writeLock: nothing queued before or after comes between them
// or follows them. Both go within the close's second.
func (c *wsConn) closeAfter(last []byte, code int, reason string) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	ops := c.ops
	c.ops, c.outbox, c.outboxBytes, c.ready = nil, nil, 0, nil
	if c.keepAlive != nil {
		c.keepAlive.Stop()
	}
	if c.expiry != nil {
		c.expiry.Stop()
	}
	c.mu.Unlock()
	c.t.mu.Lock()
	delete(c.t.conns, c)
	c.t.mu.Unlock()
	c.writeClose(last, code, reason)
	_ = c.ws.Close()
	c.cancel()
	for _, op := range ops {
		c.stop(op)
	}
}
