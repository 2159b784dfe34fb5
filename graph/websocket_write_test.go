//go:build unix

package graph

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/gorilla/websocket"
	"github.com/ordergateway/gateway/live"
	"github.com/ordergateway/gateway/view"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// These tests drive the writer over real loopback sockets whose buffers
// are a few KiB, against a client that reads nothing at first: a fan-out
// worker's write then stops part-way through a frame and hands the turn to
// the connection's goroutine. Everything must still arrive, whole and in
// order, with no later wake-up to pick up what was left.

const bigPayload = 48 << 10 // much more than the socket buffers hold

// TestWorkerHandsOffQueuedFrames: frames in the outbox.
func TestWorkerHandsOffQueuedFrames(t *testing.T) {
	c, client := handOffPair(t)
	var want, frames [][]byte
	for i := range 30 {
		msg := []byte(fmt.Sprintf(`{"type":"next","id":"%d","payload":"%s"}`, i, strings.Repeat("x", bigPayload)))
		want = append(want, msg)
		frames = append(frames, appendFrame(nil, websocket.TextMessage, msg))
	}
	c.enqueue(frames...) // one turn takes them all; the first fills the socket
	readAll(t, client, want)
	waitIdle(t, c)
}

// TestWorkerHandsOffSubscriptionsUpdates: updates two subscriptions
// drained from the hub before the socket filled up (nothing wakes them
// afterwards).
func TestWorkerHandsOffSubscriptionsUpdates(t *testing.T) {
	c, client := handOffPair(t)
	group := c.t.shared.join("q")
	var want [][]byte
	var streams []*fakeStream
	for _, id := range []string{"s1", "s2"} {
		idJSON := jsonString(id)
		st := &fakeStream{}
		for i := range 15 {
			d := view.OrderDoc{ID: fmt.Sprintf("ord_%s_%d", id, i), Version: 1}
			st.docs = append(st.docs, d)
			payload := []byte(fmt.Sprintf(`{"data":{"n":%d,"pad":"%s"}}`, i, strings.Repeat("y", bigPayload)))
			c.t.shared.put(group, d.ID, d.Version, payload) // no executor needed: every result is shared
			want = append(want, appendMessage(nil, "next", idJSON, payload))
		}
		op := &wsOp{id: id, idJSON: idJSON, conn: c, cancel: func() {}, ctx: context.Background(), stream: st, group: group, live: true}
		c.mu.Lock()
		c.ops[op.id] = op
		c.mu.Unlock()
		streams = append(streams, st)
		op.wake() // once: the hub has nothing more to say
	}
	readAll(t, client, want)
	waitIdle(t, c)
	for i, st := range streams {
		if st.left() != 0 {
			t.Fatalf("subscription %d: %d updates were never pulled", i+1, st.left())
		}
	}
}

// handOffPair is a server-side wsConn of a fresh transport and the client
// end, both with small socket buffers.
func handOffPair(t *testing.T) (*wsConn, *websocket.Conn) {
	t.Helper()
	tr := NewWebsocket(WebsocketOptions{WriteTimeout: 10 * time.Second})
	conns := make(chan *websocket.Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := tr.upgrader.Upgrade(w, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		conns <- ws
	}))
	t.Cleanup(srv.Close)
	dialer := websocket.Dialer{Subprotocols: []string{protoTransportWS}, NetDialContext: (&net.Dialer{Control: smallBuffers}).DialContext}
	client, _, err := dialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	ws := <-conns
	t.Cleanup(func() { ws.Close() })
	if err := setSmallBuffers(ws.UnderlyingConn()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c := &wsConn{t: tr, ws: ws, ctx: ctx, cancel: cancel, writeLock: make(chan struct{}, 1), ops: map[string]*wsOp{}, nc: ws.UnderlyingConn(), raw: rawConn(ws.UnderlyingConn())}
	if c.raw == nil {
		t.Fatal("no raw socket: the fan-out workers would not write for this connection")
	}
	return c, client
}

func smallBuffers(_, _ string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		for _, opt := range []int{syscall.SO_SNDBUF, syscall.SO_RCVBUF} {
			if e := syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, opt, 4096); e != nil {
				serr = e
			}
		}
	})
	if err != nil {
		return err
	}
	return serr
}

