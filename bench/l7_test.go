//go:build linux

package bench

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/peerd/peerd/bench/l7"
	"github.com/peerd/peerd/internal/testutil"
)

// The cross-peer HTTP workload.
const (
	// l7BodySize is the size of every request body (POST) and response body.
	l7BodySize = 1024
	// l7ClosedConns is the closed-loop concurrency: keep-alive connections,
	// each sending its next request when the previous answer is read.
	l7ClosedConns = 32
	// l7FixedConns is the connection pool of the fixed-rate runs: the most
	// requests that can be in flight at once before a scheduled request has
	// to wait (and counts its wait as latency).
	l7FixedConns = 64
	// l7Warmup precedes each closed-loop round's measured window.
	l7Warmup = 500 * time.Millisecond
	// l7Duration is the measured time of each mode in each kind of run,
	// unless overridden; it is split into l7Rounds rounds.
	l7Duration = 6 * time.Second
	l7Rounds   = 3
	// l7RateFraction of the slowest mode's closed-loop rps is the offered
	// rate of the fixed-rate runs, unless overridden. Not 1/2: everything
	// shares the machine's CPUs, and a request costs the proxies, the echo
	// server and the client more CPU at a moderate rate than in a
	// saturated closed loop (fewer requests per wake-up), so on two CPUs
	// half the slowest mode's rps already kept the machine ~80% busy and
	// the client itself sending up to 50 ms late at p99: not below
	// saturation.
	l7RateFraction = 0.25
)

// Environment variables that tune BenchmarkCrossPeerHTTP.
const (
	envL7Duration = "PEERD_BENCH_L7_DURATION" // measured time per mode and kind of run, e.g. 12s
	envL7Rounds   = "PEERD_BENCH_L7_ROUNDS"   // rounds it is split into
	envL7Conns    = "PEERD_BENCH_L7_CONNS"    // closed-loop connections
	envL7Rate     = "PEERD_BENCH_L7_RATE"     // fixed-rate requests/s
)

