package dataplane

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/peerd/peerd/internal/testutil"
)

// nextEvent reads one netns event within 10 s.
func nextEvent(t *testing.T, dp *Dataplane) NetnsEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ev, err := dp.ReadNetnsEvent(ctx)
	if err != nil {
		t.Fatalf("ReadNetnsEvent: %v", err)
	}
	return ev
}

// TestCaptureWorkloadNetns: a captured process in a workload namespace
// whose listeners are not up is refused (EPERM) and the namespace
// announced; once the listener is there and the namespace set, its
// connects reach that listener, with the namespace in the Origin.
func TestCaptureWorkloadNetns(t *testing.T) {
	e := newCaptureEnv(t, nil)
	requireNetnsMode(t, LayerCapture, e.dp.Status().Capture)
	ns2 := testutil.NewNetns(t)
	cookie2 := netnsCookieOf(t, ns2)
	if err := e.dp.SetVIP(netip.MustParseAddr("240.0.0.1"), 8080, 7, 42); err != nil {
		t.Fatal(err)
	}
	if err := e.dp.SetVIP(netip.MustParseAddr("fd00:f00d::1"), 80, 9, 44); err != nil {
		t.Fatal(err)
	}

	for _, vip := range []string{"240.0.0.1:8080", "[fd00:f00d::1]:80"} {
		h := startHelper(t, ns2, e.cg, "dial", vip, "0")
		if line := h.recv(t); !strings.HasPrefix(line, "ERR ") || !strings.Contains(line, "operation not permitted") {
			t.Fatalf("%s from a namespace that is not ready: %s, want EPERM", vip, line)
		}
		if vip == "240.0.0.1:8080" {
			ev := nextEvent(t, e.dp)
			want := NetnsEvent{NetnsCookie: cookie2, PID: uint32(h.cmd.Process.Pid), CgroupID: e.cgID}
			if ev != want {
				t.Fatalf("event %+v, want %+v", ev, want)
			}
		}
	}
	// The second refusal (IPv6, within a second) is not announced again.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	ev, err := e.dp.ReadNetnsEvent(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second event %+v, %v: want none (deduplicated) and the context's error", ev, err)
	}
	e.v4.none(t)
	e.v6.none(t)

	get := func() *Dataplane { return e.dp }
	a4 := listenIn(t, ns2, fmt.Sprintf("127.0.0.1:%d", testListenerPort), get)
	a6 := listenIn(t, ns2, fmt.Sprintf("[::1]:%d", testListenerPort), get)
	if err := e.dp.SetWorkloadNetns(cookie2); err != nil {
		t.Fatal(err)
	}
	if got, err := e.dp.WorkloadNetns(); err != nil || !slices.Contains(got, cookie2) || len(got) != 2 {
		t.Fatalf("WorkloadNetns() = %v, %v: want e.ns's and %d", got, err, cookie2)
	}
	for _, c := range []struct {
		vip string
		a   *acceptor
	}{{"240.0.0.1:8080", a4}, {"[fd00:f00d::1]:80", a6}} {
		h := startHelper(t, ns2, e.cg, "dial", c.vip, "0")
		if line := h.recv(t); !strings.HasPrefix(line, "OK ") {
			t.Fatalf("%s from a ready namespace: %s", c.vip, line)
		}
		r := c.a.next(t)
		if !r.ok || r.err != nil || r.dest != netip.MustParseAddrPort(c.vip) || r.cgID != e.cgID || r.netns != cookie2 {
			t.Fatalf("origin %+v, want %s, cgroup %d, netns %d", r, c.vip, e.cgID, cookie2)
		}
		h.send(t, "echo ns2")
		if got := h.recv(t); got != "GOT echo:ns2" {
			t.Errorf("echo: %q", got)
		}
	}
	e.v4.none(t)
	e.v6.none(t)

	if err := e.dp.DeleteWorkloadNetns(cookie2); err != nil {
		t.Fatal(err)
	}
	if err := e.dp.DeleteWorkloadNetns(cookie2); err != nil {
		t.Fatalf("deleting an absent namespace: %v", err)
	}
	h := startHelper(t, ns2, e.cg, "dial", "240.0.0.1:8080", "0")
	if line := h.recv(t); !strings.HasPrefix(line, "ERR ") {
		t.Fatalf("namespace deleted from the workload set still captured: %s", line)
	}
	// Deleting it re-arms the announcement.
	if ev := nextEvent(t, e.dp); ev.NetnsCookie != cookie2 {
		t.Fatalf("event %+v after delete, want netns %d", ev, cookie2)
	}
	// Outside the cgroup nothing changes: not captured, not refused by
	// capture (no route to 240/4 in the namespace).
	h = startHelper(t, ns2, "", "dial", "240.0.0.1:8080", "0")
	if line := h.recv(t); strings.Contains(line, "operation not permitted") || strings.HasPrefix(line, "OK ") {
		t.Fatalf("outside the cgroup: %s", line)
	}

	c := e.dp.Status().Capture.Counters
	t.Logf("capture counters: %v", c)
	if c["netns_not_ready"] != 3 || c["netns_rewrites"] != 2 || c["rewrites"] != 2 {
		t.Errorf("counters %v: want netns_not_ready=3 netns_rewrites=2 rewrites=2", c)
	}

	if err := e.dp.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.dp.ReadNetnsEvent(context.Background()); !errors.Is(err, ErrLayerOff) {
		t.Errorf("ReadNetnsEvent after Close: %v, want ErrLayerOff", err)
	}
}

