package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/peerd/peerd/agent/httpapi"
)

// readiness is one answer of GET /v1/agent/health?probe=ready.
type readiness struct {
	code   int
	Status string
	Reason string
	Phase  string
}

func probe(t *testing.T, a *Agent, kind string) readiness {
	t.Helper()
	code, body, err := httpDo("GET", "http://"+a.HTTPAddr()+"/v1/agent/health?probe="+kind, nil)
	if err != nil {
		t.Fatalf("probe %s of %s: %v", kind, a.cfg.NodeName, err)
	}
	r := readiness{code: code}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("probe %s of %s: %d %q: %v", kind, a.cfg.NodeName, code, body, err)
	}
	return r
}

func wantReadiness(t *testing.T, a *Agent, kind string, code int, reason string) {
	t.Helper()
	eventually(t, 15*time.Second, fmt.Sprintf("%s's %s probe answers %d %q", a.cfg.NodeName, kind, code, reason), func() error {
		if got := probe(t, a, kind); got.code != code || got.Reason != reason {
			return fmt.Errorf("got %d %+v", got.code, got)
		}
		return nil
	})
}

// Readiness follows the cluster: 503 no_leader on a server of
// -bootstrap-expect 2 alone and on a client joined to it, 503 not_joined
// on a client that sees no server, 200 everywhere once the second server
// has joined and a leader is elected; liveness and startup pass
// throughout. (The phases are httpapi's TestAgentHealthProbesByPhase.)
func TestReadinessBeforeAndAfterTheLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node test: skipped with -short")
	}
	s1 := testAgent(t, "s1", true, 2)
	lonely := testAgent(t, "lonely", false, 0) // joins nobody
	c1 := testAgent(t, "c1", false, 0, s1.Cluster().GossipAddr())

	wantReadiness(t, s1, "ready", 503, "no_leader")
	wantReadiness(t, c1, "ready", 503, "no_leader")
	wantReadiness(t, lonely, "ready", 503, "not_joined")
	for _, a := range []*Agent{s1, c1, lonely} {
		for _, kind := range []string{"live", "startup"} {
			if got := probe(t, a, kind); got.code != 200 || got.Status != "ok" || got.Phase != "serving" {
				t.Errorf("%s %s without a leader: got %+v, want 200 ok serving", a.cfg.NodeName, kind, got)
			}
		}
	}
	// GET /v1/status/leader keeps Consul's meaning meanwhile: 200 "".
	var leader string
	if err := getJSON("http://"+s1.HTTPAddr()+"/v1/status/leader", &leader); err != nil || leader != "" {
		t.Errorf("status/leader without a leader: got %q, %v; want 200 \"\"", leader, err)
	}

	s2 := testAgent(t, "s2", true, 2, s1.Cluster().GossipAddr())
	for _, a := range []*Agent{s1, s2, c1} {
		wantReadiness(t, a, "ready", 200, "")
	}
	wantReadiness(t, lonely, "ready", 503, "not_joined")

}

// The agent tells the API its phase: serving once Start has returned,
// shutting down from the start of Close (before the terminator drains),
// and the probes answer from it.
func TestAgentSetsItsPhase(t *testing.T) {
	a := devAgent(t, nil)
	if got := a.api.Phase(); got != httpapi.PhaseServing {
		t.Fatalf("after Start: phase %s, want serving", got)
	}
	wantReadiness(t, a, "ready", 200, "")
	if err := a.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := a.api.Phase(); got != httpapi.PhaseShuttingDown {
		t.Errorf("after Close: phase %s, want shutting_down", got)
	}
}
