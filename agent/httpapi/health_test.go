package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/peerd/peerd/internal/testutil"
)

// getHealth asks url's /v1/agent/health for probe ("" = no parameter).
func getHealth(t *testing.T, url, probe string) (int, healthAnswer, string) {
	t.Helper()
	path := "/v1/agent/health"
	if probe != "" {
		path += "?probe=" + probe
	}
	got := doToken(t, http.MethodGet, url+path, "", "")
	var ans healthAnswer
	if got.code != http.StatusBadRequest {
		if err := json.Unmarshal([]byte(got.body), &ans); err != nil {
			t.Fatalf("%s: %d %q is not JSON: %v", path, got.code, got.body, err)
		}
		if ct := got.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: Content-Type %q, want application/json", path, ct)
		}
	}
	return got.code, ans, got.body
}

// The three probes through the agent's phases, on a server that has a
// leader: live passes in every phase, startup once serving, ready once
// serving with a leader; a failing probe says why.
func TestAgentHealthProbesByPhase(t *testing.T) {
	n := startPeeringNode(t, "n", "dc1", false)
	testutil.Eventually(t, 10*time.Second, "a leader", func() error {
		if n.cluster.Leader() == "" {
			return fmt.Errorf("no leader yet")
		}
		return nil
	})
	tests := []struct {
		phase      Phase
		probe      string
		code       int
		reason     string
		wantStatus string
	}{
		{PhaseStarting, "live", 200, "", "ok"},
		{PhaseStarting, "startup", 503, HealthStarting, "unavailable"},
		{PhaseStarting, "ready", 503, HealthStarting, "unavailable"},
		{PhaseServing, "live", 200, "", "ok"},
		{PhaseServing, "startup", 200, "", "ok"},
		{PhaseServing, "ready", 200, "", "ok"},
		{PhaseServing, "", 200, "", "ok"}, // ready is the default
		{PhaseShuttingDown, "live", 200, "", "ok"},
		{PhaseShuttingDown, "startup", 503, HealthShuttingDown, "unavailable"},
		{PhaseShuttingDown, "ready", 503, HealthShuttingDown, "unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.phase.String()+"/"+tt.probe, func(t *testing.T) {
			n.srv.SetPhase(tt.phase)
			code, ans, body := getHealth(t, n.url, tt.probe)
			if code != tt.code || ans.Reason != tt.reason || ans.Status != tt.wantStatus {
				t.Fatalf("got %d %q, want %d Status %q Reason %q", code, body, tt.code, tt.wantStatus, tt.reason)
			}
			wantProbe := tt.probe
			if wantProbe == "" {
				wantProbe = ProbeReady
			}
			if ans.Probe != wantProbe || ans.Phase != tt.phase.String() || ans.Node != "n" || !ans.Server {
				t.Errorf("got %+v, want probe %s, phase %s, node n, server", ans, wantProbe, tt.phase)
			}
			if tt.reason != "" && ans.Message == "" {
				t.Errorf("got %+v: a failing probe must say why", ans)
			}
		})
	}
}

func TestAgentHealthRefusesUnknownProbe(t *testing.T) {
	n := startPeeringNode(t, "n", "dc1", false)
	got := doToken(t, http.MethodGet, n.url+"/v1/agent/health?probe=liveness", "", "")
	if got.code != http.StatusBadRequest || !strings.Contains(got.body, `probe "liveness" is not one of live, startup and ready`) {
		t.Fatalf("got %d %q, want 400 naming the probes", got.code, got.body)
	}
}

// The kubelet probes with Host: <pod or node IP>:<port>, no token and no
// Origin; the edge lets that through unchanged, so the route needs no
// exemption from it, while a rebound name is still refused there.
func TestAgentHealthPassesTheEdgeWithTheKubeletsHost(t *testing.T) {
	n := startPeeringNode(t, "n", "dc1", false)
	n.srv.SetPhase(PhaseServing)
	edge, err := NewEdge(EdgeConfig{NodeName: "n"}, n.srv.Handler())
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(edge)
	t.Cleanup(hs.Close)
	tests := []struct {
		host string
		code int
	}{
		{"10.244.1.7:8500", 200},       // a pod IP (the servers)
		{"192.168.49.2:8500", 200},     // a node IP (the client DaemonSet)
		{"[fd00:10:244::7]:8500", 200}, // IPv6 clusters
		{"n:8500", 200},                // the node name
		{"rebound.example:8500", http.StatusMisdirectedRequest},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, hs.URL+"/v1/agent/health?probe=live", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Host = tt.host
			req.Header.Set("User-Agent", "kube-probe/1.34")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.code {
				t.Errorf("Host %s: got %d, want %d", tt.host, resp.StatusCode, tt.code)
			}
		})
	}
}
