package sockets

import (
	"context"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"

	"github.com/cloudflare/tableflip"
	"golang.org/x/sys/unix"
)

// Handover opens sockets through a tableflip upgrader. A socket the parent
// process passed under the same key is taken over; others are opened
// directly. Handover keeps a duplicate of every open socket, and Freeze
// hands the current set to the upgrader just before a reload, so the next
// process inherits exactly the sockets that are open then: an upstream
// listener closed at run time is not passed on.
//
// Between Freeze and Thaw (a reload in progress) a closed listener's
// duplicate is kept: an agent restarted in the same process after a failed
// reload takes the very same socket back (connections that queued in its
// backlog meanwhile are served) instead of failing to bind the address
// the duplicate still holds.
type Handover struct {
	fds    *tableflip.Fds
	mu     sync.Mutex
	held   map[heldKey]*os.File
	frozen bool
}

type heldKey struct {
	packet       bool
	network, key string
}

// NewHandover returns an Opener over fds (tableflip.Upgrader.Fds).
func NewHandover(fds *tableflip.Fds) *Handover {
	return &Handover{fds: fds, held: map[heldKey]*os.File{}}
}

// Listen takes over or opens a stream listener.
func (h *Handover) Listen(ctx context.Context, lc *net.ListenConfig, role, network, addr string) (net.Listener, error) {
	k := heldKey{false, network, Key(role, addr)}
	h.mu.Lock()
	defer h.mu.Unlock()
	var ln net.Listener
	var err error
	if f := h.held[k]; f != nil {
		if ln, err = net.FileListener(f); err != nil {
			return nil, fmt.Errorf("reopen %s listener %s: %w", role, addr, err)
		}
		return &heldListener{Listener: ln, h: h, k: k}, nil
	}
	if ln, err = h.fds.Listener(network, k.key); err != nil {
		return nil, fmt.Errorf("take over %s listener %s: %w", role, addr, err)
	}
	if ln == nil {
		if ln, err = (Direct{}).Listen(ctx, lc, role, network, addr); err != nil {
			return nil, err
		}
	}
	if err := h.holdLocked(k, ln); err != nil {
		ln.Close()
		return nil, err
	}
	return &heldListener{Listener: ln, h: h, k: k}, nil
}

// ListenPacket takes over or opens a packet socket. Packet sockets (DNS)
// live as long as the process: their duplicates are never dropped.
func (h *Handover) ListenPacket(ctx context.Context, lc *net.ListenConfig, role, network, addr string) (net.PacketConn, error) {
	k := heldKey{true, network, Key(role, addr)}
	h.mu.Lock()
	defer h.mu.Unlock()
	var pc net.PacketConn
	var err error
	if f := h.held[k]; f != nil {
		if pc, err = net.FilePacketConn(f); err != nil {
			return nil, fmt.Errorf("reopen %s socket %s: %w", role, addr, err)
		}
		return pc, nil
	}
	if pc, err = h.fds.PacketConn(network, k.key); err != nil {
		return nil, fmt.Errorf("take over %s socket %s: %w", role, addr, err)
	}
	if pc == nil {
		if pc, err = (Direct{}).ListenPacket(ctx, lc, role, network, addr); err != nil {
			return nil, err
		}
	}
	if err := h.holdLocked(k, pc); err != nil {
		pc.Close()
		return nil, err
	}
	return pc, nil
}

// holdLocked keeps a duplicate of c's descriptor under k.
func (h *Handover) holdLocked(k heldKey, c any) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return fmt.Errorf("socket %s: %T has no descriptor to keep", k.key, c)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return fmt.Errorf("keep socket %s: %w", k.key, err)
	}
	// dup(2) through Control, not File: File would not change the
	// original's mode, but Control states it plainly.
	var dup int
	var dupErr error
	if err := raw.Control(func(fd uintptr) { dup, dupErr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return fmt.Errorf("keep socket %s: %w", k.key, err)
	}
	if dupErr != nil {
		return fmt.Errorf("keep socket %s: dup: %w", k.key, dupErr)
	}
	h.held[k] = os.NewFile(uintptr(dup), k.key)
	return nil
}

// Freeze starts a reload: it registers the open sockets with the upgrader
// (so the next process inherits them) and from now on closing a listener
// keeps its socket for a restart in this process.
func (h *Handover) Freeze() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.frozen = true
	for k, f := range h.held {
		if err := h.offerLocked(k, f); err != nil {
			return fmt.Errorf("offer socket %s to the next process: %w", k.key, err)
		}
	}
	return nil
}

// offerLocked registers f with the upgrader, which dups it again.
func (h *Handover) offerLocked(k heldKey, f *os.File) error {
	if k.packet {
		pc, err := net.FilePacketConn(f)
		if err != nil {
			return err
		}
		defer pc.Close()
		c, ok := pc.(tableflip.PacketConn)
		if !ok {
			return fmt.Errorf("%T is not a socket", pc)
		}
		return h.fds.AddPacketConn(k.network, k.key, c)
	}
	ln, err := net.FileListener(f)
	if err != nil {
		return err
	}
	defer ln.Close()
	l, ok := ln.(tableflip.Listener)
	if !ok {
		return fmt.Errorf("%T is not a socket", ln)
	}
	return h.fds.AddListener(k.network, k.key, l)
}

// Thaw ends a reload that failed: closing a listener releases its socket
// again.
func (h *Handover) Thaw() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.frozen = false
}

// Keys lists the keys of the sockets held, for logs and tests.
func (h *Handover) Keys() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var keys []string
	for k := range h.held {
		keys = append(keys, k.network+":"+k.key)
	}
	return keys
}

// heldListener drops its socket's duplicate when closed outside a reload,
// so an upstream listener the agent closes stops listening.
type heldListener struct {
	net.Listener
	h    *Handover
	k    heldKey
	once sync.Once
}

func (l *heldListener) Close() error {
	err := l.Listener.Close()
	l.once.Do(func() {
		l.h.mu.Lock()
		defer l.h.mu.Unlock()
		if f := l.h.held[l.k]; f != nil && !l.h.frozen {
			_ = f.Close()
			delete(l.h.held, l.k)
		}
	})
	return err
}
