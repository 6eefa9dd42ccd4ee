package dataplane

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/peerd/peerd/internal/testutil"
)

// TestConfigErrors: bad input is refused before anything is loaded.
func TestConfigErrors(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	vips := []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"missing cgroup", Config{Capture: true, CgroupPath: "/sys/fs/cgroup/unified/peerd-does-not-exist", ListenerV4: lo, ListenerPort: 1}, "no such file"},
		{"not a cgroup", Config{Capture: true, CgroupPath: os.TempDir(), ListenerV4: lo, ListenerPort: 1}, "not a cgroup v2 directory"},
		{"no cgroup", Config{Capture: true, ListenerV4: lo, ListenerPort: 1}, "CgroupPath is required"},
		{"unknown interface", Config{Interfaces: []string{"peerd-nope0"}}, `interface "peerd-nope0"`},
		{"bad TC mode", Config{Interfaces: []string{"lo"}, TCMode: "xdp"}, "unknown TCMode"},
		// The inbound cases never name the caller's network namespace:
		// should validation let one through, nothing attaches to it.
		{"inbound without netns", Config{InboundPrefixes: vips, InboundPorts: [2]uint16{1, 2}}, "InboundNetns is required"},
		{"inbound without ports", Config{InboundPrefixes: vips, InboundNetns: "/proc/self/ns/uts"}, "not a port range"},
		{"inbound reversed ports", Config{InboundPrefixes: vips, InboundPorts: [2]uint16{10, 5}, InboundNetns: "/proc/self/ns/uts"}, "not a port range"},
		{"inbound invalid prefix", Config{InboundPrefixes: []netip.Prefix{{}}, InboundPorts: [2]uint16{1, 2}, InboundNetns: "/proc/self/ns/uts"}, "invalid inbound prefix"},
		{"inbound netns missing", Config{InboundPrefixes: vips, InboundPorts: [2]uint16{1, 2}, InboundNetns: "/proc/self/ns/peerd-nope"}, "no such file"},
		{"inbound netns not a namespace", Config{InboundPrefixes: vips, InboundPorts: [2]uint16{1, 2}, InboundNetns: os.TempDir()}, "not a namespace file"},
		{"inbound netns not a network namespace", Config{InboundPrefixes: vips, InboundPorts: [2]uint16{1, 2}, InboundNetns: "/proc/self/ns/uts"}, "not a network namespace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dp, err := load(tt.cfg)
			if err == nil {
				dp.Close(context.Background())
				t.Fatal("Load succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
	if root := testutil.Cgroup2Root(); root != "" {
		t.Run("root cgroup", func(t *testing.T) {
			_, err := load(Config{Capture: true, CgroupPath: root, ListenerV4: lo, ListenerPort: 1})
			if !errors.Is(err, ErrRootCgroup) {
				t.Fatalf("Load on the root cgroup: %v, want ErrRootCgroup", err)
			}
			_, err = load(Config{Capture: true, CgroupPath: filepath.Join(root, "."), ListenerV4: lo, ListenerPort: 1})
			if !errors.Is(err, ErrRootCgroup) {
				t.Fatalf("Load on root/.: %v, want ErrRootCgroup", err)
			}
		})
	}
	t.Run("capture without listener", func(t *testing.T) {
		root := testutil.Cgroup2Root()
		if root == "" {
			t.Skip("no cgroup v2 mount")
		}
		_, err := load(Config{Capture: true, CgroupPath: root, AllowRootCgroup: true})
		if err == nil || !strings.Contains(err.Error(), "ListenerPort") {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestMissingFeatureDegrades: a layer whose kernel feature is missing is
// off with an error that matches ErrNotSupported (the probe's answer is
// cilium/ebpf's sentinel) and nothing of it is attached; the others load.
func TestMissingFeatureDegrades(t *testing.T) {
	testutil.RequireBPF(t)
	cg, pinDir := testutil.NewCgroup(t), newPinDir(t)
	cfg := Config{
		CgroupPath: cg, PinDir: pinDir, Capture: true, FastPath: true,
		ListenerV4: netip.MustParseAddr("127.0.0.1"), ListenerPort: testListenerPort,
	}
	cfg.probeOverride = func(layer, feature string) error {
		if layer == LayerFastPath && strings.Contains(feature, "SkMsg") {
			return fmt.Errorf("pretend: %w", ebpf.ErrNotSupported)
		}
		return nil
	}
	dp, err := load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer dp.Close(context.Background())
	st := dp.Status()
	if !st.Capture.Loaded || st.Capture.Err != nil || st.FastPath.Loaded || !errors.Is(st.FastPath.Err, ErrNotSupported) {
		t.Fatalf("status capture %+v fastpath %+v", st.Capture, st.FastPath)
	}
	if st.FastPath.Reason != st.FastPath.Err.Error() {
		t.Errorf("fast-path reason %q, want the error's text %q", st.FastPath.Reason, st.FastPath.Err)
	}
	if n := attachedCount(t, cg, ebpf.AttachCGroupSockOps); n != 1 {
		t.Errorf("%d sockops programs attached, want only capture's", n)
	}
	if _, err := os.Stat(filepath.Join(pinDir, LayerFastPath)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("fast-path pins exist although the layer is off: %v", err)
	}
	if err := dp.SetPeerAddr(netip.MustParseAddr("10.0.0.1"), 1); !errors.Is(err, ErrLayerOff) {
		t.Errorf("SetPeerAddr with TC off: %v", err)
	}
}

func TestAddrWords(t *testing.T) {
	for _, s := range []string{"240.0.0.1", "127.0.0.1", "::1", "fd00:f00d::1"} {
		a := netip.MustParseAddr(s)
		if got := fromWords(words(a)); got != a {
			t.Errorf("%s -> %s", a, got)
		}
	}
}
