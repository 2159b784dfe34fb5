package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestConnsSpeaksHTTP drives the load's HTTP client against Go's server,
// which sees its requests as net/http's client would send them: answers of
// known length, chunked, and with Connection: close, on one pool whose
// connection is kept until the server closes it.
func TestConnsSpeaksHTTP(t *testing.T) {
	var dialed atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.URL.Path != "/graphql" || r.Header.Get("Authorization") != "Bearer tok" ||
			r.Header.Get("Content-Type") != "application/json" || !strings.HasPrefix(string(body), `{"as":`) {
			http.Error(w, fmt.Sprintf("unexpected request %s %s %q %q", r.Method, r.URL, r.Header, body), http.StatusBadRequest)
			return
		}
		switch string(body) {
		case `{"as":"chunked"}`:
			w.Write([]byte(strings.Repeat("a", 5000))) // past net/http's buffer: chunked
			w.(http.Flusher).Flush()
			w.Write([]byte("z"))
		case `{"as":"close"}`:
			w.Header().Set("Connection", "close")
			w.Write([]byte("closed"))
		case `{"as":"teapot"}`:
			http.Error(w, "short and stout", http.StatusTeapot)
		default:
			w.Write([]byte("plain"))
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			dialed.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	cs, err := newConns(srv.URL+"/graphql", 4, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.close()
	for i, tc := range []struct {
		as, want string
		status   int
		dials    int64 // connections made by the end of the case
	}{
		{"plain", "plain", 200, 1},
		{"plain", "plain", 200, 1}, // the connection is kept
		{"chunked", strings.Repeat("a", 5000) + "z", 200, 1},
		{"teapot", "short and stout\n", 418, 1},
		{"close", "closed", 200, 1},
		{"plain", "plain", 200, 2}, // the server closed it: a new one
	} {
		var got string
		var status int
		err := cs.post(context.Background(), "tok", []byte(`{"as":"`+tc.as+`"}`), func(s int, answer []byte) error {
			got, status = string(answer), s
			return nil
		})
		if err != nil || got != tc.want || status != tc.status {
			t.Fatalf("%d (%s): got %d %.40q, %v; want %d %.40q", i, tc.as, status, got, err, tc.status, tc.want)
		}
		if n := dialed.Load(); n != tc.dials {
			t.Fatalf("%d (%s): %d connections, want %d", i, tc.as, n, tc.dials)
		}
	}
}

// oneShotServer answers each connection's first request with answer(n),
// n counting the connections from 1 ("": no answer), and then closes it, as
// a server's idle timeout would. It returns its address and the count.
func oneShotServer(t *testing.T, answer func(n int64) string) (string, *atomic.Int64) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := accepted.Add(1)
			go func() {
				defer c.Close()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				io.Copy(io.Discard, req.Body)
				if a := answer(n); a != "" {
					fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(a), a)
				}
			}()
		}
	}()
	return ln.Addr().String(), &accepted
}

// postOK posts to cs and wants 200 "ok".
func postOK(cs *conns) error {
	return cs.post(context.Background(), "tok", []byte(`{}`), func(status int, answer []byte) error {
		if status != 200 || string(answer) != "ok" {
			return fmt.Errorf("status %d %q", status, answer)
		}
		return nil
	})
}

func newTestConns(t *testing.T, addr string) *conns {
	cs, err := newConns("http://"+addr+"/graphql", 4, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cs.close)
	return cs
}

// TestConnsSendsAgainOnAClosedKeptConnection: a kept-alive connection that
// the server closed while idle fails before any answer; the request goes
// once more on a new connection. One that fails after a new dial is an
// error.
func TestConnsSendsAgainOnAClosedKeptConnection(t *testing.T) {
	addr, accepted := oneShotServer(t, func(n int64) string {
		if n == 3 {
			return "" // closes without an answer
		}
		return "ok"
	})
	cs := newTestConns(t, addr)
	if err := postOK(cs); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the server has closed it
	if err := postOK(cs); err != nil {
		t.Fatalf("on a closed kept connection: %v", err)
	}
	if n := accepted.Load(); n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
	time.Sleep(50 * time.Millisecond)
	// The kept connection is closed (a retry), and the third one answers
	// nothing: an error, not a third try.
	if err := postOK(cs); err == nil {
		t.Fatal("a connection that closed without an answer after a new dial: no error")
	}
	if n := accepted.Load(); n != 3 {
		t.Fatalf("%d connections, want 3", n)
	}
}

// TestConnsRefusesAnAnswerPastItsBound: an answer longer than maxAnswer is
// an error, read no further.
func TestConnsRefusesAnAnswerPastItsBound(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(maxAnswer+1))
		w.WriteHeader(200)
	}))
	defer srv.Close()
	cs, err := newConns(srv.URL, 1, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	err = cs.post(context.Background(), "tok", []byte(`{}`), func(int, []byte) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "an answer of") {
		t.Fatalf("got %v, want the bound's error", err)
	}
}

// TestNewConnsRefusesWhatItCannotSpeak: https and malformed URLs.
func TestNewConnsRefusesWhatItCannotSpeak(t *testing.T) {
	for _, u := range []string{"https://example.com/graphql", "://x", "ftp://x"} {
		if _, err := newConns(u, 1, time.Second); err == nil {
			t.Errorf("%q: no error", u)
		}
	}
}

// TestConnsSendsAgainOnANewConnection: when the server has closed every
// kept connection (an idle timeout, a restart), the request sent again goes
// on a new connection, not on the next dead one.
func TestConnsSendsAgainOnANewConnection(t *testing.T) {
	both := make(chan struct{})
	addr, accepted := oneShotServer(t, func(n int64) string {
		if n == 2 {
			close(both)
		}
		select { // the first two answer together: two kept connections
		case <-both:
		case <-time.After(5 * time.Second):
		}
		return "ok"
	})
	cs := newTestConns(t, addr)
	errs := make(chan error, 2)
	for range 2 {
		go func() { errs <- postOK(cs) }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond) // the server has closed both
	if err := postOK(cs); err != nil {
		t.Fatalf("with two dead kept connections: %v", err)
	}
	if n := accepted.Load(); n != 3 {
		t.Fatalf("%d connections, want 3", n)
	}
}
