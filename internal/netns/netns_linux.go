package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/peerd/peerd/internal/netutil"
)

// Handle is an open network namespace.
type Handle struct {
	f     *os.File
	path  string
	inode uint64

	mu     sync.Mutex
	cookie uint64
	closed bool
}

// Open opens the network namespace file at path (/proc/<pid>/ns/net,
// /run/netns/<name>, ...). It fails when path is not a network namespace.
func Open(path string) (*Handle, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open network namespace %s: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("stat network namespace %s: %w", path, err)
	}
	// NS_GET_NSTYPE tells a network namespace from any other file.
	t, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_NSTYPE)
	if err != nil || t != unix.CLONE_NEWNET {
		f.Close()
		if err == nil {
			err = fmt.Errorf("namespace type %#x", t)
		}
		return nil, fmt.Errorf("%s is not a network namespace: %w", path, err)
	}
	return &Handle{f: f, path: path, inode: st.Ino}, nil
}

// OpenPID opens the network namespace process pid runs in.
func OpenPID(pid int) (*Handle, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("open network namespace: pid %d is not a process id", pid)
	}
	return Open("/proc/" + strconv.Itoa(pid) + "/ns/net")
}

// Current opens the network namespace the caller's goroutines run in
// (peerd's own). It reads the calling thread's namespace on a locked
// thread: /proc/<pid>/ns/net is the main thread's, which may be in
// another namespace while it serves a Do (or a test's locked thread).
func Current() (*Handle, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return Open("/proc/thread-self/ns/net")
}

// Path is the file the namespace was opened from.
func (h *Handle) Path() string { return h.path }

// Inode is the namespace's inode number (nsfs), as `ls -iL` prints it.
func (h *Handle) Inode() uint64 { return h.inode }

// Cookie is the namespace's cookie (SO_NETNS_COOKIE of a socket made
// inside it), read once and remembered.
func (h *Handle) Cookie() (uint64, error) {
	h.mu.Lock()
	c := h.cookie
	h.mu.Unlock()
	if c != 0 {
		return c, nil
	}
	err := h.Do(func() error {
		var err error
		c, err = netutil.CurrentNetnsCookie()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("cookie of network namespace %s: %w", h.path, err)
	}
	h.mu.Lock()
	h.cookie = c
	h.mu.Unlock()
	return c, nil
}

// Close releases the namespace (it goes away once nothing else holds it:
// no process, no socket, no other handle). Idempotent.
func (h *Handle) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil
	}
	h.closed = true
	if err := h.f.Close(); err != nil {
		return fmt.Errorf("close network namespace %s: %w", h.path, err)
	}
	return nil
}

// errClosed is returned by Do on a closed handle.
var errClosed = errors.New("the namespace handle is closed")

// Do runs fn on an OS thread moved into the namespace and waits for it.
// fn must not start goroutines that create sockets (they would run
// elsewhere) and must not block for long: it holds an OS thread.
func (h *Handle) Do(fn func() error) error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return fmt.Errorf("enter network namespace %s: %w", h.path, errClosed)
	}
	// Dup so that a Close while fn runs cannot pull the fd away.
	fd, err := unix.FcntlInt(h.f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	h.mu.Unlock()
	if err != nil {
		return fmt.Errorf("enter network namespace %s: dup: %w", h.path, err)
	}
	defer unix.Close(fd)
	errc := make(chan error, 1)
	// A goroutine of its own, so the caller's thread (and its lock state)
	// is never touched.
	go func() {
		runtime.LockOSThread()
		back, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter network namespace %s: open the current namespace: %w", h.path, err)
			return
		}
		defer back.Close()
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter network namespace %s: setns (needs CAP_SYS_ADMIN): %w", h.path, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(back.Fd()), unix.CLONE_NEWNET); err != nil {
			// Stay locked: the goroutine ends locked and the runtime
			// ends the thread instead of reusing it in the wrong
			// namespace.
			errc <- errors.Join(ferr, fmt.Errorf("return from network namespace %s: setns: %w", h.path, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Listen opens a stream listener (lc.Listen) inside the namespace. ctx
// bounds the listen call only.
func (h *Handle) Listen(ctx context.Context, lc *net.ListenConfig, network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := h.Do(func() error {
		var err error
		ln, err = lc.Listen(ctx, network, addr)
		return err
	})
	if err != nil {
		if ln != nil {
			ln.Close()
		}
		return nil, fmt.Errorf("listen on %s %s in network namespace %s: %w", network, addr, h.path, err)
	}
	return ln, nil
}

// ListenPacket opens a packet socket (lc.ListenPacket) inside the
// namespace.
func (h *Handle) ListenPacket(ctx context.Context, lc *net.ListenConfig, network, addr string) (net.PacketConn, error) {
	var pc net.PacketConn
	err := h.Do(func() error {
		var err error
		pc, err = lc.ListenPacket(ctx, network, addr)
		return err
	})
	if err != nil {
		if pc != nil {
			pc.Close()
		}
		return nil, fmt.Errorf("listen on %s %s in network namespace %s: %w", network, addr, h.path, err)
	}
	return pc, nil
}
