package agent

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/peerd/peerd/cmd/peerctl/cli"
)

// TestOperatorRaftAndAutopilot runs a fourth server into a three-server
// cluster and reads its promotion through Consul's official client and
// peerctl, from a client node (relayed to the servers and their leader).
func TestOperatorRaftAndAutopilot(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node cluster test: skipped with -short")
	}
	const stab = 1500 * time.Millisecond
	server := func(name string, expect int, join ...string) *Agent {
		cfg := testAgentConfig(t, name, true, expect, join...)
		cfg.ServerStabilizationTime = stab
		return startTestAgent(t, cfg)
	}
	s1 := server("s1", 3)
	join := s1.Cluster().GossipAddr()
	s2 := server("s2", 3, join)
	s3 := server("s3", 3, join)
	c1 := testAgent(t, "c1", false, 0, join)
	consul, err := api.NewClient(&api.Config{Address: c1.HTTPAddr()})
	if err != nil {
		t.Fatal(err)
	}
	op := consul.Operator()
	eventually(t, 15*time.Second, "three voters and a leader", func() error {
		conf, err := op.RaftGetConfiguration(nil)
		if err != nil {
			return err
		}
		leaders, voters := 0, 0
		for _, s := range conf.Servers {
			if s.Leader {
				leaders++
			}
			if s.Voter {
				voters++
			}
		}
		if len(conf.Servers) != 3 || voters != 3 || leaders != 1 {
			return fmt.Errorf("got %d servers, %d voters, %d leaders; want 3, 3, 1", len(conf.Servers), voters, leaders)
		}
		return nil
	})

	s4 := server("s4", 0, join)
	_ = s4
	var added time.Time
	eventually(t, 10*time.Second, "s4 in raft as a non-voter", func() error {
		conf, err := op.RaftGetConfiguration(nil)
		if err != nil {
			return err
		}
		for _, s := range conf.Servers {
			if s.Node == "s4" {
				if s.Voter {
					t.Fatalf("s4 joined as a voter, want a non-voter until it is stable")
				}
				added = time.Now()
				return nil
			}
		}
		return fmt.Errorf("s4 not in the raft configuration yet")
	})
	eventually(t, stab, "autopilot state lists s4 as a non-voter", func() error {
		st, err := op.AutopilotState(nil)
		if err != nil {
			return err
		}
		if got := st.Servers["s4"].Status; got != api.AutopilotServerNonVoter || len(st.Voters) != 3 || st.Leader == "" {
			return fmt.Errorf("s4 %q, voters %v, leader %q; want non-voter, 3 voters, a leader", got, st.Voters, st.Leader)
		}
		return nil
	})
	eventually(t, 15*time.Second, "s4 promoted and the cluster healthy", func() error {
		st, err := op.AutopilotState(nil)
		if err != nil {
			return err
		}
		if st.Servers["s4"].Status != api.AutopilotServerVoter || !st.Healthy || st.FailureTolerance != 1 {
			return fmt.Errorf("s4 %q, healthy %v, tolerance %d; want voter, true, 1", st.Servers["s4"].Status, st.Healthy, st.FailureTolerance)
		}
		return nil
	})
	if d := time.Since(added); d < stab {
		t.Fatalf("s4 promoted within %v of joining, want at least the stabilization time %v", d, stab)
	}
	st, err := op.AutopilotState(nil)
	if err != nil {
		t.Fatal(err)
	}
	s4h := st.Servers["s4"]
	if s4h.LastIndex == 0 || s4h.LastTerm == 0 || s4h.LastContact == nil || s4h.StableSince.IsZero() || s4h.Address == "" {
		t.Fatalf("autopilot server s4: %+v, want its raft indexes, last contact, stable-since and address", s4h)
	}
	health, err := op.AutopilotServerHealth(nil)
	if err != nil || !health.Healthy || len(health.Servers) != 4 {
		t.Fatalf("autopilot health: %+v (%v), want healthy with 4 servers", health, err)
	}
	apc, err := op.AutopilotGetConfiguration(nil)
	if err != nil || !apc.CleanupDeadServers || apc.ServerStabilizationTime.Duration() != stab || apc.MaxTrailingLogs != 250 {
		t.Fatalf("autopilot configuration: %+v (%v), want cleanup on, stabilization %v, 250 trailing logs", apc, err, stab)
	}

	run := func(args ...string) (string, error) {
		var out, errb bytes.Buffer
		err := cli.Run(context.Background(), append([]string{"-http-addr", c1.HTTPAddr()}, args...), &out, &errb)
		return out.String() + errb.String(), err
	}
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"operator", "raft", "list-peers"}, []string{"Node", "Voter", "s1", "s4", "leader", "true"}},
		{[]string{"operator", "raft", "list-peers", "-format", "json"}, []string{`"Servers"`, `"Index"`}},
		{[]string{"operator", "autopilot", "state"}, []string{"Healthy: true", "Failure tolerance: 1", "s4", "voter"}},
		{[]string{"operator", "autopilot", "state", "-format", "json"}, []string{`"OptimisticFailureTolerance"`, `"StableSince"`}},
	} {
		out, err := run(tt.args...)
		if err != nil {
			t.Fatalf("peerctl %v: %v\n%s", tt.args, err, out)
		}
		for _, w := range tt.want {
			if !strings.Contains(out, w) {
				t.Fatalf("peerctl %v: got\n%s\nwant it to contain %q", tt.args, out, w)
			}
		}
	}

	// Removing by hand: an unknown ID and the leader are refused; a healthy
	// voter is removed (and, still alive, comes back as a non-voter).
	if err := op.RaftRemovePeerByID("nope", nil); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("remove unknown peer: got %v, want a 404", err)
	}
	if err := op.RaftRemovePeerByID(st.Leader, nil); err == nil || !strings.Contains(err.Error(), "409") {
		t.Fatalf("remove the leader: got %v, want a 409", err)
	}
	victim := "s4"
	if st.Leader == "s4" {
		victim = "s1"
	}
	if out, err := run("operator", "raft", "remove-peer", "-id", victim); err != nil || !strings.Contains(out, "Removed peer") {
		t.Fatalf("peerctl remove-peer %s: %v\n%s", victim, err, out)
	}
	// A client's read may be answered by a follower, which applies the
	// new configuration a moment after the leader.
	eventually(t, 5*time.Second, victim+" no longer a voter", func() error {
		conf, err := op.RaftGetConfiguration(nil)
		if err != nil {
			return err
		}
		for _, s := range conf.Servers {
			if s.Node == victim && s.Voter {
				return fmt.Errorf("%s still a voter", victim)
			}
		}
		return nil
	})
	_, _, _ = s1, s2, s3
}
