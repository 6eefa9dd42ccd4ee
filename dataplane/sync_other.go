//go:build !linux

package dataplane

// Sync needs Linux's eBPF maps.
func (d *Dataplane) Sync(Desired) error { return notLinux("sync") }

// PeerIDs needs Linux's eBPF maps.
func (d *Dataplane) PeerIDs() (map[string]uint32, error) { return nil, notLinux("peer ids") }

// PeerCountersByName needs Linux's eBPF maps.
func (d *Dataplane) PeerCountersByName() (map[string]PeerCounters, error) {
	return nil, notLinux("peer counters")
}

// PeerAddrs needs Linux's eBPF maps.
func (d *Dataplane) PeerAddrs() ([]PeerAddr, error) { return nil, notLinux("peer addresses") }
