package dataplane

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/peerd/peerd/internal/testutil"
)

const (
	testListenerPort = 15001
	testMark         = 0x70d
)

// acceptor is the test's stand-in for the terminator's outbound listener:
// it accepts, asks the dataplane for the original destination, then echoes
// lines.
type acceptor struct {
	ln      net.Listener
	origins chan acceptResult
}

type acceptResult struct {
	dest  netip.AddrPort
	cgID  uint64
	netns uint64
	ok    bool
	err   error
	again bool // a second lookup found the entry again (it must not)
}

func listenIn(t *testing.T, ns *testutil.Netns, addr string, dp func() *Dataplane) *acceptor {
	t.Helper()
	var err error
	a := &acceptor{origins: make(chan acceptResult, 8)}
	ns.Run(func() { a.ln, err = net.Listen("tcp", addr) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.ln.Close() })
	go func() {
		for {
			c, err := a.ln.Accept()
			if err != nil {
				return
			}
			d := dp()
			o, ok, err := d.Origin(c)
			_, _, again, _ := d.OriginalDestination(c)
			a.origins <- acceptResult{o.Dest, o.CgroupID, o.NetnsCookie, ok, err, again}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := fmt.Fprint(c, "echo:"+line); err != nil {
						return
					}
				}
			}()
		}
	}()
	return a
}

func (a *acceptor) next(t *testing.T) acceptResult {
	t.Helper()
	select {
	case r := <-a.origins:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no connection accepted")
	}
	return acceptResult{}
}

func (a *acceptor) none(t *testing.T) {
	t.Helper()
	select {
	case r := <-a.origins:
		t.Fatalf("unexpected connection reached the listener: %+v", r)
	default:
	}
}

// captureEnv is the capture layer loaded on a fresh cgroup and pin dir,
// and a netns with listeners on 127.0.0.1 and [::1]: a workload namespace
// (the dataplane runs in the test's), marked ready with SetWorkloadNetns
// where the kernel has the mode (5.15).
type captureEnv struct {
	cg     string
	cgID   uint64
	pinDir string
	ns     *testutil.Netns
	dp     *Dataplane
	v4, v6 *acceptor
}

