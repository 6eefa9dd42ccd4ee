package netns_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/peerd/peerd/internal/netns"
	"github.com/peerd/peerd/internal/netutil"
	"github.com/peerd/peerd/internal/testutil"
)

func TestOpenRefusesWhatIsNotANetworkNamespace(t *testing.T) {
	file := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{file, "/proc/self/ns/uts", filepath.Join(t.TempDir(), "missing")} {
		h, err := netns.Open(path)
		if err == nil {
			h.Close()
			t.Errorf("Open(%s): no error", path)
			continue
		}
		if !strings.Contains(err.Error(), path) {
			t.Errorf("Open(%s): the error does not name the path: %v", path, err)
		}
	}
	if _, err := netns.OpenPID(0); err == nil || !strings.Contains(err.Error(), "pid 0") {
		t.Errorf("OpenPID(0): %v", err)
	}
}

func TestOwnNamespace(t *testing.T) {
	h, err := netns.Current()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var st unix.Stat_t
	runtime.LockOSThread()
	err = unix.Stat("/proc/thread-self/ns/net", &st)
	runtime.UnlockOSThread()
	if err != nil {
		t.Fatal(err)
	}
	if h.Inode() != st.Ino {
		t.Errorf("Inode = %d, stat says %d", h.Inode(), st.Ino)
	}
	c, err := h.Cookie()
	if err != nil {
		testutil.SkipIfNotSupported(t, err)
		t.Skipf("setns into our own namespace: %v (needs CAP_SYS_ADMIN)", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	own, err := netutil.NetnsCookie(ln.(syscall.Conn))
	if err != nil {
		t.Skipf("SO_NETNS_COOKIE: %v", err)
	}
	if c != own {
		t.Errorf("Cookie = %d, a socket of ours says %d", c, own)
	}
	h.Close()
	if err := h.Do(func() error { return nil }); err == nil {
		t.Error("Do on a closed handle: no error")
	}
	if err := h.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestListenInsideAChildNamespace: sockets made through the handle live in
// the child namespace (its cookie, reachable from inside only), and the
// caller's thread never leaves its own.
func TestListenInsideAChildNamespace(t *testing.T) {
	testutil.RequireRoot(t, "creates a network namespace and enters it")
	child := testutil.NewNetns(t)
	h, err := netns.Open(child.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	// Not OpenPID(os.Getpid()): the main thread may be the one NewNetns
	// moved into the child.
	own, err := netns.Current()
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	ownCookie, err := own.Cookie()
	if err != nil {
		t.Fatal(err)
	}
	cookie, err := h.Cookie()
	if err != nil {
		t.Fatal(err)
	}
	if cookie == ownCookie || cookie == 0 {
		t.Fatalf("child cookie %d, own %d", cookie, ownCookie)
	}
	if own.Inode() == h.Inode() {
		t.Fatalf("child inode equals our own (%d)", h.Inode())
	}

	ctx := context.Background()
	lc := &net.ListenConfig{Control: netutil.NewMarker(0x70d, nil).Control}
	ln, err := h.Listen(ctx, lc, "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if c, err := netutil.NetnsCookie(ln.(syscall.Conn)); err != nil || c != cookie {
		t.Fatalf("the listener's namespace cookie = %d, %v; want %d", c, err, cookie)
	}
	pc, err := h.ListenPacket(ctx, lc, "udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if c, err := netutil.NetnsCookie(pc.(syscall.Conn)); err != nil || c != cookie {
		t.Fatalf("the UDP socket's namespace cookie = %d, %v; want %d", c, err, cookie)
	}
	// The caller's own sockets are still made in its namespace.
	mine, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer mine.Close()
	if c, _ := netutil.NetnsCookie(mine.(syscall.Conn)); c != ownCookie {
		t.Fatalf("after Listen, a socket of the caller is in namespace %d, want its own %d", c, ownCookie)
	}

	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Write([]byte("hi"))
			c.Close()
		}
	}()
	var got string
	child.Run(func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Errorf("dial the listener from inside: %v", err)
			return
		}
		defer c.Close()
		buf := make([]byte, 2)
		n, _ := c.Read(buf)
		got = string(buf[:n])
		u, err := net.Dial("udp", pc.LocalAddr().String())
		if err != nil {
			t.Errorf("dial the UDP socket from inside: %v", err)
			return
		}
		defer u.Close()
		u.Write([]byte("ping"))
	})
	if got != "hi" {
		t.Fatalf("read %q from the listener inside, want hi", got)
	}
	buf := make([]byte, 8)
	n, _, err := pc.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("UDP from inside: %q, %v", buf[:n], err)
	}
	// Marked as asked: the ListenConfig's Control ran on the socket.
	raw, err := ln.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var mark int
	raw.Control(func(fd uintptr) { mark, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK) })
	if err != nil || mark != 0x70d {
		t.Errorf("listener SO_MARK = %#x, %v; want 0x70d", mark, err)
	}
}

func TestDoReportsTheFunctionsError(t *testing.T) {
	testutil.RequireRoot(t, "enters a network namespace")
	child := testutil.NewNetns(t)
	h, err := netns.Open(child.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	want := os.ErrDeadlineExceeded
	if err := h.Do(func() error { return want }); err != want {
		t.Fatalf("Do = %v, want fn's error", err)
	}
}
