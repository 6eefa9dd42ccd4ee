package agent

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/peerd/peerd/internal/testutil"
)

// TestWorkloadNamespaceReachesPeer: a process in a container (its own
// cgroup under the captured one and its own network namespace, loopback
// only) resolves billing.virtual.b.peerd. through 127.0.0.1:53 in its
// namespace and reaches billing in cluster B through the virtual IP, as
// the service owning its cgroup: peerd opened its DNS and transparent
// listeners inside the namespace and marked it ready. When the process
// exits, the namespace is released.
func TestWorkloadNamespaceReachesPeer(t *testing.T) {
	testutil.RequireRoot(t, "eBPF programs, child cgroups and network namespaces")
	if testing.Short() {
		t.Skip("starts two agents with the eBPF dataplane: skipped with -short")
	}
	if !testutil.InNewNetns(t) {
		return
	}
	testutil.RequireBPF(t)
	cgroup := testutil.NewCgroup(t)
	pod := filepath.Join(cgroup, "pod-web")
	if err := os.Mkdir(pod, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for i := 0; i < 100 && os.Remove(pod) != nil; i++ {
			time.Sleep(20 * time.Millisecond)
		}
	})
	pins := filepath.Join("/sys/fs/bpf", testutil.UniqueName("peerd-test-"))
	t.Cleanup(func() { _ = CleanupDataplane(pins) })

	a := startMeshCluster(t, "a", func(c *Config) {
		c.CgroupPath, c.BPFPinDir, c.TransparentPort = cgroup, pins, freePort(t)
		c.DNSAddr = "127.0.0.1:0"
		c.WorkloadNetns, c.WorkloadDNSAddrs = true, "127.0.0.1:53,[::1]:53"
	})
	b := startMeshCluster(t, "b", nil)
	a.peerWith(t, b)
	b.register(t, &api.AgentServiceRegistration{ID: "billing-1", Name: "billing", Port: startEcho(t, "billing-1", false), Address: "127.0.0.1"})
	b.write(t, &api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: "billing", Protocol: "http"})
	b.export(t, "a", "billing")
	b.write(t, &api.ServiceIntentionsConfigEntry{Kind: api.ServiceIntentions, Name: "billing",
		Sources: []*api.SourceIntention{{Name: "web", Peer: "a", Action: api.IntentionActionAllow}}})
	a.register(t, &api.AgentServiceRegistration{Name: "web", Port: 9, Meta: map[string]string{"peerd-cgroup": pod}})
	a.waitImportedPassing(t, "billing", "b", 1)

	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), envWorkloadClient+"=127.0.0.1:53 billing.virtual.b.peerd. 80")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	c := testutil.StartContainer(t, cmd, testutil.ContainerOptions{Cgroup: pod})
	pid := c.Cmd.Process.Pid
	type nsStatus struct {
		Cookie    uint64
		PID       int
		Owner     string
		Ready     bool
		Listeners []string
	}
	var st struct {
		Workloads []nsStatus
	}
	testutil.Eventually(t, 20*time.Second, "the container's namespace in the dataplane status", func() error {
		if err := getJSON("http://"+a.agent.HTTPAddr()+"/v1/agent/dataplane", &st); err != nil {
			return err
		}
		for _, ns := range st.Workloads {
			if ns.PID == pid && ns.Ready && ns.Owner == "web" && len(ns.Listeners) >= 3 {
				return nil
			}
		}
		return fmt.Errorf("workloads: %+v", st.Workloads)
	})
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the container's client: %v: %s", err, out.String())
	}
	tdA := trustDomainOf(t, a)
	if got := out.String(); !strings.Contains(got, "status 200") || !strings.Contains(got, "resolved billing.virtual.b.peerd. to 240.") ||
		!strings.Contains(got, "URI=spiffe://"+tdA+"/ns/default/dc/dc-a/svc/web") {
		t.Fatalf("the container did not reach billing as web:\n%s", got)
	}
	testutil.Eventually(t, 10*time.Second, "the namespace released after its process exited", func() error {
		if err := getJSON("http://"+a.agent.HTTPAddr()+"/v1/agent/dataplane", &st); err != nil {
			return err
		}
		if len(st.Workloads) != 0 {
			return fmt.Errorf("workloads: %+v", st.Workloads)
		}
		return nil
	})
	if m := scrape(t, a.agent); metricValue(m, "peerd_workload_namespaces") != 0 {
		t.Errorf("peerd_workload_namespaces:\n%s", grepLines(m, "peerd_workload"))
	}
}
