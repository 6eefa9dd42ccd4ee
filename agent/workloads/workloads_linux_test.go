package workloads

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-memdb"
	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/peerd/peerd/agent/dns"
	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/cgroupfs"
	"github.com/peerd/peerd/internal/netns"
	tu "github.com/peerd/peerd/internal/testutil"
	"github.com/peerd/peerd/l7proxy"
)

const helperEnv = "PEERD_WORKLOADS_TEST_HELPER"

// TestMain doubles as the workload: with helperEnv set the binary waits
// for its stdin to close, then exits (a container's process).
func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// fakeDataplane records the namespaces marked ready and hands out events.
type fakeDataplane struct {
	mu      sync.Mutex
	ready   map[uint64]bool
	deleted []uint64
	events  chan NetnsEvent
}

func newFakeDataplane() *fakeDataplane {
	return &fakeDataplane{ready: map[uint64]bool{}, events: make(chan NetnsEvent, 8)}
}

func (f *fakeDataplane) SetWorkloadNetns(cookie uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ready[cookie] = true
	return nil
}

func (f *fakeDataplane) DeleteWorkloadNetns(cookie uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.ready[cookie] {
		return fmt.Errorf("cookie %d was not marked", cookie)
	}
	delete(f.ready, cookie)
	f.deleted = append(f.deleted, cookie)
	return nil
}

func (f *fakeDataplane) ReadNetnsEvent(ctx context.Context) (NetnsEvent, error) {
	select {
	case ev := <-f.events:
		return ev, nil
	case <-ctx.Done():
		return NetnsEvent{}, ctx.Err()
	}
}

func (f *fakeDataplane) isReady(cookie uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ready[cookie]
}

func (f *fakeDataplane) wasDeleted(cookie uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.deleted {
		if c == cookie {
			return true
		}
	}
	return false
}

// fakeProxy answers each connection with a line naming the listener that
// accepted it ("transparent", "upstream web->db"), then echoes.
type fakeProxy struct {
	mu        sync.Mutex
	owners    map[uint64]string             // cgroup id -> service
	upstreams map[string][]l7proxy.Upstream // service -> upstreams
	handled   chan error                    // one per ended echo
}

func (p *fakeProxy) ServeTransparent(ln net.Listener) error {
	go p.serve(ln, "transparent")
	return nil
}

func (p *fakeProxy) ServeUpstream(up l7proxy.Upstream, ln net.Listener) error {
	go p.serve(ln, "upstream "+up.Caller+"->"+up.DestinationName)
	return nil
}

func (p *fakeProxy) serve(ln net.Listener, tag string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			fmt.Fprintln(c, tag)
			_, err := io.Copy(c, c)
			select {
			case p.handled <- err:
			default:
			}
		}()
	}
}

func (p *fakeProxy) ServiceUpstreams(_ memdb.WatchSet, service string) ([]l7proxy.Upstream, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.upstreams[service], nil
}

func (p *fakeProxy) ServiceOfCgroup(id uint64) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s, ok := p.owners[id]
	return s, ok
}

// container is a workload process in its own cgroup and network namespace.
type container struct {
	c     *tu.Container
	stdin io.WriteCloser
	h     *netns.Handle
	// cookie of its namespace.
	cookie uint64
}

func startContainer(t *testing.T, cgroup string) *container {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	c := tu.StartContainer(t, cmd, tu.ContainerOptions{Cgroup: cgroup})
	// The test's own handle, to dial from inside.
	h, err := netns.Open(c.NetnsPath())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	cookie, err := h.Cookie()
	if err != nil {
		t.Fatal(err)
	}
	return &container{c: c, stdin: stdin, h: h, cookie: cookie}
}

// stop ends the process (its stdin closes) and waits for it.
func (c *container) stop(t *testing.T) {
	t.Helper()
	c.stdin.Close()
	if err := c.c.Cmd.Wait(); err != nil {
		t.Fatalf("container exit: %v", err)
	}
}