func setSmallBuffers(c net.Conn) error {
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		return err
	}
	return smallBuffers("", "", rc)
}

// readAll waits a moment, so the server's writes fill the sockets, then
// reads the messages and compares them with want.
func readAll(t *testing.T, client *websocket.Conn, want [][]byte) {
	t.Helper()
	time.Sleep(200 * time.Millisecond)
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i, w := range want {
		_, got, err := client.ReadMessage()
		if err != nil {
			t.Fatalf("message %d of %d: %v", i+1, len(want), err)
		}
		if !bytes.Equal(got, w) {
			t.Fatalf("message %d of %d: got %d bytes starting %.60q, want %d bytes starting %.60q", i+1, len(want), len(got), got, len(w), w)
		}
	}
}

// waitIdle waits until the connection's writer turn has ended.
func waitIdle(t *testing.T, c *wsConn) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		writing := c.writing
		c.mu.Unlock()
		if !writing {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the writer turn did not end")
		}
		time.Sleep(time.Millisecond)
	}
}

// fakeStream is a pullStream whose states are all drained at the first
// next, as a hub buffer with many orders would be.
type fakeStream struct {
	mu      sync.Mutex
	docs    []view.OrderDoc
	drained []view.OrderDoc
}

func (s *fakeStream) next() (view.OrderDoc, bool, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.drained) == 0 {
		s.drained, s.docs = s.docs, nil
	}
	if len(s.drained) == 0 {
		return view.OrderDoc{}, false, false
	}
	d := s.drained[0]
	s.drained = s.drained[1:]
	return d, true, false
}

func (s *fakeStream) buffered() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.drained) > 0
}

func (s *fakeStream) left() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.docs) + len(s.drained)
}

func (s *fakeStream) load(view.OrderDoc)      { panic("every result is shared: nothing to execute") }
func (s *fakeStream) close()                  {}
func (s *fakeStream) endErr() *gqlerror.Error { return nil }

// A change published while a new subscription reads its snapshot (before
// it is live, so its wake-up is dropped) goes out after the first state.
func TestPullSendsWhatWaitedBehindTheFirstState(t *testing.T) {
	c, client := handOffPair(t)
	hub := live.NewHub()
	group := c.t.shared.join("q")
	st, op := hubStream(c, "s", group)
	st.sub = hub.SubscribeOrder("o1", st.notify())
	hub.Publish(view.Change{Order: view.OrderDoc{ID: "o1", Version: 2}}) // during the snapshot read
	st.first = &view.OrderDoc{ID: "o1", Version: 1}
	last := 1
	st.fresh = func(d view.OrderDoc) bool {
		if d.Version <= last {
			return false
		}
		last = d.Version
		return true
	}
	goLive(c, st, op, group)
	if n := countMessages(client, 3); n != 2 {
		t.Fatalf("got %d messages, want 2: the first state and version 2", n)
	}
}

// A change offered while a turn works through more than maxPullsPerTurn
// updates (its wake-up spent on that turn) goes out after them.
func TestPullSendsWhatCameDuringALongTurn(t *testing.T) {
	c, client := handOffPair(t)
	hub := live.NewHub()
	group := c.t.shared.join("q")
	st, op := hubStream(c, "s", group)
	st.sub = hub.SubscribeMatching(func(view.OrderDoc) bool { return true }, st.notify())
	publishShared(c, hub, group, 100)
	c.t.shared.put(group, "late", 1, []byte(`{"data":1}`))
	published := false
	st.fresh = func(d view.OrderDoc) bool {
		if d.ID == "o10" && !published {
			published = true
			hub.Publish(view.Change{Order: view.OrderDoc{ID: "late", Version: 1}})
		}
		return true
	}
	goLive(c, st, op, group)
	if n := countMessages(client, 102); n != 101 {
		t.Fatalf("got %d messages, want 101 (100, then the late change)", n)
	}
}

