package httpapi

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peerd/peerd/internal/acl"
)

// PUT /v1/agent/token/{kind} changes the agent's tokens (acl:write), keeps
// them in a 0600 file that wins over the configuration on the next start;
// the default token stands in for requests without one; the recovery
// token works on the agent endpoints without the resolver knowing it.
func TestAgentTokens(t *testing.T) {
	file := filepath.Join(t.TempDir(), TokensFile)
	tokens, err := NewTokens(AgentTokens{AgentRecovery: "recover-me"}, file)
	if err != nil {
		t.Fatal(err)
	}
	n, logs := aclNode(t, map[string]string{
		"webr": `service "web" { policy = "read" }`,
		"opw":  `operator = "write"`,
	}, tokens)
	url := n.url + "/v1/agent/service/web"
	if got := doToken(t, "GET", url, "", ""); got.code != 403 {
		t.Fatalf("anonymous before a default token: got %d %q", got.code, got.body)
	}
	if got := doToken(t, "PUT", n.url+"/v1/agent/token/default", "opw", `{"Token": "webr"}`); got.code != 403 || !strings.Contains(got.body, "'acl:write'") {
		t.Errorf("operator:write sets a token: got %d %q, want 403 naming acl:write", got.code, got.body)
	}
	if got := doToken(t, "PUT", n.url+"/v1/agent/token/default", "root", `{"Token": "webr"}`); got.code != 200 {
		t.Fatalf("set the default token: %d %q", got.code, got.body)
	}
	if got := doToken(t, "GET", url, "", ""); got.code != 200 {
		t.Errorf("a request without a token after the default token was set: got %d %q", got.code, got.body)
	}
	if got := doToken(t, "GET", url, "opw", ""); got.code != 403 {
		t.Errorf("a request with its own token gets that token's rights, not the default's: got %d", got.code)
	}
	st, err := os.Stat(file)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("persisted tokens: %v, mode %v; want 0600", err, st.Mode())
	}
	again, err := NewTokens(AgentTokens{Default: "from-config"}, file)
	if err != nil || again.Default() != "webr" || again.DNS() != "webr" || again.Agent() != "webr" {
		t.Errorf("the persisted default token wins over the file's: got %q (dns %q, agent %q), %v", again.Default(), again.DNS(), again.Agent(), err)
	}

	for _, tt := range []struct{ path, body, want string }{
		{"/v1/agent/token/replication", `{"Token": "x"}`, `unknown token type "replication"`},
		{"/v1/agent/token/agent", `{"Token": "has a space"}`, "Token: holds a space"},
	} {
		if got := doToken(t, "PUT", n.url+tt.path, "root", tt.body); got.code != 400 || !strings.Contains(got.body, tt.want) || strings.Contains(got.body, "has a space") {
			t.Errorf("%s: got %d %q, want 400 containing %q", tt.path, got.code, got.body, tt.want)
		}
	}

	// The recovery token: agent:write on this node, node:read; nothing else.
	if got := doToken(t, "GET", n.url+"/v1/agent/self", "recover-me", ""); got.code != 200 {
		t.Errorf("recovery token on /v1/agent/self: got %d %q", got.code, got.body)
	}
	if got := doToken(t, "PUT", n.url+"/v1/agent/service/register", "recover-me", `{"Name": "db", "Port": 1}`); got.code != 403 {
		t.Errorf("recovery token registering a service: got %d %q", got.code, got.body)
	}
	if got := doToken(t, "GET", n.url+"/v1/agent/self", "recover-m", ""); got.code != 403 {
		t.Errorf("a prefix of the recovery token: got %d", got.code)
	}
	if strings.Contains(logs.String(), "recover-me") || strings.Contains(logs.String(), "webr\"") {
		t.Errorf("a secret in the log: %s", logs.String())
	}
}

// A persisted file that is not JSON is an error naming the file, not a
// silent fallback to the configured tokens.
func TestNewTokensBadFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), TokensFile)
	if err := os.WriteFile(file, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewTokens(AgentTokens{}, file); err == nil || !strings.Contains(err.Error(), file) {
		t.Errorf("got %v, want an error naming %s", err, file)
	}
}

// FuzzTokenInputs feeds the two external inputs of the agent's tokens:
// the persisted file and PUT /v1/agent/token's body. Neither panics; a
// file that loads gives back what it held, and a body that is refused
// changes nothing.
func FuzzTokenInputs(f *testing.F) {
	f.Add([]byte(`{"default":"a","agent":"b","agent_recovery":"c","dns":"d"}`), "default", []byte(`{"Token": "x"}`))
	f.Add([]byte(`{`), "agent_master", []byte(`{"Token": "has space"}`))
	f.Add([]byte(`null`), "replication", []byte(`[]`))
	f.Fuzz(func(t *testing.T, file []byte, kind string, body []byte) {
		path := filepath.Join(t.TempDir(), TokensFile)
		if err := os.WriteFile(path, file, 0o600); err != nil {
			t.Fatal(err)
		}
		tokens, err := NewTokens(AgentTokens{Default: "configured"}, path)
		if err != nil {
			return
		}
		before := tokens.Default()
		var req struct{ Token string }
		if json.Unmarshal(body, &req) != nil || acl.ValidateSecret(req.Token) != nil {
			if tokens.Default() != before {
				t.Fatalf("a refused body changed the default token")
			}
			return
		}
		if err := tokens.Set(kind, req.Token); err != nil {
			if tokens.Default() != before {
				t.Fatalf("a refused Set changed the default token")
			}
			return
		}
		again, err := NewTokens(AgentTokens{}, path)
		if err != nil {
			t.Fatalf("the file Set wrote does not load: %v", err)
		}
		if again.Default() != tokens.Default() || again.DNS() != tokens.DNS() || again.Agent() != tokens.Agent() {
			t.Fatalf("reloaded %q/%q/%q, had %q/%q/%q", again.Default(), again.DNS(), again.Agent(), tokens.Default(), tokens.DNS(), tokens.Agent())
		}
	})
}
