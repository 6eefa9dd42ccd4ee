//go:build linux

package e2e

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/peerd/peerd/internal/testutil"
)

var e2eProfile = flag.String("e2e.profile", "short",
	"fault suite profile: short (a few faults, short windows: CI and make test) or full (every fault, 60 s WAN windows: make e2e)")

// Convergence bounds: after a heal every check must pass within these.
const (
	convergeBound    = 5 * time.Second
	convergeBoundWAN = 10 * time.Second
	// convergeWait is how long the suite keeps checking past the bound,
	// to report how long convergence did take.
	convergeWait = 60 * time.Second
	// replicationAllowance: a write acknowledged this recently may not
	// have reached a healthy follower yet; older ones must have.
	replicationAllowance = time.Second
	// settle is the quiet time between one fault's convergence and the
	// next fault.
	settle = 3 * time.Second
)

// suite is the running fault suite: two clusters, the WAN between them,
// the workload and the history the checker reads.
type suite struct {
	t        *testing.T
	ctx      context.Context
	a, b     *cluster
	wan      *wan
	bins     suiteBinaries
	requests *requestLog
	report   report
	lastEnd  time.Time // end of the previous fault's window
}

// fault is one fault of the suite: inject it, return the instant it hit
// and the instant it healed.
type fault struct {
	name   string
	budget requestBudget
	bound  time.Duration
	short  bool // in the short profile too
	run    func(s *suite) (hit, healed time.Time, err error)
}

// TestFaultSuite is make e2e: two clusters of 3 servers and 1 client, each
// node a real peerd in its own network namespace, each cluster on a
// bridge, the bridges joined by a WAN the suite impairs. While writers
// register and flip instances in both clusters (each cluster's instances
// exported to the other) and a's client calls billing in b at 40
// requests a second, the suite injects one fault at a time, heals it and
// checks: no acknowledged write lost on any server, every import equal
// to its export, both peerings ACTIVE, within the bound; and counts the
// failed requests of each fault's window against its budget. It prints a
// table and one summary line.
func TestFaultSuite(t *testing.T) {
	testutil.RequireRoot(t, "creates network namespaces, veth pairs, bridges and TUN devices")
	full := *e2eProfile == "full"
	if *e2eProfile != "short" && !full {
		t.Fatalf("-e2e.profile=%q: want short or full", *e2eProfile)
	}
	if testing.Short() {
		t.Skip("runs eight peerd processes for minutes: skipped with -short")
	}
	becomeSubreaper(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()

	setupStart := time.Now()
	bins := buildSuiteBinaries(t)
	la, lb := newLAN(t, "198.18.10."), newLAN(t, "198.18.20.")
	w := newWAN(t, la, lb)
	a := startCluster(ctx, t, bins, "a", la)
	b := startCluster(ctx, t, bins, "b", lb)
	peerClusters(ctx, t, a, b)
	setUpServices(ctx, t, a, b)
	t.Logf("set-up: two clusters of 3+1 nodes, peered, billing reachable from web, in %v", time.Since(setupStart).Round(time.Second))

	s := &suite{t: t, ctx: ctx, a: a, b: b, wan: w, bins: bins, requests: &requestLog{}}
	wctx, stopWork := context.WithCancel(ctx)
	var wg, reqs sync.WaitGroup
	for _, c := range []*cluster{a, b} {
		wg.Add(1)
		go func() { defer wg.Done(); runWriter(wctx, c, 150*time.Millisecond) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); runTraffic(wctx, a, s.requests, &reqs) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			stopWork()
			wg.Wait()
			reqs.Wait()
		}
	}
	defer stop()

	// A quiet window first: the workload alone must lose nothing and
	// fail no request.
	s.lastEnd = time.Now()
	s.run(fault{name: "none (steady workload, 10 s)", budget: noFailures, bound: convergeBound, short: true,
		run: func(s *suite) (time.Time, time.Time, error) {
			time.Sleep(10 * time.Second)
			now := time.Now()
			return now, now, nil
		}})
	wanWindow := 15 * time.Second
	if full {
		wanWindow = 60 * time.Second
	}
	for _, f := range faults(wanWindow) {
		if !full && !f.short {
			s.report.Rows = append(s.report.Rows, faultResult{Name: f.name, Skipped: "full profile only (make e2e)"})
			continue
		}
		s.run(f)
	}
	stop()
	t.Logf("fault suite (%s profile), %d writes acknowledged in all, %d packets dropped by the WAN:\n%s\n%s",
		*e2eProfile, a.writes.ackedBetween(time.Time{}, time.Now())+b.writes.ackedBetween(time.Time{}, time.Now()),
		w.dropped.Load(), s.report.table(), s.report.summary())
	fmt.Fprintf(os.Stdout, "\n%s%s\n", s.report.table(), s.report.summary())
	for _, p := range s.report.problems() {
		t.Error(p)
	}
}