// A subscription the client completes in the middle of a turn sends
// nothing more.
func TestPullStopsWithTheSubscription(t *testing.T) {
	c, client := handOffPair(t)
	hub := live.NewHub()
	group := c.t.shared.join("q")
	st, op := hubStream(c, "s", group)
	st.sub = hub.SubscribeMatching(func(view.OrderDoc) bool { return true }, st.notify())
	publishShared(c, hub, group, 50)
	st.fresh = func(d view.OrderDoc) bool {
		if d.ID == "o5" {
			c.stop(op) // the client's complete, handled by the reader meanwhile
		}
		return true
	}
	goLive(c, st, op, group)
	if n := countMessages(client, 50); n > 6 {
		t.Fatalf("%d messages after the subscription stopped at the 6th, want at most 6", n)
	}
}

// publishShared publishes orders o0…o(n-1) at version 1, each with a shared
// result already in group.
func publishShared(c *wsConn, hub *live.Hub, group *resultGroup, n int) {
	for i := range n {
		id := fmt.Sprintf("o%d", i)
		c.t.shared.put(group, id, 1, []byte(`{"data":1}`))
		hub.Publish(view.Change{Order: view.OrderDoc{ID: id, Version: 1}})
	}
}

// hubStream is a subscription stream as the resolver makes it, whose
// results are all shared (the test puts them), so no executor runs.
func hubStream(c *wsConn, id string, group *resultGroup) (*orderStream, *wsOp) {
	st := &orderStream{release: func() {}}
	op := &wsOp{id: id, idJSON: jsonString(id), conn: c, cancel: func() {}, ctx: context.Background()}
	op.respond = func(context.Context) *graphql.Response { <-st.out; return &graphql.Response{Data: []byte(`{"x":1}`)} }
	st.target = op
	return st, op
}

func goLive(c *wsConn, st *orderStream, op *wsOp, group *resultGroup) {
	st.start(context.Background())
	c.mu.Lock()
	op.group, op.live = group, true
	c.ops[op.id] = op
	c.mu.Unlock()
	op.wake() // as execute does, once
}

// countMessages reads until max messages or a second of silence.
func countMessages(client *websocket.Conn, max int) int {
	n := 0
	for n < max {
		_ = client.SetReadDeadline(time.Now().Add(time.Second))
		if _, _, err := client.ReadMessage(); err != nil {
			break
		}
		n++
	}
	return n
}

// The close frames a client gets: one, with the code that says why, and
// never 1006 (which may not be sent).
func TestCloseFrames(t *testing.T) {
	tr := NewWebsocket(WebsocketOptions{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { tr.Do(w, r, nil) }))
	t.Cleanup(srv.Close)
	for _, tc := range []struct {
		name string
		act  func(*websocket.Conn) error
		want []string
	}{
		{"an oversized message", func(c *websocket.Conn) error {
			return c.WriteMessage(websocket.TextMessage, make([]byte, websocketReadLimit+10))
		}, []string{"close 1009"}},
		{"a frame with a reserved bit set", func(c *websocket.Conn) error {
			_, err := c.UnderlyingConn().Write([]byte{0xC1, 0x80, 0, 0, 0, 0}) // RSV1, text, masked, empty
			return err
		}, []string{"close 1002"}},
		{"the client stops sending (half close)", func(c *websocket.Conn) error {
			return c.UnderlyingConn().(*net.TCPConn).CloseWrite()
		}, []string{"close 1000"}},
		{"the client's close 4000", func(c *websocket.Conn) error {
			return c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4000, ""), time.Now().Add(time.Second))
		}, []string{"close 4000"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := websocket.Dialer{Subprotocols: []string{protoTransportWS}}
			client, _, err := d.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			if err := tc.act(client); err != nil {
				t.Fatal(err)
			}
			if got := rawFrames(t, client.UnderlyingConn()); !slices.Equal(got, tc.want) {
				t.Fatalf("frames %v, want %v", got, tc.want)
			}
		})
	}
}

