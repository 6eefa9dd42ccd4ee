package dataplane

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/peerd/peerd/internal/testutil"
)

// BenchmarkSockmapStream compares echoed stream throughput over plain
// loopback with the same over the sk_msg fast path, in one run: a client
// writes 64 KiB chunks for a fixed time while a goroutine reads the echo
// (each byte crosses loopback twice); the figure is bytes/s of echoed
// bytes. As in BenchmarkSockmapRR, each variant runs in a helper process in
// a private netns, the baseline outside the programs' cgroup and the fast
// path inside it. Stream figures on a 2-vCPU machine swing by tens of
// percent from one run to the next, so the modes alternate over a few
// short runs and the totals are compared.
func BenchmarkSockmapStream(b *testing.B) {
	cg, ns, dp := loadFastPathEnv(b)
	const size = 64 << 10
	dur, rounds := time.Second, 3
	if testing.Short() {
		dur, rounds = 300*time.Millisecond, 1
	}
	type total struct {
		bytes, ns int64
		rates     []float64 // per run, bytes/s
	}
	run := func(t *total, cgroup string) int64 {
		h := startHelper(b, ns, cgroup, "stream", strconv.Itoa(fastPort), strconv.FormatInt(dur.Milliseconds(), 10), strconv.Itoa(size))
		line := h.recv(b)
		var bytes, elapsed int64
		if _, err := fmt.Sscanf(line, "OK %d %d", &bytes, &elapsed); err != nil || elapsed <= 0 {
			b.Fatalf("helper: %s", line)
		}
		_ = h.in.Close()
		_ = h.cmd.Wait()
		t.bytes += bytes
		t.ns += elapsed
		t.rates = append(t.rates, float64(bytes)/(float64(elapsed)/1e9))
		return bytes
	}
	b.ResetTimer()
	var loop, fast total
	for i := 0; i < b.N; i++ {
		for j := 0; j < rounds; j++ {
			run(&loop, "")
			before := dp.Status().FastPath.Counters["bytes"]
			n := run(&fast, cg)
			// Every echoed byte was sent twice: client to server and back.
			if got := dp.Status().FastPath.Counters["bytes"] - before; got < uint64(2*n) {
				b.Fatalf("fast-path run redirected %d bytes, want >= %d", got, 2*n)
			}
		}
	}
	rate := func(t total) float64 { return float64(t.bytes) / (float64(t.ns) / 1e9) }
	l, f := rate(loop), rate(fast)
	b.ReportMetric(l, "loopback-B/s")
	b.ReportMetric(f, "sockmap-B/s")
	b.ReportMetric(f/l, "sockmap/loopback")
	mbs := func(rs []float64) string {
		var parts []string
		for _, r := range rs {
			parts = append(parts, fmt.Sprintf("%.0f", r/1e6))
		}
		return strings.Join(parts, " / ")
	}
	fmt.Printf("\nBenchmarkSockmapStream (%d KiB writes, %d alternating runs of %v per mode, echoed MB/s):\n", size>>10, len(loop.rates), dur)
	fmt.Printf("  %-9s %8.0f MB/s   runs: %s\n", "loopback", l/1e6, mbs(loop.rates))
	fmt.Printf("  %-9s %8.0f MB/s   runs: %s\n", "sockmap", f/1e6, mbs(fast.rates))
	fmt.Printf("  %-9s %8.2fx\n", "ratio", f/l)
}

const (
	benchOtherPort = 17002
	benchVIPPort   = 8080
)

var benchVIP = netip.MustParseAddr("240.0.0.1")

// enableBPFStats turns on kernel.bpf_stats_enabled (run_time_ns and run_cnt
// per program) and restores the previous value when b ends.
func enableBPFStats(b *testing.B) {
	b.Helper()
	const path = "/proc/sys/kernel/bpf_stats_enabled"
	prev, err := os.ReadFile(path)
	if err != nil {
		b.Skipf("needs %s: %v", path, err)
	}
	if err := os.WriteFile(path, []byte("1"), 0); err != nil {
		b.Fatalf("enable BPF stats: %v", err)
	}
	b.Cleanup(func() {
		if err := os.WriteFile(path, []byte(strings.TrimSpace(string(prev))), 0); err != nil {
			b.Errorf("restore %s to %q: %v", path, strings.TrimSpace(string(prev)), err)
		}
	})
}

