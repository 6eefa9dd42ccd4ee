//go:build linux

package e2e

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/peerd/peerd/internal/testutil"
)

// Serf's member status codes, as /v1/agent/members gives them.
const (
	statusAlive  = 1
	statusFailed = 4
)

type member struct {
	Name   string
	Addr   string
	Port   int
	Status int
	Tags   map[string]string
}

// TestDefaultPortsAcrossHosts is the regression test for a node advertising
// gossip port 7946 while it listens on 8301: 3 servers and 1 client, each a
// real peerd in its own network namespace on one bridge, every port left at
// its default, joined by -retry-join with an address alone. Every node must
// see all four alive at the address and port each listens on, for 30 s; a
// write on the client must reach every server (the internal gRPC address
// other nodes dial is advertised right); and a killed server must be marked
// failed everywhere.
func TestDefaultPortsAcrossHosts(t *testing.T) {
	testutil.RequireRoot(t, "creates network namespaces, veth pairs and bridges")
	if testing.Short() {
		t.Skip("runs four peerd processes for about a minute: skipped with -short")
	}
	net := newLAN(t, "198.18.1.")
	var hosts []*host
	for _, name := range []string{"s1", "s2", "s3", "c1"} {
		hosts = append(hosts, net.addHost(t, name))
	}
	join := func(except *host) []string {
		var args []string
		for _, h := range hosts[:3] {
			if h != except {
				args = append(args, "-retry-join", h.ip)
			}
		}
		return args
	}
	// Three servers bootstrapping together by -bootstrap-expect: the
	// plaintext mode (TestClusterTrustAcrossHosts is the trusted set-up,
	// on the same default ports).
	var nodes []*node
	for _, h := range hosts[:3] {
		nodes = append(nodes, startNode(t, h, append([]string{"-server", "-bootstrap-expect", "3", "-internal-tls=false"}, join(h)...)...))
	}
	nodes = append(nodes, startNode(t, hosts[3], append([]string{"-internal-tls=false"}, join(nil)...)...))

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	start := time.Now()

	// want is what every node must say of every member.
	allAlive := func(n *node) error {
		var ms []member
		if err := n.getJSON(ctx, "/v1/agent/members", &ms); err != nil {
			return err
		}
		if len(ms) != len(hosts) {
			return fmt.Errorf("%s sees %d members, want %d: %s", n.name, len(ms), len(hosts), describe(ms))
		}
		for _, m := range ms {
			h := hostNamed(hosts, m.Name)
			switch {
			case h == nil:
				return fmt.Errorf("%s sees an unknown member %q", n.name, m.Name)
			case m.Status != statusAlive:
				return fmt.Errorf("%s sees %s with status %d, want alive (%d)", n.name, m.Name, m.Status, statusAlive)
			case m.Addr != h.ip || m.Port != 8301:
				return fmt.Errorf("%s sees %s at %s:%d, want %s:8301 (where it listens)", n.name, m.Name, m.Addr, m.Port, h.ip)
			}
			if m.Tags["role"] == "consul" && (m.Tags["port"] != "8300" || m.Tags["grpc_port"] != "8502") {
				return fmt.Errorf("%s sees server %s with raft port %q and gRPC port %q, want 8300 and 8502", n.name, m.Name, m.Tags["port"], m.Tags["grpc_port"])
			}
		}
		return nil
	}
	testutil.EventuallyEvery(t, 90*time.Second, 500*time.Millisecond, "all four nodes alive on every node", func() error {
		for _, n := range nodes {
			if err := allAlive(n); err != nil {
				return err
			}
		}
		return nil
	})
	t.Logf("all four alive at :8301 on every node after %v", time.Since(start).Round(time.Millisecond))

	// A registration on the client is forwarded to the leader over the
	// servers' advertised internal gRPC address and replicated to all.
	reg := `{"ID":"web-1","Name":"web","Port":8080}`
	testutil.EventuallyEvery(t, 30*time.Second, 500*time.Millisecond, "register web on the client", func() error {
		return nodes[3].do(ctx, "PUT", "/v1/agent/service/register", strings.NewReader(reg), nil)
	})
	for _, s := range nodes[:3] {
		testutil.EventuallyEvery(t, 60*time.Second, 500*time.Millisecond, "web in "+s.name+"'s catalog", func() error {
			var out []struct{ ServiceID, Node string }
			if err := s.getJSON(ctx, "/v1/catalog/service/web?stale", &out); err != nil {
				return err
			}
			if len(out) != 1 || out[0].ServiceID != "web-1" || out[0].Node != "c1" {
				return fmt.Errorf("%s's catalog has web = %+v, want web-1 on c1", s.name, out)
			}
			return nil
		})
	}

	// A consistent read on the client and on every server is relayed to the
	// leader over the internal gRPC port: the HTTP APIs listen on each
	// host's loopback only (the default) and are never dialed across hosts.
	for _, n := range nodes {
		testutil.EventuallyEvery(t, 30*time.Second, 500*time.Millisecond, "a consistent read on "+n.name, func() error {
			var out []struct{ ServiceID string }
			if err := n.getJSON(ctx, "/v1/catalog/service/web", &out); err != nil {
				return err
			}
			if len(out) != 1 || out[0].ServiceID != "web-1" {
				return fmt.Errorf("%s answered %+v", n.name, out)
			}
			return nil
		})
	}

	// They stay alive: a node probing a port nothing listens on would mark
	// the others suspect and then failed within a few probe rounds.
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(2 * time.Second) {
		for _, n := range nodes {
			if err := allAlive(n); err != nil {
				t.Fatalf("during the 30 s watch: %v", err)
			}
		}
	}

	// Kill a server: every other node marks it failed.
	victim := nodes[2]
	victim.kill()
	killed := time.Now()
	for _, n := range []*node{nodes[0], nodes[1], nodes[3]} {
		testutil.EventuallyEvery(t, 60*time.Second, 500*time.Millisecond, n.name+" marks "+victim.name+" failed", func() error {
			var ms []member
			if err := n.getJSON(ctx, "/v1/agent/members", &ms); err != nil {
				return err
			}
			for _, m := range ms {
				if m.Name == victim.name {
					if m.Status != statusFailed {
						return fmt.Errorf("%s has status %d, want failed (%d)", m.Name, m.Status, statusFailed)
					}
					return nil
				}
			}
			return fmt.Errorf("%s no longer lists %s: %s", n.name, victim.name, describe(ms))
		})
	}
	t.Logf("%s (kill -9) marked failed on every node after %v", victim.name, time.Since(killed).Round(time.Millisecond))
}

func hostNamed(hosts []*host, name string) *host {
	for _, h := range hosts {
		if h.name == name {
			return h
		}
	}
	return nil
}

func describe(ms []member) string {
	var parts []string
	for _, m := range ms {
		parts = append(parts, fmt.Sprintf("%s@%s:%d/%d", m.Name, m.Addr, m.Port, m.Status))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}
