package agent

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/peerd/peerd/catalog"
)

func TestGossipEncryption(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node test: skipped with -short")
	}
	key := func(b byte) string { return base64.StdEncoding.EncodeToString([]byte(strings.Repeat(string(b), 32))) }
	start := func(name, encrypt string, server bool, join ...string) *Agent {
		cfg := DefaultConfig()
		cfg.NodeName, cfg.Server, cfg.DataDir, cfg.Encrypt = name, server, t.TempDir(), encrypt
		cfg.InsecureGossip = encrypt == "" // the attacker's node
		// The test is about gossip alone: the plaintext mode, where the key
		// is all that keeps a node out.
		cfg.InternalTLS = false
		cfg.ACL.Enabled = false // likewise: the key is all that is tested
		if server {
			cfg.BootstrapExpect = 1
		}
		cfg.BindAddr, cfg.HTTPAddr, cfg.GRPCAddr, cfg.GRPCTLSAddr = "127.0.0.1", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
		cfg.GatewayAddr = "127.0.0.1:0"
		cfg.SerfLANPort, cfg.ServerPort, cfg.LogLevel, cfg.Timing = 0, 0, "error", catalog.FastTiming()
		cfg.RetryJoin, cfg.RetryInterval = join, 100*time.Millisecond
		a, err := startAgent(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = a.Close(context.Background()) })
		return a
	}
	s1 := start("s1", key('a'), true)
	start("good", key('a'), false, s1.Cluster().GossipAddr())
	start("bad", key('b'), false, s1.Cluster().GossipAddr())
	start("plain", "", false, s1.Cluster().GossipAddr())
	eventually(t, 5*time.Second, "the node with the right key joins", func() error {
		if n := len(s1.Cluster().Members()); n != 2 {
			return fmt.Errorf("got %d members, want 2", n)
		}
		return nil
	})
	time.Sleep(time.Second) // give the others time to (fail to) join
	for _, m := range s1.Cluster().Members() {
		if m.Name == "bad" || m.Name == "plain" {
			t.Fatalf("%s joined an encrypted pool without its key", m.Name)
		}
	}

	cfg := DevConfig()
	cfg.Encrypt = base64.StdEncoding.EncodeToString([]byte("short"))
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "16, 24 or 32") {
		t.Fatalf("got %v, want an error about the key length", err)
	}
}