// faults is the suite's list, in order. wanWindow is how long the WAN
// stays cut or impaired.
func faults(wanWindow time.Duration) []fault {
	killLeader := func(pick func(*suite) *cluster) func(s *suite) (time.Time, time.Time, error) {
		return func(s *suite) (time.Time, time.Time, error) {
			c := pick(s)
			l, err := c.leader(s.ctx)
			if err != nil {
				return time.Time{}, time.Time{}, err
			}
			l.kill()
			hit := time.Now()
			s.t.Logf("  killed %s (leader of %s)", l.name, c.name)
			if err := s.waitNewLeader(c, l); err != nil {
				return hit, time.Now(), err
			}
			healed := time.Now()
			return hit, healed, l.start()
		}
	}
	return []fault{
		{name: "kill -9 a's leader", budget: inFlightOnly, bound: convergeBound, short: true,
			run: killLeader(func(s *suite) *cluster { return s.a })},
		{name: "kill -9 b's leader", budget: inFlightOnly, bound: convergeBound,
			run: killLeader(func(s *suite) *cluster { return s.b })},
		{name: "SIGSTOP b's leader 5 s", budget: inFlightOnly, bound: convergeBound,
			run: func(s *suite) (time.Time, time.Time, error) {
				l, err := s.b.leader(s.ctx)
				if err != nil {
					return time.Time{}, time.Time{}, err
				}
				if err := l.signal(syscall.SIGSTOP); err != nil {
					return time.Time{}, time.Time{}, err
				}
				hit := time.Now()
				time.Sleep(5 * time.Second) // 5× the election timeout
				return hit, time.Now(), l.signal(syscall.SIGCONT)
			}},
		{name: "a's leader cut from its LAN 15 s", budget: inFlightOnly, bound: convergeBound,
			run: func(s *suite) (time.Time, time.Time, error) {
				l, err := s.a.leader(s.ctx)
				if err != nil {
					return time.Time{}, time.Time{}, err
				}
				if err := s.a.lan.setLink(l.host, false); err != nil {
					return time.Time{}, time.Time{}, err
				}
				hit := time.Now()
				time.Sleep(15 * time.Second)
				return hit, time.Now(), s.a.lan.setLink(l.host, true)
			}},
		{name: fmt.Sprintf("WAN cut %v", wanWindow), budget: whileCut, bound: convergeBoundWAN, short: true,
			run: impairWAN(impairment{cut: true}, wanWindow)},
		{name: fmt.Sprintf("WAN 10%% loss, 100ms delay %v", wanWindow), budget: whileCut, bound: convergeBound, short: true,
			run: impairWAN(impairment{loss: 0.10, delay: 100 * time.Millisecond}, wanWindow)},
		{name: "rolling restart of every node", budget: noFailures, bound: convergeBound,
			run: timed((*suite).rollingRestart)},
		{name: "CA rotation in a, then in b", budget: noFailures, bound: convergeBound, short: true,
			run: timed(func(s *suite) error {
				for _, c := range []*cluster{s.a, s.b} {
					if err := c.servers[0].do(s.ctx, "POST", "/v1/connect/ca/rotate", nil, nil); err != nil {
						return fmt.Errorf("rotate %s's CA: %w", c.name, err)
					}
					s.t.Logf("  rotated %s's CA", c.name)
					time.Sleep(5 * time.Second) // leaves renew meanwhile, under traffic
				}
				return nil
			})},
		{name: "reload, new binary: a's client", budget: noFailures, bound: convergeBound, short: true,
			run: timed(func(s *suite) error { return s.reloadNewBinary(s.a.client) })},
		{name: "reload, new binary: b's client", budget: noFailures, bound: convergeBound,
			run: timed(func(s *suite) error { return s.reloadNewBinary(s.b.client) })},
	}
}