// BenchmarkCrossPeerHTTP measures HTTP/1.1 through a cluster peering: POST
// with a 1 KiB body, answered with the same 1 KiB, over loopback, in three
// modes in one run on the same machine:
//
//   - (a) direct: client -> echo server;
//   - (b) peerd: client -> peerd A's outbound listener (A's upstream to
//     billing in peer cluster-b) -> mTLS -> peerd B's gateway -> echo
//     server, with two real `peerd agent -dev` processes peered as
//     scripts/demo.sh does it (l7.StartPeerdPair);
//   - (c) nginx: client -> nginx #1 (plain in; out over TLS 1.3 with web's
//     SPIFFE leaf of cluster A, verifying nginx #2 against cluster B's root
//     and the peered SNI) -> nginx #2 (TLS 1.3 requiring a client
//     certificate of cluster A) -> echo server, keep-alive on every hop;
//     certificates from internal/identity, two trust domains.
//
// Each mode runs closed-loop (32 connections) and then, once every mode
// has, fixed-rate (open loop at a quarter of the slowest mode's closed-loop
// rps, the same rate for every mode, on a pool of 64 connections; latency
// from each request's scheduled send time, so waiting is not hidden). Each
// kind of run gives every mode 6 s of measured time, in 3 rounds of 2 s
// (closed-loop rounds after 0.5 s of warm-up) in which the modes take
// turns, so that a slow spell of the machine is shared instead of falling on
// one mode. It reports rps, p50/p99 latency, CPU seconds per 1,000 requests
// of the proxies (peerd A+B, or both nginx masters and workers), of the echo
// server and of the client (this process), from utime+stime in
// /proc/<pid>/stat, the CPU the rest of the machine used meanwhile (from
// /proc/stat; it warns when that exceeds a quarter of a CPU), and the ratios
// peerd/direct rps, peerd-direct p50 (µs), peerd/nginx rps and p99. rps
// ratios come from the closed-loop runs, latency ratios from the fixed-rate
// runs (the same offered load, below saturation). The table goes to
// standard output (testing truncates a benchmark's log); the key figures
// are also reported with b.ReportMetric.
//
// The benchmark builds peerd, peerctl and the echo server (bench/l7/cmd/l7echo)
// from the working tree into a temporary directory; it does not use bin/.
// nginx comes from the system; if it is missing, the benchmark installs
// Debian's nginx package as root (see l7.FindNginx) unless
// PEERD_BENCH_NO_INSTALL is set, and otherwise reports mode (c) as skipped
// with the reason. Mode (b) is skipped, with the reason, while peerd has no
// -gateway-addr flag (the L7 terminator has not landed); once it has, any
// failure to set it up fails the benchmark, as does more than 0.1% of
// failed requests in any run. PEERD_BENCH_L7_DURATION, _ROUNDS, _CONNS and
// _RATE override the measured time per mode and kind of run, the rounds it
// is split into, the closed-loop connections and the fixed rate (req/s).
func BenchmarkCrossPeerHTTP(b *testing.B) {
	dur := envDuration(b, envL7Duration, l7Duration)
	conns := envInt(b, envL7Conns, l7ClosedConns)
	rounds := envInt(b, envL7Rounds, l7Rounds)
	rateOverride := envFloat(b, envL7Rate, 0)

	dir := b.TempDir()
	env := l7.Env{Dir: dir, Cleanup: b.Cleanup, Logf: b.Logf}
	bins := buildL7Binaries(b, dir)

	echo, echoAddr, err := l7.StartEcho(env, bins.echo, l7BodySize)
	if err != nil {
		b.Fatal(err)
	}
	if err := l7.WaitEcho(echoAddr, l7BodySize, 10*time.Second); err != nil {
		b.Fatal(err)
	}

	modes := []*l7Mode{{name: "direct", label: "(a) direct", addr: echoAddr}}

	peerdMode := &l7Mode{name: "peerd", label: "(b) peerd"}
	modes = append(modes, peerdMode)
	if !l7.HasGatewayFlag(bins.peerd) {
		peerdMode.skip = "peerd agent has no -gateway-addr flag yet: the L7 terminator has not landed"
	} else {
		pair, err := l7.StartPeerdPair(env, bins.peerd, bins.peerctl, echoAddr, l7BodySize)
		if err != nil {
			b.Fatalf("mode (b) peerd: %v", err)
		}
		peerdMode.addr = pair.Upstream
		peerdMode.proxyCPU = func() (time.Duration, error) {
			ca, err1 := l7.ProcCPU(pair.A.Pid())
			cb, err2 := l7.ProcCPU(pair.B.Pid())
			if err1 != nil || err2 != nil {
				return 0, fmt.Errorf("peerd CPU: A: %v, B: %v", err1, err2)
			}
			return ca + cb, nil
		}
		peerdMode.desc = fmt.Sprintf("peerd A (pid %d, outbound %s) -> peerd B (pid %d, gateway %s)",
			pair.A.Pid(), pair.Upstream, pair.B.Pid(), pair.B.GatewayAddr)
		if pair.B.Banner != "" {
			peerdMode.desc += fmt.Sprintf(" [B's banner: %s]", pair.B.Banner)
		}
		peerdMode.tails = pair.Tails
	}

	nginxMode := &l7Mode{name: "nginx", label: "(c) nginx"}
	modes = append(modes, nginxMode)
	if path, reason := l7.FindNginx(b.Logf); reason != "" {
		nginxMode.skip = reason
	} else {
		nginxVersion := l7.NginxVersion(path)
		pki, err := l7.MintNginxPKI(dir)
		if err != nil {
			b.Fatalf("mint the nginx certificates: %v", err)
		}
		outAddr, err1 := l7.FreeAddr()
		gwAddr, err2 := l7.FreeAddr()
		if err1 != nil || err2 != nil {
			b.Fatalf("free ports: %v %v", err1, err2)
		}
		pair, err := l7.StartNginxPair(env, path, pki, outAddr, gwAddr, echoAddr)
		if err != nil {
			b.Fatalf("mode (c) nginx: %v", err)
		}
		if err := l7.WaitEcho(outAddr, l7BodySize, 10*time.Second); err != nil {
			b.Fatalf("mode (c) nginx: %v\n%s%s--- nginx-outbound error.log ---\n%s--- nginx-gateway error.log ---\n%s",
				err, pair.Outbound.Tail(10), pair.Gateway.Tail(10),
				l7.TailFile(filepath.Join(pair.Outbound.Prefix, "error.log"), 20),
				l7.TailFile(filepath.Join(pair.Gateway.Prefix, "error.log"), 20))
		}
		nginxMode.addr = outAddr
		nginxMode.proxyCPU = func() (time.Duration, error) {
			c1, err1 := pair.Outbound.CPU()
			c2, err2 := pair.Gateway.CPU()
			if err1 != nil || err2 != nil {
				return 0, fmt.Errorf("nginx CPU: #1: %v, #2: %v", err1, err2)
			}
			return c1 + c2, nil
		}
		nginxMode.desc = fmt.Sprintf("%s: #1 (pgid %d) %s -> #2 (pgid %d) %s, SNI %s",
			nginxVersion, pair.Outbound.Pid(), outAddr, pair.Gateway.Pid(), gwAddr, pki.SNI)
		nginxMode.tails = func(n int) string { return pair.Outbound.Tail(n) + pair.Gateway.Tail(n) }
	}

	target := func(m *l7Mode) l7.Target {
		body := make([]byte, l7BodySize)
		for i := range body {
			body[i] = 'a' + byte(i%26)
		}
		return l7.Target{Addr: m.addr, Method: "POST", Path: "/", Body: body, WantBody: l7BodySize}
	}
	echoPid, clientPid := echo.Pid(), os.Getpid()

	for i := 0; i < b.N; i++ {
		// Closed loop, then fixed rate; each in rounds, and in each round
		// every mode in turn, so that a slow spell of the machine is
		// shared among the modes instead of falling on one of them.
		run := func(kind string, f func(t l7.Target, w l7.Window) (*l7.Result, error)) {
			for _, m := range modes {
				*m.run(kind) = l7Run{}
			}
			for round := 0; round < rounds; round++ {
				for _, m := range modes {
					if m.skip != "" {
						continue
					}
					var cpu l7CPU
					res, err := f(target(m), cpu.window(m, modes, echoPid, clientPid))
					if err != nil {
						b.Fatalf("%s %s, round %d: %v\n%s", m.label, kind, round+1, err, m.logTails())
					}
					m.run(kind).add(res, cpu)
					time.Sleep(200 * time.Millisecond)
				}
			}
			for _, m := range modes {
				if m.skip == "" {
					m.run(kind).res = l7.Merge(m.run(kind).rounds...)
				}
			}
		}
		slice := dur / time.Duration(rounds)
		run("closed-loop", func(t l7.Target, w l7.Window) (*l7.Result, error) {
			return l7.ClosedLoop(t, conns, l7Warmup, slice, w)
		})
		minRPS := math.Inf(1)
		for _, m := range modes {
			if m.skip == "" {
				if m.closed.res.Completed == 0 {
					b.Fatalf("%s closed-loop: not one good answer in %s (%d failed, first: %s)\n%s",
						m.label, dur, m.closed.res.Errors, m.closed.res.FirstError, m.logTails())
				}
				minRPS = min(minRPS, m.closed.res.RPS())
			}
		}
		rate := rateOverride
		rateHow := fmt.Sprintf("%s=%g", envL7Rate, rateOverride)
		if rate <= 0 {
			rate = l7RateFraction * minRPS
			rateHow = fmt.Sprintf("%.0f%% of the lowest closed-loop rps (%.0f)", l7RateFraction*100, minRPS)
		}
		run("fixed-rate", func(t l7.Target, w l7.Window) (*l7.Result, error) {
			return l7.FixedRate(t, rate, l7FixedConns, slice, w)
		})

		// The table goes to standard output: testing keeps only the first
		// lines of a benchmark's log.
		fmt.Print(l7Report(modes, conns, dur, rounds, rate, rateHow))
		l7Metrics(b, modes, rate)
		for _, m := range modes {
			for _, r := range []l7Run{m.closed, m.fixed} {
				if r.res == nil {
					continue
				}
				if r.cpu.err != nil {
					b.Errorf("%s %s: CPU times: %v", m.label, r.res.Kind, r.cpu.err)
				}
				if r.res.Errors > 0 {
					b.Logf("%s %s: %d failed requests, first: %s", m.label, r.res.Kind, r.res.Errors, r.res.FirstError)
				}
				if float64(r.res.Errors) > 0.001*float64(r.res.Completed) {
					b.Errorf("%s %s: %d of %d requests failed (> 0.1%%), first: %s\n%s",
						m.label, r.res.Kind, r.res.Errors, r.res.Completed+r.res.Errors, r.res.FirstError, m.logTails())
				}
			}
		}
	}
}

