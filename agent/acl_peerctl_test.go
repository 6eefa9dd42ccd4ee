package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peerd/peerd/cmd/peerctl/cli"
)

// TestPeerctlACL walks peerctl through bootstrap -> policy -> token -> use,
// in tables and in JSON, against a real agent with ACLs on, and checks
// that a deleted token stops working.
func TestPeerctlACL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an agent: skipped with -short")
	}
	a, _ := aclDevAgent(t, "peerctl-acl", nil)
	run := func(args ...string) (string, error) {
		var out, errb bytes.Buffer
		err := cli.Run(context.Background(), append([]string{"-http-addr", a.HTTPAddr()}, args...), &out, &errb)
		return out.String() + errb.String(), err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := run(args...)
		if err != nil {
			t.Fatalf("peerctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	var boot struct{ AccessorID, SecretID string }
	if err := json.Unmarshal([]byte(must("acl", "bootstrap", "-format", "json")), &boot); err != nil || boot.SecretID == "" {
		t.Fatalf("bootstrap -format json: %+v %v", boot, err)
	}
	if out, err := run("acl", "bootstrap"); err == nil || !strings.Contains(out+err.Error(), "ACL bootstrap no longer allowed (reset index:") {
		t.Fatalf("second bootstrap: %v %s", err, out)
	}
	dir := t.TempDir()
	mgmtFile := filepath.Join(dir, "mgmt")
	rules := filepath.Join(dir, "readers.hcl")
	if err := os.WriteFile(mgmtFile, []byte(boot.SecretID+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rules, []byte("acl = \"read\"\nservice_prefix \"\" { policy = \"read\" }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := must("-token-file", mgmtFile, "acl", "policy", "create", "-name", "readers", "-rules", "@"+rules, "-description", "read all")
	for _, want := range []string{"Name:", "readers", "Rules:", `acl = "read"`} {
		if !strings.Contains(out, want) {
			t.Fatalf("policy create table lacks %q:\n%s", want, out)
		}
	}
	if out, err := run("-token", boot.SecretID, "acl", "policy", "create", "-name", "bad", "-rules", "service \"x\" {\n policy = \n}"); err == nil ||
		!strings.Contains(out+err.Error(), "Failed parsing rules") {
		t.Fatalf("bad rules: %v %s", err, out)
	}
	var tok struct{ AccessorID, SecretID string }
	if err := json.Unmarshal([]byte(must("-token", boot.SecretID, "acl", "token", "create", "-description", "reader",
		"-policy-name", "readers", "-service-identity", "web", "-format", "json")), &tok); err != nil || tok.SecretID == "" {
		t.Fatalf("token create: %+v %v", tok, err)
	}
	list := must("-token", boot.SecretID, "acl", "token", "list")
	for _, want := range []string{"AccessorID", "SecretID", tok.AccessorID, tok.SecretID, "readers,service:web"} {
		if !strings.Contains(list, want) {
			t.Fatalf("token list lacks %q:\n%s", want, list)
		}
	}
	// Use the new token: it reads the ACL system, hides secrets, may not write.
	self := must("-token", tok.SecretID, "acl", "token", "read", "-self")
	if !strings.Contains(self, tok.AccessorID) || !strings.Contains(self, "readers (") {
		t.Fatalf("token read -self:\n%s", self)
	}
	list = must("-token", tok.SecretID, "acl", "token", "list")
	if strings.Contains(list, boot.SecretID) || !strings.Contains(list, "<hidden>") {
		t.Fatalf("token list with acl:read shows secrets:\n%s", list)
	}
	if out, err := run("-token", tok.SecretID, "acl", "policy", "create", "-name", "x"); err == nil || !strings.Contains(out+err.Error(), "acl:write") {
		t.Fatalf("policy create with a read token: %v %s", err, out)
	}
	must("-token", boot.SecretID, "acl", "policy", "update", "-name", "readers", "-description", "readers of all")
	if out := must("-token", tok.SecretID, "acl", "policy", "read", "-name", "readers", "-format", "json"); !strings.Contains(out, `"readers of all"`) {
		t.Fatalf("policy read -format json after the update:\n%s", out)
	}
	must("-token", boot.SecretID, "acl", "role", "create", "-name", "ops", "-policy-name", "readers")
	if out := must("-token", boot.SecretID, "acl", "role", "list"); !strings.Contains(out, "ops") || !strings.Contains(out, "readers") {
		t.Fatalf("role list:\n%s", out)
	}
	clone := must("-token", boot.SecretID, "acl", "token", "clone", "-id", tok.AccessorID, "-description", "clone")
	if !strings.Contains(clone, "clone") {
		t.Fatalf("clone:\n%s", clone)
	}
	must("-token", boot.SecretID, "acl", "token", "delete", "-id", tok.AccessorID)
	if out, err := run("-token", tok.SecretID, "acl", "token", "read", "-self"); err == nil || !strings.Contains(out+err.Error(), "ACL not found") {
		t.Fatalf("a deleted token still works: %v %s", err, out)
	}
	must("-token", boot.SecretID, "acl", "role", "delete", "-name", "ops")
	must("-token", boot.SecretID, "acl", "policy", "delete", "-name", "readers")
	if out := must("-token", boot.SecretID, "acl", "policy", "list"); strings.Contains(out, "readers") || !strings.Contains(out, "global-management") {
		t.Fatalf("policy list after the delete:\n%s", out)
	}
}
