package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/testutil"
)

// testGossipKey is the gossip key of the multi-node tests' clusters:
// outside dev mode an agent refuses to start without one.
const testGossipKey = "dGVzdC1nb3NzaXAta2V5LWZvci1wZWVyZC10ZXN0cyE="

// testAgent starts an agent for a multi-node test on loopback with free
// ports, real raft-boltdb storage in a temp dir, and fast timers.
func testAgent(t *testing.T, name string, server bool, expect int, join ...string) *Agent {
	t.Helper()
	return startTestAgent(t, testAgentConfig(t, name, server, expect, join...))
}

// testAgentConfig is testAgent's configuration, for a test to change
// before startTestAgent.
func testAgentConfig(t *testing.T, name string, server bool, expect int, join ...string) Config {
	t.Helper()
	cfg := DefaultConfig()
	cfg.NodeName, cfg.Server, cfg.BootstrapExpect = name, server, expect
	cfg.DataDir, cfg.Encrypt = t.TempDir(), testGossipKey
	// These tests start several servers together with -bootstrap-expect:
	// the plaintext mode. The trusted set-up (first server, join tokens)
	// is startPeeringCluster's and trustedAgent's.
	cfg.InternalTLS = false
	// Raw cluster mechanics: ACLs off, as cluster trust is. The ACL tests
	// (acl_test.go, the Consul client's with ACLs on) turn them on.
	cfg.ACL.Enabled = false
	cfg.BindAddr = "127.0.0.1"
	cfg.HTTPAddr, cfg.GRPCAddr, cfg.GRPCTLSAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.GatewayAddr = "127.0.0.1:0"
	cfg.SerfLANPort, cfg.ServerPort = 0, 0
	cfg.RetryJoin, cfg.RetryInterval = join, 200*time.Millisecond
	cfg.LogLevel = "error"
	cfg.SyncInterval = 2 * time.Second
	cfg.Timing = catalog.FastTiming()
	return cfg
}

// startTestAgent starts cfg's agent and closes it when the test ends.
func startTestAgent(t *testing.T, cfg Config) *Agent {
	t.Helper()
	a, err := startAgent(cfg)
	if err != nil {
		t.Fatalf("start %s: %v", cfg.NodeName, err)
	}
	t.Cleanup(func() { _ = a.Close(context.Background()) })
	return a
}

// eventually is testutil.Eventually under the name this package's tests
// use.
func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	testutil.Eventually(t, timeout, what, f)
}