// l7Mode is one way from the client to the echo server.
type l7Mode struct {
	name, label string
	addr        string // where the client connects
	skip        string // why the mode did not run, or ""
	desc        string
	// proxyCPU returns the proxies' CPU time so far; nil for direct.
	proxyCPU func() (time.Duration, error)
	tails    func(n int) string
	closed   l7Run
	fixed    l7Run
}

func (m *l7Mode) logTails() string {
	if m.tails == nil {
		return ""
	}
	return m.tails(20)
}

// l7Run is one kind of run (closed-loop or fixed-rate) of one mode: its
// rounds, and their merged result and summed CPU times.
type l7Run struct {
	rounds []*l7.Result
	res    *l7.Result
	cpu    l7CPU
}

func (r *l7Run) add(res *l7.Result, cpu l7CPU) {
	r.rounds = append(r.rounds, res)
	r.cpu.proxy += cpu.proxy
	r.cpu.echo += cpu.echo
	r.cpu.client += cpu.client
	r.cpu.other += cpu.other
	r.cpu.wall += cpu.wall
	r.cpu.idleProxies += cpu.idleProxies
	if r.cpu.proxies == nil {
		r.cpu.proxies = map[string]time.Duration{}
	}
	for name, d := range cpu.proxies {
		r.cpu.proxies[name] += d
	}
	r.cpu.hasProxy = cpu.hasProxy
	r.cpu.err = cmp.Or(r.cpu.err, cpu.err)
}