// dial connects to addr from inside the namespace and reads the first line.
func (c *container) dial(addr string) (net.Conn, string, error) {
	var conn net.Conn
	err := c.h.Do(func() error {
		var err error
		conn, err = net.DialTimeout("tcp", addr, 2*time.Second)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	conn.SetReadDeadline(time.Time{})
	if err != nil {
		conn.Close()
		return nil, "", err
	}
	return conn, strings.TrimSpace(line), nil
}

func (c *container) tag(addr string) (string, error) {
	conn, tag, err := c.dial(addr)
	if err != nil {
		return "", err
	}
	conn.Close()
	return tag, nil
}

// query asks the DNS inside the namespace.
func (c *container) query(network, addr, name string) ([]string, error) {
	var resp *mdns.Msg
	err := c.h.Do(func() error {
		m := new(mdns.Msg)
		m.SetQuestion(name, mdns.TypeA)
		var err error
		resp, _, err = (&mdns.Client{Net: network, Timeout: 2 * time.Second}).Exchange(m, addr)
		return err
	})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rr := range resp.Answer {
		if a, ok := rr.(*mdns.A); ok {
			out = append(out, a.A.String())
		}
	}
	return out, nil
}

func virtualIPStore(t *testing.T) *state.Store {
	t.Helper()
	st, err := state.NewStore()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.VirtualIPsUpdate(1, &state.VirtualIPsRequest{Assign: []*state.VirtualIP{
		{Peer: "b", Service: "billing", IPv4: "240.0.0.1", IPv6: "fd70:6565:7264::1"}}}); err != nil {
		t.Fatal(err)
	}
	return st
}

type rig struct {
	dp    *fakeDataplane
	proxy *fakeProxy
	mgr   *Manager
	reg   *prometheus.Registry
	root  string
	stop  func()
}

func startRig(t *testing.T, rescan time.Duration) *rig {
	t.Helper()
	tu.RequireRoot(t, "creates cgroups and network namespaces and enters them")
	if tu.Cgroup2Root() == "" {
		t.Skip("needs a cgroup v2 mount")
	}
	r := &rig{dp: newFakeDataplane(), reg: prometheus.NewRegistry(), root: tu.NewCgroup(t),
		proxy: &fakeProxy{owners: map[uint64]string{}, upstreams: map[string][]l7proxy.Upstream{}, handled: make(chan error, 8)}}
	srv, err := dns.New(dns.Config{View: func() *state.Store { return virtualIPStore(t) }, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	r.mgr, err = New(Config{CgroupPath: r.root, TransparentAddrs: []string{"127.0.0.1:15001", "[::1]:15001"},
		DNSAddrs: []string{"127.0.0.1:53", "[::1]:53"}, Dataplane: r.dp, Proxy: r.proxy, DNS: srv,
		Rescan: rescan, Registerer: r.reg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.mgr.Run(ctx) }()
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
			srv.Close(context.Background())
		})
	}
	t.Cleanup(r.stop)
	return r
}

func (r *rig) status(cookie uint64) (NamespaceStatus, bool) {
	for _, s := range r.mgr.Status() {
		if s.Cookie == cookie {
			return s, true
		}
	}
	return NamespaceStatus{}, false
}

func (r *rig) own(t *testing.T, cgroup, service string, ups ...l7proxy.Upstream) {
	t.Helper()
	id, err := cgroupfs.ID(cgroup)
	if err != nil {
		t.Fatal(err)
	}
	r.proxy.mu.Lock()
	r.proxy.owners[id] = service
	r.proxy.upstreams[service] = ups
	r.proxy.mu.Unlock()
}

func TestManagerOpensListenersInsideWorkloadNamespaces(t *testing.T) {
	// The loopback comes up just after the process starts (as with a
	// runtime); a rescan picks up what could not be opened before.
	r := startRig(t, 200*time.Millisecond)
	a, b := tu.NewSubCgroup(t, r.root, "pod-a"), tu.NewSubCgroup(t, r.root, "pod-b")
	r.own(t, a, "web", l7proxy.Upstream{Caller: "web", DestinationName: "db", BindAddr: "127.0.0.1:9191"})
	r.own(t, b, "api", l7proxy.Upstream{Caller: "api", DestinationName: "cache", BindAddr: "127.0.0.1:9292"})
	ca, cb := startContainer(t, a), startContainer(t, b)

	for _, c := range []*container{ca, cb} {
		tu.WaitFor(t, 10*time.Second, "the namespace ready with all its listeners", func() bool {
			st, _ := r.status(c.cookie)
			return r.dp.isReady(c.cookie) && len(st.Listeners) == 5
		})
	}
	for _, x := range []struct {
		c            *container
		mine, theirs string
		tag          string
	}{{ca, "127.0.0.1:9191", "127.0.0.1:9292", "upstream web->db"}, {cb, "127.0.0.1:9292", "127.0.0.1:9191", "upstream api->cache"}} {
		for _, addr := range []string{"127.0.0.1:15001", "[::1]:15001"} {
			if tag, err := x.c.tag(addr); err != nil || tag != "transparent" {
				t.Errorf("transparent %s from inside: %q, %v", addr, tag, err)
			}
		}
		if tag, err := x.c.tag(x.mine); err != nil || tag != x.tag {
			t.Errorf("own upstream %s from inside: %q, %v; want %q", x.mine, tag, err, x.tag)
		}
		if _, err := x.c.tag(x.theirs); err == nil {
			t.Errorf("another service's upstream %s is open in this namespace", x.theirs)
		}
		for _, q := range []struct{ network, addr string }{{"udp", "127.0.0.1:53"}, {"tcp", "127.0.0.1:53"}, {"udp", "[::1]:53"}} {
			got, err := x.c.query(q.network, q.addr, "billing.virtual.b.peerd.")
			if err != nil || len(got) != 1 || got[0] != "240.0.0.1" {
				t.Errorf("DNS %s %s from inside: %v, %v; want [240.0.0.1]", q.network, q.addr, got, err)
			}
		}
		st, ok := r.status(x.c.cookie)
		if !ok || !st.Ready || st.PID != x.c.c.Cmd.Process.Pid || st.Inode != x.c.h.Inode() || len(st.Listeners) != 5 {
			t.Errorf("status of %d: %+v (found %v)", x.c.cookie, st, ok)
		}
	}
	// peerd's own namespace has none of it.
	if c, err := net.DialTimeout("tcp", "127.0.0.1:9191", 200*time.Millisecond); err == nil {
		c.Close()
		t.Error("a workload upstream listener is open in peerd's own namespace")
	}
	if n := value(r.mgr.m.namespaces); n != 2 {
		t.Errorf("namespaces gauge = %v, want 2", n)
	}
	if n := value(r.mgr.m.listeners.WithLabelValues("upstream")); n != 2 {
		t.Errorf("upstream listeners gauge = %v, want 2", n)
	}
	if n := value(r.mgr.m.listeners.WithLabelValues("dns")); n != 4 {
		t.Errorf("dns listeners gauge = %v, want 4", n)
	}

	// A connection in flight when the namespace's process exits: the
	// manager releases the namespace, nothing else is hurt.
	conn, tag, err := ca.dial("127.0.0.1:9191")
	if err != nil || tag != "upstream web->db" {
		t.Fatalf("dial the upstream: %q, %v", tag, err)
	}
	ca.stop(t)
	tu.WaitFor(t, 10*time.Second, "the namespace released", func() bool {
		_, ok := r.status(ca.cookie)
		return !ok && r.dp.wasDeleted(ca.cookie)
	})
	conn.Close()
	if n := value(r.mgr.m.namespaces); n != 1 {
		t.Errorf("namespaces gauge after one exit = %v, want 1", n)
	}
	if tag, err := cb.tag("127.0.0.1:9292"); err != nil || tag != "upstream api->cache" {
		t.Errorf("the other namespace after the first went: %q, %v", tag, err)
	}
	// The manager's handle is dropped: with ours closed too, the
	// namespace can go away (its listeners no longer hold it).
	ca.h.Close()

	// Shutdown releases the rest.
	r.stop()
	if !r.dp.wasDeleted(cb.cookie) {
		t.Error("shutdown did not unmark the remaining namespace")
	}
	if _, err := cb.tag("127.0.0.1:15001"); err == nil {
		t.Error("a transparent listener is still open after shutdown")
	}
}

// TestManagerReactsToRefusalEvents: a second namespace in a cgroup already
// populated changes nothing inotify sees; the dataplane's refusal event
// makes the manager find it at once.
func TestManagerReactsToRefusalEvents(t *testing.T) {
	r := startRig(t, time.Hour)
	a := tu.NewSubCgroup(t, r.root, "pod")
	first := startContainer(t, a)
	tu.WaitFor(t, 10*time.Second, "the first namespace ready", func() bool { return r.dp.isReady(first.cookie) })
	second := startContainer(t, a)
	time.Sleep(300 * time.Millisecond)
	if _, ok := r.status(second.cookie); ok {
		t.Skip("the second namespace was found without an event (a scan was triggered by something else)")
	}
	r.dp.events <- NetnsEvent{NetnsCookie: second.cookie, PID: uint32(second.c.Cmd.Process.Pid)}
	tu.WaitFor(t, 5*time.Second, "the second namespace ready after the event", func() bool { return r.dp.isReady(second.cookie) })
	if tag, err := second.tag("127.0.0.1:15001"); err != nil || tag != "transparent" {
		t.Errorf("transparent from the second namespace: %q, %v", tag, err)
	}
	if n := value(r.mgr.m.failures.WithLabelValues(reasonRefused)); n != 1 {
		t.Errorf("refusals counted = %v, want 1", n)
	}
}

// TestManagerRemarksAClearedNamespace: the ready mark lives in a pinned map
// another peerd process can clear (the old one of a reload unmarks its
// namespaces as it hands over); the refused connect's event that follows
// brings the mark back, without a rescan interval's wait.
func TestManagerRemarksAClearedNamespace(t *testing.T) {
	r := startRig(t, time.Hour)
	a := tu.NewSubCgroup(t, r.root, "pod")
	c := startContainer(t, a)
	tu.WaitFor(t, 10*time.Second, "the namespace ready", func() bool { return r.dp.isReady(c.cookie) })
	if err := r.dp.DeleteWorkloadNetns(c.cookie); err != nil { // as the old process does
		t.Fatal(err)
	}
	r.dp.events <- NetnsEvent{NetnsCookie: c.cookie, PID: uint32(c.c.Cmd.Process.Pid)}
	tu.WaitFor(t, 5*time.Second, "the namespace marked again after the refusal", func() bool { return r.dp.isReady(c.cookie) })
}

// TestManagerIPv4OnlyNamespace: a namespace whose loopback has no ::1 gets
// the IPv4 listeners and is still marked ready; a port the workload holds
// is logged, counted and retried until it is free, never fatal.
func TestManagerIPv4OnlyNamespace(t *testing.T) {
	r := startRig(t, 100*time.Millisecond)
	a := tu.NewSubCgroup(t, r.root, "pod")
	r.own(t, a, "web", l7proxy.Upstream{Caller: "web", DestinationName: "db", BindAddr: "127.0.0.1:9191"})
	// Set up outside the captured tree, then moved in, as a runtime
	// would place a prepared process.
	c := startContainer(t, tu.NewCgroup(t))
	var taken net.Listener
	if err := c.h.Do(func() error {
		if err := os.WriteFile("/proc/sys/net/ipv6/conf/lo/disable_ipv6", []byte("1"), 0); err != nil {
			return err
		}
		var err error
		taken, err = net.Listen("tcp", "127.0.0.1:9191")
		return err
	}); err != nil {
		t.Fatalf("prepare the namespace: %v", err)
	}
	if err := os.WriteFile(filepath.Join(a, "cgroup.procs"), []byte(fmt.Sprint(c.c.Cmd.Process.Pid)), 0); err != nil {
		t.Fatal(err)
	}
	tu.WaitFor(t, 10*time.Second, "the namespace ready", func() bool { return r.dp.isReady(c.cookie) })
	tu.WaitFor(t, 5*time.Second, "the taken upstream port reported", func() bool {
		st, _ := r.status(c.cookie)
		return st.Failing[upstreamKey("127.0.0.1:9191")] != ""
	})
	st, _ := r.status(c.cookie)
	if st.IPv6 || len(st.Listeners) != 2 || st.Owner != "web" {
		t.Errorf("status: %+v; want IPv4 only, transparent and DNS on 127.0.0.1, owner web", st)
	}
	if tag, err := c.tag("127.0.0.1:15001"); err != nil || tag != "transparent" {
		t.Errorf("transparent from inside: %q, %v", tag, err)
	}
	if n := value(r.mgr.m.failures.WithLabelValues(reasonNoIPv6)); n != 1 {
		t.Errorf("no_ipv6 counted %v times, want once", n)
	}
	if n := value(r.mgr.m.failures.WithLabelValues(reasonUpstream)); n != 1 {
		t.Errorf("listen_upstream counted %v times, want once (then retried quietly)", n)
	}
	taken.Close()
	tu.WaitFor(t, 5*time.Second, "the upstream opened once the port is free", func() bool {
		tag, err := c.tag("127.0.0.1:9191")
		return err == nil && tag == "upstream web->db"
	})
	// The owner's upstreams change: the old listener closes, the new opens.
	r.own(t, a, "web", l7proxy.Upstream{Caller: "web", DestinationName: "db2", BindAddr: "127.0.0.1:9393"})
	tu.WaitFor(t, 5*time.Second, "the new upstream", func() bool {
		tag, err := c.tag("127.0.0.1:9393")
		_, oldErr := c.tag("127.0.0.1:9191")
		return err == nil && tag == "upstream web->db2" && oldErr != nil
	})
}

// value reads a gauge or counter.
func value(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	if m.Gauge != nil {
		return m.Gauge.GetValue()
	}
	return m.Counter.GetValue()
}
