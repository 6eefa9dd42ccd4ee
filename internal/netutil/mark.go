// Package netutil holds socket options the daemon's packages share; it is
// the one place outside the dataplane that talks to the kernel directly. It
// defines ErrNotSupported, peerd's one sentinel for "the kernel or the
// platform lacks this" (the dataplane re-exports it). It imports nothing of
// ours.
//
// Marks are Linux's (SO_MARK, *_linux.go). Elsewhere a Marker with a mark
// turns itself off on first use, reporting an error that matches
// ErrNotSupported to OnDeny, and Mark returns such an error.
package netutil

import (
	"errors"
	"net"
	"sync/atomic"
	"syscall"
)

// ErrNotSupported: the kernel or the platform lacks a feature. Errors wrap
// it with the feature's name; it is never returned bare.
var ErrNotSupported = errors.New("not supported")

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
