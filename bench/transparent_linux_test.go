package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/peerd/peerd/bench/l7"
	"github.com/peerd/peerd/internal/testutil"
)

// BenchmarkTransparentVsExplicit is issue 5's benchmark (c): the cross-peer
// HTTP benchmark through peerd in transparent mode (the client connects to
// billing's virtual IP and the eBPF capture hands the connection to the
// terminator) against explicit mode (the client connects to web's upstream
// listener), in the same run, closed-loop, the modes taking turns. Target:
// transparent no worse.
//
// PEERD_BENCH_PEERD_ARGS adds flags to agent A (e.g.
// -dataplane-fastpath=false to measure without the sockmap).
//
// It needs root (eBPF, a child cgroup) and runs in a private network
// namespace (the benchmark re-executes itself there), so a connection to a
// virtual IP cannot leave the machine even if capture failed.
func BenchmarkTransparentVsExplicit(b *testing.B) {
	testutil.RequireRoot(b, "eBPF capture, a child cgroup and a network namespace")
	if !testutil.InNewNetns(b) {
		return
	}
	testutil.RequireBPF(b)
	cs := startCaptureBench(b)
	cgroup, pair, vip := cs.cgroup, cs.pair, cs.vip
	// From here on this process is in the captured cgroup: its connections
	// to the virtual IP go to peerd A's transparent listener.
	if err := os.WriteFile(filepath.Join(cgroup, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		b.Fatalf("join the benchmark's cgroup: %v", err)
	}
	transparent := vip + ":80"
	if err := l7.WaitEcho(transparent, l7BodySize, 20*time.Second); err != nil {
		b.Fatalf("transparent path to %s: %v\n%s", transparent, err, pair.Tails(20))
	}

	body := make([]byte, l7BodySize)
	modes := []struct {
		name, addr string
		results    []*l7.Result
	}{{name: "explicit", addr: pair.Upstream}, {name: "transparent", addr: transparent}}
	const rounds, per = 3, 2 * time.Second
	for r := 0; r < rounds; r++ {
		for i := range modes {
			m := &modes[i]
			res, err := l7.ClosedLoop(l7.Target{Addr: m.addr, Method: http.MethodPost, Path: "/", Body: body, WantBody: l7BodySize}, l7ClosedConns, 300*time.Millisecond, per, l7.Window{})
			if err != nil {
				b.Fatalf("%s: %v", m.name, err)
			}
			if res.Errors > 0 {
				b.Fatalf("%s: %d errors, first: %s", m.name, res.Errors, res.FirstError)
			}
			m.results = append(m.results, res)
		}
	}
	fmt.Printf("\ncross-peer HTTP/1.1 through peerd, explicit upstream vs transparent capture (%d closed-loop connections, %d rounds of %v, POST %d B)\n",
		l7ClosedConns, rounds, per, l7BodySize)
	rps := map[string]float64{}
	for i, m := range modes {
		rps[m.name] = reportMode(b, m.name, m.results, i == 0)
	}
	ratio := rps["transparent"] / rps["explicit"]
	fmt.Printf("transparent/explicit rps: %.3f (target: at least 1, i.e. no worse)\n", ratio)
	b.ReportMetric(ratio, "transparent/explicit-rps")
}

// waitVirtualIP polls GET /v1/virtual-ips for service's IPv4 address.
func waitVirtualIP(httpAddr, service string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get("http://" + httpAddr + "/v1/virtual-ips")
		if err == nil {
			var vips []struct{ Service, IPv4 string }
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if json.Unmarshal(data, &vips) == nil {
				for _, v := range vips {
					if v.Service == service && v.IPv4 != "" {
						return v.IPv4, nil
					}
				}
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no virtual IP for %s within %v (last error %v)", service, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// captureBench is what the capture benchmarks share: two peerd processes
// peered (A with the capture on for cgroup, in a cgroup of its own, so the
// fast path can pair its loopback sockets with the workload's), web
// registered as cgroup's service, and billing's virtual IP at A.
type captureBench struct {
	cgroup string
	pair   *l7.PeerdPair
	vip    string
}

func startCaptureBench(b *testing.B) *captureBench {
	b.Helper()
	cgroup := testutil.NewCgroup(b)
	daemon := testutil.NewCgroup(b)
	pins := filepath.Join("/sys/fs/bpf", testutil.UniqueName("peerd-bench-"))

	dir := b.TempDir()
	env := l7.Env{Dir: dir, Cleanup: b.Cleanup, Logf: b.Logf}
	bins := buildL7Binaries(b, dir)
	b.Cleanup(func() {
		if out, err := exec.Command(bins.peerd, "dataplane", "cleanup", "-bpf-pin-dir", pins).CombinedOutput(); err != nil {
			b.Errorf("dataplane cleanup: %v %s", err, out)
		}
	})
	_, echoAddr, err := l7.StartEcho(env, bins.echo, l7BodySize)
	if err != nil {
		b.Fatal(err)
	}
	if err := l7.WaitEcho(echoAddr, l7BodySize, 10*time.Second); err != nil {
		b.Fatal(err)
	}
	tport, err := l7.FreeAddr()
	if err != nil {
		b.Fatal(err)
	}
	_, port, _ := strings.Cut(tport, ":")
	pair, err := l7.StartPeerdPairWith(env, bins.peerd, bins.peerctl, echoAddr, l7BodySize, l7.PairOptions{
		AArgs:   append([]string{"-cgroup-path", cgroup, "-bpf-pin-dir", pins, "-transparent-port", port}, strings.Fields(os.Getenv("PEERD_BENCH_PEERD_ARGS"))...),
		WebMeta: map[string]string{"peerd-cgroup": cgroup},
		ACgroup: daemon,
	})
	if err != nil {
		b.Fatal(err)
	}
	vip, err := waitVirtualIP(pair.A.HTTPAddr, "billing", 20*time.Second)
	if err != nil {
		b.Fatalf("%v\n%s", err, pair.Tails(20))
	}
	return &captureBench{cgroup: cgroup, pair: pair, vip: vip}
}

// reportMode prints one mode's row of a closed-loop table (rps, p50 and
// p99 over all its rounds; header first when asked), reports the three as
// benchmark metrics and returns its rps.
func reportMode(b *testing.B, name string, results []*l7.Result, header bool) float64 {
	if header {
		fmt.Printf("%-14s %10s %10s %10s\n", "mode", "rps", "p50 µs", "p99 µs")
	}
	var completed int
	var window time.Duration
	var lat []time.Duration
	for _, res := range results {
		completed += res.Completed
		window += res.Window
		lat = append(lat, res.Latency...)
	}
	slices.Sort(lat)
	rps := float64(completed) / window.Seconds()
	p50, p99 := l7.Percentile(lat, 0.50), l7.Percentile(lat, 0.99)
	fmt.Printf("%-14s %10.0f %10d %10d\n", name, rps, p50.Microseconds(), p99.Microseconds())
	b.ReportMetric(rps, name+"-rps")
	b.ReportMetric(float64(p50.Microseconds()), name+"-p50-us")
	b.ReportMetric(float64(p99.Microseconds()), name+"-p99-us")
	return rps
}
