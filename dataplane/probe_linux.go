package dataplane

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"
)

// requirement is one kernel feature a layer needs.
type requirement struct {
	name  string
	probe func() error
}

func progType(pt ebpf.ProgramType) requirement {
	return requirement{"program type " + pt.String(), func() error { return features.HaveProgramType(pt) }}
}

func mapType(mt ebpf.MapType) requirement {
	return requirement{"map type " + mt.String(), func() error { return features.HaveMapType(mt) }}
}

func helperFn(pt ebpf.ProgramType, fn asm.BuiltinFunc) requirement {
	return requirement{fmt.Sprintf("helper %s in %s", fn, pt), func() error { return features.HaveProgramHelper(pt, fn) }}
}

var (
	captureNeeds = []requirement{
		progType(ebpf.CGroupSockAddr),
		progType(ebpf.SockOps),
		mapType(ebpf.LRUHash),
		mapType(ebpf.PerCPUArray),
		helperFn(ebpf.CGroupSockAddr, asm.FnGetSocketCookie),
		helperFn(ebpf.CGroupSockAddr, asm.FnGetCurrentCgroupId),
		helperFn(ebpf.SockOps, asm.FnGetSocketCookie),
		// Workload namespaces: connects from a namespace that is not
		// ready are announced on a ring buffer (5.8).
		helperFn(ebpf.CGroupSockAddr, asm.FnGetNetnsCookie),
		mapType(ebpf.RingBuf),
		helperFn(ebpf.CGroupSockAddr, asm.FnRingbufOutput),
	}
	// captureNetnsNeeds: the capture layer's workload-namespace mode (keys
	// with the netns cookie, the namespace check in connect4/6). sock_ops
	// has bpf_get_netns_cookie from 5.15, SO_NETNS_COOKIE is 5.14; below,
	// the layer loads without the mode (netns_aware 0).
	captureNetnsNeeds = []requirement{
		helperFn(ebpf.SockOps, asm.FnGetNetnsCookie),
		{"SO_NETNS_COOKIE", func() error { _, err := ownNetnsCookie(); return err }},
	}
	fastPathNeeds = []requirement{
		progType(ebpf.SockOps),
		progType(ebpf.SkMsg),
		mapType(ebpf.SockHash),
		helperFn(ebpf.SockOps, asm.FnSockHashUpdate),
		helperFn(ebpf.SkMsg, asm.FnMsgRedirectHash),
	}
	// fastPathNetnsNeeds: SOCKHASH keys with the netns cookie (5.15 for
	// both); below, keys carry 0 and the fast path serves the loopback of
	// one namespace per tuple.
	fastPathNetnsNeeds = []requirement{
		helperFn(ebpf.SockOps, asm.FnGetNetnsCookie),
		helperFn(ebpf.SkMsg, asm.FnGetNetnsCookie),
	}
	tcNeeds = []requirement{
		progType(ebpf.SchedCLS),
		mapType(ebpf.PerCPUHash),
		helperFn(ebpf.SchedCLS, asm.FnSkbLoadBytes),
	}
	inboundNeeds = []requirement{
		progType(ebpf.SkLookup),
		mapType(ebpf.LPMTrie),
		mapType(ebpf.SockMap),
		mapType(ebpf.PerCPUArray),
		helperFn(ebpf.SkLookup, asm.FnSkAssign),
		helperFn(ebpf.SkLookup, asm.FnSkRelease),
	}
)

// probe returns nil when every requirement is met, else an error naming the
// first missing one. A non-nil error of override (Config.probeOverride)
// replaces the kernel's answer.
func probe(layer string, reqs []requirement, override func(layer, feature string) error) error {
	for _, r := range reqs {
		err := r.probe()
		if override != nil {
			if herr := override(layer, r.name); herr != nil {
				err = herr
			}
		}
		if err != nil {
			if errors.Is(err, ebpf.ErrNotSupported) {
				return fmt.Errorf("kernel lacks %s: %w", r.name, err)
			}
			return fmt.Errorf("probing %s: %w", r.name, err)
		}
	}
	return nil
}

// kernelRelease returns uname -r.
func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}
