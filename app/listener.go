package app

import (
	"log/slog"
	"net"
	"sync/atomic"
)

// capListener holds at most max connections open at once: one more is
// accepted and closed at once (the client sees the connection closed
// rather than waiting in the accept queue), and the refusal is logged at
// most every 10 s. A connection counts until it is closed.
type capListener struct {
	net.Listener
	max     int64
	open    atomic.Int64
	refused atomic.Int64
	logger  *slog.Logger
	log     every
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) > l.max {
			l.open.Add(-1)
			l.refused.Add(1)
			_ = c.Close()
			if l.log.Allow() {
				l.logger.Warn("connections refused: MAX_CONNECTIONS reached", "max", l.max, "refused_so_far", l.refused.Load())
			}
			continue
		}
		return &countedConn{Conn: c, l: l}, nil
	}
}

// countedConn gives its slot back once, when closed.
type countedConn struct {
	net.Conn
	l      *capListener
	closed atomic.Bool
}

func (c *countedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.l.open.Add(-1)
	}
	return c.Conn.Close()
}