func newCaptureEnv(t *testing.T, mod func(*Config)) *captureEnv {
	t.Helper()
	testutil.RequireBPF(t)
	e := &captureEnv{cg: testutil.NewCgroup(t), pinDir: newPinDir(t), ns: testutil.NewNetns(t)}
	var err error
	if e.cgID, err = CgroupID(e.cg); err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		CgroupPath:   e.cg,
		PinDir:       e.pinDir,
		Capture:      true,
		ListenerV4:   netip.MustParseAddr("127.0.0.1"),
		ListenerV6:   netip.IPv6Loopback(),
		ListenerPort: testListenerPort,
		Mark:         testMark,
	}
	if mod != nil {
		mod(&cfg)
	}
	e.dp, err = load(cfg)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	t.Cleanup(func() { _ = e.dp.Close(context.Background()) })
	if st := e.dp.Status(); !st.Capture.Loaded {
		t.Fatalf("capture layer not loaded: %+v", st.Capture)
	}
	get := func() *Dataplane { return e.dp }
	e.v4 = listenIn(t, e.ns, fmt.Sprintf("127.0.0.1:%d", testListenerPort), get)
	e.v6 = listenIn(t, e.ns, fmt.Sprintf("[::1]:%d", testListenerPort), get)
	if e.dp.Status().Capture.WorkloadNetns { // else (before 5.15) every namespace is the host's
		if err := e.dp.SetWorkloadNetns(netnsCookieOf(t, e.ns)); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// dial runs a helper that dials addr from the test netns (inside the test
// cgroup when inCgroup) and returns its first line.
func (e *captureEnv) dial(t *testing.T, inCgroup bool, addr string, mark int) (*helper, string) {
	t.Helper()
	cg := ""
	if inCgroup {
		cg = e.cg
	}
	h := startHelper(t, e.ns, cg, "dial", addr, fmt.Sprint(mark))
	return h, h.recv(t)
}

func TestCaptureIPv4(t *testing.T) {
	e := newCaptureEnv(t, nil)
	vip := netip.MustParseAddr("240.0.0.1")
	if err := e.dp.SetVIP(vip, 8080, 7, 42); err != nil {
		t.Fatal(err)
	}
	if err := e.dp.SetVIP(netip.MustParseAddr("240.0.0.2"), 0, 8, 43); err != nil {
		t.Fatal(err)
	}

	t.Run("redirected", func(t *testing.T) {
		h, line := e.dial(t, true, "240.0.0.1:8080", 0)
		if !strings.HasPrefix(line, "OK ") || !strings.HasSuffix(line, fmt.Sprintf(" 127.0.0.1:%d", testListenerPort)) {
			t.Fatalf("helper: %s", line)
		}
		r := e.v4.next(t)
		if r.err != nil || !r.ok {
			t.Fatalf("OriginalDestination: ok=%v err=%v", r.ok, r.err)
		}
		if want := netip.MustParseAddrPort("240.0.0.1:8080"); r.dest != want {
			t.Errorf("original destination %s, want %s", r.dest, want)
		}
		if r.cgID != e.cgID {
			t.Errorf("cgroup id %d, want %d (the test cgroup)", r.cgID, e.cgID)
		}
		if r.again {
			t.Error("the original destination entry was not deleted after the lookup")
		}
		h.send(t, "echo ping")
		if got := h.recv(t); got != "GOT echo:ping" {
			t.Errorf("echo through the redirect: %q", got)
		}
	})
	t.Run("wildcard port", func(t *testing.T) {
		_, line := e.dial(t, true, "240.0.0.2:9999", 0)
		if !strings.HasPrefix(line, "OK ") {
			t.Fatalf("helper: %s", line)
		}
		if r := e.v4.next(t); !r.ok || r.dest != netip.MustParseAddrPort("240.0.0.2:9999") {
			t.Fatalf("origin %+v", r)
		}
	})
	t.Run("other port not captured", func(t *testing.T) {
		_, line := e.dial(t, true, "240.0.0.1:9090", 0)
		if !strings.HasPrefix(line, "ERR ") {
			t.Fatalf("helper reached something: %s", line)
		}
		e.v4.none(t)
	})
	t.Run("outside the cgroup untouched", func(t *testing.T) {
		_, line := e.dial(t, false, "240.0.0.1:8080", 0)
		if !strings.HasPrefix(line, "ERR ") {
			t.Fatalf("helper outside the cgroup reached something: %s", line)
		}
		e.v4.none(t)
	})
	t.Run("marked socket untouched", func(t *testing.T) {
		_, line := e.dial(t, true, "240.0.0.1:8080", testMark)
		if !strings.HasPrefix(line, "ERR ") {
			t.Fatalf("marked socket was redirected: %s", line)
		}
		e.v4.none(t)
	})
	t.Run("direct dial to the listener", func(t *testing.T) {
		_, line := e.dial(t, true, fmt.Sprintf("127.0.0.1:%d", testListenerPort), 0)
		if !strings.HasPrefix(line, "OK ") {
			t.Fatalf("helper: %s", line)
		}
		if r := e.v4.next(t); r.ok || r.err != nil {
			t.Fatalf("direct connection has an origin: %+v", r)
		}
	})
	t.Run("deleted VIP", func(t *testing.T) {
		if err := e.dp.DeleteVIP(vip, 8080); err != nil {
			t.Fatal(err)
		}
		_, line := e.dial(t, true, "240.0.0.1:8080", 0)
		if !strings.HasPrefix(line, "ERR ") {
			t.Fatalf("deleted VIP still captured: %s", line)
		}
	})
	st := e.dp.Status().Capture
	t.Logf("capture status: %+v", st)
	c := st.Counters
	if c["rewrites"] != 2 || c["handovers"] != 2 || c["skip_mark"] != 1 || c["skip_listener"] != 1 {
		t.Errorf("counters %v: want rewrites=2 handovers=2 skip_mark=1 skip_listener=1", c)
	}
	if st.Maps["orig_tuple"] != 0 || st.Maps["orig_cookie"] != 0 {
		t.Errorf("leftover origin entries: %v", st.Maps)
	}
}

func TestCaptureIPv6(t *testing.T) {
	e := newCaptureEnv(t, nil)
	vip := netip.MustParseAddr("fd00:f00d::1")
	if err := e.dp.SetVIP(vip, 80, 9, 44); err != nil {
		t.Fatal(err)
	}
	h, line := e.dial(t, true, "[fd00:f00d::1]:80", 0)
	if !strings.HasPrefix(line, "OK ") || !strings.HasSuffix(line, fmt.Sprintf(" [::1]:%d", testListenerPort)) {
		t.Fatalf("helper: %s", line)
	}
	d := e.v6.next(t)
	if !d.ok || d.err != nil || d.dest != netip.AddrPortFrom(vip, 80) || d.cgID != e.cgID {
		t.Fatalf("origin %+v, want %s in cgroup %d", d, netip.AddrPortFrom(vip, 80), e.cgID)
	}
	h.send(t, "echo six")
	if got := h.recv(t); got != "GOT echo:six" {
		t.Errorf("echo: %q", got)
	}
	_, line = e.dial(t, false, "[fd00:f00d::1]:80", 0)
	if !strings.HasPrefix(line, "ERR ") {
		t.Fatalf("helper outside the cgroup reached something: %s", line)
	}
	vips, err := e.dp.VIPs()
	if err != nil || len(vips) != 1 || vips[0] != (VIP{netip.AddrPortFrom(vip, 80), 9, 44}) {
		t.Errorf("VIPs() = %v, %v", vips, err)
	}
}

func TestCaptureSkipsDaemonCgroup(t *testing.T) {
	e := newCaptureEnv(t, func(c *Config) {
		id, err := CgroupID(c.CgroupPath)
		if err != nil {
			t.Fatal(err)
		}
		c.DaemonCgroupID = id // pretend the helper's cgroup is the daemon's
	})
	if err := e.dp.SetVIP(netip.MustParseAddr("240.0.0.1"), 8080, 1, 1); err != nil {
		t.Fatal(err)
	}
	_, line := e.dial(t, true, "240.0.0.1:8080", 0)
	if !strings.HasPrefix(line, "ERR ") {
		t.Fatalf("the daemon's own connect was captured: %s", line)
	}
	if c := e.dp.Status().Capture.Counters; c["skip_cgroup"] != 1 || c["rewrites"] != 0 {
		t.Errorf("counters %v", c)
	}
}

// requireNetnsMode skips below 5.15, where capture and the fast path run
// without workload namespaces (TestCaptureWithoutNetnsMode covers that);
// from 5.15 it fails unless layer has the mode.
func requireNetnsMode(t *testing.T, layer string, st LayerStatus) {
	t.Helper()
	testutil.SkipOnOldKernel(t, "5.15", "bpf_get_netns_cookie in sock_ops and sk_msg")
	if !st.WorkloadNetns {
		t.Fatalf("%s runs without workload namespaces on a kernel that has them: %+v", layer, st)
	}
}

// netnsCookieOf is the cookie of ns.
func netnsCookieOf(t testing.TB, ns *testutil.Netns) uint64 {
	t.Helper()
	var c uint64
	var err error
	ns.Run(func() { c, err = ownNetnsCookie() })
	if err != nil {
		t.Fatal(err)
	}
	return c
}