// acceptAndClose accepts and closes connections on addr inside ns until b
// ends.
func acceptAndClose(b *testing.B, ns *testutil.Netns, addr string) {
	b.Helper()
	var ln net.Listener
	var err error
	ns.Run(func() { ln, err = net.Listen("tcp", addr) })
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	b.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			_ = c.Close()
		}
	}()
}

// progDelta is the change of a program's run-time statistics.
type progDelta struct {
	runtime time.Duration
	runs    uint64
}

func progStats(b *testing.B, p *ebpf.Program) progDelta {
	b.Helper()
	s, err := p.Stats()
	if err != nil {
		b.Fatalf("program stats: %v", err)
	}
	return progDelta{s.Runtime, s.RunCount}
}

func (d progDelta) sub(o progDelta) progDelta {
	return progDelta{d.runtime - o.runtime, d.runs - o.runs}
}

func (d progDelta) add(o progDelta) progDelta {
	return progDelta{d.runtime + o.runtime, d.runs + o.runs}
}

// BenchmarkConnect4Cost measures what the capture layer's cgroup/connect4
// program costs per connect(2), from the kernel's BPF run-time statistics
// (kernel.bpf_stats_enabled): run_time_ns / run_cnt of the program over n
// connects by a helper in the captured cgroup, to a VIP (looked up and
// rewritten to the listener) and to an address that is not a VIP (two
// lookups that miss). As a baseline it also reports the wall-clock time of
// connect+close (SO_LINGER 0, so no TIME_WAIT) from the helper in the
// cgroup and from one outside it, where no program runs. The capture
// sockops program's cost per connect is printed with the table.
//
// The dataplane is started inside the helpers' private namespace ns, which
// is so the "host" one (the same-namespace branch); the VIP case is run
// again from a second namespace, a workload namespace set ready with
// SetWorkloadNetns, where connect4 also looks the namespace up in
// workload_netns (the cross-namespace branch).
func BenchmarkConnect4Cost(b *testing.B) {
	testutil.RequireBPF(b)
	cg, ns, wns := testutil.NewCgroup(b), testutil.NewNetns(b), testutil.NewNetns(b)
	var dp *Dataplane
	var err error
	pinDir := newPinDir(b)
	ns.Run(func() {
		dp, err = load(Config{
			CgroupPath:   cg,
			PinDir:       pinDir,
			Capture:      true,
			ListenerV4:   netip.MustParseAddr("127.0.0.1"),
			ListenerPort: testListenerPort,
			Mark:         testMark,
		})
	})
	if err != nil {
		b.Fatalf("Load: %v", err)
	}
	b.Cleanup(func() { _ = dp.Close(context.Background()) })
	if st := dp.Status(); !st.Capture.Loaded {
		b.Fatalf("capture layer not loaded: %+v", st.Capture)
	}
	if err := dp.SetVIP(benchVIP, benchVIPPort, 1, 1); err != nil {
		b.Fatal(err)
	}
	// Captured connections are accepted without asking for their origin:
	// the records age out of the LRU maps, and the measurement stays
	// free of map work in this process.
	acceptAndClose(b, ns, fmt.Sprintf("127.0.0.1:%d", testListenerPort))
	acceptAndClose(b, ns, fmt.Sprintf("127.0.0.1:%d", benchOtherPort))
	acceptAndClose(b, wns, fmt.Sprintf("127.0.0.1:%d", testListenerPort))
	// Before 5.15 there is no workload-namespace branch to measure.
	netnsMode := dp.Status().Capture.WorkloadNetns
	if netnsMode {
		if err := dp.SetWorkloadNetns(netnsCookieOf(b, wns)); err != nil {
			b.Fatal(err)
		}
	}
	enableBPFStats(b)
	connect4, sockops := dp.capture.objs.CaptureConnect4, dp.capture.objs.CaptureSockops

	n, rounds := 2000, 5
	if testing.Short() {
		n, rounds = 200, 2
	}
	vip := netip.AddrPortFrom(benchVIP, benchVIPPort).String()
	other := fmt.Sprintf("127.0.0.1:%d", benchOtherPort)
	in := startHelper(b, ns, cg, "connect")
	out := startHelper(b, ns, "", "connect")
	inW := startHelper(b, wns, cg, "connect")
	connects := func(h *helper, addr string, n int) time.Duration {
		h.send(b, fmt.Sprintf("connect %s %d", addr, n))
		line := h.recv(b)
		var ns int64
		if _, err := fmt.Sscanf(line, "OK %d", &ns); err != nil {
			b.Fatalf("helper connecting to %s: %s", addr, line)
		}
		return time.Duration(ns)
	}
	type result struct {
		wall             time.Duration
		connect4, sockop progDelta
		conns            int
	}
	measure := func(r *result, h *helper, addr string) {
		c0, s0 := progStats(b, connect4), progStats(b, sockops)
		r.wall += connects(h, addr, n)
		r.connect4 = r.connect4.add(progStats(b, connect4).sub(c0))
		r.sockop = r.sockop.add(progStats(b, sockops).sub(s0))
		r.conns += n
	}
	// Warm up each path (page cache, ephemeral ports, allocator).
	connects(out, other, n/5)
	connects(in, other, n/5)
	connects(in, vip, n/5)
	if netnsMode {
		connects(inW, vip, n/5)
	}
	b.ResetTimer()

	var noBPF, miss, hit, hitNS result
	rewrites0 := dp.Status().Capture.Counters["rewrites"]
	for i := 0; i < b.N; i++ {
		for j := 0; j < rounds; j++ {
			measure(&noBPF, out, other)
			measure(&miss, in, other)
			measure(&hit, in, vip)
			if netnsMode {
				measure(&hitNS, inW, vip)
			}
		}
	}
	b.StopTimer()

	if noBPF.connect4.runs != 0 {
		b.Errorf("connect4 ran %d times for the helper outside the cgroup", noBPF.connect4.runs)
	}
	cases := map[string]result{"VIP": hit, "non-VIP": miss}
	if netnsMode {
		cases["workload-netns VIP"] = hitNS
	}
	for name, r := range cases {
		if r.connect4.runs != uint64(r.conns) {
			b.Errorf("%s: connect4 ran %d times for %d connects", name, r.connect4.runs, r.conns)
		}
	}
	if got := dp.Status().Capture.Counters["rewrites"] - rewrites0; got != uint64(hit.conns+hitNS.conns) {
		b.Errorf("%d rewrites for %d VIP connects", got, hit.conns+hitNS.conns)
	}
	perConn := func(d time.Duration, conns int) float64 { return float64(d.Nanoseconds()) / float64(conns) }
	perRun := func(d progDelta) float64 {
		if d.runs == 0 {
			return 0
		}
		return float64(d.runtime.Nanoseconds()) / float64(d.runs)
	}
	vipNs, otherNs := perConn(hit.connect4.runtime, hit.conns), perConn(miss.connect4.runtime, miss.conns)
	b.ReportMetric(vipNs, "connect4-ns/vip-connect")
	if netnsMode {
		b.ReportMetric(perConn(hitNS.connect4.runtime, hitNS.conns), "connect4-ns/vip-connect-netns")
	}
	b.ReportMetric(otherNs, "connect4-ns/other-connect")
	b.ReportMetric(perConn(noBPF.wall, noBPF.conns), "wall-ns/connect-nobpf")
	b.ReportMetric(perConn(miss.wall, miss.conns), "wall-ns/connect-bpf-other")
	b.ReportMetric(perConn(hit.wall, hit.conns), "wall-ns/connect-bpf-vip")
	if vipNs >= 1000 || otherNs >= 1000 {
		b.Logf("connect4 over the 1 µs target: VIP %.0f ns, non-VIP %.0f ns", vipNs, otherNs)
	}

	fmt.Printf("\nBenchmarkConnect4Cost (%d connects per case, in %d interleaved rounds):\n", hit.conns, rounds*b.N)
	fmt.Printf("  %-34s %16s %12s %12s %13s\n", "case", "wall ns/connect", "connect4 ns", "sockops ns", "sockops runs")
	fmt.Printf("  %-34s %16s %12s %12s %13s\n", "", "(connect+close)", "per connect", "per connect", "per connect")
	row := func(name string, r result) {
		fmt.Printf("  %-34s %16.0f %12.0f %12.0f %13.2f\n", name, perConn(r.wall, r.conns),
			perConn(r.connect4.runtime, r.conns), perConn(r.sockop.runtime, r.conns), float64(r.sockop.runs)/float64(r.conns))
	}
	row("outside cgroup (no program)", noBPF)
	row("in cgroup, non-VIP "+other, miss)
	row("in cgroup, VIP "+vip, hit)
	if netnsMode {
		row("workload netns, VIP "+vip, hitNS)
	}
	fmt.Printf("  connect4 per run: VIP %.0f ns, VIP from a workload netns %.0f ns, non-VIP %.0f ns (target < 1000 ns)\n",
		perRun(hit.connect4), perRun(hitNS.connect4), perRun(miss.connect4))
}

