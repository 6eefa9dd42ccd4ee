// Package guest holds checks that run only inside a vmtests VM (make
// vmtest): which of peerd's eBPF programs each kernel accepts, with the
// full verifier log when one is refused, and which attach mode each
// dataplane layer picks on its own (TCMode auto).
package guest

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"

	"github.com/peerd/peerd/bpf"
	"github.com/peerd/peerd/dataplane"
	"github.com/peerd/peerd/internal/testutil"
	"github.com/peerd/peerd/vmtests"
)

// inGuest skips t outside a vmtests guest: these checks load programs and
// attach them, which is the VM's business, not the host's.
func inGuest(t *testing.T) {
	t.Helper()
	if os.Getenv("PEERD_VMTEST_GUEST") != "1" || os.Getpid() == 1 || os.Geteuid() != 0 {
		t.Skip("runs only inside a vmtests VM (make vmtest, or go test -exec vmexec)")
	}
}

// TestProgramsLoad loads every program of bpf/ (maps unpinned) and, when
// the kernel refuses one, prints the whole verifier log.
func TestProgramsLoad(t *testing.T) {
	inGuest(t)
	// 5.10 charges maps to RLIMIT_MEMLOCK; the dataplane's Start lifts it too.
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatalf("lift RLIMIT_MEMLOCK: %v", err)
	}
	for _, obj := range []struct {
		name string
		load func() (*ebpf.CollectionSpec, error)
	}{
		{"capture", bpf.LoadCapture},
		{"fastpath", bpf.LoadFastpath},
		{"tc", bpf.LoadTc},
		{"inbound", bpf.LoadInbound},
	} {
		t.Run(obj.name, func(t *testing.T) {
			spec, err := obj.load()
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range spec.Maps {
				m.Pinning = ebpf.PinNone
			}
			coll, err := ebpf.NewCollection(spec)
			if err != nil {
				// %+v: every line of the verifier log, not its summary.
				t.Fatalf("kernel refused %s:\n%+v", obj.name, err)
			}
			defer coll.Close()
			names := make([]string, 0, len(coll.Programs))
			for n := range coll.Programs {
				names = append(names, n)
			}
			t.Logf("loaded %s: %s", obj.name, strings.Join(names, " "))
		})
	}
}

// TestAttachModes loads every layer with TCMode auto in a private network
// namespace and a child cgroup, and logs the attach mode each picked as
// "ATTACH-MODES layer=mode ..." (make vmtest puts them in its table).
func TestAttachModes(t *testing.T) {
	inGuest(t)
	cg := testutil.NewCgroup(t)
	pinDir := filepath.Join("/sys/fs/bpf", testutil.UniqueName("peerd-vmtest-"))
	defer func() { _ = dataplane.Cleanup(pinDir) }()

	var st dataplane.Status
	var err error
	ns := testutil.NewNetns(t)
	ns.Run(func() {
		var dp *dataplane.Dataplane
		dp, err = dataplane.New(dataplane.Config{
			CgroupPath: cg, Capture: true, FastPath: true,
			ListenerV4: netip.MustParseAddr("127.0.0.1"), ListenerPort: 15001,
			Interfaces:      []string{"lo"},
			InboundPrefixes: []netip.Prefix{netip.MustParsePrefix("10.99.0.0/24")},
			InboundPorts:    [2]uint16{1, 65535}, InboundNetns: ns.Path(),
			PinDir: pinDir,
		})
		if err != nil {
			return
		}
		if err = dp.Start(); err == nil {
			st = dp.Status()
		}
		_ = dp.Cleanup(context.Background())
	})
	if err != nil {
		t.Fatalf("load the dataplane: %+v", err)
	}
	// What the README's kernel requirements table (vmtests.Requirements)
	// says this kernel does: each layer on from its minimum kernel (off
	// with the kernel's reason below it), TC with TCX from 6.6 and clsact
	// before.
	atLeast := func(layer string) bool {
		t.Helper()
		min, err := vmtests.MinKernel(layer)
		if err != nil {
			t.Fatal(err)
		}
		ok, err := vmtests.KernelAtLeast(st.Kernel, min)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	var modes []string
	for _, l := range []struct {
		name string
		st   dataplane.LayerStatus
		want string // attach mode from the layer's minimum kernel
	}{
		{"capture", st.Capture, "cgroup-link"},
		{"fastpath", st.FastPath, "cgroup-link"},
		{"tc", st.TC, map[bool]string{true: "tcx", false: "clsact"}[atLeast("tc/tcx")]},
		{"inbound", st.Inbound, "netns-link"},
	} {
		mode := l.st.AttachMode
		if !l.st.Loaded {
			mode = "off"
		}
		switch {
		case !atLeast(l.name):
			if l.st.Loaded || l.st.Err == nil {
				t.Errorf("kernel %s is older than layer %s needs: got %+v, want off with the kernel's reason", st.Kernel, l.name, l.st)
			}
		case !l.st.Loaded:
			t.Errorf("layer %s not loaded: %v", l.name, l.st.Err)
		case mode != l.want:
			t.Errorf("layer %s on kernel %s: attach mode %s, want %s", l.name, st.Kernel, mode, l.want)
		}
		modes = append(modes, l.name+"="+mode)
	}
	b, _ := json.Marshal(st)
	t.Logf("status: %s", b)
	t.Logf("ATTACH-MODES %s", strings.Join(modes, " "))
}