func (m *l7Mode) run(kind string) *l7Run {
	if kind == "closed-loop" {
		return &m.closed
	}
	return &m.fixed
}

// l7CPU is the CPU time used during a run's measured window, which lasted
// wall. other is the rest of the machine's busy time meanwhile: everything
// but the proxies (running or idle), echo server and client: other
// programs, kernel work not charged to a process, and steal time.
type l7CPU struct {
	proxy, echo, client, other time.Duration
	// proxies is the CPU time of every mode's proxies, by mode name: the
	// running mode's (= proxy) and the idle ones'; idleProxies sums the
	// idle ones.
	proxies     map[string]time.Duration
	idleProxies time.Duration
	wall        time.Duration
	hasProxy    bool
	err         error
}

// otherCPUs is the mean number of CPUs busy with other work.
func (c l7CPU) otherCPUs() float64 {
	if c.wall <= 0 {
		return math.NaN()
	}
	return c.other.Seconds() / c.wall.Seconds()
}

// l7BusyCPUs is how much other work (in CPUs) makes a run's figures
// suspect; l7LateSend is the p99 send lag of a fixed-rate run that says the
// offered rate is not comfortably below saturation.
const (
	l7BusyCPUs = 0.25
	l7LateSend = time.Millisecond
)

// window returns the l7.Window that fills c for a run of m: CPU times at
// the window's start, and their deltas at its end. It also samples the
// proxies of the other modes, idle meanwhile.
func (c *l7CPU) window(m *l7Mode, modes []*l7Mode, echoPid, clientPid int) l7.Window {
	type sample struct {
		at                    time.Time
		echo, client, machine time.Duration
		proxies               map[string]time.Duration
	}
	read := func() (s sample, err error) {
		var errs []error
		s.at = time.Now()
		s.proxies = map[string]time.Duration{}
		for _, mm := range modes {
			if mm.proxyCPU != nil {
				d, err := mm.proxyCPU()
				s.proxies[mm.name] = d
				errs = append(errs, err)
			}
		}
		var e1, e2, e3 error
		s.machine, e1 = l7.MachineCPU()
		s.echo, e2 = l7.ProcCPU(echoPid)
		s.client, e3 = l7.ProcCPU(clientPid)
		return s, errors.Join(append(errs, e1, e2, e3)...)
	}
	var s0 sample
	return l7.Window{
		Start: func() { s0, c.err = read() },
		End: func() {
			s1, err := read()
			if c.err == nil {
				c.err = err
			}
			c.proxies = map[string]time.Duration{}
			all := time.Duration(0)
			for name, d := range s1.proxies {
				c.proxies[name] = d - s0.proxies[name]
				all += c.proxies[name]
			}
			c.proxy = c.proxies[m.name]
			c.hasProxy = m.proxyCPU != nil
			c.echo, c.client = s1.echo-s0.echo, s1.client-s0.client
			c.idleProxies = max(0, all-c.proxy)
			c.other = max(0, s1.machine-s0.machine-all-c.echo-c.client)
			c.wall = s1.at.Sub(s0.at)
		},
	}
}

