package catalog

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// withAutopilot sets the autopilot timers of a test node.
func withAutopilot(stabilization, reap time.Duration) func(*Config) {
	return func(c *Config) {
		c.Autopilot.ServerStabilizationTime, c.Autopilot.DeadServerReapTime = stabilization, reap
	}
}

func leaderOf(t *testing.T, nodes ...*testNode) *testNode {
	t.Helper()
	waitLeader(t, nodes...)
	for _, n := range nodes {
		if n.IsLeader() {
			return n
		}
	}
	t.Fatal("no leader among the nodes")
	return nil
}

// suffrage returns "voter", "non-voter" or "" (not in the configuration)
// for id in c's raft configuration.
func suffrage(t *testing.T, c *testNode, id string) string {
	t.Helper()
	servers, _, err := c.RaftConfiguration()
	if err != nil {
		t.Fatalf("raft configuration: %v", err)
	}
	for _, s := range servers {
		if s.ID == id {
			if s.Voter {
				return "voter"
			}
			return "non-voter"
		}
	}
	return ""
}

func startThree(t *testing.T, mod func(*Config)) []*testNode {
	t.Helper()
	s1 := startNodeWith(t, "s1", 3, mod)
	s2 := startNodeWith(t, "s2", 3, mod, s1.GossipAddr())
	s3 := startNodeWith(t, "s3", 3, mod, s1.GossipAddr())
	nodes := []*testNode{s1, s2, s3}
	l := leaderOf(t, nodes...)
	for _, n := range nodes {
		if got := suffrage(t, l, n.cfg.NodeName); got != "voter" {
			t.Fatalf("bootstrap server %s is %q, want voter (bootstrap-expect servers vote from the start)", n.cfg.NodeName, got)
		}
	}
	return nodes
}

// watchPromotion polls l's raft configuration until id is a voter and
// returns when it was first seen as a non-voter and when as a voter. It
// fails if id is a voter the first time it is seen.
func watchPromotion(t *testing.T, l *testNode, id string, timeout time.Duration) (added, promoted time.Time) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		switch suffrage(t, l, id) {
		case "non-voter":
			if added.IsZero() {
				added = time.Now()
			}
		case "voter":
			if added.IsZero() {
				t.Fatalf("%s joined raft as a voter, want a non-voter first", id)
			}
			return added, time.Now()
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s not promoted to voter within %v (added at %v)", id, timeout, added)
	return
}

func TestAutopilotPromotesNewServerAfterStabilization(t *testing.T) {
	const stab = 1500 * time.Millisecond
	nodes := startThree(t, withAutopilot(stab, time.Hour))
	l := leaderOf(t, nodes...)
	s4 := startNodeWith(t, "s4", 0, withAutopilot(stab, time.Hour), nodes[0].GossipAddr())

	added, promoted := watchPromotion(t, l, "s4", 15*time.Second)
	if d := promoted.Sub(added); d < stab {
		t.Fatalf("s4 promoted %v after it was added, want at least the stabilization time %v", d, stab)
	}
	waitFor(t, 5*time.Second, "autopilot state lists 4 healthy voters", func() bool {
		st, err := l.AutopilotState()
		return err == nil && len(st.Voters) == 4 && st.Healthy && st.Leader == l.cfg.NodeName &&
			st.Servers["s4"].Status == AutopilotVoter && st.FailureTolerance == 1
	})
	// The new voter holds the data.
	apply(t, s4.Cluster, &Command{Type: CmdRegister, Register: reg("n1", "web")})
	waitFor(t, 5*time.Second, "s4 has the write", func() bool { return hasService(s4.Store(), "web") })
}

