// Package netutil holds socket options the daemon's packages share; it is
// the one place outside the dataplane that talks to the kernel directly.
package netutil

import (
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// Marker sets SO_MARK on sockets. Without CAP_NET_ADMIN the first failure
// turns it off (OnDeny is called once) rather than failing every
// connection: marks matter only to the eBPF layer, which needs the same
// privilege to load.
type Marker struct {
	mark     int
	disabled atomic.Bool
	onDeny   func(error)
}

// NewMarker returns a Marker for mark (0 = none); onDeny, if not nil, is
// called once when the kernel refuses the mark.
func NewMarker(mark int, onDeny func(error)) *Marker {
	return &Marker{mark: mark, onDeny: onDeny}
}

// Control is a net.Dialer / net.ListenConfig Control function.
func (m *Marker) Control(_, _ string, c syscall.RawConn) error {
	if m == nil || m.mark == 0 || m.disabled.Load() {
		return nil
	}
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, m.mark)
	}); err != nil {
		return fmt.Errorf("set SO_MARK: %w", err)
	}
	if serr != nil {
		if errors.Is(serr, unix.EPERM) {
			if m.disabled.CompareAndSwap(false, true) && m.onDeny != nil {
				m.onDeny(serr)
			}
			return nil
		}
		return fmt.Errorf("set SO_MARK %#x: %w", m.mark, serr)
	}
	return nil
}

// MarkConn marks an accepted connection (accepted sockets do not inherit
// the listener's mark).
func (m *Marker) MarkConn(c net.Conn) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return
	}
	if raw, err := sc.SyscallConn(); err == nil {
		_ = m.Control("", "", raw)
	}
}

// Enabled reports whether marks are being set.
func (m *Marker) Enabled() bool { return m != nil && m.mark != 0 && !m.disabled.Load() }

// Mark reads the SO_MARK of a connection's socket.
func Mark(c net.Conn) (int, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0, fmt.Errorf("read SO_MARK: %T has no socket", c)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("read SO_MARK: %w", err)
	}
	var mark int
	var gerr error
	if err := raw.Control(func(fd uintptr) {
		mark, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK)
	}); err != nil {
		return 0, fmt.Errorf("read SO_MARK: %w", err)
	}
	if gerr != nil {
		return 0, fmt.Errorf("read SO_MARK: %w", gerr)
	}
	return mark, nil
}