// perK is CPU seconds per 1,000 good answers.
func perK(d time.Duration, n int) float64 {
	if n == 0 {
		return math.NaN()
	}
	return d.Seconds() / float64(n) * 1000
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func l7Report(modes []*l7Mode, conns int, dur time.Duration, rounds int, rate float64, rateHow string) string {
	var sb strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&sb, "cross-peer HTTP/1.1 on 127.0.0.1 (%s, %d CPUs, %s %s/%s): POST with a %d-byte body, answered with the same %d bytes\n",
		host, runtime.NumCPU(), runtime.Version(), runtime.GOOS, runtime.GOARCH, l7BodySize, l7BodySize)
	slice := dur / time.Duration(rounds)
	fmt.Fprintf(&sb, "closed-loop: %d keep-alive connections, %d rounds of %s warm-up + %s measured per mode; "+
		"fixed-rate: %.0f req/s = %s, the same for every mode, open loop on up to %d connections, %d rounds of %s per mode, latency from the scheduled send time\n",
		conns, rounds, l7Warmup, slice, rate, rateHow, l7FixedConns, rounds, slice)
	fmt.Fprintf(&sb, "fairness: one run, one machine, the same client (this process) and echo server for every mode, the modes taking turns in every round; all proxies stay up, idle, while other modes run. "+
		"nginx: worker_processes 1 per hop (each hop at most 1 CPU); peerd: one process per cluster with the default GOMAXPROCS (%d), "+
		"so each peerd hop may use every CPU: compare CPU-s/1k for efficiency. Between the hops both use mTLS with TLS 1.3 and ECDSA P-256 "+
		"SPIFFE leaves; peerd A relays each client connection over its own mTLS connection (a byte splice: only B parses HTTP), nginx #1 parses "+
		"HTTP and reuses a keep-alive pool of TLS connections to nginx #2; both gateways keep connections to the echo server alive. "+
		"nginx #2 only checks that the client certificate chains to cluster A's root; peerd B also checks the caller's SPIFFE ID against "+
		"billing's intentions.\n", runtime.GOMAXPROCS(0))
	for _, m := range modes {
		switch {
		case m.skip != "":
			fmt.Fprintf(&sb, "%s: SKIPPED: %s\n", m.label, m.skip)
		case m.desc != "":
			fmt.Fprintf(&sb, "%s: %s\n", m.label, m.desc)
		}
	}
	sb.WriteString("\n")
	tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "run\tmode\tconns\trps\tp50 µs\tp99 µs\tproxy CPU-s/1k\techo CPU-s/1k\tclient CPU-s/1k\tother CPUs\terrors\tnotes\t")
	var busy, late []string
	for _, kind := range []string{"closed-loop", "fixed-rate"} {
		for _, m := range modes {
			if m.skip != "" {
				fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t-\t-\t-\t-\t-\tskipped: %s\t\n", kind, m.label, m.skip)
				continue
			}
			r := m.closed
			if kind == "fixed-rate" {
				r = m.fixed
			}
			res := r.res
			proxy := "-"
			if r.cpu.hasProxy {
				proxy = fmt.Sprintf("%.4f", perK(r.cpu.proxy, res.Completed))
			}
			notes := ""
			if kind == "closed-loop" && len(r.rounds) > 1 {
				var rps []string
				for _, rr := range r.rounds {
					rps = append(rps, fmt.Sprintf("%.0f", rr.RPS()))
				}
				notes += "rounds " + strings.Join(rps, "/") + " rps; "
			}
			if res.Redials > 0 {
				notes += fmt.Sprintf("%d redials; ", res.Redials)
			}
			if kind == "fixed-rate" {
				notes += fmt.Sprintf("service p50/p99 %.0f/%.0f µs, send lag p50/p99 %.0f/%.0f µs",
					us(l7.Percentile(res.Service, 50)), us(l7.Percentile(res.Service, 99)),
					us(l7.Percentile(res.Lag, 50)), us(l7.Percentile(res.Lag, 99)))
				if res.Missed > 0 {
					notes += fmt.Sprintf("; SATURATED: %d of %d not answered in time", res.Missed, res.Scheduled)
				}
				if lag := l7.Percentile(res.Lag, 99); lag > l7LateSend || res.Missed > 0 {
					late = append(late, fmt.Sprintf("%s (send lag p99 %.0f µs)", m.label, us(lag)))
				}
			}
			if o := r.cpu.otherCPUs(); o > l7BusyCPUs {
				busy = append(busy, fmt.Sprintf("%s %s (%.2f CPUs)", kind, m.label, o))
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%.0f\t%.0f\t%s\t%.4f\t%.4f\t%.2f\t%d\t%s\t\n",
				kind, m.label, res.Conns, res.RPS(), us(l7.Percentile(res.Latency, 50)), us(l7.Percentile(res.Latency, 99)),
				proxy, perK(r.cpu.echo, res.Completed), perK(r.cpu.client, res.Completed), r.cpu.otherCPUs(),
				res.Errors, strings.TrimSuffix(notes, "; "))
		}
	}
	tw.Flush()
	sb.WriteString("CPU-s/1k: CPU seconds (utime+stime from /proc/<pid>/stat) per 1,000 good answers in the measured window; " +
		"proxy = peerd A+B, or both nginx masters and workers. other CPUs: the machine's busy CPU time (/proc/stat, steal included) " +
		"not used by the proxies (running or idle), echo server or client, per second of the window: other programs, kernel work " +
		"not charged to a process, steal.\n")
	// What the proxies burn with no traffic (their control planes: raft,
	// gossip, peering heartbeats; nginx: timers), seen while (a) runs.
	var idle []string
	if a := modes[0]; a.skip == "" {
		wall := a.closed.cpu.wall + a.fixed.cpu.wall
		for _, m := range modes[1:] {
			if m.skip != "" || wall <= 0 {
				continue
			}
			cpus := (a.closed.cpu.proxies[m.name] + a.fixed.cpu.proxies[m.name]).Seconds() / wall.Seconds()
			idle = append(idle, fmt.Sprintf("%s %.4f CPUs (%.4f CPU-s/1k at the fixed rate)", m.label, cpus, cpus/rate*1000))
		}
	}
	if len(idle) > 0 {
		fmt.Fprintf(&sb, "proxies with no traffic (measured while (a) runs): %s; their proxy CPU-s/1k include this.\n", strings.Join(idle, ", "))
	}
	if len(busy) > 0 {
		fmt.Fprintf(&sb, "WARNING: other work used more than %.2f CPUs during %s: those figures are disturbed; run again on a quiet machine\n",
			l7BusyCPUs, strings.Join(busy, ", "))
	}
	if len(late) > 0 {
		fmt.Fprintf(&sb, "WARNING: fixed-rate requests went out late for %s: the offered rate is close to what the machine can do "+
			"with everything on it; latencies include that wait (set %s lower)\n", strings.Join(late, ", "), envL7Rate)
	}

	a, bm, c := modes[0], modes[1], modes[2]
	na := func(ms ...*l7Mode) string {
		for _, m := range ms {
			if m.skip != "" {
				return "n/a (" + m.label + " skipped)"
			}
		}
		return ""
	}
	ratio := func(x, y *l7Mode, f func(x, y *l7Mode) string) string {
		if s := na(x, y); s != "" {
			return s
		}
		return f(x, y)
	}
	sb.WriteString("\n")
	fmt.Fprintf(&sb, "(b)/(a) rps, closed-loop:           %s\n", ratio(bm, a, func(x, y *l7Mode) string {
		return fmt.Sprintf("%.3f", x.closed.res.RPS()/y.closed.res.RPS())
	}))
	fmt.Fprintf(&sb, "(b)-(a) p50, fixed-rate:            %s\n", ratio(bm, a, func(x, y *l7Mode) string {
		return fmt.Sprintf("%+.0f µs (closed-loop: %+.0f µs)",
			us(l7.Percentile(x.fixed.res.Latency, 50)-l7.Percentile(y.fixed.res.Latency, 50)),
			us(l7.Percentile(x.closed.res.Latency, 50)-l7.Percentile(y.closed.res.Latency, 50)))
	}))
	fmt.Fprintf(&sb, "(b)/(c) rps, closed-loop:           %s\n", ratio(bm, c, func(x, y *l7Mode) string {
		return fmt.Sprintf("%.3f", x.closed.res.RPS()/y.closed.res.RPS())
	}))
	fmt.Fprintf(&sb, "(b)/(c) p99, fixed-rate:            %s\n", ratio(bm, c, func(x, y *l7Mode) string {
		return fmt.Sprintf("%.3f (closed-loop: %.3f)",
			float64(l7.Percentile(x.fixed.res.Latency, 99))/float64(l7.Percentile(y.fixed.res.Latency, 99)),
			float64(l7.Percentile(x.closed.res.Latency, 99))/float64(l7.Percentile(y.closed.res.Latency, 99)))
	}))
	fmt.Fprintf(&sb, "(b)/(c) proxy CPU per request, fixed-rate: %s\n", ratio(bm, c, func(x, y *l7Mode) string {
		return fmt.Sprintf("%.3f", perK(x.fixed.cpu.proxy, x.fixed.res.Completed)/perK(y.fixed.cpu.proxy, y.fixed.res.Completed))
	}))
	fmt.Fprintf(&sb, "context: (c)/(a) rps %s, (c)-(a) p50 fixed-rate %s\n",
		ratio(c, a, func(x, y *l7Mode) string { return fmt.Sprintf("%.3f", x.closed.res.RPS()/y.closed.res.RPS()) }),
		ratio(c, a, func(x, y *l7Mode) string {
			return fmt.Sprintf("%+.0f µs", us(l7.Percentile(x.fixed.res.Latency, 50)-l7.Percentile(y.fixed.res.Latency, 50)))
		}))
	return sb.String()
}

