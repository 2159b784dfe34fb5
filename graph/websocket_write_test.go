//go:build unix

package graph

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/ordergateway/gateway/view"
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
	c := &wsConn{t: tr, ws: ws, ctx: ctx, cancel: cancel, writeLock: make(chan struct{}, 1), ops: map[string]*wsOp{}, raw: rawConn(ws.UnderlyingConn())}
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

func (s *fakeStream) load(view.OrderDoc) { panic("every result is shared: nothing to execute") }
func (s *fakeStream) close()             {}
