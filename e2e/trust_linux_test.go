//go:build linux

package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/peerd/peerd/internal/testutil"
)

// TestClusterTrustAcrossHosts sets a cluster up as the README says, with
// real processes on separate hosts and default ports (cluster trust is the
// default): the first server makes the CA, two more
// servers and two clients are admitted with join tokens (nothing else: no
// -retry-join, the token carries the servers and the gossip key). Then a
// client's write reaches every server, a plaintext caller on the network
// is refused, the leader is killed and a new one elected, and a revoked
// client is cut off while the other keeps working.
func TestClusterTrustAcrossHosts(t *testing.T) {
	testutil.RequireRoot(t, "creates network namespaces, veth pairs and bridges")
	if testing.Short() {
		t.Skip("runs five peerd processes for about a minute: skipped with -short")
	}
	lan := newLAN(t, "198.18.2.")
	hosts := map[string]*host{}
	for _, name := range []string{"s1", "s2", "s3", "c1", "c2"} {
		hosts[name] = lan.addHost(t, name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	nodes := map[string]*node{"s1": startNode(t, hosts["s1"], "-server", "-bootstrap-expect", "1")}
	token := func(role string) string {
		var out struct{ Token string }
		testutil.EventuallyEvery(t, 30*time.Second, 200*time.Millisecond, "a "+role+" join token from s1", func() error {
			return nodes["s1"].do(ctx, "POST", "/v1/operator/join-token", strings.NewReader(`{"Role":"`+role+`","TTL":"1h"}`), &out)
		})
		return out.Token
	}
	serverToken, clientToken := token("server"), token("client")
	start := time.Now()
	for _, name := range []string{"s2", "s3"} {
		nodes[name] = startNode(t, hosts[name], "-server", "-join-token", serverToken)
	}
	for _, name := range []string{"c1", "c2"} {
		nodes[name] = startNode(t, hosts[name], "-join-token", clientToken)
	}
	testutil.EventuallyEvery(t, 90*time.Second, 500*time.Millisecond, "three voters", func() error {
		var cfg struct {
			Servers []struct {
				Node  string
				Voter bool
			}
		}
		if err := nodes["s1"].getJSON(ctx, "/v1/operator/raft/configuration", &cfg); err != nil {
			return err
		}
		voters := 0
		for _, s := range cfg.Servers {
			if s.Voter {
				voters++
			}
		}
		if voters != 3 {
			return fmt.Errorf("raft configuration %+v", cfg.Servers)
		}
		return nil
	})
	t.Logf("four nodes admitted with tokens and three voters after %v (autopilot's 10 s stabilization included)", time.Since(start).Round(time.Millisecond))

	register := func(n *node, id string) error {
		return n.do(ctx, "PUT", "/v1/agent/service/register", strings.NewReader(`{"ID":"`+id+`","Name":"`+id+`","Port":8080}`), nil)
	}
	inCatalog := func(n *node, svc string) error {
		var out []struct{ ServiceID string }
		if err := n.getJSON(ctx, "/v1/catalog/service/"+svc, &out); err != nil {
			return err
		}
		if len(out) != 1 {
			return fmt.Errorf("%s: %s has %d instances", n.name, svc, len(out))
		}
		return nil
	}
	if err := register(nodes["c1"], "web"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"s1", "s2", "s3", "c2"} {
		testutil.EventuallyEvery(t, 30*time.Second, 300*time.Millisecond, "web seen from "+name, func() error {
			return inCatalog(nodes[name], "web")
		})
	}

	t.Run("a plaintext caller on the network is refused", func(t *testing.T) {
		// From c2's host: a TCP connection to s2's internal port, speaking
		// HTTP/2 in the clear, as an attacker's gRPC client would.
		var conn net.Conn
		var err error
		hosts["c2"].ns.Run(func() { conn, err = net.DialTimeout("tcp", hosts["s2"].ip+":8502", 2*time.Second) })
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.WriteString(conn, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
		buf := make([]byte, 64)
		n, _ := conn.Read(buf)
		conn.Close()
		if n > 0 && strings.Contains(string(buf[:n]), "\x00\x00") {
			t.Fatalf("the internal port answered plaintext HTTP/2: %q", buf[:n])
		}
		testutil.EventuallyEvery(t, 10*time.Second, 300*time.Millisecond, "the refusal counted on s2", func() error {
			if v := metric(t, ctx, nodes["s2"], `peerd_security_refusals_total{listener="grpc",reason="handshake"}`); v < 1 {
				return fmt.Errorf("counted %v", v)
			}
			return nil
		})
	})

	t.Run("the leader dies and a new one is elected", func(t *testing.T) {
		var leader string
		if err := nodes["s1"].getJSON(ctx, "/v1/status/leader", &leader); err != nil {
			t.Fatal(err)
		}
		var dead string
		for name, h := range hosts {
			if strings.HasPrefix(leader, h.ip+":") {
				dead = name
			}
		}
		if dead == "" {
			t.Fatalf("leader %q is none of the hosts", leader)
		}
		nodes[dead].kill()
		survivor := nodes["s1"]
		if dead == "s1" {
			survivor = nodes["s2"]
		}
		testutil.EventuallyEvery(t, 60*time.Second, 500*time.Millisecond, "a new leader", func() error {
			var l string
			if err := survivor.getJSON(ctx, "/v1/status/leader", &l); err != nil {
				return err
			}
			if l == "" || l == leader {
				return fmt.Errorf("leader %q", l)
			}
			return nil
		})
		if err := register(nodes["c1"], "api"); err != nil {
			t.Fatal(err)
		}
		testutil.EventuallyEvery(t, 30*time.Second, 300*time.Millisecond, "a write after the election", func() error {
			return inCatalog(survivor, "api")
		})
		// Every later step talks to a live server.
		nodes["s1"] = survivor
	})

	t.Run("a revoked client is cut off, the other is not", func(t *testing.T) {
		if err := nodes["s1"].do(ctx, "POST", "/v1/operator/revoke-node/c2", nil, nil); err != nil {
			t.Fatal(err)
		}
		if err := register(nodes["c2"], "db"); err != nil {
			t.Fatal(err) // accepted locally; its sync to the servers is refused
		}
		if err := register(nodes["c1"], "cache"); err != nil {
			t.Fatal(err)
		}
		testutil.EventuallyEvery(t, 30*time.Second, 300*time.Millisecond, "c1's write arrives", func() error {
			return inCatalog(nodes["s1"], "cache")
		})
		time.Sleep(3 * time.Second) // c2's anti-entropy tries meanwhile
		var out []struct{ ServiceID string }
		if err := nodes["s1"].getJSON(ctx, "/v1/catalog/service/db", &out); err != nil {
			t.Fatal(err)
		}
		if len(out) != 0 {
			t.Fatalf("the revoked client's service reached the catalog: %+v", out)
		}
	})
}

// metric reads one series' value from a node's /metrics (0 when absent).
func metric(t *testing.T, ctx context.Context, n *node, series string) float64 {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:8500/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := n.http.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f
		}
	}
	return 0
}