func TestAutopilotDoesNotPromoteFlappingServer(t *testing.T) {
	const stab = 2 * time.Second
	nodes := startThree(t, withAutopilot(stab, time.Hour))
	l := leaderOf(t, nodes...)
	s4 := startNodeWith(t, "s4", 0, withAutopilot(stab, time.Hour), nodes[0].GossipAddr())
	healthy := func(want bool) func() bool {
		return func() bool {
			st, err := l.AutopilotState()
			return err == nil && st.Servers["s4"].Healthy == want && st.Servers["s4"].ID == "s4"
		}
	}
	waitFor(t, 10*time.Second, "s4 healthy as a non-voter", healthy(true))
	added := time.Now()
	time.Sleep(stab / 4)
	var restored time.Time
	// Cut s4's internal gRPC: the leader can no longer read its raft stats,
	// so it is unhealthy, well within its stabilization time.
	s4.restartGRPC(func() {
		waitFor(t, 5*time.Second, "s4 unhealthy while cut", healthy(false))
		if got := suffrage(t, l, "s4"); got != "non-voter" {
			t.Fatalf("s4 is %q while unhealthy, want non-voter", got)
		}
		time.Sleep(stab / 4)
		restored = time.Now()
	})
	if time.Since(added) >= stab {
		t.Fatalf("the flap took longer than the stabilization time; the test proves nothing")
	}
	if got := suffrage(t, l, "s4"); got != "non-voter" {
		t.Fatalf("s4 is %q right after the flap, want non-voter", got)
	}
	_, promoted := watchPromotion(t, l, "s4", 15*time.Second)
	if d := promoted.Sub(restored); d < stab {
		t.Fatalf("s4 promoted %v after it recovered, want at least the stabilization time %v counted from then", d, stab)
	}
}

func TestAutopilotRemovesDeadServerAfterReapTime(t *testing.T) {
	const reap = 1500 * time.Millisecond
	nodes := startThree(t, withAutopilot(time.Second, reap))
	l := leaderOf(t, nodes...)
	var victim *testNode
	for _, n := range nodes {
		if n != l {
			victim = n
			break
		}
	}
	id := victim.cfg.NodeName
	victim.stop() // a crash: no leave
	var failedAt time.Time
	waitFor(t, 10*time.Second, id+" failed in the leader's gossip", func() bool {
		if l.memberStatus()[id] == StatusFailed {
			failedAt = time.Now()
			return true
		}
		return false
	})
	st, err := l.AutopilotState()
	waitFor(t, 5*time.Second, "autopilot sees the failure", func() bool {
		st, err = l.AutopilotState()
		return err == nil && !st.Healthy && st.Servers[id].NodeStatus == "failed"
	})
	if st.FailureTolerance != 0 {
		t.Fatalf("failure tolerance with one of three voters failed: got %d, want 0", st.FailureTolerance)
	}
	if suffrage(t, l, id) != "voter" {
		t.Fatalf("%s removed right after failing, want it kept for the reap time %v", id, reap)
	}
	var removedAt time.Time
	waitFor(t, 10*time.Second, id+" removed from raft", func() bool {
		if suffrage(t, l, id) == "" {
			removedAt = time.Now()
			return true
		}
		return false
	})
	// The leader may note the failure up to one poll before this test did.
	if d := removedAt.Sub(failedAt); d < reap-50*time.Millisecond {
		t.Fatalf("%s removed %v after it failed, want at least the reap time %v", id, d, reap)
	}
	// The counter is raised once RemoveServer returns, which can be just
	// after the new configuration shows.
	waitFor(t, 2*time.Second, "the removal counted once", func() bool {
		return counterValue(t, l.metrics.autopilotRemovals) == 1
	})
	// Two voters left, both healthy: writes still commit.
	apply(t, l.Cluster, &Command{Type: CmdRegister, Register: reg("n1", "web")})
	st, err = l.AutopilotState()
	waitFor(t, 5*time.Second, "autopilot healthy again with two voters", func() bool {
		st, err = l.AutopilotState()
		return err == nil && st.Healthy && len(st.Voters) == 2
	})

	// Of two voters, autopilot removes neither (Consul's at most
	// (voters-1)/2): the other one failing in gossip only is kept.
	var other *testNode
	for _, n := range nodes {
		if n != l && n != victim {
			other = n
		}
	}
	before := counterValue(t, l.metrics.autopilotRefusals.WithLabelValues("quorum"))
	if err := other.ml.Shutdown(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the last follower refused removal", func() bool {
		return counterValue(t, l.metrics.autopilotRefusals.WithLabelValues("quorum")) > before
	})
	if got := suffrage(t, l, other.cfg.NodeName); got != "voter" {
		t.Fatalf("%s is %q, want kept: autopilot never removes one of the last two voters", other.cfg.NodeName, got)
	}
}

