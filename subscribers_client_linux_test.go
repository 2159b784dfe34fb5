//go:build linux

package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// epollSubscribers are the subscribers benchmark's clients: websocket
// connections made by hand and read by one epoll loop per core, with no
// goroutine, websocket library or JSON decoding per connection.
//
// Why not a websocket library: the clients share this machine's two cores
// with the server they measure, and every microsecond they spend is one the
// server does not get. A gorilla client with a goroutine per connection
// took 6–7 µs of CPU per message at 10,000 subscribers, half of what the
// gateway spends, and so stretched the delivery of every update. What is
// left here is one read system call per connection and update, and a byte
// scan for the version.
//
// The handshake is the client half of RFC 6455 and no more: no Origin (the
// gateway allows a missing one, as browsers always send it), no extensions;
// client frames are masked with a zero key (allowed: the key is arbitrary).
type epollSubscribers struct {
	base     time.Time // arrival times are kept as offsets from it
	ready    atomic.Int64
	arrivals [][]time.Duration // by version: one slot per subscriber
	counts   []atomic.Int64    // by version: slots filled
	// errs counts what the loops did not expect (a close frame, EOF, a
	// read error, a frame the server should not send); the run fails on any.
	errs    atomic.Int64
	lastErr atomic.Pointer[error]

	conns   []*epollConn // by fd
	epfds   []int
	stopped atomic.Bool
	loops   sync.WaitGroup
}

type epollConn struct {
	fd      int    // a socket outside Go's network poller, non-blocking
	pending []byte // an incomplete frame carried to the next read
	closed  bool
	last    int // the last version received
}

// dialEpollSubscribers connects n subscribers to wsURL, each subscribing
// once to the benchmark's orderUpdated query for orderID, and starts
// reading. Versions up to maxVersion are recorded.
func dialEpollSubscribers(wsURL, orderID string, n, maxVersion int) (*epollSubscribers, error) {
	u, err := url.Parse(wsURL)
	if err != nil {
		return nil, err
	}
	s := &epollSubscribers{base: time.Now(), arrivals: make([][]time.Duration, maxVersion+1), counts: make([]atomic.Int64, maxVersion+1)}
	for v := range s.arrivals {
		s.arrivals[v] = make([]time.Duration, n)
	}
	subscribe, _ := json.Marshal(map[string]any{"id": "1", "type": "subscribe", "payload": map[string]any{
		"query": `subscription($id: ID!) { orderUpdated(id: $id) { id version status itemCount } }`, "variables": map[string]any{"id": orderID}}})
	hello := append(clientFrame(nil, []byte(`{"type":"connection_init","payload":{"authorization":"Bearer `+staffToken+`"}}`)), clientFrame(nil, subscribe)...)

	for range runtime.GOMAXPROCS(0) {
		fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("epoll_create1: %w", err)
		}
		s.epfds = append(s.epfds, fd)
	}
	var mu sync.Mutex
	var dialErr error
	sem := make(chan struct{}, 100)
	var dials sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		dials.Go(func() {
			defer func() { <-sem }()
			c, err := dialRaw(u, hello)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				dialErr = err
				return
			}
			for len(s.conns) <= c.fd {
				s.conns = append(s.conns, nil)
			}
			s.conns[c.fd] = c
			ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | epollET, Fd: int32(c.fd)}
			if err := syscall.EpollCtl(s.epfds[i%len(s.epfds)], syscall.EPOLL_CTL_ADD, c.fd, &ev); err != nil {
				dialErr = fmt.Errorf("epoll_ctl: %w", err)
			}
		})
	}
	dials.Wait()
	if dialErr != nil {
		s.close()
		return nil, dialErr
	}
	// The loops start once every connection is in s.conns; what the
	// servers sent meanwhile waits in the sockets.
	for _, epfd := range s.epfds {
		s.loops.Go(func() { s.loop(epfd) })
	}
	return s, nil
}

