//go:build linux

package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
)

// sendQueue returns how many bytes the established TCP socket from local
// to remote holds that its peer has not acknowledged (written by the
// process, not yet taken into the peer's receive buffer), from
// /proc/net/tcp; ok is false when there is no such IPv4 socket or it is
// no longer established (a close adds its FIN). The tests use it on the
// server's end of a loopback connection, which lives in this process but
// out of their reach: when that queue stops growing, the server's writes
// to the connection block.
func sendQueue(local, remote net.Addr) (queued int64, ok bool) {
	l, lok := procNetTCPAddr(local)
	r, rok := procNetTCPAddr(remote)
	if !lok || !rok {
		return 0, false
	}
	table, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return 0, false
	}
	// "sl local_address rem_address st tx_queue:rx_queue ...", addresses
	// as hex "ADDR:PORT".
	for _, line := range strings.Split(string(table), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || f[1] != l || f[2] != r {
			continue
		}
		if f[3] != "01" { // TCP_ESTABLISHED
			return 0, false
		}
		tx, _, found := strings.Cut(f[4], ":")
		n, err := strconv.ParseInt(tx, 16, 64)
		return n, found && err == nil
	}
	return 0, false
}

// procNetTCPAddr spells an IPv4 TCP address as /proc/net/tcp does: the
// address as the kernel holds it (network order) printed as a native
// integer, then the port.
func procNetTCPAddr(a net.Addr) (string, bool) {
	ta, ok := a.(*net.TCPAddr)
	if !ok || ta.IP.To4() == nil {
		return "", false
	}
	return fmt.Sprintf("%08X:%04X", binary.NativeEndian.Uint32(ta.IP.To4()), ta.Port), true
}
