package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/peerd/peerd/bench/l7"
	"github.com/peerd/peerd/internal/testutil"
)

// envLoadWorker makes the benchmark binary a load generator that runs where
// it was started (a container): it reads "<addr> <conns> <warmup> <dur>"
// lines and answers each with one closed-loop l7.Result as JSON.
const envLoadWorker = "PEERD_BENCH_LOAD_WORKER"

func TestMain(m *testing.M) {
	if os.Getenv(envLoadWorker) != "" {
		os.Exit(loadWorker())
	}
	os.Exit(m.Run())
}

func loadWorker() int {
	in := bufio.NewScanner(os.Stdin)
	enc := json.NewEncoder(os.Stdout)
	body := make([]byte, l7BodySize)
	for in.Scan() {
		f := strings.Fields(in.Text())
		var res *l7.Result
		var err error
		if len(f) != 4 {
			err = fmt.Errorf("want <addr> <conns> <warmup> <dur>, got %q", in.Text())
		} else {
			conns, _ := strconv.Atoi(f[1])
			warm, _ := time.ParseDuration(f[2])
			dur, _ := time.ParseDuration(f[3])
			res, err = l7.ClosedLoop(l7.Target{Addr: f[0], Method: http.MethodPost, Path: "/", Body: body, WantBody: l7BodySize}, conns, warm, dur, l7.Window{})
		}
		if err != nil {
			res = &l7.Result{FirstError: err.Error(), Errors: 1}
		}
		if err := enc.Encode(res); err != nil {
			return 1
		}
	}
	return 0
}

// BenchmarkContainerCapture is issue 13's figure: cross-peer HTTP/1.1
// through peerd from a container (its own cgroup and network namespace,
// joined to the node by a veth), transparently captured to billing's
// virtual IP, against the same container through its service's explicit
// upstream (opened by peerd inside the container's namespace), against a
// process in peerd's own namespace captured the same way, in one run,
// closed-loop, the modes taking turns. (The capture programs' cost per
// connect, container against node, is BenchmarkConnect4Cost's in
// dataplane/.)
//
// It needs root and runs in a private network namespace (the benchmark
// re-executes itself there).
func BenchmarkContainerCapture(b *testing.B) {
	testutil.RequireRoot(b, "eBPF capture, child cgroups and network namespaces")
	if !testutil.InNewNetns(b) {
		return
	}
	testutil.RequireBPF(b)
	cs := startCaptureBench(b)
	cgroup, pair, vip := cs.cgroup, cs.pair, cs.vip
	transparent := vip + ":80"

	// The container: web's cgroup, a namespace of its own.
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), envLoadWorker+"=1")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	testutil.StartContainer(b, cmd, testutil.ContainerOptions{Cgroup: cgroup})
	results := json.NewDecoder(out)
	inContainer := func(addr string, warm, dur time.Duration) (*l7.Result, error) {
		if _, err := fmt.Fprintf(in, "%s %d %v %v\n", addr, l7ClosedConns, warm, dur); err != nil {
			return nil, err
		}
		var res l7.Result
		if err := results.Decode(&res); err != nil {
			return nil, fmt.Errorf("container's answer: %w", err)
		}
		return &res, nil
	}

	// From here on this process is in the captured cgroup too.
	if err := os.WriteFile(filepath.Join(cgroup, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		b.Fatalf("join the benchmark's cgroup: %v", err)
	}
	if err := l7.WaitEcho(transparent, l7BodySize, 20*time.Second); err != nil {
		b.Fatalf("transparent path to %s: %v\n%s", transparent, err, pair.Tails(20))
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		res, err := inContainer(transparent, 0, 200*time.Millisecond)
		if err == nil && res.Completed > 0 && res.Errors == 0 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("the container never reached %s: %v %+v\n%s", transparent, err, res, pair.Tails(20))
		}
		time.Sleep(200 * time.Millisecond)
	}

	body := make([]byte, l7BodySize)
	type mode struct {
		name    string
		run     func(warm, dur time.Duration) (*l7.Result, error)
		results []*l7.Result
	}
	modes := []*mode{
		{name: "node-process", run: func(warm, dur time.Duration) (*l7.Result, error) {
			return l7.ClosedLoop(l7.Target{Addr: transparent, Method: http.MethodPost, Path: "/", Body: body, WantBody: l7BodySize}, l7ClosedConns, warm, dur, l7.Window{})
		}},
		{name: "container", run: func(warm, dur time.Duration) (*l7.Result, error) { return inContainer(transparent, warm, dur) }},
		{name: "ctr-explicit", run: func(warm, dur time.Duration) (*l7.Result, error) { return inContainer(pair.Upstream, warm, dur) }},
	}
	const rounds, per = 3, 2 * time.Second
	for r := 0; r < rounds; r++ {
		for _, m := range modes {
			res, err := m.run(300*time.Millisecond, per)
			if err != nil {
				b.Fatalf("%s: %v", m.name, err)
			}
			if res.Errors > 0 {
				b.Fatalf("%s: %d errors, first: %s\n%s", m.name, res.Errors, res.FirstError, pair.Tails(20))
			}
			m.results = append(m.results, res)
		}
	}
	fmt.Printf("\ncross-peer HTTP/1.1 through peerd from a container vs a process in peerd's namespace (%d closed-loop connections, %d rounds of %v, POST %d B)\n",
		l7ClosedConns, rounds, per, l7BodySize)
	rps := map[string]float64{}
	for i, m := range modes {
		rps[m.name] = reportMode(b, m.name, m.results, i == 0)
	}
	fmt.Printf("container/node-process rps: %.3f; container/ctr-explicit rps: %.3f\n",
		rps["container"]/rps["node-process"], rps["container"]/rps["ctr-explicit"])
	b.ReportMetric(rps["container"]/rps["node-process"], "container/node-rps")
	b.ReportMetric(rps["container"]/rps["ctr-explicit"], "container/explicit-rps")
}