// dialRaw opens a websocket to u and sends hello once the upgrade is
// answered.
func dialRaw(u *url.URL, hello []byte) (*epollConn, error) {
	nc, err := net.DialTimeout("tcp", u.Host, time.Minute)
	if err != nil {
		return nil, err
	}
	_ = nc.SetDeadline(time.Now().Add(time.Minute))
	req := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n"
	if _, err := nc.Write([]byte(req)); err != nil {
		nc.Close()
		return nil, err
	}
	var head []byte
	buf := make([]byte, 1024)
	for !bytes.Contains(head, []byte("\r\n\r\n")) {
		k, err := nc.Read(buf)
		if err != nil {
			nc.Close()
			return nil, fmt.Errorf("upgrade response: %w", err)
		}
		head = append(head, buf[:k]...)
	}
	if !bytes.HasPrefix(head, []byte("HTTP/1.1 101 ")) {
		nc.Close()
		return nil, fmt.Errorf("upgrade refused: %q", head[:bytes.IndexByte(head, '\n')])
	}
	_, rest, _ := bytes.Cut(head, []byte("\r\n\r\n"))
	if _, err := nc.Write(hello); err != nil {
		nc.Close()
		return nil, err
	}
	// The socket leaves Go's network poller (which would otherwise wake for
	// every message too): keep a duplicate of the descriptor and close the
	// original, which takes it out of the poller's epoll set.
	c := &epollConn{fd: -1, pending: append([]byte(nil), rest...)}
	rc, err := nc.(*net.TCPConn).SyscallConn()
	if err == nil {
		err = rc.Control(func(fd uintptr) { c.fd, err = syscall.Dup(int(fd)) })
	}
	nc.Close()
	if err != nil {
		return nil, fmt.Errorf("dup: %w", err)
	}
	return c, nil
}

// clientFrame appends payload as one masked text frame (zero mask key).
func clientFrame(b, payload []byte) []byte {
	b = append(b, 0x81) // FIN, text
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xffff:
		b = append(b, 0x80|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	b = append(b, 0, 0, 0, 0)
	return append(b, payload...)
}

var pongFrame = clientFrame(nil, []byte(`{"type":"pong"}`))

// loop reads every connection epfd reports until stop. Edge-triggered: a
// level-triggered epoll checks every reported socket again at the next wait,
// which cost more than the read.
//
// After a batch the loop sleeps for batchPause before it waits again, so
// that what arrives meanwhile is read in one batch: waking up for every
// message (at 10,000 subscribers an update is 10,000 messages) cost more
// CPU than the reads themselves. A message can be recorded up to
// batchPause late; the servers measured pay nothing for it.
func (s *epollSubscribers) loop(epfd int) {
	events := make([]syscall.EpollEvent, 512)
	buf := make([]byte, 64<<10)
	for !s.stopped.Load() {
		k, err := syscall.EpollWait(epfd, events, 100)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			s.fail(fmt.Errorf("epoll_wait: %w", err))
			return
		}
		for _, ev := range events[:k] {
			c := s.conns[ev.Fd]
			for !c.closed { // edge-triggered: read until a short read has drained the socket
				m, err := syscall.Read(c.fd, buf)
				now := time.Now()
				if m > 0 {
					s.consume(c, buf[:m], now)
					if m < len(buf) {
						break
					}
					continue
				}
				switch {
				case err == syscall.EAGAIN:
				case err != nil:
					s.drop(epfd, c, fmt.Errorf("read: %w", err))
				default:
					s.drop(epfd, c, errors.New("the server closed the connection"))
				}
				break
			}
		}
		if k > 0 && k < len(events) {
			time.Sleep(batchPause)
		}
	}
}

const batchPause = 500 * time.Microsecond

// epollET is EPOLLET as the uint32 EpollEvent.Events wants it.
const epollET = 1 << 31