func TestAutopilotCleanupNeverRemovesQuorum(t *testing.T) {
	// Longer than the gap between the leader noticing the two failures, so
	// that the first is not reaped while the second still looks alive.
	const reap = time.Second
	nodes := startThree(t, withAutopilot(time.Second, reap))
	l := leaderOf(t, nodes...)
	var cut []string
	for _, n := range nodes {
		if n == l {
			continue
		}
		// Gossip calls it failed while its raft still answers: the one case
		// where the leader keeps a quorum yet removing the failed voters
		// would leave it none once they really die.
		if err := n.ml.Shutdown(); err != nil {
			t.Fatal(err)
		}
		cut = append(cut, n.cfg.NodeName)
	}
	waitFor(t, 10*time.Second, "both followers failed in the leader's gossip", func() bool {
		st := l.memberStatus()
		return st[cut[0]] == StatusFailed && st[cut[1]] == StatusFailed
	})
	refusals := l.metrics.autopilotRefusals.WithLabelValues("quorum")
	waitFor(t, 10*time.Second, "autopilot refuses to remove a failed voter", func() bool {
		return counterValue(t, refusals) > 0
	})
	time.Sleep(3 * reap)
	for _, id := range cut {
		if got := suffrage(t, l, id); got != "voter" {
			t.Fatalf("%s is %q after %v failed, want it kept as a voter: removing it leaves one healthy voter of two", id, got, 3*reap)
		}
	}
	err := l.RemovePeer(context.Background(), cut[0])
	if !errors.Is(err, ErrRemovalRefused) || suffrage(t, l, cut[0]) != "voter" {
		t.Fatalf("remove %s by hand: got %v, want a quorum refusal and the server kept", cut[0], err)
	}
	if err := l.RemovePeer(context.Background(), "nope"); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("remove an unknown peer: got %v, want ErrUnknownPeer", err)
	}
	if err := l.RemovePeer(context.Background(), l.cfg.NodeName); !errors.Is(err, ErrRemovalRefused) {
		t.Fatalf("remove the leader by hand: got %v, want ErrRemovalRefused", err)
	}
	// The raft quorum itself is intact: writes commit.
	apply(t, l.Cluster, &Command{Type: CmdRegister, Register: reg("n1", "web")})
}

func TestRemovePeerByHand(t *testing.T) {
	nodes := startThree(t, withAutopilot(time.Hour, time.Hour))
	l := leaderOf(t, nodes...)
	s4 := startNodeWith(t, "s4", 0, withAutopilot(time.Hour, time.Hour), nodes[0].GossipAddr())
	c1 := startNode(t, "c1", -1, nodes[0].GossipAddr())
	waitFor(t, 10*time.Second, "s4 added as a non-voter", func() bool { return suffrage(t, l, "s4") == "non-voter" })
	var follower *testNode
	for _, n := range nodes {
		if n != l {
			follower = n
			break
		}
	}
	// Refusals travel back from the leader through a follower and a client.
	if err := follower.RemovePeer(context.Background(), l.cfg.NodeName); !errors.Is(err, ErrRemovalRefused) {
		t.Fatalf("remove the leader through follower %s: got %v, want ErrRemovalRefused", follower.cfg.NodeName, err)
	}
	if err := c1.RemovePeer(context.Background(), "nope"); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("remove an unknown peer through a client: got %v, want ErrUnknownPeer", err)
	}
	s4.stop()
	waitFor(t, 10*time.Second, "s4 failed", func() bool { return l.memberStatus()["s4"] == StatusFailed })
	if err := follower.RemovePeer(context.Background(), "s4"); err != nil {
		t.Fatalf("remove failed non-voter s4 through follower %s: %v", follower.cfg.NodeName, err)
	}
	if got := suffrage(t, l, "s4"); got != "" {
		t.Fatalf("s4 is %q after removal, want gone", got)
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
