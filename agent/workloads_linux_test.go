package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/vishvananda/netlink"

	"github.com/peerd/peerd/internal/testutil"
)

// envContainer makes the test binary a container's workload: it reads
// commands from stdin, one per line, and answers each with one line.
const envContainer = "PEERD_TEST_CONTAINER"

// containerWorkload is the process inside a test container. Commands:
//
//	resolve <dns addr> <name>  -> ok <ip>[,<ip>...] | err <error>
//	get <url>                  -> ok <status> <body, quoted> | err <error>
//	dial <host:port>           -> ok | err <errno> <error>
func containerWorkload() int {
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) == 0 {
			continue
		}
		fmt.Println(containerCommand(f))
	}
	return 0
}

func containerCommand(f []string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	switch {
	case f[0] == "resolve" && len(f) == 3:
		r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "udp", f[1])
		}}
		ips, err := r.LookupNetIP(ctx, "ip", f[2])
		if err != nil {
			return "err " + err.Error()
		}
		var s []string
		for _, ip := range ips {
			s = append(s, ip.Unmap().String())
		}
		return "ok " + strings.Join(s, ",")
	case f[0] == "get" && len(f) == 2:
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, f[1], nil)
		resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
		if err != nil {
			return "err " + err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return fmt.Sprintf("ok %d %q", resp.StatusCode, body)
	case f[0] == "dial" && len(f) == 2:
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", f[1])
		if err != nil {
			var errno syscall.Errno
			if errors.As(err, &errno) {
				return fmt.Sprintf("err %d %v", int(errno), err)
			}
			return "err 0 " + err.Error()
		}
		c.Close()
		return "ok"
	}
	return "err unknown command " + strings.Join(f, " ")
}

// testContainer drives one container's workload.
type testContainer struct {
	*testutil.Container
	in  io.Writer
	out *bufio.Scanner
}

func startTestContainer(t *testing.T, opts testutil.ContainerOptions) *testContainer {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), envContainer+"=1")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c := testutil.StartContainer(t, cmd, opts)
	return &testContainer{Container: c, in: in, out: bufio.NewScanner(out)}
}

func (c *testContainer) do(t *testing.T, cmd string) string {
	t.Helper()
	if _, err := fmt.Fprintln(c.in, cmd); err != nil {
		t.Fatalf("container %d: %v", c.Cmd.Process.Pid, err)
	}
	if !c.out.Scan() {
		t.Fatalf("container %d: no answer to %q: %v", c.Cmd.Process.Pid, cmd, c.out.Err())
	}
	return c.out.Text()
}

