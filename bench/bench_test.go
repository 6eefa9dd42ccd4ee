package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-memdb"

	"github.com/peerd/peerd/agent"
	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/catalog/state"
)

// The registration workload: benchNodes external nodes, each running one
// instance of each of benchServices service names, registered one instance
// per PUT /v1/catalog/register by benchWorkers concurrent clients.
const (
	benchNodes     = 100
	benchServices  = 100
	benchInstances = benchNodes * benchServices
	benchWorkers   = 64

	// wakeSamples is how many write -> wake-up round trips each blocking
	// query measurement takes.
	wakeSamples = 200
)

// Targets from the issue, logged next to the figures.
const (
	targetVisibleAll = 5 * time.Second
	targetWakeP99    = 50 * time.Millisecond
	targetRSSMB      = 100
)

// BenchmarkRegister10k registers 10,000 service instances through the HTTP
// API of a three-server cluster and reports:
//
//   - instances/s: registrations acknowledged per second, with the 64
//     clients spread over the three servers (followers forward to the
//     leader), and write-p50-ms / write-p99-ms, the latency of one PUT;
//   - visible-all-ms: from the first PUT until every server's own store
//     (read directly, as ?stale reads would) holds all 10,000, and
//     lag-after-ack-ms, the part of it after the last PUT was acknowledged;
//   - rss-per-server-MB: the growth of this process's RSS (VmRSS after a GC
//     and debug.FreeOSMemory) from before the cluster started to after the
//     10,000 are visible, divided by three. All three servers and the load
//     generator share the process, so this approximates one server's
//     footprint and slightly overstates it; heap-per-server-MB is the same
//     for the Go heap in use only.
//
// Baseline: the same workload against a single dev server (in-memory raft,
// no replication, no disk) in the same run, reported as dev-instances/s;
// ratio-vs-dev is the cluster's instances/s over the dev server's, so it
// prices replication, forwarding and raft-boltdb's fsyncs.
//
// Timing: the cluster runs catalog.DefaultTiming(), the production timers,
// because the targets are about a production cluster.
func BenchmarkRegister10k(b *testing.B) {
	for i := 0; i < b.N; i++ {
		prefix := fmt.Sprintf("it%d", i)

		dev := startDev(b)
		devTook, _, err := registerInstances([]string{dev.HTTPAddr()}, "dev-"+prefix)
		if err != nil {
			b.Fatalf("register on the dev server: %v", err)
		}
		if err := dev.Close(context.Background()); err != nil {
			b.Logf("shut down the dev server: %v", err)
		}
		devRate := benchInstances / devTook.Seconds()

		rss0, heap0 := memoryNow()
		servers := startCluster(b, catalog.DefaultTiming())
		addrs := make([]string, len(servers))
		for j, s := range servers {
			addrs[j] = s.HTTPAddr()
		}
		start := time.Now()
		took, lat, err := registerInstances(addrs, prefix)
		if err != nil {
			b.Fatalf("register on the cluster: %v", err)
		}
		visible, err := waitVisible(servers, prefix, start, time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		rss1, heap1 := memoryNow()

		shutdown(servers)

		// The same workload on a cluster with cluster trust: writes on the
		// followers are forwarded over mutual TLS, raft replicates over TLS,
		// and every entry is sealed.
		trusted := startTrustedCluster(b, catalog.DefaultTiming())
		taddrs := make([]string, len(trusted))
		for j, s := range trusted {
			taddrs[j] = s.HTTPAddr()
		}
		ttook, tlat, err := registerInstances(taddrs, "t"+prefix)
		if err != nil {
			b.Fatalf("register on the trusted cluster: %v", err)
		}
		shutdown(trusted)
		trate := benchInstances / ttook.Seconds()
		b.ReportMetric(trate, "trusted-instances/s")
		b.ReportMetric(trate/(benchInstances/took.Seconds()), "trust-ratio")
		b.ReportMetric(ms(percentile(tlat, 50)), "trusted-write-p50-ms")
		b.ReportMetric(ms(percentile(tlat, 99)), "trusted-write-p99-ms")
		b.Logf("with cluster trust (mTLS forwarding and raft, sealed log): %.0f/s (plaintext %.0f/s, ratio %.2f); write p50/p99 %s/%s (plaintext %s/%s)",
			trate, benchInstances/took.Seconds(), trate/(benchInstances/took.Seconds()),
			percentile(tlat, 50), percentile(tlat, 99), percentile(lat, 50), percentile(lat, 99))

		rate := benchInstances / took.Seconds()
		b.ReportMetric(rate, "instances/s")
		b.ReportMetric(devRate, "dev-instances/s")
		b.ReportMetric(rate/devRate, "ratio-vs-dev")
		b.ReportMetric(ms(percentile(lat, 50)), "write-p50-ms")
		b.ReportMetric(ms(percentile(lat, 99)), "write-p99-ms")
		b.ReportMetric(ms(visible), "visible-all-ms")
		b.ReportMetric(ms(visible-took), "lag-after-ack-ms")
		rssPerServer := -1.0
		if rss0 > 0 && rss1 > 0 {
			rssPerServer = float64(rss1-rss0) / 3 / (1 << 20)
			b.ReportMetric(rssPerServer, "rss-per-server-MB")
		}
		b.ReportMetric(float64(int64(heap1)-int64(heap0))/3/(1<<20), "heap-per-server-MB")

		b.Logf("%d instances on 3 servers: %.0f/s (dev server %.0f/s, ratio %.2f); visible on all servers after %s (target < %s: %s)",
			benchInstances, rate, devRate, rate/devRate, visible.Round(time.Millisecond), targetVisibleAll, verdict(visible < targetVisibleAll))
		b.Logf("RSS per server (process delta / 3): %.1f MB (target < %d MB: %s)",
			rssPerServer, targetRSSMB, verdict(rssPerServer >= 0 && rssPerServer < targetRSSMB))
	}
}

// BenchmarkBlockingQueryWakeup measures how long a blocking query on
// /v1/health/service/:name takes to answer after a write changes that
// service: a reader holds GET ...?index=N&wait=30s, a writer re-registers the
// instance with a new port through the leader, and the sample is the time
// from the write's HTTP response to the reader's response (clamped at 0: on
// the leader the reader may be woken before the writer reads its answer).
// Each mode takes 200 samples and reports p50/p99 in ms, plus <mode>-e2e-p99-ms
// measured from the write's request instead (so it includes the raft commit):
//
//   - leader: the reader asks the leader (a default, consistent read);
//   - follower: the reader asks a follower with ?stale, so the sample
//     includes replication to that follower.
//
// Baselines in the same run: dev, the same measurement against a single dev
// server, and memdb, a bare state.Store with a goroutine blocked on the
// memdb WatchSet of the same read, woken by a direct Store.Register (no raft,
// no HTTP): the floor any HTTP blocking query sits on. follower-ratio-vs-dev
// and leader-ratio-vs-dev compare p99s with the dev server's.
//
// It runs with the production timers and with catalog.FastTiming(): raft's
// CommitTimeout (50 ms by default, 5 ms fast) bounds how late an idle
// follower learns that an entry committed, which is what a ?stale reader on a
// follower waits for.
func BenchmarkBlockingQueryWakeup(b *testing.B) {
	timings := []struct {
		name   string
		timing catalog.Timing
	}{
		{"timing=default", catalog.DefaultTiming()},
		{"timing=fast", catalog.FastTiming()},
	}
	for _, tt := range timings {
		b.Run(tt.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				memP50, memP99 := memdbWakeup(b)

				dev := startDev(b)
				devLat, devE2E := wakeups(b, dev.HTTPAddr(), dev.HTTPAddr(), false, "dev", func() string { return storeState(dev) })
				_ = dev.Close(context.Background())

				servers := startCluster(b, tt.timing)
				leader, follower := leaderAndFollower(servers)
				diag := func() string {
					var out []string
					for _, s := range servers {
						out = append(out, storeState(s))
					}
					return strings.Join(out, "; ")
				}
				leaderLat, leaderE2E := wakeups(b, leader.HTTPAddr(), leader.HTTPAddr(), false, "leader", diag)
				followerLat, followerE2E := wakeups(b, leader.HTTPAddr(), follower.HTTPAddr(), true, "follower", diag)
				relayLat, _ := wakeups(b, leader.HTTPAddr(), follower.HTTPAddr(), false, "relayed", diag)
				shutdown(servers)

				// The same relayed read (a follower without ?stale, relayed to
				// the leader over the internal gRPC port) on a cluster with
				// cluster trust: the port is then mutual TLS.
				trusted := startTrustedCluster(b, tt.timing)
				tLeader, tFollower := leaderAndFollower(trusted)
				tRelayLat, _ := wakeups(b, tLeader.HTTPAddr(), tFollower.HTTPAddr(), false, "trusted-relayed", diag)
				shutdown(trusted)
				b.ReportMetric(ms(percentile(relayLat, 50)), "relayed-p50-ms")
				b.ReportMetric(ms(percentile(relayLat, 99)), "relayed-p99-ms")
				b.ReportMetric(ms(percentile(tRelayLat, 50)), "trusted-relayed-p50-ms")
				b.ReportMetric(ms(percentile(tRelayLat, 99)), "trusted-relayed-p99-ms")
				b.ReportMetric(float64(percentile(tRelayLat, 50))/float64(max(percentile(relayLat, 50), time.Microsecond)), "trust-relay-p50-ratio")
				b.Logf("relayed blocking read (follower -> leader over the internal port), p50/p99: plaintext %s/%s, mutual TLS %s/%s",
					percentile(relayLat, 50), percentile(relayLat, 99), percentile(tRelayLat, 50), percentile(tRelayLat, 99))

				report := func(name string, lat, e2e []time.Duration) {
					b.ReportMetric(ms(percentile(lat, 50)), name+"-p50-ms")
					b.ReportMetric(ms(percentile(lat, 99)), name+"-p99-ms")
					b.ReportMetric(ms(percentile(e2e, 99)), name+"-e2e-p99-ms")
				}
				report("leader", leaderLat, leaderE2E)
				report("follower", followerLat, followerE2E)
				report("dev", devLat, devE2E)
				b.ReportMetric(float64(memP50)/float64(time.Microsecond), "memdb-p50-us")
				b.ReportMetric(float64(memP99)/float64(time.Microsecond), "memdb-p99-us")
				devP99 := max(percentile(devLat, 99), time.Microsecond)
				b.ReportMetric(float64(percentile(followerLat, 99))/float64(devP99), "follower-ratio-vs-dev")
				b.ReportMetric(float64(percentile(leaderLat, 99))/float64(devP99), "leader-ratio-vs-dev")

				worst := max(percentile(leaderLat, 99), percentile(followerLat, 99))
				b.Logf("wake-up after the write's ack, p50/p99: leader %s/%s, follower (?stale) %s/%s, dev server %s/%s, bare memdb %s/%s (target p99 < %s: %s)",
					percentile(leaderLat, 50), percentile(leaderLat, 99), percentile(followerLat, 50), percentile(followerLat, 99),
					percentile(devLat, 50), percentile(devLat, 99), memP50, memP99, targetWakeP99, verdict(worst < targetWakeP99))
				b.Logf("wake-up from the write's request, p50/p99: leader %s/%s, follower (?stale) %s/%s, dev server %s/%s",
					percentile(leaderE2E, 50), percentile(leaderE2E, 99), percentile(followerE2E, 50), percentile(followerE2E, 99),
					percentile(devE2E, 50), percentile(devE2E, 99))
			}
		})
	}
}