func httpDo(method, url string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func getJSON(url string, v any) error {
	code, b, err := httpDo("GET", url, nil)
	if err != nil {
		return err
	}
	if code != 200 {
		return fmt.Errorf("GET %s: %d %s", url, code, b)
	}
	return json.Unmarshal(b, v)
}

type healthEntry struct {
	Node    struct{ Node string }
	Service struct{ ID, Service string }
	Checks  []struct{ CheckID, Status string }
}

func TestClusterThreeServersTwoClients(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node cluster test: skipped with -short")
	}
	s1 := testAgent(t, "s1", true, 3)
	join := s1.Cluster().GossipAddr()
	s2 := testAgent(t, "s2", true, 3, join)
	s3 := testAgent(t, "s3", true, 3, join)
	c1 := testAgent(t, "c1", false, 0, join)
	c2 := testAgent(t, "c2", false, 0, join)
	servers := []*Agent{s1, s2, s3}
	all := []*Agent{s1, s2, s3, c1, c2}

	eventually(t, 15*time.Second, "leader elected and all 5 members registered", func() error {
		for _, a := range all {
			var leader string
			if err := getJSON("http://"+a.HTTPAddr()+"/v1/status/leader", &leader); err != nil {
				return err
			}
			if leader == "" {
				return fmt.Errorf("%s knows no leader", a.cfg.NodeName)
			}
		}
		var nodes []struct{ Node string }
		if err := getJSON("http://"+s1.HTTPAddr()+"/v1/catalog/nodes", &nodes); err != nil {
			return err
		}
		if len(nodes) != 5 {
			return fmt.Errorf("got %d nodes, want 5", len(nodes))
		}
		return nil
	})
	var peers []string
	if err := getJSON("http://"+c1.HTTPAddr()+"/v1/status/peers", &peers); err != nil || len(peers) != 3 {
		t.Fatalf("status/peers from a client: got %v (%v), want 3 voters", peers, err)
	}

	t.Run("register on a client, read from every node", func(t *testing.T) {
		code, b, err := httpDo("PUT", "http://"+c1.HTTPAddr()+"/v1/agent/service/register", map[string]any{
			"Name": "web", "Port": 8080, "Tags": []string{"v1"}, "Check": map[string]any{"TTL": "30s", "Status": "passing"},
		})
		if err != nil || code != 200 {
			t.Fatalf("register: %d %s %v", code, b, err)
		}
		for _, a := range all {
			eventually(t, 5*time.Second, "web visible on "+a.cfg.NodeName, func() error {
				var entries []healthEntry
				if err := getJSON("http://"+a.HTTPAddr()+"/v1/health/service/web?passing", &entries); err != nil {
					return err
				}
				if len(entries) != 1 || entries[0].Node.Node != "c1" {
					return fmt.Errorf("got %+v, want web on c1", entries)
				}
				return nil
			})
		}
	})

	t.Run("no acknowledged write is lost when the leader dies", func(t *testing.T) {
		const writes = 50
		for i := range writes {
			// A 503 is a write the cluster did not acknowledge (on a loaded
			// machine an election can outlast the apply timeout): a client
			// retries it, and this test is about acknowledged writes.
			for attempt := 1; ; attempt++ {
				code, b, err := httpDo("PUT", "http://"+c2.HTTPAddr()+"/v1/config", map[string]any{
					"Kind": "service-defaults", "Name": fmt.Sprintf("svc-%d", i), "Protocol": "http",
				})
				if err == nil && code == 503 && attempt < 3 {
					t.Logf("write %d not acknowledged (attempt %d): %s; retrying", i, attempt, bytes.TrimSpace(b))
					continue
				}
				if err != nil || code != 200 || strings.TrimSpace(string(b)) != "true" {
					t.Fatalf("write %d: %d %s %v", i, code, b, err)
				}
				break
			}
		}
		var leader *Agent
		for _, s := range servers {
			if s.Cluster().IsLeader() {
				leader = s
			}
		}
		if leader == nil {
			t.Fatal("no server claims leadership")
		}
		oldLeaderAddr := leader.Cluster().Leader()
		if err := leader.Close(context.Background()); err != nil { // a crash: no graceful leave
			t.Logf("shutdown leader: %v", err)
		}
		var survivors []*Agent
		for _, s := range servers {
			if s != leader {
				survivors = append(survivors, s)
			}
		}
		eventually(t, 15*time.Second, "new leader elected", func() error {
			for _, s := range survivors {
				if s.Cluster().IsLeader() {
					return nil
				}
			}
			return fmt.Errorf("no leader among survivors yet")
		})
		for _, s := range survivors {
			if got := s.Cluster().Leader(); got == oldLeaderAddr {
				t.Fatalf("%s still names the dead leader %s", s.cfg.NodeName, got)
			}
		}
		for _, a := range append(survivors, c1, c2) {
			eventually(t, 10*time.Second, "all writes readable on "+a.cfg.NodeName, func() error {
				var entries []struct{ Name string }
				if err := getJSON("http://"+a.HTTPAddr()+"/v1/config/service-defaults", &entries); err != nil {
					return err
				}
				if len(entries) != writes {
					return fmt.Errorf("got %d service-defaults, want %d", len(entries), writes)
				}
				return nil
			})
		}
		// The cluster still takes writes with one server down.
		code, b, err := httpDo("PUT", "http://"+c1.HTTPAddr()+"/v1/config", map[string]any{
			"Kind": "service-defaults", "Name": "after-failover", "Protocol": "tcp",
		})
		if err != nil || code != 200 {
			t.Fatalf("write after failover: %d %s %v", code, b, err)
		}
	})

	t.Run("a failed client's services turn critical", func(t *testing.T) {
		code, b, err := httpDo("PUT", "http://"+c2.HTTPAddr()+"/v1/agent/service/register", map[string]any{
			"Name": "api", "Port": 9090, "Check": map[string]any{"TTL": "30s", "Status": "passing"},
		})
		if err != nil || code != 200 {
			t.Fatalf("register api on c2: %d %s %v", code, b, err)
		}
		eventually(t, 5*time.Second, "api passing", func() error {
			var entries []healthEntry
			if err := getJSON("http://"+c1.HTTPAddr()+"/v1/health/service/api?passing", &entries); err != nil {
				return err
			}
			if len(entries) != 1 {
				return fmt.Errorf("got %d passing api instances, want 1", len(entries))
			}
			return nil
		})
		_ = c2.Close(context.Background()) // fails, does not leave
		eventually(t, 10*time.Second, "api critical after c2 failed", func() error {
			var entries []healthEntry
			if err := getJSON("http://"+c1.HTTPAddr()+"/v1/health/service/api", &entries); err != nil {
				return err
			}
			if len(entries) != 1 {
				return fmt.Errorf("got %d api instances, want 1 (kept, but critical)", len(entries))
			}
			for _, c := range entries[0].Checks {
				if c.CheckID == state.SerfCheckID && c.Status == state.HealthCritical {
					return nil
				}
			}
			return fmt.Errorf("serfHealth of c2 not critical yet: %+v", entries[0].Checks)
		})
		var passing []healthEntry
		if err := getJSON("http://"+c1.HTTPAddr()+"/v1/health/service/api?passing", &passing); err != nil || len(passing) != 0 {
			t.Fatalf("?passing after failure: got %d entries (%v), want 0", len(passing), err)
		}
	})

	t.Run("a client that leaves has its services removed", func(t *testing.T) {
		if err := c1.Leave(context.Background()); err != nil {
			t.Logf("leave c1: %v", err)
		}
		if err := c1.Close(context.Background()); err != nil {
			t.Logf("close c1: %v", err)
		}
		var reader *Agent
		for _, s := range servers {
			if s.Cluster().IsLeader() {
				reader = s
			}
		}
		eventually(t, 10*time.Second, "web gone after c1 left", func() error {
			var entries []healthEntry
			if err := getJSON("http://"+reader.HTTPAddr()+"/v1/health/service/web", &entries); err != nil {
				return err
			}
			if len(entries) != 0 {
				return fmt.Errorf("got %d web instances, want 0", len(entries))
			}
			return nil
		})
	})
}
