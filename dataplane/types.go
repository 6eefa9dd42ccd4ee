package dataplane

import (
	"context"
	"net"
	"net/netip"
)

// VIP is one entry of the capture map.
type VIP struct {
	Addr      netip.AddrPort
	PeerID    uint32
	ServiceID uint32
}

// Origin is what the capture layer recorded about a captured connection.
type Origin struct {
	// Dest is the address the workload dialed (a VIP:port).
	Dest      netip.AddrPort
	PeerID    uint32
	ServiceID uint32
	// CgroupID is the cgroup of the process that called connect().
	CgroupID uint64
	// NetnsCookie is the network namespace of the connection (the
	// workload's: the terminator accepted it on its listener there).
	NetnsCookie uint64
}

// NetnsEvent announces a network namespace that is not ready: a process
// there (PID, a thread group id, in cgroup CgroupID) connected to a
// virtual IP, and was refused with EPERM because the namespace is not in
// the workload set (SetWorkloadNetns). A namespace is announced at most
// about once a second while it stays not ready.
type NetnsEvent struct {
	NetnsCookie uint64
	PID         uint32
	CgroupID    uint64
}

// PeerCounters are the TC counters of one peer (all interfaces).
type PeerCounters struct {
	RxBytes, RxPackets, TxBytes, TxPackets uint64
}

// ListenInbound is lc.Listen with MPTCP turned off, so the listener can be
// given to SetInboundListener. network is "tcp", "tcp4" or "tcp6".
func ListenInbound(ctx context.Context, lc net.ListenConfig, network, address string) (net.Listener, error) {
	lc.SetMultipathTCP(false)
	return lc.Listen(ctx, network, address)
}
