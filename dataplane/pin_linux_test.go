package dataplane

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/peerd/peerd/internal/testutil"
)

func pinnedLinkIDs(t *testing.T, dir string) map[string]link.ID {
	t.Helper()
	ids := map[string]link.ID{}
	paths, _ := filepath.Glob(filepath.Join(dir, "*", "link_*"))
	for _, p := range paths {
		l, err := link.LoadPinnedLink(p, nil)
		if err != nil {
			t.Fatalf("load pinned link %s: %v", p, err)
		}
		info, err := l.Info()
		_ = l.Close()
		if err != nil {
			t.Fatal(err)
		}
		ids[p] = info.ID
	}
	return ids
}

func attachedCount(t *testing.T, cg string, at ebpf.AttachType) int {
	t.Helper()
	f, err := os.Open(cg)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := link.QueryPrograms(link.QueryOptions{Target: int(f.Fd()), Attach: at})
	if err != nil {
		t.Fatalf("query %s: %v", at, err)
	}
	return len(res.Programs)
}

// TestRestartReusesPins loads, opens a captured connection, closes the
// Dataplane (as a daemon exit would) and loads again with the same PinDir:
// the links are the same bpf_links (updated, not re-attached), the VIP
// map kept its entries, the open connection keeps working, and new
// connections are captured by the new programs. Then Cleanup detaches
// everything and leaves no pin.
func TestRestartReusesPins(t *testing.T) {
	testutil.RequireBPF(t)
	cg, pinDir, ns := testutil.NewCgroup(t), newPinDir(t), testutil.NewNetns(t)
	cfg := Config{
		CgroupPath:   cg,
		PinDir:       pinDir,
		Capture:      true,
		FastPath:     true,
		ListenerV4:   netip.MustParseAddr("127.0.0.1"),
		ListenerPort: testListenerPort,
		Mark:         testMark,
	}
	dp1, err := load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var current atomic.Pointer[Dataplane]
	current.Store(dp1)
	acc := listenIn(t, ns, fmt.Sprintf("127.0.0.1:%d", testListenerPort), current.Load)
	vip := netip.MustParseAddr("240.0.0.9")
	if err := dp1.SetVIP(vip, 443, 3, 4); err != nil {
		t.Fatal(err)
	}
	// ns is a workload namespace (the dataplane runs in the test's).
	netnsMode := dp1.Status().Capture.WorkloadNetns
	var nsCookie uint64
	if netnsMode {
		nsCookie = netnsCookieOf(t, ns)
		if err := dp1.SetWorkloadNetns(nsCookie); err != nil {
			t.Fatal(err)
		}
	}
	h, line := startHelper(t, ns, cg, "dial", "240.0.0.9:443", "0"), ""
	if line = h.recv(t); !strings.HasPrefix(line, "OK ") {
		t.Fatalf("helper: %s", line)
	}
	if r := acc.next(t); !r.ok || r.dest != netip.AddrPortFrom(vip, 443) {
		t.Fatalf("origin %+v", r)
	}
	before := pinnedLinkIDs(t, pinDir)
	if len(before) != 4 { // connect4, connect6, capture sockops, fast-path sockops
		t.Fatalf("pinned links %v, want 4", before)
	}
	if err := dp1.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Closed: the pinned links keep the programs attached.
	h.send(t, "echo while-down")
	if got := h.recv(t); got != "GOT echo:while-down" {
		t.Fatalf("connection broke after Close: %q", got)
	}

	dp2, err := load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	current.Store(dp2)
	t.Cleanup(func() { _ = dp2.Close(context.Background()) })
	if got, err := dp2.WorkloadNetns(); netnsMode && (err != nil || len(got) != 1 || got[0] != nsCookie) {
		t.Errorf("workload namespaces after the restart: %v, %v: want the pinned %d", got, err, nsCookie)
	}
	st := dp2.Status()
	if !st.Capture.Reused || !st.FastPath.Reused {
		t.Errorf("second Load did not reuse the pins: capture %+v fastpath %+v", st.Capture, st.FastPath)
	}
	after := pinnedLinkIDs(t, pinDir)
	for p, id := range before {
		if after[p] != id {
			t.Errorf("link %s: id %d before, %d after: re-attached instead of updated", p, id, after[p])
		}
	}
	if n := attachedCount(t, cg, ebpf.AttachCGroupInet4Connect); n != 1 {
		t.Errorf("%d connect4 programs attached, want 1", n)
	}
	if n := attachedCount(t, cg, ebpf.AttachCGroupSockOps); n != 2 {
		t.Errorf("%d sockops programs attached, want 2", n)
	}
	h.send(t, "echo after-restart")
	if got := h.recv(t); got != "GOT echo:after-restart" {
		t.Fatalf("open connection broke across the restart: %q", got)
	}
	vips, err := dp2.VIPs()
	if err != nil || len(vips) != 1 {
		t.Fatalf("VIPs after restart: %v, %v", vips, err)
	}
	h2 := startHelper(t, ns, cg, "dial", "240.0.0.9:443", "0")
	if line := h2.recv(t); !strings.HasPrefix(line, "OK ") {
		t.Fatalf("new connection after restart: %s", line)
	}
	if r := acc.next(t); !r.ok || r.dest != netip.AddrPortFrom(vip, 443) {
		t.Fatalf("origin after restart %+v", r)
	}

	// Cleanup: nothing attached, nothing pinned, the VIP is plain again.
	if err := dp2.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(pinDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pin dir still there after Cleanup: %v", err)
	}
	for _, at := range []ebpf.AttachType{ebpf.AttachCGroupInet4Connect, ebpf.AttachCGroupInet6Connect, ebpf.AttachCGroupSockOps} {
		if n := attachedCount(t, cg, at); n != 0 {
			t.Errorf("%d %s programs still attached after Cleanup", n, at)
		}
	}
	h3 := startHelper(t, ns, cg, "dial", "240.0.0.9:443", "0")
	if line := h3.recv(t); !strings.HasPrefix(line, "ERR ") {
		t.Fatalf("VIP still captured after Cleanup: %s", line)
	}
}
