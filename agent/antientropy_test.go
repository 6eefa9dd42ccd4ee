package agent

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/peerd/peerd/catalog"
)

// A client's registrations come back when the servers lose all state: the
// only server dies with its data and a fresh one takes its place.
func TestClientReRegistersAfterServerLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node test: skipped with -short")
	}
	s1 := testAgent(t, "s1", true, 1)
	c1 := testAgent(t, "c1", false, 0, s1.Cluster().GossipAddr())
	code, b, err := httpDo("PUT", "http://"+c1.HTTPAddr()+"/v1/agent/service/register", map[string]any{
		"Name": "db", "Port": 5432,
	})
	if err != nil || code != 200 {
		t.Fatalf("register: %d %s %v", code, b, err)
	}
	seen := func(a *Agent) func() error {
		return func() error {
			var svcs map[string][]string
			if err := getJSON("http://"+a.HTTPAddr()+"/v1/catalog/services", &svcs); err != nil {
				return err
			}
			if _, ok := svcs["db"]; !ok {
				return fmt.Errorf("got services %v, want db", svcs)
			}
			return nil
		}
	}
	eventually(t, 5*time.Second, "db registered", seen(s1))

	_ = s1.Close(context.Background()) // the server and its data are gone
	s2 := testAgent(t, "s2", true, 1, c1.Cluster().GossipAddr())
	eventually(t, 15*time.Second, "db re-registered on the new server", seen(s2))
}

// Services registered through the API survive an agent restart (they are kept
// in -data-dir, as Consul keeps them).
func TestRegisteredServicesSurviveRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts an agent: skipped with -short")
	}
	dir := t.TempDir()
	start := func() *Agent {
		cfg := DefaultConfig()
		cfg.NodeName, cfg.Server, cfg.BootstrapExpect, cfg.DataDir = "solo", true, 1, dir
		cfg.Encrypt = testGossipKey
		cfg.ACL.Enabled = false // anti-entropy across a restart: raw mechanics, no tokens
		cfg.BindAddr, cfg.HTTPAddr, cfg.GRPCAddr, cfg.GRPCTLSAddr = "127.0.0.1", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
		cfg.GatewayAddr = "127.0.0.1:0"
		cfg.SerfLANPort, cfg.ServerPort, cfg.LogLevel = 0, 0, "error"
		cfg.Timing = catalog.FastTiming()
		a, err := startAgent(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	a := start()
	code, b, err := httpDo("PUT", "http://"+a.HTTPAddr()+"/v1/agent/service/register", map[string]any{
		"Name": "cache", "Port": 6379, "Check": map[string]any{"TTL": "1m"},
	})
	if err != nil || code != 200 {
		t.Fatalf("register: %d %s %v", code, b, err)
	}
	if err := a.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	a = start()
	defer a.Close(context.Background())
	var svcs map[string]struct{ Service string }
	if err := getJSON("http://"+a.HTTPAddr()+"/v1/agent/services", &svcs); err != nil {
		t.Fatal(err)
	}
	if svcs["cache"].Service != "cache" {
		t.Fatalf("got local services %v after restart, want cache", svcs)
	}
	eventually(t, 10*time.Second, "cache back in the catalog", func() error {
		var cat map[string][]string
		if err := getJSON("http://"+a.HTTPAddr()+"/v1/catalog/services", &cat); err != nil {
			return err
		}
		if _, ok := cat["cache"]; !ok {
			return fmt.Errorf("got %v, want cache", cat)
		}
		return nil
	})
}
