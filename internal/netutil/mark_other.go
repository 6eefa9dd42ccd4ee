//go:build !linux

package netutil

import (
	"fmt"
	"net"
	"runtime"
	"syscall"
)

// errNoMark is what a mark costs outside Linux.
var errNoMark = fmt.Errorf("SO_MARK on %s: %w", runtime.GOOS, ErrNotSupported)

// Control is a net.Dialer / net.ListenConfig Control function. Without
// SO_MARK a Marker with a mark turns itself off at the first socket, as on
// a Linux kernel that refuses the mark: OnDeny is called once with an
// error that matches ErrNotSupported, and the socket is left unmarked.
func (m *Marker) Control(_, _ string, _ syscall.RawConn) error {
	if m == nil || m.mark == 0 || m.disabled.Load() {
		return nil
	}
	if m.disabled.CompareAndSwap(false, true) && m.onDeny != nil {
		m.onDeny(errNoMark)
	}
	return nil
}

// Mark reads the SO_MARK of a connection's socket: never outside Linux.
func Mark(net.Conn) (int, error) {
	return 0, fmt.Errorf("read %w", errNoMark)
}
