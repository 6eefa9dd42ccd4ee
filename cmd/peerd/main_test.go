package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peerd/peerd/agent/admission"
	"github.com/peerd/peerd/internal/jointoken"
)

func TestKeygenMakesAValidKey(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run([]string{"keygen"}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if got := len(strings.TrimSpace(out.String())); got != 44 {
		t.Fatalf("got a key of %d characters, want 44 (base64 of 32 bytes)", got)
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.hcl")
	bad := filepath.Join(dir, "bad.hcl")
	_ = os.WriteFile(good, []byte("datacenter = \"east\"\nserver = true\nbootstrap_expect = 3\nencrypt = \"YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWE=\"\nservice {\n  name = \"web\"\n  port = 80\n}\n"), 0o600)
	_ = os.WriteFile(bad, []byte("bootstrap_expect = 3\n"), 0o600) // without server = true
	var out, errb bytes.Buffer
	if err := run([]string{"validate", good}, &out, &errb); err != nil || !strings.Contains(out.String(), "valid") {
		t.Fatalf("good config: got %v %q", err, out.String())
	}
	if err := run([]string{"validate", bad}, &out, &errb); err == nil || !strings.Contains(err.Error(), "-server") {
		t.Fatalf("bad config: got %v, want an error naming -server", err)
	}
	if err := run([]string{"validate"}, &out, &errb); err == nil {
		t.Fatal("validate without files succeeded")
	}
}

// peerd validate refuses what the agent (or a later call) would refuse, and
// reports every problem of every file, each naming the file and the key.
func TestValidateReportsEveryProblemOfEveryFile(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"a-broken.json":   `{"datacentre": "east"}`, // a bad file first: the others are still read
		"b-service.hcl":   "service {\n  name = \"web\"\n  port = 99999\n}\n",
		"c-dc.hcl":        "datacenter = \"DC_9!\"\n",
		"d-bootstrap.hcl": "bootstrap_expect = 2\n",
		"e-ports.hcl":     "ports {\n  http = 99999\n}\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var out, errb bytes.Buffer
	err := run([]string{"validate", dir}, &out, &errb)
	if err == nil {
		t.Fatalf("validate passed: %q", out.String())
	}
	for _, want := range []string{
		"a-broken.json: datacentre: unknown key",
		`b-service.hcl: service[0] "web": Port: 99999 is not between 0 and 65535`,
		`c-dc.hcl: datacenter: "DC_9!" is not a datacenter name`,
		"d-bootstrap.hcl: bootstrap_expect: 2 needs a server",
		"e-ports.hcl: ports.http: \"127.0.0.1:99999\"",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("got\n%v\nwant it to contain %q", err, want)
		}
	}
	if out.Len() != 0 {
		t.Errorf("printed %q for an invalid configuration", out.String())
	}
}

func TestTrustInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "trust")
	var out, errb bytes.Buffer
	if err := run([]string{"trust", "init", "-first-server", "s0", "-server-addr", "10.0.0.10:8503", "-out", dir}, &out, &errb); err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	for _, name := range []string{"bootstrap.json", "server.token", "client.token"} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", name, st, err)
		}
	}
	b, err := admission.LoadBootstrap(filepath.Join(dir, "bootstrap.json"))
	if err != nil || b.FirstNode != "s0" || len(b.Tokens) != 2 || b.GossipKey == "" {
		t.Fatalf("bootstrap: %+v, %v", b.FirstNode, err)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "server.token"))
	tok, err := jointoken.Parse(string(raw))
	if err != nil || tok.Role != "server" || tok.Servers[0] != "10.0.0.10:8503" || tok.GossipKey != b.GossipKey {
		t.Fatalf("server token: %+v, %v", tok, err)
	}
	if strings.Contains(out.String(), tok.Secret) {
		t.Fatal("the output shows a token's secret")
	}
	if err := run([]string{"trust", "init", "-out", dir}, &out, &errb); err == nil {
		t.Fatal("trust init without -server-addr and -first-server succeeded")
	}
}