// A legacy client's connection_error is the last frame before the close
// frame: nothing queued before it (the connection_ack, keep-alives, here
// every 50µs) comes between them, nor anything queued after. Without
// that, most runs of 100 connections saw the ack or a "ka" after it.
func TestLegacyConnectionErrorIsLastBeforeClose(t *testing.T) {
	tr := NewWebsocket(WebsocketOptions{PingInterval: 50 * time.Microsecond})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { tr.Do(w, r, nil) }))
	t.Cleanup(srv.Close)
	d := websocket.Dialer{Subprotocols: []string{protoLegacyGraphqlWS}}
	const connectionError = `{"type":"connection_error","payload":{"message":"unexpected message hello"}}`
	for i := range 100 {
		client, _, err := d.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
		if err != nil {
			t.Fatal(err)
		}
		// Both messages in one write: the reader has the second at once,
		// before the read deadline (two ping intervals after the first).
		msgs := append(clientFrame(`{"type":"connection_init"}`), clientFrame(`{"type":"hello"}`)...)
		if _, err := client.UnderlyingConn().Write(msgs); err != nil {
			t.Fatal(err)
		}
		got := rawFrames(t, client.UnderlyingConn())
		client.Close()
		at := slices.Index(got, connectionError)
		if at < 0 || !slices.Equal(got[at:], []string{connectionError, "close 4400"}) {
			if len(got) > 6 {
				got = got[len(got)-6:]
			}
			t.Fatalf("connection %d: the last frames %q; want connection_error, then the close frame 4400", i+1, got)
		}
	}
}

// clientFrame is a masked text frame (mask key 0) of a short message.
func clientFrame(msg string) []byte {
	return append([]byte{0x80 | websocket.TextMessage, 0x80 | byte(len(msg)), 0, 0, 0, 0}, msg...)
}

// rawFrames reads the socket to its end and names the frames on it: close
// frames by their code, text frames by their message.
func rawFrames(t *testing.T, nc net.Conn) []string {
	t.Helper()
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(nc)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("reading the socket: %v", err)
	}
	var out []string
	for len(b) >= 2 {
		op, n, h := b[0]&0x0f, int(b[1]&0x7f), 2
		if n == 126 && len(b) >= 4 {
			n, h = int(binary.BigEndian.Uint16(b[2:])), 4
		}
		if len(b) < h+n {
			return append(out, "a truncated frame")
		}
		p := b[h : h+n]
		switch {
		case op == websocket.CloseMessage && n >= 2:
			out = append(out, fmt.Sprintf("close %d", binary.BigEndian.Uint16(p)))
		case op == websocket.CloseMessage:
			out = append(out, "close")
		case op == websocket.TextMessage:
			out = append(out, string(p))
		default:
			out = append(out, fmt.Sprintf("opcode %d", op))
		}
		b = b[h+n:]
	}
	return out
}

// An SSE stream pulls like a websocket: a result another subscription
// already has is written as it is, and only a new one runs the executor
// (once, then shared).
func TestSSEPullSharesResults(t *testing.T) {
	tr := &SSE{shared: &sharedResults{}}
	group := tr.shared.join("q")
	tr.shared.put(group, "o1", 1, []byte(`{"data":"shared"}`))
	rec := httptest.NewRecorder()
	st := &fakeStream{docs: []view.OrderDoc{{ID: "o1", Version: 1}, {ID: "o2", Version: 1}}}
	s := &sseStream{w: rec, f: rec, ready: make(chan struct{}, 1), stream: &loadingStream{fakeStream: st}}
	executions := 0
	respond := func(context.Context) *graphql.Response {
		executions++
		return &graphql.Response{Data: []byte(`"executed"`)}
	}
	sent, ended, ok := tr.pull(s, group, respond, context.Background())
	want := "event: next\ndata: {\"data\":\"shared\"}\n\nevent: next\ndata: {\"data\":\"executed\"}\n\n"
	if !sent || ended || !ok || rec.Body.String() != want || executions != 1 {
		t.Fatalf("pull: sent %v ended %v ok %v, %d executions, wrote %q; want one execution and %q", sent, ended, ok, executions, rec.Body.String(), want)
	}
	if got := tr.shared.get(group, "o2", 1); string(got) != `{"data":"executed"}` {
		t.Fatalf("the executed result was not shared: %q", got)
	}
}

// loadingStream is a fakeStream that lets the executor load a state.
type loadingStream struct{ *fakeStream }

func (loadingStream) load(view.OrderDoc) {}
