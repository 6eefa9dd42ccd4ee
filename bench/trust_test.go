package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/peerd/peerd/agent"
	"github.com/peerd/peerd/catalog"
)

// serverConfig is one bench server's configuration on loopback.
func serverConfig(b *testing.B, name string, timing catalog.Timing) agent.Config {
	cfg := agent.DefaultConfig()
	cfg.NodeName = name
	cfg.Server = true
	cfg.DataDir = b.TempDir()
	cfg.Encrypt = benchGossipKey
	cfg.BindAddr = "127.0.0.1"
	cfg.HTTPAddr, cfg.GRPCAddr, cfg.GRPCTLSAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.GatewayAddr = "127.0.0.1:0"
	cfg.SerfLANPort, cfg.ServerPort = 0, 0
	cfg.RetryInterval = 200 * time.Millisecond
	cfg.LogLevel = "error"
	cfg.Timing = timing
	cfg.InternalTLS = false // the plaintext baseline; startTrustedCluster turns it on
	cfg.ACL.Enabled = false // likewise; the ACL benchmarks turn them on
	return cfg
}

// createJoinToken asks a server's HTTP API for a join token of role.
func createJoinToken(a *agent.Agent, role string) (string, error) {
	body, _ := json.Marshal(map[string]string{"Role": role, "TTL": "1h"})
	var lastErr error
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		resp, err := http.Post("http://"+a.HTTPAddr()+"/v1/operator/join-token", "application/json", bytes.NewReader(body))
		if err != nil {
			lastErr = err
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			lastErr = fmt.Errorf("%s: %s", resp.Status, b)
			continue
		}
		var out struct{ Token string }
		if err := json.Unmarshal(b, &out); err != nil {
			return "", err
		}
		return out.Token, nil
	}
	return "", fmt.Errorf("create a %s join token: %w", role, lastErr)
}

// startTrustedCluster is startCluster with cluster trust, set up as an
// operator does: the first server makes the CA and bootstraps alone; two
// more are admitted with a server join token and become voters.
func startTrustedCluster(b *testing.B, timing catalog.Timing) []*agent.Agent {
	b.Helper()
	first := serverConfig(b, "bench-t1", timing)
	first.BootstrapExpect, first.InternalTLS = 1, true
	s1, err := startAgent(first)
	if err != nil {
		b.Fatalf("start the first server: %v", err)
	}
	b.Cleanup(func() { _ = s1.Close(context.Background()) })
	token, err := createJoinToken(s1, "server")
	if err != nil {
		b.Fatal(err)
	}
	servers := []*agent.Agent{s1}
	for i := 2; i <= 3; i++ {
		cfg := serverConfig(b, fmt.Sprintf("bench-t%d", i), timing)
		cfg.InternalTLS, cfg.JoinToken = true, token
		a, err := startAgent(cfg)
		if err != nil {
			b.Fatalf("start server %d: %v", i, err)
		}
		b.Cleanup(func() { _ = a.Close(context.Background()) })
		servers = append(servers, a)
	}
	waitVoters(b, servers)
	return servers
}

// waitVoters waits until every server knows a leader and three voters.
func waitVoters(b *testing.B, servers []*agent.Agent) {
	b.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ready := true
		for _, s := range servers {
			peers, err := s.Cluster().Peers()
			if s.Cluster().Leader() == "" || err != nil || len(peers) != 3 {
				ready = false
			}
		}
		if ready {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("no leader with 3 voters known to every server after 60s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// BenchmarkJoinWithToken measures how long a new client node takes from
// Start to being alive in the first server's member list, admitted with a
// join token (key pair, pin check, certificate, gossip key and addresses
// from the token), against a client of a cluster without trust joining
// with -retry-join and the gossip key in the same run:
// join-ms, plain-join-ms and join-ratio-vs-plain.
func BenchmarkJoinWithToken(b *testing.B) {
	for i := 0; i < b.N; i++ {
		plainSrv := serverConfig(b, "plain-s1", catalog.FastTiming())
		plainSrv.BootstrapExpect = 1
		ps, err := startAgent(plainSrv)
		if err != nil {
			b.Fatal(err)
		}
		plainCli := serverConfig(b, "plain-c1", catalog.FastTiming())
		plainCli.Server = false
		plainCli.RetryJoin = []string{ps.Cluster().GossipAddr()}
		plain := joinTime(b, ps, plainCli)
		_ = ps.Close(context.Background())

		first := serverConfig(b, "trust-s1", catalog.FastTiming())
		first.BootstrapExpect, first.InternalTLS = 1, true
		ts, err := startAgent(first)
		if err != nil {
			b.Fatal(err)
		}
		token, err := createJoinToken(ts, "client")
		if err != nil {
			b.Fatal(err)
		}
		cli := serverConfig(b, "trust-c1", catalog.FastTiming())
		cli.Server, cli.Encrypt, cli.InternalTLS, cli.JoinToken = false, "", true, token
		trusted := joinTime(b, ts, cli)
		_ = ts.Close(context.Background())

		b.ReportMetric(ms(trusted), "join-ms")
		b.ReportMetric(ms(plain), "plain-join-ms")
		b.ReportMetric(float64(trusted)/float64(max(plain, time.Microsecond)), "join-ratio-vs-plain")
		b.Logf("a client joins in %s with a join token, %s without cluster trust", trusted.Round(time.Millisecond), plain.Round(time.Millisecond))
	}
}

// joinTime starts cfg and returns how long until server lists it alive.
func joinTime(b *testing.B, server *agent.Agent, cfg agent.Config) time.Duration {
	b.Helper()
	start := time.Now()
	a, err := startAgent(cfg)
	if err != nil {
		b.Fatalf("start %s: %v", cfg.NodeName, err)
	}
	defer func() { _ = a.Close(context.Background()) }()
	for end := start.Add(30 * time.Second); time.Now().Before(end); time.Sleep(time.Millisecond) {
		for _, m := range server.Cluster().Members() {
			if m.Name == cfg.NodeName && m.Status == catalog.StatusAlive {
				return time.Since(start)
			}
		}
	}
	b.Fatalf("%s not alive in the server's members after 30s", cfg.NodeName)
	return 0
}
