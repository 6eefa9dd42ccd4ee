//go:build !linux

package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
)

// Handle is an open network namespace (Linux only).
type Handle struct{}

var errNotLinux = errors.New("network namespaces are Linux's")

// Open fails: network namespaces are Linux's.
func Open(path string) (*Handle, error) {
	return nil, fmt.Errorf("open network namespace %s: %w", path, errNotLinux)
}

// Current fails: network namespaces are Linux's.
func Current() (*Handle, error) {
	return nil, fmt.Errorf("open the current network namespace: %w", errNotLinux)
}

// OpenPID fails: network namespaces are Linux's.
func OpenPID(pid int) (*Handle, error) {
	return nil, fmt.Errorf("open network namespace of pid %d: %w", pid, errNotLinux)
}

func (h *Handle) Path() string             { return "" }
func (h *Handle) Inode() uint64            { return 0 }
func (h *Handle) Cookie() (uint64, error)  { return 0, errNotLinux }
func (h *Handle) Close() error             { return nil }
func (h *Handle) Do(fn func() error) error { return errNotLinux }
func (h *Handle) Listen(ctx context.Context, lc *net.ListenConfig, network, addr string) (net.Listener, error) {
	return nil, errNotLinux
}
func (h *Handle) ListenPacket(ctx context.Context, lc *net.ListenConfig, network, addr string) (net.PacketConn, error) {
	return nil, errNotLinux
}