// timed is a fault that hits when f starts and heals when it returns.
func timed(f func(s *suite) error) func(s *suite) (time.Time, time.Time, error) {
	return func(s *suite) (time.Time, time.Time, error) {
		hit := time.Now()
		err := f(s)
		return hit, time.Now(), err
	}
}

// impairWAN is a fault that impairs the WAN for d, then clears it.
func impairWAN(imp impairment, d time.Duration) func(s *suite) (time.Time, time.Time, error) {
	return func(s *suite) (time.Time, time.Time, error) {
		s.wan.set(imp)
		hit := time.Now()
		time.Sleep(d)
		s.wan.set(impairment{})
		return hit, time.Now(), nil
	}
}

// run injects f, waits for convergence and records its row.
func (s *suite) run(f fault) {
	s.t.Logf("fault: %s", f.name)
	row := faultResult{Name: f.name, Bound: f.bound, Budget: f.budget}
	hit, healed, err := f.run(s)
	if err != nil {
		row.Unhealthy = "the fault itself: " + err.Error()
	}
	c := s.converge(healed, f.bound)
	row.Converge, row.CaughtUp, row.Lost, row.Stale = c.converged, c.caughtUp, len(c.lost), c.stale
	lost, conv := c.lost, c.converged
	end := time.Now()
	if c.converged >= 0 && c.caughtUp >= 0 {
		end = healed.Add(max(c.converged, c.caughtUp))
	}
	row.Acked = s.a.writes.ackedBetween(s.lastEnd, end) + s.b.writes.ackedBetween(s.lastEnd, end)
	// Requests sent before the window's end: those still running finish
	// within requestLimit.
	time.Sleep(time.Until(end.Add(requestLimit + 500*time.Millisecond)))
	failed, total, inFlight := s.requests.between(s.lastEnd, end, hit)
	row.Failed, row.Total = failed, total
	switch f.budget {
	case inFlightOnly:
		row.Allowed = inFlight
	case whileCut:
		// Sent before the heal (and up to one request time before the
		// hit): the cut or the loss may fail them. None sent after.
		row.Allowed, _, _ = s.requests.between(hit.Add(-requestLimit), healed.Add(time.Second), hit)
		row.Allowed = min(row.Allowed, failed)
	}
	if failed > 0 {
		row.Details = s.requests.failures(s.lastEnd, end, 5)
	}
	s.report.Rows = append(s.report.Rows, row)
	verdict := "ok"
	if p := row.problems(); len(p) > 0 {
		verdict = strings.Join(p, "; ")
	}
	s.t.Logf("  converged in %v, servers caught up in %v; %d acked writes, %d lost, %d stale, %d/%d requests failed: %s", conv.Round(10*time.Millisecond), c.caughtUp.Round(10*time.Millisecond),
		row.Acked, row.Lost, row.Stale, failed, total, verdict)
	for _, l := range lost {
		s.t.Logf("  lost: %s", l)
	}
	for _, d := range row.Details {
		s.t.Logf("  failed request: %s", d)
	}
	s.lastEnd = end
	time.Sleep(settle)
}

// convergence is what converge measured after one heal.
type convergence struct {
	converged time.Duration // to the cluster views agreeing (-1: not within convergeWait)
	caughtUp  time.Duration // to every server agreeing on its own (-1: not within convergeWait)
	lost      []string      // writes some server still lacked at the end
	stale     int           // import differences in the cluster views at the bound
}

