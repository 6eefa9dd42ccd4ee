package agent

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/peerd/peerd/agent/config"
	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/cmd/peerctl/cli"
	"github.com/peerd/peerd/internal/testutil"
)

// memberNames is the names of the members a sees alive.
func memberNames(a *Agent) map[string]bool {
	names := map[string]bool{}
	for _, m := range a.Cluster().Members() {
		if m.Status == catalog.StatusAlive {
			names[m.Name] = true
		}
	}
	return names
}

// keyringIs waits until the list through client says every one of want
// nodes holds exactly keys, with primary as primary.
func keyringIs(t *testing.T, client *api.Client, nodes int, primary string, keys ...string) {
	t.Helper()
	wantKeys := map[string]int{}
	for _, k := range keys {
		wantKeys[k] = nodes
	}
	eventually(t, 10*time.Second, fmt.Sprintf("%d nodes with keys %v, primary %v", nodes, keys, primary), func() error {
		rs, err := client.Operator().KeyringList(nil)
		if err != nil {
			return err
		}
		if len(rs) != 1 {
			return fmt.Errorf("got %d keyring responses, want 1 (the LAN pool)", len(rs))
		}
		r := rs[0]
		if r.WAN || r.Datacenter != "dc1" || r.NumNodes != nodes || len(r.Messages) != 0 {
			return fmt.Errorf("got WAN %v, datacenter %q, %d nodes, messages %v; want LAN, dc1, %d nodes, no messages",
				r.WAN, r.Datacenter, r.NumNodes, r.Messages, nodes)
		}
		if !maps.Equal(r.Keys, wantKeys) || !maps.Equal(r.PrimaryKeys, map[string]int{primary: nodes}) {
			return fmt.Errorf("got keys %v, primary %v", r.Keys, r.PrimaryKeys)
		}
		return nil
	})
}

