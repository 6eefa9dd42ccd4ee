//go:build !linux

package dataplane

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"

	"github.com/peerd/peerd/internal/cgroupfs"
)

// notLinux is the error of every entry point outside Linux.
func notLinux(op string) error {
	return fmt.Errorf("dataplane: %s: eBPF on %s: %w", op, runtime.GOOS, ErrNotSupported)
}

// Dataplane is a loaded set of layers; outside Linux there never is one.
type Dataplane struct {
	cfg Config
}

// New validates cfg, then returns an error that matches ErrNotSupported:
// the eBPF layers need Linux.
func New(cfg Config) (*Dataplane, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return nil, notLinux("load")
}

// Start loads nothing outside Linux.
func (d *Dataplane) Start() error { return notLinux("load") }

// Cleanup removes nothing outside Linux: there are no pins.
func Cleanup(string) error { return notLinux("cleanup") }

// CgroupID is cgroupfs.ID, which needs Linux's cgroup v2.
func CgroupID(path string) (uint64, error) { return cgroupfs.ID(path) }

func checkNetns(path string) error { return notLinux("netns " + path) }

func checkCgroup(path string, _ bool) error { return notLinux("cgroup " + path) }

// Close releases nothing.
func (d *Dataplane) Close(context.Context) error { return nil }

// Cleanup removes nothing.
func (d *Dataplane) Cleanup(context.Context) error { return notLinux("cleanup") }

// Status reports every requested layer off.
func (d *Dataplane) Status() Status {
	err := notLinux("load")
	off := func(on bool) LayerStatus {
		if !on {
			return LayerStatus{}
		}
		return LayerStatus{Enabled: true, Err: err, Reason: err.Error()}
	}
	return Status{
		Kernel:   runtime.GOOS,
		PinDir:   d.cfg.pinDir(),
		Capture:  off(d.cfg.Capture),
		FastPath: off(d.cfg.FastPath),
		TC:       off(len(d.cfg.Interfaces) > 0),
		Inbound:  off(len(d.cfg.InboundPrefixes) > 0),
	}
}

// SetVIP needs the capture layer.
func (d *Dataplane) SetVIP(netip.Addr, uint16, uint32, uint32) error { return notLinux("set VIP") }

// DeleteVIP needs the capture layer.
func (d *Dataplane) DeleteVIP(netip.Addr, uint16) error { return notLinux("delete VIP") }

// VIPs needs the capture layer.
func (d *Dataplane) VIPs() ([]VIP, error) { return nil, notLinux("list VIPs") }

// OriginalDestination needs the capture layer.
func (d *Dataplane) OriginalDestination(net.Conn) (netip.AddrPort, uint64, bool, error) {
	return netip.AddrPort{}, 0, false, notLinux("original destination")
}

// Origin needs the capture layer.
func (d *Dataplane) Origin(net.Conn) (Origin, bool, error) {
	return Origin{}, false, notLinux("original destination")
}

// SetFastPathPorts needs the fast-path layer.
func (d *Dataplane) SetFastPathPorts([]uint16) error { return notLinux("fast-path ports") }

// SetPeerAddr needs the TC layer.
func (d *Dataplane) SetPeerAddr(netip.Addr, uint32) error { return notLinux("set peer address") }

// PeerCounters needs the TC layer.
func (d *Dataplane) PeerCounters() (map[uint32]PeerCounters, error) {
	return nil, notLinux("peer counters")
}

// SetInboundListener needs the inbound layer.
func (d *Dataplane) SetInboundListener(net.Listener) error { return notLinux("inbound listener") }

// ClearInboundListeners needs the inbound layer.
func (d *Dataplane) ClearInboundListeners() error { return notLinux("clear inbound listeners") }

// SetInboundPrefixes needs the inbound layer.
func (d *Dataplane) SetInboundPrefixes([]netip.Prefix) error { return notLinux("inbound prefixes") }

// InboundPrefixes needs the inbound layer.
func (d *Dataplane) InboundPrefixes() ([]netip.Prefix, error) {
	return nil, notLinux("inbound prefixes")
}

// SetWorkloadNetns needs the capture layer.
func (d *Dataplane) SetWorkloadNetns(uint64) error { return notLinux("set workload netns") }

// DeleteWorkloadNetns needs the capture layer.
func (d *Dataplane) DeleteWorkloadNetns(uint64) error { return notLinux("delete workload netns") }

// WorkloadNetns needs the capture layer.
func (d *Dataplane) WorkloadNetns() ([]uint64, error) { return nil, notLinux("list workload netns") }

// ReadNetnsEvent needs the capture layer.
func (d *Dataplane) ReadNetnsEvent(context.Context) (NetnsEvent, error) {
	return NetnsEvent{}, notLinux("read netns event")
}