// converge checks every 100 ms from healed, at two levels:
//
//   - the clusters' views (what a client reads by default, the leader's
//     state): each importer's copy equals its exporter's, both peerings
//     are ACTIVE, and each leader holds every acknowledged write. This is
//     the convergence time the bound applies to;
//   - every server on its own (?stale): each holds every acknowledged
//     write and each importing server's copy equals the export. A
//     follower can trail the leader after a fault for a while: raft
//     retries a follower it failed to reach with a backoff doubling from
//     10 ms up to 10.24 s (hashicorp/raft's failureWait and
//     maxFailureScale), so the caught-up time has its own bound,
//     caughtUpBound.
//
// A write some server still lacks after convergeWait is lost.
func (s *suite) converge(healed time.Time, bound time.Duration) convergence {
	res := convergence{converged: -1, caughtUp: -1, stale: -1}
	for {
		since := time.Since(healed)
		if res.converged < 0 {
			stale, err := s.checkClusters()
			if err == nil && len(stale) == 0 {
				res.converged = since
				if res.stale < 0 {
					res.stale = 0
				}
			} else if res.stale < 0 && since > bound {
				res.stale = len(stale)
				s.t.Logf("  cluster views not converged at the %v bound: %v; stale: %v", bound, err, firstN(stale, 5))
			}
		}
		if res.caughtUp < 0 {
			lost, stale, err := s.checkServers()
			if err == nil && len(lost) == 0 && len(stale) == 0 {
				res.caughtUp = since
			} else if since > convergeWait {
				s.t.Logf("  servers not caught up after %v: %v; lost: %v; stale: %v", convergeWait, err, firstN(lost, 5), firstN(stale, 5))
				res.lost = lost
			}
		}
		if (res.converged >= 0 && res.caughtUp >= 0) || since > convergeWait {
			return res
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func firstN(ss []string, n int) []string { return ss[:min(n, len(ss))] }

// anyServer runs f on c's servers in turn until one answers (a fault may
// have left one unreachable).
func anyServer(c *cluster, f func(*node) error) error {
	var errs []error
	for _, n := range c.servers {
		err := f(n)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// clusterView reads service (peer's import of it, with peer) as a client
// of c reads it by default, the leader's state, from any server that
// answers.
func clusterView(ctx context.Context, c *cluster, service, peer string) (view map[string]instanceState, err error) {
	err = anyServer(c, func(n *node) error {
		view, err = instanceView(ctx, n, service, peer, false)
		return err
	})
	return view, err
}

// importDiffs reads exporter's service just before and just after
// imports reads the importing views (by name), and returns the export as
// read before and every view's differences from it. The writers go on
// meanwhile: an import may show the export as it was before or after.
func importDiffs(ctx context.Context, exporter *cluster, imports func() (map[string]map[string]instanceState, error)) (map[string]instanceState, []string, error) {
	before, err := clusterView(ctx, exporter, exporter.service, "")
	if err != nil {
		return nil, nil, err
	}
	views, err := imports()
	if err != nil {
		return nil, nil, err
	}
	after, err := clusterView(ctx, exporter, exporter.service, "")
	if err != nil {
		return nil, nil, err
	}
	var stale []string
	for name, view := range views {
		for _, d := range staleImportsBetween(before, after, view) {
			stale = append(stale, name+": "+d)
		}
	}
	sort.Strings(stale)
	return before, stale, nil
}

// checkClusters is converge's first level: it returns the import
// differences of the cluster views, and an error for what could not be
// read, a leader missing an acknowledged write or a peering not ACTIVE.
func (s *suite) checkClusters() (stale []string, err error) {
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
	defer cancel()
	cutoff := time.Now().Add(-replicationAllowance)
	for _, pair := range [][2]*cluster{{s.a, s.b}, {s.b, s.a}} {
		exporter, importer := pair[0], pair[1]
		before, diffs, err := importDiffs(ctx, exporter, func() (map[string]map[string]instanceState, error) {
			view, err := clusterView(ctx, importer, exporter.service, exporter.peerName)
			return map[string]map[string]instanceState{importer.name: view}, err
		})
		if err != nil {
			return nil, err
		}
		if lost := lostWrites(exporter.writes.expected(cutoff), before); len(lost) > 0 {
			return nil, fmt.Errorf("%s's leader lacks %d acknowledged writes: %v", exporter.name, len(lost), firstN(lost, 3))
		}
		stale = append(stale, diffs...)
	}
	return stale, peeringsActive(ctx, s.a, s.b)
}

// checkServers is converge's second level: the acknowledged writes each
// server lacks, and each importing server's own differences from the
// export.
func (s *suite) checkServers() (lost, stale []string, err error) {
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
	defer cancel()
	cutoff := time.Now().Add(-replicationAllowance)
	for _, c := range []*cluster{s.a, s.b} {
		exp := c.writes.expected(cutoff)
		for _, n := range c.servers {
			view, err := instanceView(ctx, n, c.service, "", true)
			if err != nil {
				return nil, nil, err
			}
			for _, l := range lostWrites(exp, view) {
				lost = append(lost, n.name+": "+l)
			}
		}
	}
	for _, pair := range [][2]*cluster{{s.a, s.b}, {s.b, s.a}} {
		exporter, importer := pair[0], pair[1]
		_, diffs, err := importDiffs(ctx, exporter, func() (map[string]map[string]instanceState, error) {
			views := map[string]map[string]instanceState{}
			for _, n := range importer.servers {
				view, err := instanceView(ctx, n, exporter.service, exporter.peerName, true)
				if err != nil {
					return nil, err
				}
				views[n.name] = view
			}
			return views, nil
		})
		if err != nil {
			return nil, nil, err
		}
		stale = append(stale, diffs...)
	}
	return lost, stale, nil
}

// waitNewLeader waits until a server other than old leads c.
func (s *suite) waitNewLeader(c *cluster, old *node) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if l, err := c.leader(s.ctx); err == nil && l != old {
			s.t.Logf("  %s leads %s", l.name, c.name)
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s: no new leader within 30 s", c.name)
}

// rollingRestart restarts every node one at a time, as an operator rolls
// an upgrade: each server with SIGTERM and a new start (systemctl
// restart), waiting for its cluster to be healthy again before the next;
// then the two clients, which carry the traffic, with a reload (systemctl
// reload), which hands their listeners over without a gap.
func (s *suite) rollingRestart() error {
	for _, c := range []*cluster{s.a, s.b} {
		for _, n := range c.servers {
			if err := n.stop(30 * time.Second); err != nil {
				return err
			}
			if err := n.start(); err != nil {
				return fmt.Errorf("start %s again: %w", n.name, err)
			}
			if err := waitFor(60*time.Second, c.healthy(s.ctx)); err != nil {
				return fmt.Errorf("after restarting %s: %w", n.name, err)
			}
			s.t.Logf("  restarted %s", n.name)
		}
	}
	for _, n := range []*node{s.a.client, s.b.client} {
		if err := n.reload(s.ctx); err != nil {
			return err
		}
		s.t.Logf("  reloaded %s", n.name)
	}
	return nil
}

// reloadNewBinary installs the other build at n's binary path and sends
// SIGHUP; the node must then serve with that build's version.
func (s *suite) reloadNewBinary(n *node) error {
	var self struct{ Config struct{ Version string } }
	if err := n.getJSON(s.ctx, "/v1/agent/self", &self); err != nil {
		return err
	}
	next, want := s.bins.v2, versionV2
	if self.Config.Version == versionV2 {
		next, want = s.bins.v1, versionV1
	}
	if err := installBinary(next, n.bin); err != nil {
		return err
	}
	start := time.Now()
	if err := n.reload(s.ctx); err != nil {
		return err
	}
	if err := n.getJSON(s.ctx, "/v1/agent/self", &self); err != nil {
		return err
	}
	if self.Config.Version != want {
		return fmt.Errorf("%s serves version %q after the reload, want %q", n.name, self.Config.Version, want)
	}
	s.t.Logf("  %s reloaded into %s in %v", n.name, want, time.Since(start).Round(time.Millisecond))
	return nil
}

// waitFor polls f every 200 ms until it succeeds or timeout passes.
func waitFor(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// setLink sets h's end of its veth pair, on the bridge, up or down: down
// cuts the host off its LAN (and the WAN) without touching its process.
func (l *lan) setLink(h *host, up bool) error {
	var err error
	l.ns.Run(func() {
		var link netlink.Link
		if link, err = netlink.LinkByName("v-" + h.name); err != nil {
			return
		}
		if up {
			err = netlink.LinkSetUp(link)
		} else {
			err = netlink.LinkSetDown(link)
		}
	})
	if err != nil {
		return fmt.Errorf("set %s's link up=%v: %w", h.name, up, err)
	}
	return nil
}