// streamEcho listens on 127.0.0.1:port, dials it and, for d, writes size-
// byte chunks while a goroutine reads the echo, with plain Read/Write (no
// splice). It returns the bytes echoed (all that were written) and the
// nanoseconds until the last one was read. The connections stay open
// until the process exits.
func streamEcho(port int, d time.Duration, size int) (int64, int64, error) {
	c, err := dialEcho(port, 0)
	if err != nil {
		return 0, 0, err
	}
	// The reader and the writer each check the other's progress after
	// their own (sequentially consistent) store, so one of them sees that
	// everything written has been read.
	var read, written atomic.Int64
	var done atomic.Bool
	finished := make(chan struct{})
	var once sync.Once
	var readErr error
	go func() {
		buf := make([]byte, 256<<10)
		for {
			k, err := c.Read(buf)
			read.Add(int64(k))
			if err != nil {
				readErr = err
				once.Do(func() { close(finished) })
				return
			}
			if done.Load() && read.Load() >= written.Load() {
				once.Do(func() { close(finished) })
				return
			}
		}
	}()
	msg := make([]byte, size)
	for i := range msg {
		msg[i] = byte(i)
	}
	start := time.Now()
	for time.Since(start) < d {
		k, err := c.Write(msg)
		written.Add(int64(k))
		if err != nil {
			return 0, 0, err
		}
	}
	done.Store(true)
	if read.Load() < written.Load() {
		<-finished
	}
	elapsed := time.Since(start).Nanoseconds()
	if readErr != nil && read.Load() < written.Load() {
		return 0, 0, readErr
	}
	return written.Load(), elapsed, nil
}