// TestCaptureNetnsSameTuple: two workload namespaces with connections of
// identical 4-tuples (same client port, same listener) keep their own
// original destinations.
func TestCaptureNetnsSameTuple(t *testing.T) {
	e := newCaptureEnv(t, nil)
	requireNetnsMode(t, LayerCapture, e.dp.Status().Capture)
	vips := []string{"240.0.0.1:8080", "240.0.0.2:9090"}
	for i, v := range vips {
		ap := netip.MustParseAddrPort(v)
		if err := e.dp.SetVIP(ap.Addr(), ap.Port(), uint32(i+1), uint32(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	type ws struct {
		ns     *testutil.Netns
		cookie uint64
		ln     net.Listener
	}
	var w [2]ws
	for i := range w {
		w[i].ns = testutil.NewNetns(t)
		w[i].cookie = netnsCookieOf(t, w[i].ns)
		var err error
		w[i].ns.Run(func() { w[i].ln, err = net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", testListenerPort)) })
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = w[i].ln.Close() })
		if err := e.dp.SetWorkloadNetns(w[i].cookie); err != nil {
			t.Fatal(err)
		}
	}
	// Both clients connect (the handover to orig_tuple is done when the
	// dial returns) before either listener accepts, from the same port.
	for i := range w {
		h := startHelper(t, w[i].ns, e.cg, "dial", vips[i], "0", "127.0.0.1:40123")
		if line := h.recv(t); line != fmt.Sprintf("OK 127.0.0.1:40123 127.0.0.1:%d", testListenerPort) {
			t.Fatalf("helper %d: %s", i, line)
		}
	}
	if n := e.dp.Status().Capture.Maps["orig_tuple"]; n != 2 {
		t.Fatalf("orig_tuple holds %d entries, want one per namespace", n)
	}
	for i := range w {
		c, err := w[i].ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		o, ok, err := e.dp.Origin(c)
		if err != nil || !ok {
			t.Fatalf("namespace %d: Origin ok=%v err=%v", i, ok, err)
		}
		if o.Dest != netip.MustParseAddrPort(vips[i]) || o.NetnsCookie != w[i].cookie || o.PeerID != uint32(i+1) {
			t.Errorf("namespace %d: origin %+v, want %s in netns %d", i, o, vips[i], w[i].cookie)
		}
	}
}

// TestFastPathNetnsSameTuple: loopback legs with identical tuples in two
// namespaces both enter the SOCKHASH and each is spliced to its own peer.
func TestFastPathNetnsSameTuple(t *testing.T) {
	cg, ns1, dp := loadFastPathEnv(t)
	requireNetnsMode(t, LayerFastPath, dp.Status().FastPath)
	ns2 := testutil.NewNetns(t)
	const n, size = 200, 64
	var hs []*helper
	for _, ns := range []*testutil.Netns{ns1, ns2} {
		h := startHelper(t, ns, cg, "rr", strconv.Itoa(fastPort), strconv.Itoa(n), strconv.Itoa(size), "40124")
		if line := h.recv(t); !strings.HasPrefix(line, "OK ") {
			t.Fatalf("helper: %s", line)
		}
		hs = append(hs, h)
	}
	st := dp.Status().FastPath
	t.Logf("fast path with the same tuple in two namespaces: %+v", st)
	c := st.Counters
	if st.Maps["sock_pairs"] != 4 || c["inserts"] != 4 || c["insert_errors"] != 0 {
		t.Errorf("maps %v counters %v: want 4 sockets inserted, no insert error", st.Maps, c)
	}
	if c["redirects"] < 4*n || c["misses"] != 0 {
		t.Errorf("counters %v: want redirects >= %d and no miss", c, 4*n)
	}
	for _, h := range hs {
		_ = h.in.Close()
		_ = h.cmd.Wait()
	}
}

// TestCaptureWithoutNetnsMode: on a kernel without bpf_get_netns_cookie
// in sock_ops (before 5.15; simulated), capture and the fast path load
// without the workload-namespace mode: a connect from another namespace
// is captured as before, and the workload-namespace methods say why
// they cannot work.
func TestCaptureWithoutNetnsMode(t *testing.T) {
	e := newCaptureEnvNoNetns(t)
	if st := e.dp.Status(); st.Capture.WorkloadNetns || st.FastPath.WorkloadNetns || !st.FastPath.Loaded {
		t.Fatalf("status %+v / %+v: want both layers loaded without the netns mode", st.Capture, st.FastPath)
	}
	if err := e.dp.SetVIP(netip.MustParseAddr("240.0.0.1"), 8080, 7, 42); err != nil {
		t.Fatal(err)
	}
	_, line := e.dial(t, true, "240.0.0.1:8080", 0)
	if !strings.HasPrefix(line, "OK ") {
		t.Fatalf("helper: %s", line)
	}
	if r := e.v4.next(t); !r.ok || r.dest != netip.MustParseAddrPort("240.0.0.1:8080") || r.netns != 0 {
		t.Fatalf("origin %+v, want the VIP and no netns cookie", r)
	}
	for name, err := range map[string]error{
		"SetWorkloadNetns":    e.dp.SetWorkloadNetns(1),
		"DeleteWorkloadNetns": e.dp.DeleteWorkloadNetns(1),
	} {
		if !errors.Is(err, ErrNotSupported) || !strings.Contains(err.Error(), "5.15") {
			t.Errorf("%s: %v, want ErrNotSupported naming the kernel", name, err)
		}
	}
	if _, err := e.dp.ReadNetnsEvent(context.Background()); !errors.Is(err, ErrNotSupported) {
		t.Errorf("ReadNetnsEvent: %v, want ErrNotSupported", err)
	}
}

func newCaptureEnvNoNetns(t *testing.T) *captureEnv {
	t.Helper()
	testutil.RequireBPF(t)
	e := &captureEnv{cg: testutil.NewCgroup(t), pinDir: newPinDir(t), ns: testutil.NewNetns(t)}
	var err error
	if e.cgID, err = CgroupID(e.cg); err != nil {
		t.Fatal(err)
	}
	e.dp, err = load(Config{
		CgroupPath: e.cg, PinDir: e.pinDir, Capture: true, FastPath: true,
		ListenerV4: netip.MustParseAddr("127.0.0.1"), ListenerPort: testListenerPort,
		probeOverride: func(_, feature string) error {
			if feature == "helper FnGetNetnsCookie in SockOps" {
				return fmt.Errorf("simulated: %w", ErrNotSupported)
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.dp.Close(context.Background()) })
	get := func() *Dataplane { return e.dp }
	e.v4 = listenIn(t, e.ns, fmt.Sprintf("127.0.0.1:%d", testListenerPort), get)
	return e
}
