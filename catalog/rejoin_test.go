package catalog

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRestartedNodeRejoinsKnownMembers: a node started with no join
// addresses at all, after a restart, is back in the pool within seconds,
// through the members it kept in MembersFile, instead of waiting for
// another member's push-pull to find it.
func TestRestartedNodeRejoinsKnownMembers(t *testing.T) {
	s1 := startServer(t, "s1", "")
	dir := t.TempDir()
	start := func(join []string) *Cluster {
		cfg := DevConfig()
		cfg.NodeName, cfg.NodeID = "c1", "6f1b3c58-0d1e-4a57-9d5e-3a3c0f6a1c01"
		cfg.Server, cfg.BootstrapExpect, cfg.InMemory, cfg.DataDir = false, 0, false, dir
		cfg.RetryJoin = join
		c, err := newStarted(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close(context.Background()) })
		return c
	}
	sees := func(c *Cluster, name string) bool {
		for _, m := range c.Members() {
			if m.Name == name && m.Status == StatusAlive {
				return true
			}
		}
		return false
	}
	waitUntil := func(what string, d time.Duration, f func() bool) {
		t.Helper()
		for deadline := time.Now().Add(d); !f(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %v", what, d)
			}
		}
	}
	c1 := start([]string{s1.GossipAddr()})
	waitUntil("c1 joined s1", 10*time.Second, func() bool { return sees(c1, "s1") })
	waitUntil("c1 kept s1's address", 5*time.Second, func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, MembersFile))
		return strings.Contains(string(b), s1.GossipAddr())
	})
	if err := c1.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	c1 = start(nil)
	waitUntil("the restarted c1 back in s1's pool", 5*time.Second, func() bool { return sees(c1, "s1") })
	t.Logf("rejoined %v after the restart", time.Since(restarted).Round(time.Millisecond))
}

func TestMembersFileRefusesGarbage(t *testing.T) {
	path := filepath.Join(t.TempDir(), MembersFile)
	if addrs, err := readMembersFile(path); err != nil || addrs != nil {
		t.Fatalf("no file: %v, %v; want nothing, no error", addrs, err)
	}
	for _, bad := range []string{"{", `{"addrs":["no-port"]}`} {
		if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := readMembersFile(path); err == nil || !strings.Contains(err.Error(), "delete") {
			t.Fatalf("%q: err %v, want one that says to delete the file", bad, err)
		}
	}
}