// ---- agents ----

// startDev starts a single in-memory dev server and waits for its leader.
func startDev(b *testing.B) *agent.Agent {
	b.Helper()
	cfg := agent.DevConfig()
	cfg.NodeName = "bench-dev"
	cfg.LogLevel = "error"
	a, err := startAgent(cfg)
	if err != nil {
		b.Fatalf("start dev server: %v", err)
	}
	b.Cleanup(func() { _ = a.Close(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Cluster().WaitForLeader(ctx); err != nil {
		b.Fatalf("dev server: %v", err)
	}
	return a
}

// startCluster starts three servers (bootstrap-expect 3) with raft-boltdb in
// temp dirs, the second and third retry-joining the first, and waits until
// there is a leader with three voters that every server knows.
// benchGossipKey is the benchmark clusters' gossip key: outside dev mode an
// agent refuses to start without one, and a real cluster encrypts gossip.
const benchGossipKey = "YmVuY2gtZ29zc2lwLWtleS1mb3ItcGVlcmQtYmVuY2g="

func startCluster(b *testing.B, timing catalog.Timing) []*agent.Agent {
	b.Helper()
	var servers []*agent.Agent
	for i := range 3 {
		cfg := serverConfig(b, fmt.Sprintf("bench-s%d", i+1), timing) // plaintext: startTrustedCluster is the trusted one
		cfg.BootstrapExpect = 3
		if i > 0 {
			cfg.RetryJoin = []string{servers[0].Cluster().GossipAddr()}
		}
		a, err := startAgent(cfg)
		if err != nil {
			b.Fatalf("start server %d: %v", i+1, err)
		}
		b.Cleanup(func() { _ = a.Close(context.Background()) })
		servers = append(servers, a)
	}
	waitVoters(b, servers)
	return servers
}

// leaderAndFollower is the servers' leader and one of its followers.
func leaderAndFollower(servers []*agent.Agent) (leader, follower *agent.Agent) {
	leader, follower = servers[0], servers[1]
	for _, s := range servers {
		if s.Cluster().IsLeader() {
			leader = s
		}
	}
	for _, s := range servers {
		if s != leader {
			return leader, s
		}
	}
	return leader, follower
}

// shutdown stops the servers together, so none spends its last moments
// electing itself among peers already gone.
func shutdown(servers []*agent.Agent) {
	var wg sync.WaitGroup
	for _, s := range servers {
		wg.Go(func() { _ = s.Close(context.Background()) })
	}
	wg.Wait()
}

// ---- registration ----

func serviceName(prefix string, j int) string { return fmt.Sprintf("%s-svc-%03d", prefix, j) }
func nodeName(prefix string, n int) string    { return fmt.Sprintf("%s-node-%03d", prefix, n) }

// registerInstances registers benchInstances instances with benchWorkers
// concurrent clients, worker w sending to addrs[w % len(addrs)]. It returns
// the wall time and every request's latency.
func registerInstances(addrs []string, prefix string) (time.Duration, []time.Duration, error) {
	client := &http.Client{
		Transport: &http.Transport{MaxIdleConns: 2 * benchWorkers, MaxIdleConnsPerHost: benchWorkers},
		Timeout:   30 * time.Second,
	}
	defer client.CloseIdleConnections()
	jobs := make(chan int)
	var (
		mu       sync.Mutex
		firstErr error
		lat      = make([]time.Duration, 0, benchInstances)
		wg       sync.WaitGroup
	)
	start := time.Now()
	for w := range benchWorkers {
		url := "http://" + addrs[w%len(addrs)] + "/v1/catalog/register"
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := make([]time.Duration, 0, benchInstances/benchWorkers+1)
			for k := range jobs {
				n, j := k/benchServices, k%benchServices
				body, _ := json.Marshal(map[string]any{
					"Node":     nodeName(prefix, n),
					"Address":  fmt.Sprintf("10.%d.%d.%d", 1+n/65536, n/256%256, n%256),
					"NodeMeta": map[string]string{"bench": prefix},
					"Service": map[string]any{
						"ID": serviceName(prefix, j) + "-" + strconv.Itoa(n), "Service": serviceName(prefix, j),
						"Port": 20000 + j, "Tags": []string{"bench"},
					},
				})
				t0 := time.Now()
				err := put(client, url, body)
				mine = append(mine, time.Since(t0))
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	for k := range benchInstances {
		jobs <- k
	}
	close(jobs)
	wg.Wait()
	return time.Since(start), lat, firstErr
}

func put(client *http.Client, url string, body []byte) error {
	req, err := http.NewRequest(http.MethodPut, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("PUT %s: %d %s", url, resp.StatusCode, bytes.TrimSpace(b))
	}
	return nil
}

// waitVisible polls every server's store until each holds all benchInstances
// instances of the prefix's services and returns the time since start.
func waitVisible(servers []*agent.Agent, prefix string, start time.Time, timeout time.Duration) (time.Duration, error) {
	done := make([]bool, len(servers))
	deadline := time.Now().Add(timeout)
	for {
		all := true
		for i, s := range servers {
			if !done[i] {
				done[i] = countInstances(s.Cluster().Store(), prefix) == benchInstances
			}
			all = all && done[i]
		}
		if all {
			return time.Since(start), nil
		}
		if time.Now().After(deadline) {
			var counts []int
			for _, s := range servers {
				counts = append(counts, countInstances(s.Cluster().Store(), prefix))
			}
			return 0, fmt.Errorf("after %s the servers hold %v instances, want %d each", timeout, counts, benchInstances)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func countInstances(st *state.Store, prefix string) int {
	total := 0
	for j := range benchServices {
		_, sns, err := st.ServiceNodes(nil, "", serviceName(prefix, j))
		if err != nil {
			return -1
		}
		total += len(sns)
	}
	return total
}

// ---- blocking queries ----

type healthEntry struct {
	Service struct{ Port int }
}

// wakeups takes wakeSamples samples of the time from a write's response
// (through writeAddr) to the response of a blocking health query held on
// readAddr, with ?stale when stale (afterAck, clamped at 0), and from the
// write's request to that response (fromWrite).
func wakeups(b *testing.B, writeAddr, readAddr string, stale bool, node string, diag func() string) (afterAck, fromWrite []time.Duration) {
	b.Helper()
	client := &http.Client{Timeout: time.Minute}
	defer client.CloseIdleConnections()
	writeURL := "http://" + writeAddr + "/v1/catalog/register"
	service := "wake-" + node
	write := func(port int) error {
		body, _ := json.Marshal(map[string]any{
			"Node": "wake-node-" + node, "Address": "10.9.9.9",
			"Service": map[string]any{"ID": service, "Service": service, "Port": port},
		})
		return put(client, writeURL, body)
	}
	if err := write(1); err != nil {
		b.Fatalf("register %s: %v", service, err)
	}
	readURL := "http://" + readAddr + "/v1/health/service/" + service + "?wait=30s"
	if stale {
		readURL += "&stale"
	}
	// Wait until the reader's server has the instance, and take its index.
	var index uint64
	deadline := time.Now().Add(10 * time.Second)
	for {
		idx, port, err := healthRead(client, readURL, 0)
		if err == nil && port == 1 {
			index = idx
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s never showed %s on port 1 (last: port %d, err %v)", readAddr, service, port, err)
		}
		time.Sleep(10 * time.Millisecond)
	}

	type woke struct {
		at    time.Time
		index uint64
		err   error
	}
	afterAck = make([]time.Duration, 0, wakeSamples)
	fromWrite = make([]time.Duration, 0, wakeSamples)
	for i := range wakeSamples {
		want := 2 + i
		ch := make(chan woke, 1)
		go func(index uint64) {
			// Re-block after a wake-up that does not show the write yet
			// (another write bumped the index).
			for {
				idx, port, err := healthRead(client, readURL, index)
				if err != nil || port == want {
					ch <- woke{time.Now(), idx, err}
					return
				}
				index = idx
			}
		}(index)
		// Let the query reach the server and park there.
		time.Sleep(10 * time.Millisecond)
		sent := time.Now()
		if err := write(want); err != nil {
			b.Fatalf("write %d: %v", i, err)
		}
		acked := time.Now()
		select {
		case w := <-ch:
			if w.err != nil {
				b.Fatalf("blocking read %d: %v", i, w.err)
			}
			afterAck = append(afterAck, max(w.at.Sub(acked), 0))
			fromWrite = append(fromWrite, w.at.Sub(sent))
			index = w.index
		case <-time.After(30 * time.Second):
			b.Fatalf("blocking read %d on %s did not wake within 30s of the write; %s", i, readAddr, diag())
		}
	}
	return afterAck, fromWrite
}

// healthRead does one (blocking when index > 0) health read and returns the
// X-Consul-Index and the port of the only instance (0 when none).
func healthRead(client *http.Client, url string, index uint64) (uint64, int, error) {
	if index > 0 {
		url += "&index=" + strconv.FormatUint(index, 10)
	}
	resp, err := client.Get(url)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, bytes.TrimSpace(body))
	}
	idx, err := strconv.ParseUint(resp.Header.Get("X-Consul-Index"), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("GET %s: X-Consul-Index %q: %w", url, resp.Header.Get("X-Consul-Index"), err)
	}
	var entries []healthEntry
	if err := json.Unmarshal(body, &entries); err != nil {
		return 0, 0, fmt.Errorf("GET %s: %w", url, err)
	}
	if len(entries) == 0 {
		return idx, 0, nil
	}
	return idx, entries[0].Service.Port, nil
}

// memdbWakeup is the floor under every blocking query: a goroutine blocked
// on the WatchSet of Store.CheckServiceNodes, woken by Store.Register in the
// same process. It returns p50 and p99 of the time from Register's return to
// the goroutine running.
func memdbWakeup(b *testing.B) (time.Duration, time.Duration) {
	b.Helper()
	st, err := state.NewStore()
	if err != nil {
		b.Fatal(err)
	}
	reg := func(idx uint64, port int) {
		err := st.Register(idx, &state.RegisterRequest{
			Node:    &state.Node{Node: "wake-node", Address: "10.9.9.9"},
			Service: &state.Service{ID: "wake", Service: "wake", Port: port},
		})
		if err != nil {
			b.Fatalf("register: %v", err)
		}
	}
	reg(1, 1)
	lat := make([]time.Duration, 0, wakeSamples)
	for i := range wakeSamples {
		ws := memdb.NewWatchSet()
		if _, _, err := st.CheckServiceNodes(ws, "", "wake"); err != nil {
			b.Fatal(err)
		}
		woke := make(chan time.Time, 1)
		go func() {
			_ = ws.WatchCtx(context.Background())
			woke <- time.Now()
		}()
		time.Sleep(time.Millisecond)
		reg(uint64(2+i), 2+i)
		done := time.Now()
		lat = append(lat, max((<-woke).Sub(done), 0))
	}
	return percentile(lat, 50), percentile(lat, 99)
}

// storeState describes a server's raft role and store for failure messages.
func storeState(a *agent.Agent) string {
	c := a.Cluster()
	st := c.Store()
	var ports []string
	for _, name := range []string{"wake-dev", "wake-leader", "wake-follower"} {
		_, sns, _ := st.ServiceNodes(nil, "", name)
		for _, sn := range sns {
			ports = append(ports, fmt.Sprintf("%s:%d", name, sn.Service.Port))
		}
	}
	return fmt.Sprintf("%s (leader %t, knows leader %q) at index %d has %v",
		c.Config().NodeName, c.IsLeader(), c.Leader(), st.LastIndex(), ports)
}

// ---- measurement helpers ----

// memoryNow returns the process's resident set size (VmRSS, 0 when
// /proc/self/status cannot be read) and the Go heap in use, in bytes, after a
// GC that returns freed memory to the OS.
func memoryNow() (rss, heap uint64) {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return vmRSS(), ms.HeapInuse
}

func vmRSS() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}

// percentile returns the p-th percentile (nearest rank) of d.
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	rank := int(p/100*float64(len(s))+0.5) - 1
	return s[min(max(rank, 0), len(s)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

// startAgent is agent.New followed by Start.
func startAgent(cfg agent.Config) (*agent.Agent, error) {
	a, err := agent.New(cfg)
	if err != nil {
		return nil, err
	}
	if err := a.Start(); err != nil {
		return nil, err
	}
	return a, nil
}
