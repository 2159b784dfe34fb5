package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// conns is a pool of keep-alive HTTP/1.1 connections to one GraphQL
// endpoint, each used by one request at a time. The load shares the
// machine's cores with the systems it measures, so it speaks HTTP as lean
// load generators (wrk, h2load) do: a request is written from one buffer
// and its answer read on the caller's goroutine, where net/http's client
// spends two goroutines per connection, their hand-offs and header maps
// (it took 0.2 ms of CPU per order at 32 clients, a tenth of the
// machine's). Both systems under test are driven through it.
type conns struct {
	addr, host, path string
	timeout          time.Duration // of a whole request

	mu      sync.Mutex
	idle    []*conn
	maxIdle int
	closed  bool
}

// maxAnswer bounds an answer's body.
const maxAnswer = 16 << 20

func newConns(rawURL string, maxIdle int, timeout time.Duration) (*conns, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("%s: the load speaks plain http only", rawURL)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	path := u.RequestURI()
	return &conns{addr: addr, host: u.Host, path: path, timeout: timeout, maxIdle: maxIdle}, nil
}

// conn is one connection and its buffers.
type conn struct {
	nc  net.Conn
	br  *bufio.Reader
	req []byte
	ans []byte
}

// get is an idle connection (reused), or a new one when fresh is set or
// none is idle.
func (p *conns) get(ctx context.Context, fresh bool) (c *conn, reused bool, err error) {
	if !fresh {
		p.mu.Lock()
		if n := len(p.idle); n > 0 {
			c := p.idle[n-1]
			p.idle = p.idle[:n-1]
			p.mu.Unlock()
			return c, true, nil
		}
		p.mu.Unlock()
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, false, err
	}
	return &conn{nc: nc, br: bufio.NewReaderSize(nc, 16<<10)}, false, nil
}

func (p *conns) put(c *conn) {
	p.mu.Lock()
	if !p.closed && len(p.idle) < p.maxIdle {
		p.idle = append(p.idle, c)
		c = nil
	}
	p.mu.Unlock()
	if c != nil {
		_ = c.nc.Close()
	}
}

// close closes the idle connections and those given back later.
func (p *conns) close() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, c := range idle {
		_ = c.nc.Close()
	}
}

// errNoAnswer is a connection that failed before any byte of the answer
// came: a kept-alive connection the server had closed.
var errNoAnswer = errors.New("the connection closed before an answer")

// post sends body (JSON) with the bearer token and calls read with the
// answer's status and body, which is only valid during the call. A
// request on a kept-alive connection that the server had closed is sent
// once more on a new connection (the load's mutations carry idempotency
// keys).
func (p *conns) post(ctx context.Context, bearer string, body []byte, read func(status int, answer []byte) error) error {
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		c, reused, err := p.get(ctx, attempt > 0)
		if err != nil {
			return err
		}
		status, answer, keep, err := c.roundTrip(ctx, p, bearer, body)
		if err != nil {
			_ = c.nc.Close()
			if errors.Is(err, errNoAnswer) && reused && attempt == 0 && !isTimeout(err) {
				continue
			}
			return err
		}
		err = read(status, answer)
		if keep {
			p.put(c)
		} else {
			_ = c.nc.Close()
		}
		return err
	}
}

func (c *conn) roundTrip(ctx context.Context, p *conns, bearer string, body []byte) (status int, answer []byte, keep bool, err error) {
	deadline := time.Now().Add(p.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := c.nc.SetDeadline(deadline); err != nil {
		return 0, nil, false, err
	}
	stop := context.AfterFunc(ctx, func() { _ = c.nc.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		if !stop() {
			keep = false // the context's deadline may land on the next request
		}
	}()

	b := append(c.req[:0], "POST "...)
	b = append(b, p.path...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, p.host...)
	b = append(b, "\r\nContent-Type: application/json\r\nAuthorization: Bearer "...)
	b = append(b, bearer...)
	b = append(b, "\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	b = append(b, body...)
	c.req = b
	if _, err := c.nc.Write(b); err != nil {
		return 0, nil, false, fmt.Errorf("%w: %w", errNoAnswer, err)
	}
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		if len(line) == 0 && (errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err)) {
			return 0, nil, false, errNoAnswer
		}
		return 0, nil, false, err
	}
	// HTTP/1.1 200 OK
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, nil, false, fmt.Errorf("not an HTTP answer: %.40q", line)
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, nil, false, fmt.Errorf("not an HTTP status: %.40q", line)
	}
	length, chunked := -1, false
	keep = line[7] == '1' // HTTP/1.1 keeps the connection unless it says otherwise
	for {
		h, err := c.br.ReadSlice('\n')
		if err != nil {
			return 0, nil, false, err
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		name, value, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			continue
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil || length < 0 {
				return 0, nil, false, fmt.Errorf("bad Content-Length %.20q", value)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			if bytes.EqualFold(value, []byte("close")) {
				keep = false
			}
		}
	}
	switch {
	case status < 200: // an interim answer (none is asked for): the final one is not read
		answer, keep = c.ans[:0], false
	case status == 204 || status == 304:
		answer = c.ans[:0] // no body
	case chunked:
		if answer, err = readAtMost(httputil.NewChunkedReader(c.br)); err == nil {
			err = c.skipTrailer()
		}
	case length >= 0:
		if length > maxAnswer {
			return 0, nil, false, fmt.Errorf("an answer of %d bytes", length)
		}
		if cap(c.ans) < length {
			c.ans = make([]byte, length)
		}
		answer = c.ans[:length]
		_, err = io.ReadFull(c.br, answer)
	default:
		keep = false
		answer, err = readAtMost(c.br)
	}
	if err != nil {
		return 0, nil, false, err
	}
	c.ans = answer[:0]
	return status, answer, keep, nil
}

// skipTrailer reads the trailer of a chunked body, up to its empty line
// (the chunked reader stops after the last chunk's size).
func (c *conn) skipTrailer() error {
	for range 64 {
		line, err := c.br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			return nil
		}
	}
	return errors.New("a chunked answer's trailer is too long")
}

func readAtMost(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxAnswer+1))
	if err == nil && len(b) > maxAnswer {
		err = fmt.Errorf("an answer over %d bytes", maxAnswer)
	}
	return b, err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func isReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne) && !ne.Timeout()
}
