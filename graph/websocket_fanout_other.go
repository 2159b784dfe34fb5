//go:build !unix

package graph

import (
	"errors"
	"net"
	"syscall"
)

// fanWorker is unused where the socket cannot be written without waiting:
// rawConn is nil, so every writer turn runs on its own goroutine.
type fanWorker struct{ buf []byte }

func newFanWorker() *fanWorker { return &fanWorker{} }

func (w *fanWorker) tryWrite(syscall.RawConn, net.Conn, []byte) (int, error) {
	return 0, errors.New("non-blocking writes are not supported on this platform")
}

func rawConn(net.Conn) syscall.RawConn { return nil }
