package netutil

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// NetnsCookie is the cookie of the network namespace a socket belongs to
// (getsockopt SO_NETNS_COOKIE, Linux >= 5.14): the same number eBPF
// programs read with bpf_get_netns_cookie, unique for the life of the
// kernel, unlike a namespace's inode or a workload's addresses.
func NetnsCookie(c syscall.Conn) (uint64, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("netns cookie: %w", err)
	}
	var cookie uint64
	var serr error
	if err := rc.Control(func(fd uintptr) {
		cookie, serr = unix.GetsockoptUint64(int(fd), unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	}); err != nil {
		return 0, fmt.Errorf("netns cookie: %w", err)
	}
	if serr != nil {
		return 0, fmt.Errorf("netns cookie (SO_NETNS_COOKIE needs Linux >= 5.14): %w", serr)
	}
	return cookie, nil
}

// CurrentNetnsCookie is the cookie of the calling thread's network
// namespace, read from a throwaway socket made there (lock the OS thread
// first when it matters which namespace that is).
func CurrentNetnsCookie() (uint64, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("netns cookie: socket: %w", err)
	}
	defer unix.Close(fd)
	c, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	if err != nil {
		return 0, fmt.Errorf("netns cookie (SO_NETNS_COOKIE needs Linux >= 5.14): %w", err)
	}
	return c, nil
}
