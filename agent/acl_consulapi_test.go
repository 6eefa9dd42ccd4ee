package agent

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/peerd/peerd/agent/aclresolve"
	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/acl"
	"github.com/peerd/peerd/internal/testutil"
)

// aclDevAgent starts a dev agent with ACLs on (default deny), its log in
// logs, and waits until the leader wrote the builtins.
func aclDevAgent(t *testing.T, name string, logs *testutil.SyncBuffer) (*Agent, *api.Client) {
	t.Helper()
	a := devAgent(t, func(c *Config) {
		c.NodeName = name
		c.ACL.Enabled, c.ACL.DefaultPolicy = true, "deny"
		if logs != nil {
			c.LogOutput, c.LogLevel = logs, "debug"
		}
	})
	anon := aclClient(t, a.HTTPAddr(), "")
	eventually(t, 10*time.Second, "the anonymous token", func() error {
		tok, _, err := anon.ACL().TokenReadSelf(nil)
		if err != nil {
			return err
		}
		if tok.AccessorID != "00000000-0000-0000-0000-000000000002" {
			return fmt.Errorf("got token %s, want the anonymous one", tok.AccessorID)
		}
		return nil
	})
	return a, anon
}

func aclClient(t *testing.T, addr, token string) *api.Client {
	t.Helper()
	c, err := api.NewClient(&api.Config{Address: addr, Token: token})
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	return c
}

// wantStatus fails unless err is a Consul client error with the code and
// a message containing want.
func wantStatus(t *testing.T, err error, code int, want string) {
	t.Helper()
	var se api.StatusError
	if !errors.As(err, &se) {
		t.Fatalf("got %v, want an HTTP %d error", err, code)
	}
	if se.Code != code || !strings.Contains(se.Body, want) {
		t.Fatalf("got %d %q, want %d containing %q", se.Code, se.Body, code, want)
	}
}

// aclRaw sends a request with a token and checks the answer's status and
// body.
func aclRaw(t *testing.T, method, addr, path, token string, code int, want string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Consul-Token", token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != code || !strings.Contains(string(b), want) {
		t.Fatalf("%s %s: got %d %q, want %d containing %q", method, path, resp.StatusCode, b, code, want)
	}
}