// connectLoop runs commands "connect <ip:port> <n>" from in: n times
// socket, blocking connect, close with SO_LINGER 0 (a reset, so no
// TIME_WAIT fills the port range); it prints "OK <ns>" or "ERR <error>".
func connectLoop(in *bufio.Scanner) {
	for in.Scan() {
		var addr string
		var n int
		if _, err := fmt.Sscanf(in.Text(), "connect %s %d", &addr, &n); err != nil {
			fmt.Println("ERR", err)
			continue
		}
		ns, err := connectN(addr, n)
		if err != nil {
			fmt.Println("ERR", err)
			continue
		}
		fmt.Println("OK", ns)
	}
}

func connectN(addr string, n int) (int64, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().Is4() {
		return 0, fmt.Errorf("want an IPv4 ip:port, got %q", addr)
	}
	sa := &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	linger := &unix.Linger{Onoff: 1, Linger: 0}
	start := time.Now()
	for i := 0; i < n; i++ {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return 0, err
		}
		if err := unix.Connect(fd, sa); err != nil {
			_ = unix.Close(fd)
			return 0, fmt.Errorf("connect %d to %s: %w", i, addr, err)
		}
		_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, linger)
		_ = unix.Close(fd)
	}
	return time.Since(start).Nanoseconds(), nil
}