// TestKeyringRotation rotates the gossip key of a 3-server cluster through
// the official Consul client: install, use, remove. The primary key cannot
// be removed; afterwards a node with only the new key joins, a node with
// only the removed one cannot, every node's keyring file holds the new key
// alone, and a restarted node keeps the rotated keyring over its -encrypt.
// No key is ever logged.
func TestKeyringRotation(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node test: skipped with -short")
	}
	oldKey := testGossipKey
	newKey := base64.StdEncoding.EncodeToString([]byte("the-new-gossip-key-of-the-tests!"))
	logs := &testutil.SyncBuffer{}
	cfg := testAgentConfig(t, "s1", true, 3)
	cfg.LogOutput, cfg.LogLevel = logs, "debug"
	s1 := startTestAgent(t, cfg)
	join := s1.Cluster().GossipAddr()
	s2 := testAgent(t, "s2", true, 3, join)
	s3 := testAgent(t, "s3", true, 3, join)
	servers := []*Agent{s1, s2, s3}
	eventually(t, 15*time.Second, "3 members and a leader", func() error {
		for _, a := range servers {
			if n := len(memberNames(a)); n != 3 {
				return fmt.Errorf("%s sees %d members", a.cfg.NodeName, n)
			}
		}
		if s1.Cluster().Leader() == "" {
			return errors.New("no leader")
		}
		return nil
	})
	client, err := api.NewClient(&api.Config{Address: s2.HTTPAddr()})
	if err != nil {
		t.Fatal(err)
	}

	var self struct {
		Config struct{ EncryptEnabled, InsecureGossip bool }
		Stats  struct {
			SerfLAN struct{ Encrypted string } `json:"serf_lan"`
		}
	}
	if err := getJSON("http://"+s1.HTTPAddr()+"/v1/agent/self", &self); err != nil {
		t.Fatal(err)
	}
	if !self.Config.EncryptEnabled || self.Config.InsecureGossip || self.Stats.SerfLAN.Encrypted != "true" {
		t.Fatalf("agent/self of an encrypted agent: got %+v", self)
	}

	keyringIs(t, client, 3, oldKey, oldKey)
	if err := client.Operator().KeyringInstall(newKey, nil); err != nil {
		t.Fatalf("install: %v", err)
	}
	keyringIs(t, client, 3, oldKey, oldKey, newKey)
	if err := client.Operator().KeyringUse(newKey, nil); err != nil {
		t.Fatalf("use: %v", err)
	}
	keyringIs(t, client, 3, newKey, oldKey, newKey)

	err = client.Operator().KeyringRemove(newKey, nil)
	if err == nil || capiStatusCode(err) != 400 || !strings.Contains(err.Error(), "primary") || !strings.Contains(err.Error(), "keyring use") {
		t.Fatalf("remove the primary key: got %v, want a 400 saying to make another key primary first", err)
	}
	keyringIs(t, client, 3, newKey, oldKey, newKey)
	bogus := base64.StdEncoding.EncodeToString([]byte("short"))
	if err := client.Operator().KeyringInstall(bogus, nil); err == nil || capiStatusCode(err) != 400 || !strings.Contains(err.Error(), "16, 24 or 32") {
		t.Fatalf("install a 5-byte key: got %v, want a 400 about the key length", err)
	}
	if err := client.Operator().KeyringUse(bogus+"x", nil); err == nil || capiStatusCode(err) != 400 || !strings.Contains(err.Error(), "base64") {
		t.Fatalf("use a key that is not base64: got %v, want a 400", err)
	}
	notInstalled := base64.StdEncoding.EncodeToString([]byte("a-key-that-no-node-has-installed"))
	if err := client.Operator().KeyringUse(notInstalled, nil); err == nil || capiStatusCode(err) != 500 || !strings.Contains(err.Error(), "not installed") {
		t.Fatalf("use a key no node holds: got %v, want a 500 naming each node's refusal", err)
	}

	if err := client.Operator().KeyringRemove(oldKey, nil); err != nil {
		t.Fatalf("remove the old key: %v", err)
	}
	keyringIs(t, client, 3, newKey, newKey)
	for _, a := range servers {
		path := filepath.Join(a.cfg.DataDir, catalog.KeyringFile)
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", path, fi.Mode().Perm())
		}
		b, _ := os.ReadFile(path)
		var keys []string
		if err := json.Unmarshal(b, &keys); err != nil || len(keys) != 1 || keys[0] != newKey {
			t.Errorf("%s: got %s (%v), want [the new key]", path, b, err)
		}
	}

	// Gossip goes on under the new key: a node with only it joins; a node
	// with only the removed key does not.
	ncfg := testAgentConfig(t, "new", false, 0, join)
	ncfg.Encrypt = newKey
	newcomer := startTestAgent(t, ncfg)
	ocfg := testAgentConfig(t, "old", false, 0, join)
	ocfg.Encrypt = oldKey
	stale := startTestAgent(t, ocfg)
	eventually(t, 10*time.Second, "the node with the new key joins", func() error {
		for _, a := range append(servers, newcomer) {
			if names := memberNames(a); len(names) != 4 || !names["new"] {
				return fmt.Errorf("%s sees %v", a.cfg.NodeName, names)
			}
		}
		return nil
	})
	time.Sleep(time.Second) // the stale node keeps retrying its join meanwhile
	for _, a := range append(servers, newcomer) {
		if memberNames(a)["old"] {
			t.Fatalf("%s sees the node that holds only the removed key", a.cfg.NodeName)
		}
	}
	if names := memberNames(stale); len(names) != 1 {
		t.Fatalf("the node with the removed key joined: it sees %v", names)
	}
	keyringIs(t, client, 4, newKey, newKey)

	// A restart keeps the rotated keyring: the newcomer comes back with
	// -encrypt set to the removed key, on the same data directory and port,
	// and still gossips with the new key.
	port := newcomer.Cluster().LocalMember().Port
	if err := newcomer.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	rcfg := ncfg
	rcfg.Encrypt, rcfg.SerfLANPort = oldKey, port
	restarted := startTestAgent(t, rcfg)
	eventually(t, 15*time.Second, "the restarted node is back in the pool", func() error {
		for _, a := range append(servers, restarted) {
			if names := memberNames(a); len(names) != 4 || !names["new"] {
				return fmt.Errorf("%s sees %v", a.cfg.NodeName, names)
			}
		}
		return nil
	})
	keyringIs(t, client, 4, newKey, newKey)

	// peerctl drives the same API.
	peerctl := func(args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		if err := cli.Run(context.Background(), append([]string{"-http-addr", s3.HTTPAddr()}, args...), &out, &errb); err != nil {
			t.Fatalf("peerctl %v: %v\n%s", args, err, errb.String())
		}
		return out.String()
	}
	third := base64.StdEncoding.EncodeToString([]byte("a-third-gossip-key-for-peerctl!!"))
	if got := peerctl("keyring", "install", third); got != "Installed the key on 4 nodes\n" {
		t.Fatalf("peerctl keyring install: got %q", got)
	}
	got := peerctl("keyring", "list")
	for _, want := range []string{"LAN pool of dc1: 4 nodes", newKey + "  yes      4/4", third + "  no       4/4"} {
		if !strings.Contains(got, want) {
			t.Fatalf("peerctl keyring list: got\n%s\nwant it to contain %q", got, want)
		}
	}
	if got := peerctl("keyring", "remove", third); got != "Removed the key from 4 nodes\n" {
		t.Fatalf("peerctl keyring remove: got %q", got)
	}
	keyringIs(t, client, 4, newKey, newKey)

	for _, k := range []string{oldKey, newKey, notInstalled, third} {
		if strings.Contains(logs.String(), k) {
			t.Fatalf("a gossip key is in s1's log")
		}
	}
	if !strings.Contains(logs.String(), "gossip keyring operation") {
		t.Fatalf("s1's debug log does not show the keyring operations; got:\n%s", logs.String())
	}
}