// consume parses the server's frames in data (after what was pending).
func (s *epollSubscribers) consume(c *epollConn, data []byte, now time.Time) {
	if len(c.pending) > 0 {
		c.pending = append(c.pending, data...)
		data = c.pending
	}
	for {
		if len(data) < 2 {
			break
		}
		op, size, hdr := data[0]&0x0f, int(data[1]&0x7f), 2
		switch size {
		case 126:
			if len(data) < 4 {
				break
			}
			size, hdr = int(binary.BigEndian.Uint16(data[2:])), 4
		case 127:
			if len(data) < 10 {
				break
			}
			size, hdr = int(binary.BigEndian.Uint64(data[2:])), 10
		}
		if size >= 126 && hdr == 2 || len(data) < hdr+size {
			break // incomplete
		}
		payload := data[hdr : hdr+size]
		data = data[hdr+size:]
		switch op {
		case 0x1: // text
			s.message(c, payload, now)
		case 0x8:
			s.fail(fmt.Errorf("the server closed a connection: %q", payload))
			c.closed = true
			return
		case 0x9, 0xa: // websocket ping or pong: not sent by the servers measured
		default:
			s.fail(fmt.Errorf("unexpected frame opcode %d", op))
		}
	}
	c.pending = append(c.pending[:0], data...) // data may alias pending: append copies forward
}

func (s *epollSubscribers) message(c *epollConn, msg []byte, now time.Time) {
	if bytes.Equal(msg, []byte(`{"type":"ping"}`)) {
		_, _ = syscall.Write(c.fd, pongFrame)
		return
	}
	v, ok := nextVersion(msg)
	if !ok {
		return
	}
	if v <= c.last {
		s.fail(fmt.Errorf("version %d after version %d on one connection", v, c.last))
		return
	}
	c.last = v
	if v == 1 {
		s.ready.Add(1)
		return
	}
	if v >= len(s.arrivals) {
		s.fail(fmt.Errorf("version %d: only up to %d expected", v, len(s.arrivals)-1))
		return
	}
	if i := s.counts[v].Add(1) - 1; int(i) < len(s.arrivals[v]) {
		s.arrivals[v][i] = now.Sub(s.base)
	} else {
		s.fail(fmt.Errorf("version %d arrived more than %d times", v, len(s.arrivals[v])))
	}
}

func (s *epollSubscribers) drop(epfd int, c *epollConn, err error) {
	c.closed = true
	_ = syscall.EpollCtl(epfd, syscall.EPOLL_CTL_DEL, c.fd, nil)
	if !s.stopped.Load() {
		s.fail(err)
	}
}

func (s *epollSubscribers) fail(err error) {
	s.errs.Add(1)
	s.lastErr.Store(&err)
}

// err is the last unexpected thing the loops saw, if any.
func (s *epollSubscribers) err() error {
	if e := s.lastErr.Load(); e != nil {
		return fmt.Errorf("%d unexpected events on the subscribers' connections, the last: %w", s.errs.Load(), *e)
	}
	return nil
}

// delivered is how many subscribers got version v.
func (s *epollSubscribers) delivered(v int) int { return int(s.counts[v].Load()) }

// latencies appends, for every subscriber that got version v, how long
// after start it arrived.
func (s *epollSubscribers) latencies(dst []time.Duration, v int, start time.Time) []time.Duration {
	from := start.Sub(s.base)
	for _, at := range s.arrivals[v][:min(s.delivered(v), len(s.arrivals[v]))] {
		dst = append(dst, at-from)
	}
	return dst
}

// close stops the loops and closes every connection (abruptly: no close
// frame; the servers measured must cope with that anyway).
func (s *epollSubscribers) close() {
	s.stopped.Store(true)
	s.loops.Wait()
	for _, fd := range s.epfds {
		syscall.Close(fd)
	}
	for _, c := range s.conns {
		if c != nil {
			syscall.Close(c.fd)
		}
	}
}
