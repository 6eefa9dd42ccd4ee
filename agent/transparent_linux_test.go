package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/peerd/peerd/internal/testutil"
)

// The transparent-capture test runs its client as a child process (this
// test binary again) placed in the captured cgroup from its first
// instruction; this variable tells the child what to do.
const (
	envCaptureClient = "PEERD_TEST_CAPTURE_CLIENT" // "<dns addr> <name> <port>"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(envCaptureClient); spec != "" {
		os.Exit(captureClient(spec))
	}
	if os.Getenv(envContainer) != "" {
		os.Exit(containerWorkload())
	}
	os.Exit(m.Run())
}

// captureClient resolves a name through peerd's DNS and fetches
// http://<answer>:<port>/ with no proxy configuration: only the eBPF
// capture can get it anywhere. It prints the body, or the error.
func captureClient(spec string) int {
	f := strings.Fields(spec)
	if len(f) != 3 {
		fmt.Println("bad client spec", spec)
		return 2
	}
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "udp", f[0])
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ips, err := r.LookupIPAddr(ctx, f[1])
	if err != nil || len(ips) == 0 {
		fmt.Println("resolve:", ips, err)
		return 1
	}
	var v4 net.IP
	for _, ip := range ips {
		if ip.IP.To4() != nil {
			v4 = ip.IP
		}
	}
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + net.JoinHostPort(v4.String(), f[2]) + "/captured")
	if err != nil {
		fmt.Println("get:", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Printf("resolved %s to %s; status %d; body %s\n", f[1], v4, resp.StatusCode, body)
	return 0
}

// TestTransparentCaptureAcrossPeers: a process in the captured cgroup
// resolves billing.virtual.b.peerd. through peerd's DNS and reaches billing
// in cluster B through both terminators, with no explicit upstream; B sees
// it as web (the service that declared the cgroup). A process outside the
// cgroup is not captured.
//
// It runs in a private network namespace (the test binary re-executes
// itself there), so a connection to a virtual IP cannot leave the machine
// even if capture failed; the cgroup is a child created and removed here.
func TestTransparentCaptureAcrossPeers(t *testing.T) {
	testutil.RequireRoot(t, "eBPF programs, a child cgroup and a network namespace")
	if testing.Short() {
		t.Skip("starts two agents with the eBPF dataplane: skipped with -short")
	}
	if !testutil.InNewNetns(t) {
		return
	}
	// The gateway VIP range is delivered locally in this namespace only.
	if out, err := exec.Command("ip", "route", "add", "local", "203.0.113.0/24", "dev", "lo").CombinedOutput(); err != nil {
		t.Fatalf("local route for the gateway VIPs: %v %s", err, out)
	}
	testutil.RequireBPF(t)
	cgroup := testutil.NewCgroup(t)
	pins := filepath.Join("/sys/fs/bpf", testutil.UniqueName("peerd-test-"))
	t.Cleanup(func() {
		// Cleanups run last in, first out: the dev agent has stopped by
		// now, and it removes its pins on exit.
		_, left := os.Stat(pins)
		if err := CleanupDataplane(pins); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		if left == nil {
			t.Errorf("the dev agent left %s behind on exit", pins)
		}
		if _, err := os.Stat(pins); err == nil {
			t.Errorf("%s is still there after cleanup", pins)
		}
	})

	tport := freePort(t)
	a := startMeshCluster(t, "a", func(c *Config) {
		c.CgroupPath, c.BPFPinDir, c.TransparentPort = cgroup, pins, tport
		c.DNSAddr = "127.0.0.1:0"
		c.GatewayVIPs = []string{"203.0.113.0/24"}
	})
	b := startMeshCluster(t, "b", nil)
	a.peerWith(t, b)
	b.register(t, &api.AgentServiceRegistration{ID: "billing-1", Name: "billing", Port: startEcho(t, "billing-1", false), Address: "127.0.0.1"})
	b.write(t, &api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: "billing", Protocol: "http"})
	b.export(t, "a", "billing")
	b.write(t, &api.ServiceIntentionsConfigEntry{Kind: api.ServiceIntentions, Name: "billing",
		Sources: []*api.SourceIntention{{Name: "web", Peer: "a", Action: api.IntentionActionAllow},
			{Name: "shop", Peer: "a", Action: api.IntentionActionAllow}, {Name: "pods", Peer: "a", Action: api.IntentionActionAllow}}})
	// web declares the cgroup it runs in; it has no upstreams at all.
	a.register(t, &api.AgentServiceRegistration{Name: "web", Port: 9, Meta: map[string]string{"peerd-cgroup": cgroup}})
	a.waitImportedPassing(t, "billing", "b", 1)

	runIn := func(dir string) (string, error) {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), envCaptureClient+"="+a.agent.DNSAddr()+" billing.virtual.b.peerd. 80")
		if dir != "" {
			cgfd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
			if err != nil {
				return "", err
			}
			defer syscall.Close(cgfd)
			cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cgfd}
		}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
	run := func(inCgroup bool) (string, error) {
		if inCgroup {
			return runIn(cgroup)
		}
		return runIn("")
	}
	tdA := trustDomainOf(t, a)
	testutil.Eventually(t, 30*time.Second, "a process in the cgroup reaches billing through its virtual IP", func() error {
		out, err := run(true)
		if err != nil || !strings.Contains(out, "status 200") || !strings.Contains(out, `"Instance":"billing-1"`) {
			return fmt.Errorf("%v: %s", err, out)
		}
		if !strings.Contains(out, "resolved billing.virtual.b.peerd. to 240.") {
			return fmt.Errorf("not resolved to a virtual IP: %s", out)
		}
		if !strings.Contains(out, "URI=spiffe://"+tdA+"/ns/default/dc/dc-a/svc/web") {
			return fmt.Errorf("billing did not see web as the caller: %s", out)
		}
		return nil
	})
	if out, err := run(false); err == nil {
		t.Fatalf("a process outside the cgroup reached the virtual IP: %s", out)
	}

	// Callers in sub-cgroups: a unit's scope is its unit's service (the
	// nearest claimed ancestor), and a pod's container is the service
	// registered with the pod's UID.
	const podUID = "3f2c9a7e-1b4d-4e8a-9c0f-5d6e7f8a9b0c"
	scope := testutil.NewSubCgroup(t, cgroup, filepath.Join("shop.slice", "worker.scope"))
	ctr := testutil.NewSubCgroup(t, cgroup, filepath.Join("kubepods", "burstable", "pod"+podUID, "ctr"))
	a.register(t, &api.AgentServiceRegistration{Name: "shop", Port: 10, Meta: map[string]string{"peerd-cgroup": filepath.Join(cgroup, "shop.slice")}})
	a.register(t, &api.AgentServiceRegistration{Name: "pods", Port: 11, Meta: map[string]string{"peerd-pod-uid": podUID}})
	for dir, want := range map[string]string{scope: "shop", ctr: "pods"} {
		testutil.Eventually(t, 30*time.Second, "a process in "+dir+" calls billing as "+want, func() error {
			out, err := runIn(dir)
			if err != nil || !strings.Contains(out, "status 200") {
				return fmt.Errorf("%v: %s", err, out)
			}
			if !strings.Contains(out, "URI=spiffe://"+tdA+"/ns/default/dc/dc-a/svc/"+want) {
				return fmt.Errorf("billing did not see %s as the caller: %s", want, out)
			}
			return nil
		})
	}
	var st struct {
		Enabled bool
		Status  struct {
			Capture struct {
				Loaded   bool
				Counters map[string]uint64
			}
		}
	}
	if err := getJSON("http://"+a.agent.HTTPAddr()+"/v1/agent/dataplane", &st); err != nil {
		t.Fatal(err)
	}
	if !st.Enabled || !st.Status.Capture.Loaded {
		t.Fatalf("dataplane status %+v", st)
	}
	var banner bytes.Buffer
	a.agent.PrintBanner(&banner)
	if want := fmt.Sprintf(" dataplane: capture loaded, fastpath loaded, inbound loaded; transparent port %d; pins %s (removed on exit)\n", tport, pins); !strings.Contains(banner.String(), want) {
		t.Errorf("banner lacks %q:\n%s", want, banner.String())
	}
	if metrics := scrape(t, a.agent); !strings.Contains(metrics, `peerd_dataplane_layer_loaded{layer="capture"} 1`) ||
		!strings.Contains(metrics, `peerd_dataplane_layer_loaded{layer="inbound"} 1`) {
		t.Fatalf("layers not loaded:\n%s", grepLines(metrics, "peerd_dataplane"))
	}

	// Inbound capture: a connection to a gateway VIP (no interface has
	// it) on the gateway's port reaches A's gateway, which refuses this
	// bogus server name and counts it.
	_, gwPort, _ := net.SplitHostPort(a.agent.GatewayAddr())
	before := metricValue(scrape(t, a.agent), `peerd_proxy_tls_handshake_failures_total{listener="gateway",reason="unknown_sni"}`)
	if c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", net.JoinHostPort("203.0.113.7", gwPort),
		&tls.Config{ServerName: "nobody.example", InsecureSkipVerify: true}); err == nil {
		c.Close()
		t.Fatal("the gateway accepted an unknown server name")
	}
	testutil.Eventually(t, 5*time.Second, "the gateway VIP reached the gateway", func() error {
		if v := metricValue(scrape(t, a.agent), `peerd_proxy_tls_handshake_failures_total{listener="gateway",reason="unknown_sni"}`); v <= before {
			return fmt.Errorf("no refusal counted at the gateway (%v)", v)
		}
		return nil
	})
}
