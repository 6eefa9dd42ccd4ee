package dataplane

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"

	"github.com/peerd/peerd/internal/testutil"
	"github.com/peerd/peerd/vmtests"
)

// TestTCCounters joins two private network namespaces with a veth pair,
// attaches the TC programs to side A (TCX and clsact), sends UDP datagrams
// of a known size to B, which echoes them, and checks the per-peer
// counters against the bytes on the wire (14 Ethernet + 20 IPv4 + 8 UDP +
// payload per packet).
func TestTCCounters(t *testing.T) {
	for _, mode := range []TCMode{TCX, TCClsact} {
		t.Run(string(mode), func(t *testing.T) { testTCCounters(t, mode) })
	}
}

func testTCCounters(t *testing.T, mode TCMode) {
	testutil.RequireBPF(t)
	a := testutil.NewNetns(t)
	var nsB vnetns.NsHandle
	var err error
	a.Run(func() {
		// Create B on this thread, come back to A, then wire the veth.
		var nsA vnetns.NsHandle
		if nsA, err = vnetns.Get(); err != nil {
			return
		}
		defer nsA.Close()
		if nsB, err = vnetns.New(); err != nil {
			return
		}
		if err = vnetns.Set(nsA); err != nil {
			return
		}
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "pdA"}, PeerName: "pdB"}
		if err = netlink.LinkAdd(veth); err != nil {
			return
		}
		peer, lerr := netlink.LinkByName("pdB")
		if lerr != nil {
			err = lerr
			return
		}
		if err = netlink.LinkSetNsFd(peer, int(nsB)); err != nil {
			return
		}
		la, _ := netlink.LinkByName("pdA")
		if err = netlink.AddrAdd(la, &netlink.Addr{IPNet: mustNet("10.200.0.1/24")}); err != nil {
			return
		}
		if err = netlink.LinkSetUp(la); err != nil {
			return
		}
		hb, herr := netlink.NewHandleAt(nsB)
		if herr != nil {
			err = herr
			return
		}
		defer hb.Close()
		lb, lerr := hb.LinkByName("pdB")
		if lerr != nil {
			err = lerr
			return
		}
		if err = hb.AddrAdd(lb, &netlink.Addr{IPNet: mustNet("10.200.0.2/24")}); err != nil {
			return
		}
		err = hb.LinkSetUp(lb)
	})
	if err != nil {
		t.Fatalf("set up veth: %v", err)
	}
	t.Cleanup(func() { _ = nsB.Close() })

	pinDir := newPinDir(t)
	var dp *Dataplane
	a.Run(func() {
		dp, err = load(Config{Interfaces: []string{"pdA"}, TCMode: mode, PinDir: pinDir})
	})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	t.Cleanup(func() {
		_ = dp.Close(context.Background())
		a.Run(func() { _ = Cleanup(pinDir) })
	})
	st := dp.Status().TC
	if mode == TCX && !kernelHasTCX(t) {
		// Forced TCX below 6.6 (5.10 and 6.1 in the QEMU matrix): the
		// layer is off with the kernel's reason, rolled back (no link,
		// no filter), and its methods say so. Auto mode falls back to
		// clsact (vmtests/guest checks it per kernel).
		if st.Loaded || !errors.Is(st.Err, ErrNotSupported) {
			t.Fatalf("TC status %+v, want off with ErrNotSupported", st)
		}
		if links, _ := filepath.Glob(filepath.Join(pinDir, LayerTC, "link_*")); len(links) != 0 {
			t.Errorf("TC links pinned although the layer is off: %v", links)
		}
		a.Run(func() {
			la, lerr := netlink.LinkByName("pdA")
			if lerr != nil {
				t.Errorf("pdA: %v", lerr)
				return
			}
			for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
				if fs, ferr := netlink.FilterList(la, parent); ferr != nil || len(fs) != 0 {
					t.Errorf("filters on pdA (parent %#x) although the layer is off: %v, %v", parent, fs, ferr)
				}
			}
		})
		if _, err := dp.PeerCounters(); !errors.Is(err, ErrLayerOff) {
			t.Errorf("PeerCounters with the layer off: %v, want ErrLayerOff", err)
		}
		t.Logf("mode off: kernel %s without TCX: %s", dp.Status().Kernel, st.Reason)
		return
	}
	if !st.Loaded || st.Interfaces["pdA"] != string(mode) {
		t.Fatalf("TC status %+v, want loaded in mode %s", st, mode)
	}
	if err := dp.SetPeerAddr(netip.MustParseAddr("10.200.0.2"), 5); err != nil {
		t.Fatal(err)
	}

	// Echo server in B, client in A.
	var srv, cli *net.UDPConn
	a.Run(func() {
		var nsA vnetns.NsHandle
		if nsA, err = vnetns.Get(); err != nil {
			return
		}
		defer nsA.Close()
		if err = vnetns.Set(nsB); err != nil {
			return
		}
		srv, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(10, 200, 0, 2), Port: 9000})
		if serr := vnetns.Set(nsA); err == nil {
			err = serr
		}
		if err != nil {
			return
		}
		cli, err = net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(10, 200, 0, 2), Port: 9000})
	})
	if err != nil {
		t.Fatalf("sockets: %v", err)
	}
	defer srv.Close()
	defer cli.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := srv.ReadFromUDP(buf)
			if err != nil {
				return
			}
			_, _ = srv.WriteToUDP(buf[:n], from)
		}
	}()
	const packets, payload = 20, 100
	msg := make([]byte, payload)
	buf := make([]byte, 2048)
	for i := 0; i < packets; i++ {
		if _, err := cli.Write(msg); err != nil {
			t.Fatal(err)
		}
		_ = cli.SetReadDeadline(time.Now().Add(3 * time.Second))
		if n, err := cli.Read(buf); err != nil || n != payload {
			t.Fatalf("echo %d: n=%d err=%v", i, n, err)
		}
	}
	got, err := dp.PeerCounters()
	if err != nil {
		t.Fatal(err)
	}
	const wire = 14 + 20 + 8 + payload
	want := PeerCounters{RxBytes: packets * wire, RxPackets: packets, TxBytes: packets * wire, TxPackets: packets}
	if got[5] != want {
		t.Errorf("peer 5 counters %+v, want %+v", got[5], want)
	}
	t.Logf("mode %s: %+v", mode, got[5])
}

// kernelHasTCX: the running kernel is at least the README's minimum for
// TCX links.
func kernelHasTCX(t *testing.T) bool {
	t.Helper()
	min, err := vmtests.MinKernel("tc/tcx")
	if err != nil {
		t.Fatal(err)
	}
	ok, err := vmtests.KernelAtLeast(kernelRelease(), min)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func mustNet(s string) *net.IPNet {
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	n.IP = ip
	return n
}