// Outside -dev an agent without a gossip key refuses to start and says how
// to get one; -insecure-gossip starts it with one warning, and
// /v1/agent/self and the keyring API show gossip is not encrypted. Dev mode
// needs no key and warns about none.
func TestInsecureGossip(t *testing.T) {
	if testing.Short() {
		t.Skip("starts agents: skipped with -short")
	}
	cfg := testAgentConfig(t, "plain", true, 1)
	cfg.Encrypt = ""
	_, err := startAgent(cfg)
	if !errors.Is(err, config.ErrNoGossipKey) {
		t.Fatalf("start without a key: got %v, want ErrNoGossipKey", err)
	}
	for _, want := range []string{"peerd keygen", "-encrypt", "-insecure-gossip"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the refusal does not mention %s: %v", want, err)
		}
	}

	logs := &testutil.SyncBuffer{}
	cfg.InsecureGossip, cfg.LogOutput, cfg.LogLevel = true, logs, "warn"
	a := startTestAgent(t, cfg)
	if n := strings.Count(logs.String(), "gossip is NOT encrypted"); n != 1 {
		t.Fatalf("got %d warnings about unencrypted gossip, want 1; log:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "level=WARN") {
		t.Fatalf("the warning is not at WARN: %s", logs.String())
	}
	var self struct {
		Config struct{ EncryptEnabled, InsecureGossip bool }
		Stats  struct {
			SerfLAN struct{ Encrypted string } `json:"serf_lan"`
		}
	}
	if err := getJSON("http://"+a.HTTPAddr()+"/v1/agent/self", &self); err != nil {
		t.Fatal(err)
	}
	if self.Config.EncryptEnabled || !self.Config.InsecureGossip || self.Stats.SerfLAN.Encrypted != "false" {
		t.Fatalf("agent/self: got %+v, want EncryptEnabled false, InsecureGossip true, serf_lan.encrypted \"false\"", self)
	}
	client, err := api.NewClient(&api.Config{Address: a.HTTPAddr()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Operator().KeyringList(nil); err == nil || capiStatusCode(err) != 400 || !strings.Contains(err.Error(), "-encrypt") {
		t.Fatalf("keyring list without encryption: got %v, want a 400 saying to use -encrypt", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, catalog.KeyringFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("an unencrypted agent wrote a keyring file: %v", err)
	}

	devLogs := &testutil.SyncBuffer{}
	dev := devAgent(t, func(c *Config) { c.LogOutput, c.LogLevel = devLogs, "warn" })
	if strings.Contains(devLogs.String(), "NOT encrypted") {
		t.Fatalf("dev mode warned about gossip: %s", devLogs.String())
	}
	if err := getJSON("http://"+dev.HTTPAddr()+"/v1/agent/self", &self); err != nil {
		t.Fatal(err)
	}
	if self.Config.EncryptEnabled || self.Config.InsecureGossip {
		t.Fatalf("dev agent/self: got %+v", self)
	}
}
