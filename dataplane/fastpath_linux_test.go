package dataplane

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/peerd/peerd/internal/testutil"
)

const (
	fastPort = 17001
	tlsPort  = 17443
)

func loadFastPathEnv(t testing.TB) (cg string, ns *testutil.Netns, dp *Dataplane) {
	t.Helper()
	testutil.RequireBPF(t)
	cg, ns = testutil.NewCgroup(t), testutil.NewNetns(t)
	dp, err := load(Config{
		CgroupPath:    cg,
		PinDir:        newPinDir(t),
		FastPath:      true,
		FastPathPorts: []uint16{fastPort},
		TLSPorts:      []uint16{tlsPort},
	})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	t.Cleanup(func() { _ = dp.Close(context.Background()) })
	if st := dp.Status(); !st.FastPath.Loaded {
		t.Fatalf("fast path not loaded: %+v", st.FastPath)
	}
	return cg, ns, dp
}

func TestFastPathRedirect(t *testing.T) {
	cg, ns, dp := loadFastPathEnv(t)
	const n, size = 200, 64

	h := startHelper(t, ns, cg, "rr", strconv.Itoa(fastPort), strconv.Itoa(n), strconv.Itoa(size))
	if line := h.recv(t); !strings.HasPrefix(line, "OK ") {
		t.Fatalf("helper: %s", line)
	}
	st := dp.Status().FastPath
	t.Logf("fast path after plaintext pair: %+v", st)
	if st.Maps["sock_pairs"] != 2 {
		t.Errorf("sock_pairs holds %d sockets, want the 2 legs", st.Maps["sock_pairs"])
	}
	c := st.Counters
	if c["inserts"] != 2 || c["redirects"] < 2*n || c["bytes"] < 2*n*size {
		t.Errorf("counters %v: want inserts=2, redirects>=%d, bytes>=%d", c, 2*n, 2*n*size)
	}
	_ = h.in.Close()
	_ = h.cmd.Wait()

	// Sockets leave the map when they close.
	deadline := time.Now().Add(5 * time.Second)
	for dp.Status().FastPath.Maps["sock_pairs"] != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := dp.Status().FastPath.Maps["sock_pairs"]; got != 0 {
		t.Errorf("sock_pairs holds %d sockets after close", got)
	}

	// A TLS port never enters the map.
	h = startHelper(t, ns, cg, "rr", strconv.Itoa(tlsPort), "10", "64")
	if line := h.recv(t); !strings.HasPrefix(line, "OK ") {
		t.Fatalf("helper: %s", line)
	}
	st = dp.Status().FastPath
	if st.Maps["sock_pairs"] != 0 || st.Counters["inserts"] != 2 || st.Counters["skip_tls"] != 2 {
		t.Errorf("TLS legs: maps %v counters %v: want no insert and skip_tls=2", st.Maps, st.Counters)
	}
	_ = h.in.Close()
	_ = h.cmd.Wait()

	// Ports set at run time: a pair on a new port is inserted; the old
	// configured port is no longer.
	const runtimePort = fastPort + 7
	if err := dp.SetFastPathPorts([]uint16{runtimePort}); err != nil {
		t.Fatal(err)
	}
	h = startHelper(t, ns, cg, "rr", strconv.Itoa(runtimePort), "10", "64")
	if line := h.recv(t); !strings.HasPrefix(line, "OK ") {
		t.Fatalf("helper: %s", line)
	}
	if got := dp.Status().FastPath.Counters["inserts"]; got != 4 {
		t.Errorf("inserts %d after a pair on a port set at run time, want 4", got)
	}
	_ = h.in.Close()
	_ = h.cmd.Wait()
	h = startHelper(t, ns, cg, "rr", strconv.Itoa(fastPort), "10", "64")
	if line := h.recv(t); !strings.HasPrefix(line, "OK ") {
		t.Fatalf("helper: %s", line)
	}
	if got := dp.Status().FastPath.Counters["inserts"]; got != 4 {
		t.Errorf("inserts %d: the port removed at run time still enters the map", got)
	}
}

// BenchmarkSockmapRR compares 64-byte request/response round trips over
// plain loopback with the same over the sk_msg fast path, in one run. Each
// variant runs in a helper process in a private netns: the baseline outside
// the programs' cgroup, the fast path inside it.
func BenchmarkSockmapRR(b *testing.B) {
	cg, ns, dp := loadFastPathEnv(b)
	const size = 64
	n := 20000
	if testing.Short() {
		n = 2000
	}
	run := func(cgroup string) float64 {
		h := startHelper(b, ns, cgroup, "rr", strconv.Itoa(fastPort), strconv.Itoa(n), strconv.Itoa(size))
		line := h.recv(b)
		var ns int64
		if _, err := fmt.Sscanf(line, "OK %d", &ns); err != nil {
			b.Fatalf("helper: %s", line)
		}
		_ = h.in.Close()
		_ = h.cmd.Wait()
		return float64(n) / (float64(ns) / 1e9)
	}
	var loop, fast float64
	for i := 0; i < b.N; i++ {
		before := dp.Status().FastPath.Counters["redirects"]
		loop += run("")
		fast += run(cg)
		if got := dp.Status().FastPath.Counters["redirects"] - before; got < uint64(2*n) {
			b.Fatalf("fast-path run redirected %d messages, want >= %d", got, 2*n)
		}
	}
	b.ReportMetric(loop/float64(b.N), "loopback-rr/s")
	b.ReportMetric(fast/float64(b.N), "sockmap-rr/s")
	b.ReportMetric(fast/loop, "sockmap/loopback")
}
