//go:build unix

package graph

import (
	"errors"
	"net"
	"os"
	"syscall"
	"time"
)

// fanWorker is one fan-out worker's scratch: the frame it builds and the
// state of its non-blocking write, kept here so a write allocates nothing.
type fanWorker struct {
	buf   []byte
	out   []byte
	n     int
	errno error
	write func(fd uintptr) bool
}

func newFanWorker() *fanWorker {
	w := &fanWorker{}
	w.write = func(fd uintptr) bool {
		w.n, w.errno = syscall.Write(int(fd), w.out)
		return true // done, whatever the socket took: never wait for it
	}
	return w
}

// tryWrite writes what the socket takes of f without waiting and returns
// how much that was. err is a failed socket (not one that is merely full).
func (w *fanWorker) tryWrite(rc syscall.RawConn, nc net.Conn, f []byte) (int, error) {
	w.out = f
	defer func() { w.out = nil }()
	err := rc.Write(w.write)
	if errors.Is(err, os.ErrDeadlineExceeded) { // left by a blocking write; a worker's write needs none
		_ = nc.SetWriteDeadline(time.Time{})
		err = rc.Write(w.write)
	}
	if err != nil {
		return 0, err
	}
	switch {
	case w.errno == nil:
		return w.n, nil
	case errors.Is(w.errno, syscall.EAGAIN), errors.Is(w.errno, syscall.EINTR):
		return 0, nil
	default:
		return 0, w.errno
	}
}

// rawConn is the socket under c for non-blocking writes, or nil.
func rawConn(c net.Conn) syscall.RawConn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}