// TestACLConsulAPI drives the ACL endpoints with the official client and
// checks Consul's semantics: bootstrap once, policy, role and token CRUD,
// names following renames, secrets shown only to acl:write, a deleted
// token refused, the builtins protected, and no secret in the log.
func TestACLConsulAPI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an agent: skipped with -short")
	}
	logs := &testutil.SyncBuffer{}
	a, anon := aclDevAgent(t, "acl-node", logs)
	var secrets []string

	boot, _, err := anon.ACL().Bootstrap()
	if err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	secrets = append(secrets, boot.SecretID)
	if boot.SecretID == "" || len(boot.Policies) != 1 || boot.Policies[0].Name != "global-management" {
		t.Fatalf("bootstrap token %+v: want a secret and global-management", boot)
	}
	_, _, err = anon.ACL().Bootstrap()
	wantStatus(t, err, http.StatusForbidden, "ACL bootstrap no longer allowed (reset index: ")

	mgmt := aclClient(t, a.HTTPAddr(), boot.SecretID).ACL()
	self, _, err := mgmt.TokenReadSelf(nil)
	if err != nil || self.AccessorID != boot.AccessorID || self.SecretID != boot.SecretID {
		t.Fatalf("token/self: %+v %v", self, err)
	}

	t.Run("anonymous may not read or write", func(t *testing.T) {
		_, _, err := anon.ACL().TokenList(nil)
		wantStatus(t, err, http.StatusForbidden, "Permission denied")
		_, _, err = anon.ACL().PolicyCreate(&api.ACLPolicy{Name: "x"}, nil)
		wantStatus(t, err, http.StatusForbidden, "lacks permission 'acl:write'")
		_, _, err = aclClient(t, a.HTTPAddr(), "33333333-0000-4000-8000-000000000000").ACL().TokenReadSelf(nil)
		wantStatus(t, err, http.StatusForbidden, "ACL not found")
	})

	var webRead, aclRead *api.ACLPolicy
	t.Run("policies", func(t *testing.T) {
		webRead, _, err = mgmt.PolicyCreate(&api.ACLPolicy{Name: "web-read", Description: "read web", Rules: `service "web" { policy = "read" }`}, nil)
		if err != nil || webRead.ID == "" || webRead.CreateIndex == 0 || len(webRead.Hash) == 0 {
			t.Fatalf("create: %+v %v", webRead, err)
		}
		aclRead, _, err = mgmt.PolicyCreate(&api.ACLPolicy{Name: "acl-read", Rules: `acl = "read"`}, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = mgmt.PolicyCreate(&api.ACLPolicy{Name: "Web-Read"}, nil)
		wantStatus(t, err, http.StatusBadRequest, `A Policy with Name "Web-Read" already exists`)
		_, _, err = mgmt.PolicyCreate(&api.ACLPolicy{Name: "bad", Rules: "service \"web\" {\n  policy = \"read\"\n  oops\n}"}, nil)
		wantStatus(t, err, http.StatusBadRequest, "Failed parsing rules")
		wantStatus(t, err, http.StatusBadRequest, "rules:3")
		got, _, err := mgmt.PolicyReadByName("web-read", nil)
		if err != nil || got == nil || got.ID != webRead.ID || got.Rules != webRead.Rules {
			t.Fatalf("read by name: %+v %v", got, err)
		}
		if missing, _, err := mgmt.PolicyReadByName("nope", nil); err != nil || missing != nil {
			t.Fatalf("read a missing policy by name: %+v %v, want nil, nil", missing, err)
		}
		_, _, err = mgmt.PolicyRead("33333333-0000-4000-8000-000000000001", nil)
		wantStatus(t, err, http.StatusNotFound, "ACL policy not found")
		list, _, err := mgmt.PolicyList(nil)
		if err != nil || len(list) != 3 {
			t.Fatalf("list: %d %v, want 3 (with global-management)", len(list), err)
		}
		_, err = mgmt.PolicyDelete("00000000-0000-0000-0000-000000000001", nil)
		wantStatus(t, err, http.StatusBadRequest, "") // the client drops a DELETE's body: read it raw
		aclRaw(t, "DELETE", a.HTTPAddr(), "/v1/acl/policy/00000000-0000-0000-0000-000000000001", boot.SecretID, http.StatusBadRequest, "builtin global-management")
	})

	var role *api.ACLRole
	t.Run("roles", func(t *testing.T) {
		role, _, err = mgmt.RoleCreate(&api.ACLRole{Name: "readers", Policies: []*api.ACLRolePolicyLink{{Name: "acl-read"}}}, nil)
		if err != nil || len(role.Policies) != 1 || role.Policies[0].ID != aclRead.ID {
			t.Fatalf("create: %+v %v", role, err)
		}
		_, _, err = mgmt.RoleCreate(&api.ACLRole{Name: "r2", Policies: []*api.ACLRolePolicyLink{{Name: "nope"}}}, nil)
		wantStatus(t, err, http.StatusBadRequest, `No such ACL policy with name "nope"`)
		if got, _, err := mgmt.RoleReadByName("readers", nil); err != nil || got == nil || got.ID != role.ID {
			t.Fatalf("read by name: %+v %v", got, err)
		}
		if got, _, err := mgmt.RoleRead("33333333-0000-4000-8000-000000000002", nil); err != nil || got != nil {
			t.Fatalf("read a missing role: %+v %v, want nil, nil", got, err)
		}
		role.Description = "updated"
		if got, _, err := mgmt.RoleUpdate(role, nil); err != nil || got.Description != "updated" {
			t.Fatalf("update: %+v %v", got, err)
		}
	})

	var tok *api.ACLToken
	t.Run("tokens", func(t *testing.T) {
		tok, _, err = mgmt.TokenCreate(&api.ACLToken{Description: "web reader",
			Policies:          []*api.ACLTokenPolicyLink{{Name: "web-read"}},
			Roles:             []*api.ACLTokenRoleLink{{ID: role.ID}},
			ServiceIdentities: []*api.ACLServiceIdentity{{ServiceName: "api"}},
			ExpirationTTL:     time.Hour,
		}, nil)
		if err != nil {
			t.Fatalf("create: %v", err)
		}
		secrets = append(secrets, tok.SecretID)
		if tok.SecretID == "" || tok.ExpirationTime == nil || len(tok.Policies) != 1 || tok.Policies[0].Name != "web-read" ||
			len(tok.Roles) != 1 || tok.Roles[0].Name != "readers" {
			t.Fatalf("created %+v", tok)
		}
		_, _, err = mgmt.TokenCreate(&api.ACLToken{ExpirationTTL: 10 * time.Second}, nil)
		wantStatus(t, err, http.StatusBadRequest, "Expiration TTL")
		_, _, err = mgmt.TokenCreate(&api.ACLToken{Policies: []*api.ACLTokenPolicyLink{{ID: "33333333-0000-4000-8000-000000000003"}}}, nil)
		wantStatus(t, err, http.StatusBadRequest, "No such ACL policy with ID")
		_, _, err = mgmt.TokenCreate(&api.ACLToken{SecretID: "not-a-uuid"}, nil)
		wantStatus(t, err, http.StatusBadRequest, "SecretID is not a UUID")

		// The token reads (acl:read through its role), and its policy
		// links show current names.
		reader := aclClient(t, a.HTTPAddr(), tok.SecretID).ACL()
		webRead.Name = "web-reader"
		if _, _, err := mgmt.PolicyUpdate(webRead, nil); err != nil {
			t.Fatalf("rename the policy: %v", err)
		}
		got, _, err := reader.TokenRead(tok.AccessorID, nil)
		if err != nil || len(got.Policies) != 1 || got.Policies[0].Name != "web-reader" {
			t.Fatalf("read after the rename: %+v %v", got, err)
		}
		if got.SecretID != "<hidden>" {
			t.Fatalf("a token with acl:read only saw SecretID %q, want <hidden>", got.SecretID)
		}
		list, _, err := reader.TokenList(nil)
		if err != nil || len(list) != 3 {
			t.Fatalf("list as reader: %d %v, want 3 (anonymous, bootstrap, this)", len(list), err)
		}
		for _, e := range list {
			if e.SecretID != "<hidden>" {
				t.Fatalf("token list without acl:write shows secret of %s", e.AccessorID)
			}
		}
		full, _, err := mgmt.TokenList(nil)
		if err != nil || len(full) != 3 || full[2].SecretID == "<hidden>" {
			t.Fatalf("list as management: %+v %v, want secrets", full, err)
		}
		filtered, _, err := mgmt.TokenListFiltered(api.ACLTokenFilterOptions{Role: role.ID}, nil)
		if err != nil || len(filtered) != 1 || filtered[0].AccessorID != tok.AccessorID {
			t.Fatalf("list ?role=: %+v %v", filtered, err)
		}
		_, _, err = reader.TokenCreate(&api.ACLToken{}, nil)
		wantStatus(t, err, http.StatusForbidden, "acl:write")

		// Update keeps the secret; another secret is refused.
		got.SecretID = ""
		got.Description = "renamed"
		upd, _, err := mgmt.TokenUpdate(got, nil)
		if err != nil || upd.SecretID != tok.SecretID || upd.Description != "renamed" {
			t.Fatalf("update: %+v %v", upd, err)
		}
		upd.SecretID = "33333333-0000-4000-8000-000000000004"
		_, _, err = mgmt.TokenUpdate(upd, nil)
		wantStatus(t, err, http.StatusBadRequest, "SecretID is not permitted")

		clone, _, err := mgmt.TokenClone(tok.AccessorID, "the clone", nil)
		if err != nil || clone.AccessorID == tok.AccessorID || clone.SecretID == tok.SecretID || clone.Description != "the clone" ||
			len(clone.Roles) != 1 {
			t.Fatalf("clone: %+v %v", clone, err)
		}
		secrets = append(secrets, clone.SecretID)

		// A deleted token stops working at once.
		if _, err := mgmt.TokenDelete(tok.AccessorID, nil); err != nil {
			t.Fatalf("delete: %v", err)
		}
		_, _, err = reader.TokenReadSelf(nil)
		wantStatus(t, err, http.StatusForbidden, "ACL not found")
		_, _, err = reader.TokenList(nil)
		wantStatus(t, err, http.StatusForbidden, "ACL not found")
		_, _, err = mgmt.TokenRead(tok.AccessorID, nil)
		wantStatus(t, err, http.StatusForbidden, "ACL not found")

		_, err = mgmt.TokenDelete("00000000-0000-0000-0000-000000000002", nil)
		wantStatus(t, err, http.StatusBadRequest, "")
		aclRaw(t, "DELETE", a.HTTPAddr(), "/v1/acl/token/00000000-0000-0000-0000-000000000002", boot.SecretID, http.StatusBadRequest, "anonymous token")
		aclRaw(t, "DELETE", a.HTTPAddr(), "/v1/acl/token/"+boot.AccessorID, boot.SecretID, http.StatusBadRequest, "request's authorization token")
	})

	t.Run("a deleted policy drops out of tokens and roles", func(t *testing.T) {
		if _, err := mgmt.PolicyDelete(aclRead.ID, nil); err != nil {
			t.Fatal(err)
		}
		got, _, err := mgmt.RoleRead(role.ID, nil)
		if err != nil || got == nil || len(got.Policies) != 0 {
			t.Fatalf("role after the policy's delete: %+v %v", got, err)
		}
		if _, err := mgmt.RoleDelete(role.ID, nil); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("no secret in the log", func(t *testing.T) {
		log := logs.String()
		if !strings.Contains(log, "refused an ACL request") {
			t.Fatalf("the refusals were not logged: %s", log)
		}
		for _, s := range secrets {
			if strings.Contains(log, s) {
				t.Fatalf("the log holds a token secret")
			}
		}
	})

	t.Run("refusals counted", func(t *testing.T) {
		// /metrics needs agent:read: the management token has it.
		code, body, err := httpDo("GET", "http://"+a.HTTPAddr()+"/metrics?token="+boot.SecretID, nil)
		if err != nil || code != 200 {
			t.Fatalf("metrics: %d %v", code, err)
		}
		for _, want := range []string{`peerd_acl_api_refusals_total{reason="bootstrap",route="PUT /v1/acl/bootstrap"} 1`, `reason="denied"`, `reason="token"`, `reason="invalid"`} {
			if !strings.Contains(string(body), want) {
				t.Fatalf("metrics lack %s", want)
			}
		}
	})
}

// TestACLOffAnswers401: with ACLs off the endpoints say so, as Consul does.
func TestACLOffAnswers401(t *testing.T) {
	a := devAgent(t, nil)
	_, _, err := aclClient(t, a.HTTPAddr(), "").ACL().Bootstrap()
	wantStatus(t, err, http.StatusUnauthorized, "ACL support disabled")
}

// TestACLBootstrapRace: two servers of a three-server cluster bootstrap at
// once; exactly one wins, the other gets Consul's 403. Then the reset file
// on the leader allows one more, and is consumed.
func TestACLBootstrapRace(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node cluster test: skipped with -short")
	}
	var servers []*Agent
	for i := 1; i <= 3; i++ {
		var join []string
		if i > 1 {
			join = []string{servers[0].Cluster().GossipAddr()}
		}
		cfg := testAgentConfig(t, fmt.Sprintf("s%d", i), true, 3, join...)
		cfg.ACL.Enabled, cfg.ACL.DefaultPolicy = true, "deny"
		servers = append(servers, startTestAgent(t, cfg))
	}
	eventually(t, 20*time.Second, "a leader and the anonymous token on every server", func() error {
		for _, s := range servers {
			tok, _, err := aclClient(t, s.HTTPAddr(), "").ACL().TokenReadSelf(&api.QueryOptions{AllowStale: true})
			if err != nil {
				return fmt.Errorf("%s: %w", s.cfg.NodeName, err)
			}
			if tok.AccessorID != "00000000-0000-0000-0000-000000000002" {
				return fmt.Errorf("%s: token %s", s.cfg.NodeName, tok.AccessorID)
			}
		}
		return nil
	})
	// One follower and one other server (the leader or the other
	// follower) race.
	var racers []*Agent
	for _, s := range servers {
		if !s.Cluster().IsLeader() {
			racers = append(racers, s)
		}
	}
	for _, s := range servers {
		if s.Cluster().IsLeader() {
			racers = append(racers, s)
		}
	}
	racers = racers[:2]
	var wg sync.WaitGroup
	toks := make([]*api.ACLToken, 2)
	errs := make([]error, 2)
	start := make(chan struct{})
	for i, s := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			toks[i], _, errs[i] = aclClient(t, s.HTTPAddr(), "").ACL().Bootstrap()
		}()
	}
	close(start)
	wg.Wait()
	won := 0
	var refused error
	for i := range errs {
		if errs[i] == nil && toks[i].SecretID != "" {
			won++
		} else {
			refused = errs[i]
		}
	}
	if won != 1 {
		t.Fatalf("%d bootstraps won (errors %v), want exactly 1", won, errs)
	}
	wantStatus(t, refused, http.StatusForbidden, "ACL bootstrap no longer allowed (reset index: ")

	// Consul's reset: the index from the refusal, written on the leader.
	var se api.StatusError
	errors.As(refused, &se)
	idx := strings.TrimSuffix(strings.TrimSpace(se.Body[strings.LastIndex(se.Body, ": ")+2:]), ")")
	if _, err := strconv.ParseUint(idx, 10, 64); err != nil {
		t.Fatalf("reset index %q in %q: %v", idx, se.Body, err)
	}
	var leader *Agent
	for _, s := range servers {
		if s.Cluster().IsLeader() {
			leader = s
		}
	}
	if leader == nil {
		t.Fatal("no leader")
	}
	reset := filepath.Join(leader.cfg.DataDir, "acl-bootstrap-reset")
	if err := os.WriteFile(reset, []byte(idx+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	again, _, err := aclClient(t, leader.HTTPAddr(), "").ACL().Bootstrap()
	if err != nil || again.SecretID == "" {
		t.Fatalf("bootstrap after the reset: %v", err)
	}
	if _, err := os.Stat(reset); !os.IsNotExist(err) {
		t.Fatalf("the reset file is still there (%v)", err)
	}
	_, _, err = aclClient(t, leader.HTTPAddr(), "").ACL().Bootstrap()
	wantStatus(t, err, http.StatusForbidden, "ACL bootstrap no longer allowed")
}

// TestACLInitialManagement: tokens.initial_management is a management token
// the leader makes, and making it is the bootstrap.
func TestACLInitialManagement(t *testing.T) {
	const secret = "55555555-0000-4000-8000-000000000001"
	a := devAgent(t, func(c *Config) {
		c.ACL.Enabled, c.ACL.DefaultPolicy, c.ACL.Tokens.InitialManagement = true, "deny", secret
	})
	mgmt := aclClient(t, a.HTTPAddr(), secret).ACL()
	eventually(t, 10*time.Second, "the initial management token", func() error {
		tok, _, err := mgmt.TokenReadSelf(nil)
		if err != nil {
			return err
		}
		if len(tok.Policies) != 1 || tok.Policies[0].Name != "global-management" {
			return fmt.Errorf("token %+v: want global-management", tok)
		}
		return nil
	})
	if _, _, err := mgmt.TokenList(nil); err != nil {
		t.Fatalf("list with the initial management token: %v", err)
	}
	_, _, err := aclClient(t, a.HTTPAddr(), "").ACL().Bootstrap()
	wantStatus(t, err, http.StatusForbidden, "ACL bootstrap no longer allowed")
}

// TestACLClientNode: a client node's HTTP API relays the ACL endpoints to
// the servers, and its mirror holds the tokens without their secrets, so
// it resolves a presented secret by its hash.
func TestACLClientNode(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node cluster test: skipped with -short")
	}
	scfg := testAgentConfig(t, "s1", true, 1)
	scfg.ACL.Enabled, scfg.ACL.DefaultPolicy = true, "deny"
	s1 := startTestAgent(t, scfg)
	ccfg := testAgentConfig(t, "c1", false, 0, s1.Cluster().GossipAddr())
	ccfg.ACL.Enabled, ccfg.ACL.DefaultPolicy = true, "deny"
	c1 := startTestAgent(t, ccfg)
	anon := aclClient(t, c1.HTTPAddr(), "")
	eventually(t, 20*time.Second, "the anonymous token, through the client", func() error {
		_, _, err := anon.ACL().TokenReadSelf(nil)
		return err
	})
	boot, _, err := anon.ACL().Bootstrap()
	if err != nil {
		t.Fatalf("bootstrap through the client: %v", err)
	}
	mgmt := aclClient(t, c1.HTTPAddr(), boot.SecretID).ACL()
	if _, _, err := mgmt.PolicyCreate(&api.ACLPolicy{Name: "web", Rules: `service "web" { policy = "write" }`}, nil); err != nil {
		t.Fatalf("policy through the client: %v", err)
	}
	tok, _, err := mgmt.TokenCreate(&api.ACLToken{Policies: []*api.ACLTokenPolicyLink{{Name: "web"}}}, nil)
	if err != nil {
		t.Fatalf("token through the client: %v", err)
	}
	r, err := aclresolve.New(aclresolve.Config{Store: c1.Cluster().View(), Enabled: true, DefaultPolicy: "deny", Datacenter: "dc1"})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the client's mirror resolves the token", func() error {
		e, _, err := r.Resolve(tok.SecretID)
		if err != nil {
			return err
		}
		if !e.Allowed(acl.ResourceService, "web", acl.AccessWrite) {
			return errors.New("no write on web")
		}
		return nil
	})
	_, list, err := c1.Cluster().View().ACLTokens(nil, state.ACLTokenFilter{})
	if err != nil || len(list) != 3 {
		t.Fatalf("client's tokens: %d %v, want 3", len(list), err)
	}
	for _, t0 := range list {
		if t0.SecretID != "" {
			t.Fatalf("the client's mirror holds the SecretID of %s", t0.AccessorID)
		}
	}
	if _, err := mgmt.TokenDelete(tok.AccessorID, nil); err != nil {
		t.Fatalf("delete through the client: %v", err)
	}
	eventually(t, 10*time.Second, "the client refuses the deleted token", func() error {
		if _, _, err := r.Resolve(tok.SecretID); !errors.Is(err, aclresolve.ErrTokenNotFound) {
			return fmt.Errorf("got %v, want ACL not found", err)
		}
		return nil
	})
}
