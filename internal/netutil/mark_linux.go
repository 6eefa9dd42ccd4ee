package netutil

import (
	"errors"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

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