// l7Metrics reports the key figures of the modes that ran: rps
// (closed-loop), p50/p99 (fixed-rate), proxy CPU per 1,000 requests
// (fixed-rate, the same offered load for every mode) and the ratios.
func l7Metrics(b *testing.B, modes []*l7Mode, rate float64) {
	b.ReportMetric(rate, "fixed-rate-req/s")
	for _, m := range modes {
		if m.skip != "" {
			continue
		}
		b.ReportMetric(m.closed.res.RPS(), m.name+"-rps")
		b.ReportMetric(us(l7.Percentile(m.fixed.res.Latency, 50)), m.name+"-p50-us")
		b.ReportMetric(us(l7.Percentile(m.fixed.res.Latency, 99)), m.name+"-p99-us")
		if m.fixed.cpu.hasProxy {
			b.ReportMetric(perK(m.fixed.cpu.proxy, m.fixed.res.Completed), m.name+"-proxy-cpu-s/1k-req")
		}
	}
	a, pm, n := modes[0], modes[1], modes[2]
	if pm.skip == "" {
		b.ReportMetric(pm.closed.res.RPS()/a.closed.res.RPS(), "peerd/direct-rps")
		b.ReportMetric(us(l7.Percentile(pm.fixed.res.Latency, 50)-l7.Percentile(a.fixed.res.Latency, 50)), "peerd-p50-overhead-us")
	}
	if n.skip == "" {
		b.ReportMetric(n.closed.res.RPS()/a.closed.res.RPS(), "nginx/direct-rps")
	}
	if pm.skip == "" && n.skip == "" {
		b.ReportMetric(pm.closed.res.RPS()/n.closed.res.RPS(), "peerd/nginx-rps")
		b.ReportMetric(float64(l7.Percentile(pm.fixed.res.Latency, 99))/float64(l7.Percentile(n.fixed.res.Latency, 99)), "peerd/nginx-p99")
	}
}

