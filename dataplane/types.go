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