// TestWorkloadNamespacesReachPeer is issue 13's container test:
// workloads started the way a container runtime starts them (a child
// cgroup of the captured one, a network namespace of their own with a veth
// to the node) resolve billing.virtual.b.peerd. through peerd's DNS inside
// their namespace and call billing in cluster B through both terminators,
// transparently, over IPv4 and IPv6; B sees each container's own service.
// Two containers with the same address in different namespaces are told
// apart. A container outside the captured cgroup is not captured, and its
// connection to the virtual IP fails at once on the node's unreachable
// route instead of leaving the node.
//
// The node is this test's private network namespace (the test binary
// re-executes itself there); every address is inside it.
func TestWorkloadNamespacesReachPeer(t *testing.T) {
	testutil.RequireRoot(t, "eBPF programs, child cgroups and network namespaces")
	if testing.Short() {
		t.Skip("starts two agents with the eBPF dataplane and three containers: skipped with -short")
	}
	if !testutil.InNewNetns(t) {
		return
	}
	testutil.RequireBPF(t)
	// The node forwards, and has a default route to nowhere: without
	// peerd's unreachable routes a container's SYN to a virtual IP would
	// be forwarded out of it (and time out) rather than refused.
	for _, f := range []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"} {
		if err := os.WriteFile(f, []byte("1"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// (a veth pair: the kernel may have no dummy driver; netlink, not
	// ip(8): the kernel matrix's guests have no iproute2 on their PATH)
	nodeUplink(t)

	captured := testutil.NewCgroup(t)
	outside := testutil.NewCgroup(t)
	webCg := testutil.NewSubCgroup(t, captured, "web-ctr")
	apiCg := testutil.NewSubCgroup(t, captured, "api-ctr")
	pins := filepath.Join("/sys/fs/bpf", testutil.UniqueName("peerd-test-"))
	t.Cleanup(func() {
		if err := CleanupDataplane(pins); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})

	a := startMeshCluster(t, "a", func(c *Config) {
		c.CgroupPath, c.BPFPinDir, c.TransparentPort = captured, pins, freePort(t)
		c.DNSAddr = "127.0.0.1:0"
		c.WorkloadNetns, c.WorkloadDNSAddrs = true, "127.0.0.1:53,[::1]:53"
	})
	b := startMeshCluster(t, "b", nil)
	a.peerWith(t, b)
	b.register(t, &api.AgentServiceRegistration{ID: "billing-1", Name: "billing", Port: startEcho(t, "billing-1", false), Address: "127.0.0.1"})
	b.write(t, &api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: "billing", Protocol: "http"})
	b.export(t, "a", "billing")
	b.write(t, &api.ServiceIntentionsConfigEntry{Kind: api.ServiceIntentions, Name: "billing",
		Sources: []*api.SourceIntention{
			{Name: "web", Peer: "a", Action: api.IntentionActionAllow},
			{Name: "api", Peer: "a", Action: api.IntentionActionAllow},
		}})
	upstream := freePort(t)
	a.register(t, &api.AgentServiceRegistration{Name: "web", Port: 9, Meta: map[string]string{"peerd-cgroup": webCg},
		Proxy: &api.AgentServiceConnectProxyConfig{Upstreams: []api.Upstream{{DestinationName: "billing", DestinationPeer: "b", LocalBindPort: upstream}}}})
	a.register(t, &api.AgentServiceRegistration{Name: "api", Port: 9, Meta: map[string]string{"peerd-cgroup": apiCg}})
	a.waitImportedPassing(t, "billing", "b", 1)

	// web and api have the same address, each in its own namespace.
	same := testutil.ContainerOptions{
		Addr: netip.MustParsePrefix("10.77.0.2/24"), Gateway: netip.MustParseAddr("10.77.0.1"),
		Addr6: netip.MustParsePrefix("fd77::2/64"), Gateway6: netip.MustParseAddr("fd77::1"),
	}
	webOpts, apiOpts := same, same
	webOpts.Cgroup, apiOpts.Cgroup = webCg, apiCg
	web := startTestContainer(t, webOpts)
	api := startTestContainer(t, apiOpts)
	stranger := startTestContainer(t, testutil.ContainerOptions{Cgroup: outside,
		Addr: netip.MustParsePrefix("10.78.0.2/24"), Gateway: netip.MustParseAddr("10.78.0.1"),
		Addr6: netip.MustParsePrefix("fd78::2/64"), Gateway6: netip.MustParseAddr("fd78::1")})

	waitWorkloadNetns(t, a, map[int]string{web.Cmd.Process.Pid: "web", api.Cmd.Process.Pid: "api"})

	tdA := trustDomainOf(t, a)
	var vip4, vip6 string
	for _, c := range []struct {
		ctr  *testContainer
		name string
	}{{web, "web"}, {api, "api"}} {
		out := c.ctr.do(t, "resolve 127.0.0.1:53 billing.virtual.b.peerd.")
		ips, ok := strings.CutPrefix(out, "ok ")
		if !ok {
			t.Fatalf("%s: resolve inside the container: %s", c.name, out)
		}
		for _, ip := range strings.Split(ips, ",") {
			if a := netip.MustParseAddr(ip); a.Is4() {
				vip4 = ip
			} else {
				vip6 = ip
			}
		}
		if !strings.HasPrefix(vip4, "240.") || !strings.HasPrefix(vip6, "fd70:6565:7264:") {
			t.Fatalf("%s: billing.virtual.b.peerd. resolved to %s", c.name, ips)
		}
		for _, url := range []string{"http://" + vip4 + "/from-" + c.name, "http://[" + vip6 + "]/from-" + c.name} {
			out := c.ctr.do(t, "get "+url)
			if !strings.HasPrefix(out, "ok 200 ") || !strings.Contains(out, `\"Instance\":\"billing-1\"`) {
				t.Fatalf("%s: GET %s from the container: %s", c.name, url, out)
			}
			if want := "URI=spiffe://" + tdA + "/ns/default/dc/dc-a/svc/" + c.name; !strings.Contains(out, want) {
				t.Fatalf("%s: billing did not see %s as the caller (%s): %s", c.name, c.name, want, out)
			}
		}
	}

	// web's explicit upstream is open inside web's namespace only: api,
	// in a namespace of its own, cannot call billing with web's identity.
	up := fmt.Sprintf("http://127.0.0.1:%d/explicit", upstream)
	if out := web.do(t, "get "+up); !strings.HasPrefix(out, "ok 200 ") || !strings.Contains(out, "/svc/web") {
		t.Fatalf("web's explicit upstream inside its container: %s", out)
	}
	if out := api.do(t, "get "+up); !strings.HasPrefix(out, "err ") {
		t.Fatalf("api reached web's upstream from its own namespace: %s", out)
	}

	// The stranger's connection is not captured: it leaves its namespace
	// by its default route, and the node refuses it at once.
	for _, dst := range []string{net.JoinHostPort(vip4, "80"), net.JoinHostPort(vip6, "80")} {
		start := time.Now()
		out := stranger.do(t, "dial "+dst)
		took := time.Since(start)
		if !strings.HasPrefix(out, fmt.Sprintf("err %d ", int(syscall.EHOSTUNREACH))) && !strings.HasPrefix(out, fmt.Sprintf("err %d ", int(syscall.ENETUNREACH))) {
			t.Fatalf("a container outside the captured cgroup dialing %s: %s (want EHOSTUNREACH or ENETUNREACH)", dst, out)
		}
		if took > 2*time.Second {
			t.Errorf("refusing %s took %v: the node's unreachable route should answer at once", dst, took)
		}
	}

	// api's container exits: peerd lets its namespace go.
	_ = api.Cmd.Process.Kill()
	_ = api.Cmd.Wait()
	st := waitWorkloadNetns(t, a, map[int]string{web.Cmd.Process.Pid: "web"})
	if len(st) != 1 {
		t.Fatalf("workload namespaces after api's container exited: %+v", st)
	}
	if out := web.do(t, "get http://"+vip4+"/still"); !strings.HasPrefix(out, "ok 200 ") {
		t.Fatalf("web after api left: %s", out)
	}
	if m := scrape(t, a.agent); metricValue(m, "peerd_workload_namespaces") != 1 {
		t.Errorf("peerd_workload_namespaces:\n%s", grepLines(m, "peerd_workload"))
	}
}

// workloadNetns is one line of the dataplane status' Workloads.
type workloadNetns struct {
	Cookie    uint64
	PID       int
	Owner     string
	Ready     bool
	Listeners []string
}

// waitWorkloadNetns waits until the dataplane status lists exactly the
// namespaces of the given container pids, each ready with its owner and
// its listeners (transparent, DNS, at least), and returns them.
func waitWorkloadNetns(t *testing.T, a *meshCluster, owners map[int]string) []workloadNetns {
	t.Helper()
	var st struct{ Workloads []workloadNetns }
	testutil.Eventually(t, 20*time.Second, "the containers' namespaces ready in the dataplane status", func() error {
		if err := getJSON("http://"+a.agent.HTTPAddr()+"/v1/agent/dataplane", &st); err != nil {
			return err
		}
		if len(st.Workloads) != len(owners) {
			return fmt.Errorf("workloads: %+v", st.Workloads)
		}
		for _, ns := range st.Workloads {
			if owner, ok := owners[ns.PID]; !ok || !ns.Ready || ns.Owner != owner || len(ns.Listeners) < 3 {
				return fmt.Errorf("workloads: %+v", st.Workloads)
			}
		}
		return nil
	})
	return st.Workloads
}

// nodeUplink gives this namespace an uplink with a default route (IPv4 and
// IPv6) to a gateway nobody answers for.
func nodeUplink(t *testing.T) {
	t.Helper()
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "uplink"}, PeerName: "uplink-far"}); err != nil {
		t.Fatal(err)
	}
	up, err := netlink.LinkByName("uplink")
	if err != nil {
		t.Fatal(err)
	}
	far, err := netlink.LinkByName("uplink-far")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []netlink.Link{up, far} {
		if err := netlink.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range []string{"192.0.2.1/24", "2001:db8::1/64"} {
		addr, _ := netlink.ParseAddr(a)
		addr.Flags = syscall.IFA_F_NODAD
		if err := netlink.AddrAdd(up, addr); err != nil {
			t.Fatalf("uplink address %s: %v", a, err)
		}
	}
	for _, gw := range []string{"192.0.2.254", "2001:db8::fe"} {
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: up.Attrs().Index, Gw: net.ParseIP(gw)}); err != nil {
			t.Fatalf("default route via %s: %v", gw, err)
		}
	}
}
