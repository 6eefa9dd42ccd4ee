//go:build !linux

package dataplane

import "fmt"

// Sync needs Linux's eBPF maps.
func (d *Dataplane) Sync(Desired) error {
	return fmt.Errorf("sync the dataplane: %w", ErrNotSupported)
}

// PeerIDs needs Linux's eBPF maps.
func (d *Dataplane) PeerIDs() (map[string]uint32, error) {
	return nil, fmt.Errorf("peer ids: %w", ErrNotSupported)
}

// PeerCountersByName needs Linux's eBPF maps.
func (d *Dataplane) PeerCountersByName() (map[string]PeerCounters, error) {
	return nil, fmt.Errorf("peer counters: %w", ErrNotSupported)
}

// PeerAddrs needs Linux's eBPF maps.
func (d *Dataplane) PeerAddrs() ([]PeerAddr, error) {
	return nil, fmt.Errorf("peer addresses: %w", ErrNotSupported)
}