type l7Binaries struct{ peerd, peerctl, echo string }

// buildL7Binaries builds peerd, peerctl and the echo server from the
// working tree into dir/bin.
func buildL7Binaries(b *testing.B, dir string) l7Binaries {
	b.Helper()
	out := filepath.Join(dir, "bin")
	if err := os.MkdirAll(out, 0o755); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	testutil.GoBuild(b, out+string(filepath.Separator), "./cmd/peerd", "./cmd/peerctl", "./bench/l7/cmd/l7echo")
	b.Logf("built peerd, peerctl and l7echo in %s", time.Since(start).Round(time.Millisecond))
	return l7Binaries{
		peerd:   filepath.Join(out, "peerd"),
		peerctl: filepath.Join(out, "peerctl"),
		echo:    filepath.Join(out, "l7echo"),
	}
}

func envDuration(b *testing.B, name string, def time.Duration) time.Duration {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		b.Fatalf("%s=%q: want a positive duration such as 10s", name, s)
	}
	return d
}

func envInt(b *testing.B, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return n
}

func envFloat(b *testing.B, name string, def float64) float64 {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f <= 0 {
		b.Fatalf("%s=%q: want a positive number", name, s)
	}
	return f
}

// TestL7ReportSkipped renders the table with modes (b) and (c) skipped: their
// rows say why, and every ratio involving them is n/a.
func TestL7ReportSkipped(t *testing.T) {
	res := func(kind string) *l7.Result {
		return &l7.Result{Kind: kind, Conns: 2, Window: time.Second, Completed: 100, Rate: 50, Scheduled: 50,
			Latency: []time.Duration{time.Millisecond}, Service: []time.Duration{time.Millisecond}, Lag: []time.Duration{0}}
	}
	direct := &l7Mode{name: "direct", label: "(a) direct"}
	direct.closed.add(res("closed-loop"), l7CPU{echo: time.Second, client: time.Second, wall: time.Second})
	direct.closed.res = l7.Merge(direct.closed.rounds...)
	direct.fixed.add(res("fixed-rate"), l7CPU{echo: time.Second, client: time.Second, wall: time.Second})
	direct.fixed.res = l7.Merge(direct.fixed.rounds...)
	modes := []*l7Mode{
		direct,
		{name: "peerd", label: "(b) peerd", skip: "no -gateway-addr"},
		{name: "nginx", label: "(c) nginx", skip: "nginx is not installed"},
	}
	out := l7Report(modes, 2, time.Second, 1, 50, "test")
	for _, want := range []string{
		"(b) peerd: SKIPPED: no -gateway-addr",
		"skipped: nginx is not installed",
		"(b)/(a) rps, closed-loop:           n/a ((b) peerd skipped)",
		"(b)/(c) rps, closed-loop:           n/a ((b) peerd skipped)",
		"(c)/(a) rps n/a ((c) nginx skipped)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}
