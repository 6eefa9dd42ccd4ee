package catalog

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-memdb"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/peerd/peerd/catalog/state"
)

func TestVirtualIPsSurviveSnapshotAndMirror(t *testing.T) {
	src := &fsm{store: newTestStore(t)}
	if err := src.store.VirtualIPsUpdate(1, &state.VirtualIPsRequest{Assign: []*state.VirtualIP{
		{Peer: "b", Service: "billing", IPv4: "240.0.0.1", IPv6: "fd70:6565:7264::1"}, {Peer: "b", Service: "web", IPv4: "240.0.0.2"}}}); err != nil {
		t.Fatal(err)
	}
	snap, _ := src.Snapshot()
	var buf bytes.Buffer
	if err := snap.(*fsmSnapshot).snap.Write(&buf); err != nil {
		t.Fatal(err)
	}
	dst := &fsm{store: newTestStore(t)}
	if err := dst.Restore(io.NopCloser(&buf)); err != nil {
		t.Fatal(err)
	}
	if _, v, _ := dst.store.VirtualIPByAddr(nil, netip.MustParseAddr("fd70:6565:7264::1")); v == nil || v.IPv4 != "240.0.0.1" {
		t.Fatalf("got %+v after restore", v)
	}
	view, err := newMirrorView()
	if err != nil {
		t.Fatal(err)
	}
	enc, err := encodeMirror(src.store, memdb.NewWatchSet())
	if err != nil {
		t.Fatal(err)
	}
	if err := view.apply(enc.data); err != nil {
		t.Fatal(err)
	}
	if _, all, _ := view.store.VirtualIPs(nil); len(all) != 2 {
		t.Fatalf("mirror holds %+v, want both virtual IPs", all)
	}
}

func startVIPServer(t *testing.T, dataDir string, mod func(*Config)) *Cluster {
	t.Helper()
	cfg := DevConfig()
	cfg.NodeName, cfg.NodeID = "s1", uuid.NewString()
	cfg.VirtualIPGrace = 300 * time.Millisecond
	if dataDir != "" {
		cfg.InMemory, cfg.DataDir = false, dataDir
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := newStarted(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	waitFor(t, 10*time.Second, "leader", c.IsLeader)
	return c
}

func vipOf(c *Cluster, peer, svc string) *state.VirtualIP {
	_, v, _ := c.Store().VirtualIP(nil, peer, svc)
	return v
}

func waitVIP(t *testing.T, c *Cluster, peer, svc, want4, want6 string) {
	t.Helper()
	waitFor(t, 5*time.Second, fmt.Sprintf("%s/%s gets %s %s", peer, svc, want4, want6), func() bool {
		v := vipOf(c, peer, svc)
		return v != nil && v.IPv4 == want4 && v.IPv6 == want6
	})
}

func TestVirtualIPAssignedOnImportAndReleasedAfterGrace(t *testing.T) {
	c := startVIPServer(t, "", nil)
	registerService(t, c, "local") // local services get none
	apply(t, c, &Command{Type: CmdRegister, Register: imported("b", "n1", "billing")})
	waitVIP(t, c, "b", "billing", "240.0.0.1", "fd70:6565:7264::1")
	apply(t, c, &Command{Type: CmdRegisterBatch, Registers: []*state.RegisterRequest{imported("b", "n1", "web"), imported("a", "n2", "web")}})
	waitVIP(t, c, "a", "web", "240.0.0.2", "fd70:6565:7264::2")
	waitVIP(t, c, "b", "web", "240.0.0.3", "fd70:6565:7264::3")
	if v := vipOf(c, "", "local"); v != nil {
		t.Fatalf("local service got %+v", v)
	}

	// Gone and back within the grace period: same address.
	apply(t, c, &Command{Type: CmdDeregister, Deregister: &state.DeregisterRequest{PeerName: "b", Node: "n1", ServiceID: "billing-1"}})
	time.Sleep(100 * time.Millisecond)
	apply(t, c, &Command{Type: CmdRegister, Register: imported("b", "n1", "billing")})
	time.Sleep(400 * time.Millisecond)
	waitVIP(t, c, "b", "billing", "240.0.0.1", "fd70:6565:7264::1")

	// Gone for longer: released, and the lowest free address is reused.
	apply(t, c, &Command{Type: CmdDeregister, Deregister: &state.DeregisterRequest{PeerName: "b", Node: "n1", ServiceID: "billing-1"}})
	waitFor(t, 5*time.Second, "billing released", func() bool { return vipOf(c, "b", "billing") == nil })
	apply(t, c, &Command{Type: CmdRegister, Register: imported("c", "n3", "new")})
	waitVIP(t, c, "c", "new", "240.0.0.1", "fd70:6565:7264::1")
}

func TestVirtualIPsStableAcrossRestartAndRestore(t *testing.T) {
	dir := t.TempDir()
	c := startVIPServer(t, dir, nil)
	for _, s := range []string{"a", "b", "c"} {
		apply(t, c, &Command{Type: CmdRegister, Register: imported("p", "n1", s)})
	}
	waitVIP(t, c, "p", "c", "240.0.0.3", "fd70:6565:7264::3")
	var snap bytes.Buffer
	if _, err := c.SaveSnapshot(&snap); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	// A new leader (the same server restarted) keeps every address and
	// numbers a new service after them.
	c2 := startVIPServer(t, dir, nil)
	waitVIP(t, c2, "p", "b", "240.0.0.2", "fd70:6565:7264::2")
	apply(t, c2, &Command{Type: CmdRegister, Register: imported("p", "n1", "d")})
	waitVIP(t, c2, "p", "d", "240.0.0.4", "fd70:6565:7264::4")
	waitVIP(t, c2, "p", "a", "240.0.0.1", "fd70:6565:7264::1")

	// A snapshot restore brings back the addresses it held.
	if _, err := c2.RestoreSnapshot(bytes.NewReader(snap.Bytes())); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "restored state", func() bool { return vipOf(c2, "p", "d") == nil })
	waitVIP(t, c2, "p", "c", "240.0.0.3", "fd70:6565:7264::3")
}

func TestVirtualIPRangeFull(t *testing.T) {
	c := startVIPServer(t, "", func(cfg *Config) {
		cfg.VirtualIPv4Range, cfg.VirtualIPv6Range = "10.99.0.0/28", ""
	})
	var regs []*state.RegisterRequest
	for i := range 15 {
		regs = append(regs, imported("p", "n1", fmt.Sprintf("s%02d", i)))
	}
	apply(t, c, &Command{Type: CmdRegisterBatch, Registers: regs})
	waitFor(t, 5*time.Second, "14 addresses and one service left without", func() bool {
		_, all, _ := c.Store().VirtualIPs(nil)
		return len(all) == 14 && gaugeValue(c.metrics.vipUnassigned) == 1
	})
	if v := vipOf(c, "p", "s14"); v != nil {
		t.Fatalf("the last service got %+v from a full range", v)
	}
	waitVIP(t, c, "p", "s13", "10.99.0.14", "")
	// Once a service is gone past the grace period, the waiting one gets its
	// address.
	apply(t, c, &Command{Type: CmdDeregister, Deregister: &state.DeregisterRequest{PeerName: "p", Node: "n1", ServiceID: "s03-1"}})
	waitVIP(t, c, "p", "s14", "10.99.0.4", "")
	waitFor(t, 5*time.Second, "gauge back to 0", func() bool { return gaugeValue(c.metrics.vipUnassigned) == 0 })
}

func gaugeValue(g prometheus.Gauge) float64 {
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		return -1
	}
	return m.GetGauge().GetValue()
}
