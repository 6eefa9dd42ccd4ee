package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// `peerctl acl ...` mirrors `consul acl ...` on the /v1/acl endpoints.

func newACLCommand(a *app) *cobra.Command {
	return newGroupCommand("acl", "Bootstrap the ACL system and manage its tokens, policies and roles",
		newACLBootstrapCommand(a),
		newGroupCommand("token", "Create, read, list, update, clone and delete ACL tokens",
			newACLTokenCreateCommand(a), newACLTokenReadCommand(a), newACLTokenListCommand(a),
			newACLTokenUpdateCommand(a), newACLTokenCloneCommand(a), newACLTokenDeleteCommand(a)),
		newGroupCommand("policy", "Create, read, list, update and delete ACL policies",
			newACLPolicyCreateCommand(a), newACLPolicyReadCommand(a), newACLPolicyListCommand(a),
			newACLPolicyUpdateCommand(a), newACLPolicyDeleteCommand(a)),
		newGroupCommand("role", "Create, read, list, update and delete ACL roles",
			newACLRoleCreateCommand(a), newACLRoleReadCommand(a), newACLRoleListCommand(a),
			newACLRoleUpdateCommand(a), newACLRoleDeleteCommand(a)),
	)
}

// The shapes shown (the agent's answers, the fields peerctl prints).

type aclLink struct {
	ID   string `json:",omitempty"`
	Name string `json:",omitempty"`
}

type aclServiceIdentity struct {
	ServiceName string
	Datacenters []string `json:",omitempty"`
}

type aclNodeIdentity struct {
	NodeName   string
	Datacenter string
}

type aclToken struct {
	AccessorID        string
	SecretID          string
	Description       string
	Policies          []aclLink            `json:",omitempty"`
	Roles             []aclLink            `json:",omitempty"`
	ServiceIdentities []aclServiceIdentity `json:",omitempty"`
	NodeIdentities    []aclNodeIdentity    `json:",omitempty"`
	Local             bool
	ExpirationTime    *time.Time `json:",omitempty"`
	CreateTime        time.Time
}

type aclPolicy struct {
	ID          string
	Name        string
	Description string
	Rules       string
	Datacenters []string `json:",omitempty"`
}

type aclRole struct {
	ID                string
	Name              string
	Description       string
	Policies          []aclLink            `json:",omitempty"`
	ServiceIdentities []aclServiceIdentity `json:",omitempty"`
	NodeIdentities    []aclNodeIdentity    `json:",omitempty"`
}

// aclOut prints an answer: raw JSON with -format json, else the value
// decoded into v and rendered by show.
func aclOut[T any](cmd *cobra.Command, format string, resp *Response, what string, show func(io.Writer, *T) error) error {
	if format == formatJSON {
		return printJSON(cmd.OutOrStdout(), resp.Body)
	}
	var v T
	if err := resp.Decode(&v); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return show(cmd.OutOrStdout(), &v)
}

func links(l []aclLink) string {
	var parts []string
	for _, x := range l {
		parts = append(parts, x.Name+" ("+x.ID+")")
	}
	return strings.Join(parts, ", ")
}

func serviceIdentities(l []aclServiceIdentity) string {
	var parts []string
	for _, s := range l {
		p := s.ServiceName
		if len(s.Datacenters) > 0 {
			p += " (" + strings.Join(s.Datacenters, ",") + ")"
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ", ")
}

func nodeIdentities(l []aclNodeIdentity) string {
	var parts []string
	for _, n := range l {
		parts = append(parts, n.NodeName+" ("+n.Datacenter+")")
	}
	return strings.Join(parts, ", ")
}

func showToken(w io.Writer, t *aclToken) error {
	rows := [][]string{
		{"AccessorID:", t.AccessorID},
		{"SecretID:", t.SecretID},
		{"Description:", t.Description},
		{"Local:", fmt.Sprint(t.Local)},
		{"Create Time:", t.CreateTime.Format(time.RFC3339)},
	}
	if t.ExpirationTime != nil {
		rows = append(rows, []string{"Expiration Time:", t.ExpirationTime.Format(time.RFC3339)})
	}
	rows = append(rows, []string{"Policies:", links(t.Policies)}, []string{"Roles:", links(t.Roles)},
		[]string{"Service Identities:", serviceIdentities(t.ServiceIdentities)},
		[]string{"Node Identities:", nodeIdentities(t.NodeIdentities)})
	return printTable(w, nil, rows)
}

func showPolicy(w io.Writer, p *aclPolicy) error {
	if err := printTable(w, nil, [][]string{
		{"ID:", p.ID}, {"Name:", p.Name}, {"Description:", p.Description},
		{"Datacenters:", strings.Join(p.Datacenters, ", ")}, {"Rules:", ""},
	}); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, p.Rules)
	return err
}

func showRole(w io.Writer, r *aclRole) error {
	return printTable(w, nil, [][]string{
		{"ID:", r.ID}, {"Name:", r.Name}, {"Description:", r.Description}, {"Policies:", links(r.Policies)},
		{"Service Identities:", serviceIdentities(r.ServiceIdentities)}, {"Node Identities:", nodeIdentities(r.NodeIdentities)},
	})
}

// ---- bootstrap ----

func newACLBootstrapCommand(a *app) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "bootstrap",
		Short: "Make the first management token (once per cluster)",
		Long: `Bootstrap the ACL system (PUT /v1/acl/bootstrap): the cluster makes a
management token and shows it, once. A second bootstrap is refused with
"ACL bootstrap no longer allowed (reset index: N)"; to bootstrap again,
write N to <data-dir>/acl-bootstrap-reset on the leader. Keep the
SecretID: it is the key to everything.`,
		Example: "  peerctl acl bootstrap\n  peerctl acl bootstrap -format json",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(cmd, &format); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			resp, err := c.Put(cmd.Context(), "/v1/acl/bootstrap", nil, nil)
			if err != nil {
				return fmt.Errorf("bootstrap the ACL system: %w", err)
			}
			return aclOut(cmd, format, resp, "bootstrap the ACL system", showToken)
		},
	}
	addFormatFlag(cmd, &format)
	return cmd
}

// ---- tokens ----

// tokenFlags are the flags that say what a token grants.
type tokenFlags struct {
	description                  string
	policyNames, policyIDs       []string
	roleNames, roleIDs           []string
	serviceIdentities, nodeIdent []string
}

func (f *tokenFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.description, "description", "", "what the token is for")
	fl.StringArrayVar(&f.policyNames, "policy-name", nil, "link the policy of this name (repeatable)")
	fl.StringArrayVar(&f.policyIDs, "policy-id", nil, "link the policy of this ID (repeatable)")
	fl.StringArrayVar(&f.roleNames, "role-name", nil, "link the role of this name (repeatable)")
	fl.StringArrayVar(&f.roleIDs, "role-id", nil, "link the role of this ID (repeatable)")
	fl.StringArrayVar(&f.serviceIdentities, "service-identity", nil, `a service identity, "name" or "name:dc1,dc2" (repeatable)`)
	fl.StringArrayVar(&f.nodeIdent, "node-identity", nil, `a node identity, "node:datacenter" (repeatable)`)
}

func linkList(ids, names []string) []aclLink {
	var out []aclLink
	for _, id := range ids {
		out = append(out, aclLink{ID: id})
	}
	for _, n := range names {
		out = append(out, aclLink{Name: n})
	}
	return out
}

func parseIdentities(cmd *cobra.Command, svcs, nodes []string) ([]aclServiceIdentity, []aclNodeIdentity, error) {
	var si []aclServiceIdentity
	for _, s := range svcs {
		name, dcs, _ := strings.Cut(s, ":")
		if name == "" {
			return nil, nil, usageErrorf(cmd, "-service-identity %q: want name or name:dc1,dc2", s)
		}
		id := aclServiceIdentity{ServiceName: name}
		if dcs != "" {
			id.Datacenters = strings.Split(dcs, ",")
		}
		si = append(si, id)
	}
	var ni []aclNodeIdentity
	for _, n := range nodes {
		name, dc, ok := strings.Cut(n, ":")
		if !ok || name == "" || dc == "" {
			return nil, nil, usageErrorf(cmd, "-node-identity %q: want node:datacenter", n)
		}
		ni = append(ni, aclNodeIdentity{NodeName: name, Datacenter: dc})
	}
	return si, ni, nil
}

func newACLTokenCreateCommand(a *app) *cobra.Command {
	var f tokenFlags
	var format, secret, accessor string
	var ttl time.Duration
	var local bool
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a token (PUT /v1/acl/token)",
		Long: `Create a token linked to policies and roles, with service and node
identities. The answer shows its SecretID: treat it as a password.`,
		Example: `  peerctl acl token create -description "web's agent" -policy-name web-write
  peerctl acl token create -service-identity web -expires-ttl 1h -format json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(cmd, &format); err != nil {
				return err
			}
			si, ni, err := parseIdentities(cmd, f.serviceIdentities, f.nodeIdent)
			if err != nil {
				return err
			}
			body := map[string]any{
				"AccessorID": accessor, "SecretID": secret, "Description": f.description, "Local": local,
				"Policies": linkList(f.policyIDs, f.policyNames), "Roles": linkList(f.roleIDs, f.roleNames),
				"ServiceIdentities": si, "NodeIdentities": ni,
			}
			if ttl != 0 {
				body["ExpirationTTL"] = ttl.String()
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			resp, err := c.Put(cmd.Context(), "/v1/acl/token", nil, body)
			if err != nil {
				return fmt.Errorf("create a token: %w", err)
			}
			return aclOut(cmd, format, resp, "create a token", showToken)
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&secret, "secret", "", "the SecretID to give the token, a UUID (default: a new one)")
	cmd.Flags().StringVar(&accessor, "accessor", "", "the AccessorID to give the token, a UUID (default: a new one)")
	cmd.Flags().DurationVar(&ttl, "expires-ttl", 0, "the token expires after this long (1m to 24h; default never)")
	cmd.Flags().BoolVar(&local, "local", false, "a token local to this datacenter")
	addFormatFlag(cmd, &format)
	return cmd
}

func newACLTokenReadCommand(a *app) *cobra.Command {
	var format, id string
	var self bool
	cmd := &cobra.Command{
		Use:     "read",
		Short:   "Read a token by AccessorID, or the token in use (-self)",
		Long:    `Read a token (GET /v1/acl/token/<id>, or /v1/acl/token/self). The SecretID shows only to a token with acl:write (else <hidden>).`,
		Example: "  peerctl acl token read -id 4b1d...\n  peerctl acl token read -self",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(cmd, &format); err != nil {
				return err
			}
			if (id == "") == !self {
				return usageErrorf(cmd, "give -id <accessor> or -self")
			}
			path := "/v1/acl/token/self"
			if id != "" {
				path = "/v1/acl/token/" + url.PathEscape(id)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			resp, err := c.Get(cmd.Context(), path, nil)
			if err != nil {
				return fmt.Errorf("read the token: %w", err)
			}
			return aclOut(cmd, format, resp, "read the token", showToken)
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "the token's AccessorID")
	cmd.Flags().BoolVar(&self, "self", false, "read the token this command sends")
	addFormatFlag(cmd, &format)
	return cmd
}

func newACLTokenListCommand(a *app) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List the tokens (GET /v1/acl/tokens)",
		Example: "  peerctl acl token list\n  peerctl acl token list -format json",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := a.list(cmd, format, "list tokens", "/v1/acl/tokens", nil)
			if err != nil || resp == nil {
				return err
			}
			var list []aclToken
			if err := resp.Decode(&list); err != nil {
				return fmt.Errorf("list tokens: %w", err)
			}
			rows := [][]string{}
			for _, t := range list {
				exp := ""
				if t.ExpirationTime != nil {
					exp = t.ExpirationTime.Format(time.RFC3339)
				}
				var names []string
				for _, p := range t.Policies {
					names = append(names, p.Name)
				}
				for _, r := range t.Roles {
					names = append(names, "role:"+r.Name)
				}
				for _, s := range t.ServiceIdentities {
					names = append(names, "service:"+s.ServiceName)
				}
				for _, n := range t.NodeIdentities {
					names = append(names, "node:"+n.NodeName)
				}
				rows = append(rows, []string{t.AccessorID, t.SecretID, t.Description, strings.Join(names, ","), exp})
			}
			return printTable(cmd.OutOrStdout(), []string{"AccessorID", "SecretID", "Description", "Grants", "Expires"}, rows)
		},
	}
	addFormatFlag(cmd, &format)
	return cmd
}

func newACLTokenUpdateCommand(a *app) *cobra.Command {
	var f tokenFlags
	var format, id string
	cmd := &cobra.Command{
		Use:   "update",
		Short: "Update a token (PUT /v1/acl/token/<id>)",
		Long: `Update a token: the description, links and identities given replace the
token's (links and identities as a whole: give them all); what is not
given stays. The SecretID never changes.`,
		Example: "  peerctl acl token update -id 4b1d... -policy-name web-read -description readers",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(cmd, &format); err != nil {
				return err
			}
			if id == "" {
				return usageErrorf(cmd, "-id <accessor> is required")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			path := "/v1/acl/token/" + url.PathEscape(id)
			cur, err := c.Get(cmd.Context(), path, nil)
			if err != nil {
				return fmt.Errorf("read token %s: %w", id, err)
			}
			var t aclToken
			if err := cur.Decode(&t); err != nil {
				return fmt.Errorf("read token %s: %w", id, err)
			}
			fl := cmd.Flags()
			if fl.Changed("description") {
				t.Description = f.description
			}
			if fl.Changed("policy-name") || fl.Changed("policy-id") {
				t.Policies = linkList(f.policyIDs, f.policyNames)
			}
			if fl.Changed("role-name") || fl.Changed("role-id") {
				t.Roles = linkList(f.roleIDs, f.roleNames)
			}
			si, ni, err := parseIdentities(cmd, f.serviceIdentities, f.nodeIdent)
			if err != nil {
				return err
			}
			if fl.Changed("service-identity") {
				t.ServiceIdentities = si
			}
			if fl.Changed("node-identity") {
				t.NodeIdentities = ni
			}
			t.SecretID = "" // kept by the agent; "<hidden>" must not be sent back
			resp, err := c.Put(cmd.Context(), path, nil, t)
			if err != nil {
				return fmt.Errorf("update token %s: %w", id, err)
			}
			return aclOut(cmd, format, resp, "update the token", showToken)
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&id, "id", "", "the token's AccessorID")
	addFormatFlag(cmd, &format)
	return cmd
}

func newACLTokenCloneCommand(a *app) *cobra.Command {
	var format, id, description string
	cmd := &cobra.Command{
		Use:     "clone",
		Short:   "Clone a token: new AccessorID and SecretID, same grants",
		Example: `  peerctl acl token clone -id 4b1d... -description "second web agent"`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(cmd, &format); err != nil {
				return err
			}
			if id == "" {
				return usageErrorf(cmd, "-id <accessor> is required")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			resp, err := c.Put(cmd.Context(), "/v1/acl/token/"+url.PathEscape(id)+"/clone", nil, map[string]string{"Description": description})
			if err != nil {
				return fmt.Errorf("clone token %s: %w", id, err)
			}
			return aclOut(cmd, format, resp, "clone the token", showToken)
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "the AccessorID of the token to clone")
	cmd.Flags().StringVar(&description, "description", "", "the clone's description (default: the original's)")
	addFormatFlag(cmd, &format)
	return cmd
}

func newACLTokenDeleteCommand(a *app) *cobra.Command {
	var id string
	cmd := &cobra.Command{
		Use:     "delete",
		Short:   "Delete a token: it stops working at once",
		Example: "  peerctl acl token delete -id 4b1d...",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if id == "" {
				return usageErrorf(cmd, "-id <accessor> is required")
			}
			return a.aclDelete(cmd, "/v1/acl/token/"+url.PathEscape(id), "token "+id)
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "the token's AccessorID")
	return cmd
}

func (a *app) aclDelete(cmd *cobra.Command, path, what string) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	if _, err := c.Delete(cmd.Context(), path, nil); err != nil {
		return fmt.Errorf("delete %s: %w", what, err)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "Deleted %s\n", what)
	return nil
}

// ---- policies ----

// readRules reads -rules: "@file" reads the file ("@-" standard input),
// anything else is the rules themselves.
func readRules(e *env, rules string) (string, error) {
	name, ok := strings.CutPrefix(rules, "@")
	if !ok {
		return rules, nil
	}
	var b []byte
	var err error
	if name == "-" {
		b, err = io.ReadAll(e.stdin)
	} else {
		b, err = os.ReadFile(name)
	}
	if err != nil {
		return "", fmt.Errorf("read the rules from %s: %w", name, err)
	}
	return string(b), nil
}

// aclIDByName resolves a policy's or role's -name to its ID.
func (a *app) aclIDByName(ctx context.Context, c *Client, kind, name string) (string, error) {
	resp, err := c.Get(ctx, "/v1/acl/"+kind+"/name/"+url.PathEscape(name), nil)
	if err != nil {
		var se *StatusError
		if errors.As(err, &se) && se.StatusCode == 404 {
			return "", fmt.Errorf("no ACL %s named %q", kind, name)
		}
		return "", fmt.Errorf("look up %s %q: %w", kind, name, err)
	}
	var v struct{ ID string }
	if err := resp.Decode(&v); err != nil {
		return "", fmt.Errorf("look up %s %q: %w", kind, name, err)
	}
	return v.ID, nil
}

func newACLPolicyCreateCommand(a *app) *cobra.Command {
	var format, name, description, rules string
	var dcs []string
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a policy (PUT /v1/acl/policy)",
		Long: `Create a policy from Consul's rules language (HCL or JSON). -rules takes the
rules inline or, with @, from a file ("@-" reads standard input). Rules that
do not parse are refused with the line that is wrong.`,
		Example: `  peerctl acl policy create -name web-read -rules 'service "web" { policy = "read" }'
  peerctl acl policy create -name ops -rules @ops.hcl -description "operators"`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(cmd, &format); err != nil {
				return err
			}
			if name == "" {
				return usageErrorf(cmd, "-name is required")
			}
			r, err := readRules(a.env, rules)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			resp, err := c.Put(cmd.Context(), "/v1/acl/policy", nil, aclPolicy{Name: name, Description: description, Rules: r, Datacenters: dcs})
			if err != nil {
				return fmt.Errorf("create policy %s: %w", name, err)
			}
			return aclOut(cmd, format, resp, "create the policy", showPolicy)
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "the policy's name")
	cmd.Flags().StringVar(&description, "description", "", "what the policy is for")
	cmd.Flags().StringVar(&rules, "rules", "", "the rules, inline or @file")
	cmd.Flags().StringArrayVar(&dcs, "valid-datacenter", nil, "a datacenter the policy is valid in (repeatable; default all)")
	addFormatFlag(cmd, &format)
	return cmd
}

// aclPath is the path of the policy or role -id or -name names.
func aclPath(cmd *cobra.Command, kind, id, name string) (string, error) {
	switch {
	case id != "":
		return "/v1/acl/" + kind + "/" + url.PathEscape(id), nil
	case name != "":
		return "/v1/acl/" + kind + "/name/" + url.PathEscape(name), nil
	}
	return "", usageErrorf(cmd, "give -id or -name")
}

func newACLPolicyReadCommand(a *app) *cobra.Command {
	var format, id, name string
	cmd := &cobra.Command{
		Use:     "read",
		Short:   "Read a policy by -id or -name",
		Example: "  peerctl acl policy read -name web-read",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(cmd, &format); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			path, err := aclPath(cmd, "policy", id, name)
			if err != nil {
				return err
			}
			resp, err := c.Get(cmd.Context(), path, nil)
			if err != nil {
				return fmt.Errorf("read the policy: %w", err)
			}
			return aclOut(cmd, format, resp, "read the policy", showPolicy)
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "the policy's ID")
	cmd.Flags().StringVar(&name, "name", "", "the policy's name")
	addFormatFlag(cmd, &format)
	return cmd
}

func newACLPolicyListCommand(a *app) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List the policies (GET /v1/acl/policies)",
		Example: "  peerctl acl policy list",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := a.list(cmd, format, "list policies", "/v1/acl/policies", nil)
			if err != nil || resp == nil {
				return err
			}
			var list []aclPolicy
			if err := resp.Decode(&list); err != nil {
				return fmt.Errorf("list policies: %w", err)
			}
			rows := [][]string{}
			for _, p := range list {
				rows = append(rows, []string{p.ID, p.Name, strings.Join(p.Datacenters, ","), p.Description})
			}
			return printTable(cmd.OutOrStdout(), []string{"ID", "Name", "Datacenters", "Description"}, rows)
		},
	}
	addFormatFlag(cmd, &format)
	return cmd
}

func newACLPolicyUpdateCommand(a *app) *cobra.Command {
	var format, id, name, description, rules string
	cmd := &cobra.Command{
		Use:   "update",
		Short: "Update a policy (PUT /v1/acl/policy/<id>)",
		Long: `Update a policy found by -id (then -name renames it) or by -name; the
-description and -rules given replace the policy's.`,
		Example: "  peerctl acl policy update -name web-read -rules @web.hcl\n  peerctl acl policy update -id 9e1c... -name web-readers",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(cmd, &format); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			path, err := aclPath(cmd, "policy", id, name)
			if err != nil {
				return err
			}
			cur, err := c.Get(cmd.Context(), path, nil)
			if err != nil {
				return fmt.Errorf("read the policy: %w", err)
			}
			var p aclPolicy
			if err := cur.Decode(&p); err != nil {
				return fmt.Errorf("read the policy: %w", err)
			}
			fl := cmd.Flags()
			if id != "" && fl.Changed("name") {
				p.Name = name
			}
			if fl.Changed("description") {
				p.Description = description
			}
			if fl.Changed("rules") {
				if p.Rules, err = readRules(a.env, rules); err != nil {
					return err
				}
			}
			resp, err := c.Put(cmd.Context(), "/v1/acl/policy/"+url.PathEscape(p.ID), nil, p)
			if err != nil {
				return fmt.Errorf("update policy %s: %w", p.ID, err)
			}
			return aclOut(cmd, format, resp, "update the policy", showPolicy)
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "the policy's ID")
	cmd.Flags().StringVar(&name, "name", "", "the policy's name (with -id: its new name)")
	cmd.Flags().StringVar(&description, "description", "", "the new description")
	cmd.Flags().StringVar(&rules, "rules", "", "the new rules, inline or @file")
	addFormatFlag(cmd, &format)
	return cmd
}

func newACLPolicyDeleteCommand(a *app) *cobra.Command {
	var id, name string
	cmd := &cobra.Command{
		Use:     "delete",
		Short:   "Delete a policy by -id or -name",
		Example: "  peerctl acl policy delete -name web-read",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if id == "" && name != "" {
				if id, err = a.aclIDByName(cmd.Context(), c, "policy", name); err != nil {
					return err
				}
			}
			if id == "" {
				return usageErrorf(cmd, "give -id or -name")
			}
			return a.aclDelete(cmd, "/v1/acl/policy/"+url.PathEscape(id), "policy "+id)
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "the policy's ID")
	cmd.Flags().StringVar(&name, "name", "", "the policy's name")
	return cmd
}

// ---- roles ----

type roleFlags struct {
	description                  string
	policyNames, policyIDs       []string
	serviceIdentities, nodeIdent []string
}

func (f *roleFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.description, "description", "", "what the role is for")
	fl.StringArrayVar(&f.policyNames, "policy-name", nil, "link the policy of this name (repeatable)")
	fl.StringArrayVar(&f.policyIDs, "policy-id", nil, "link the policy of this ID (repeatable)")
	fl.StringArrayVar(&f.serviceIdentities, "service-identity", nil, `a service identity, "name" or "name:dc1,dc2" (repeatable)`)
	fl.StringArrayVar(&f.nodeIdent, "node-identity", nil, `a node identity, "node:datacenter" (repeatable)`)
}

func newACLRoleCreateCommand(a *app) *cobra.Command {
	var f roleFlags
	var format, name string
	cmd := &cobra.Command{
		Use:     "create",
		Short:   "Create a role (PUT /v1/acl/role)",
		Example: "  peerctl acl role create -name readers -policy-name web-read -service-identity api",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(cmd, &format); err != nil {
				return err
			}
			if name == "" {
				return usageErrorf(cmd, "-name is required")
			}
			si, ni, err := parseIdentities(cmd, f.serviceIdentities, f.nodeIdent)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			resp, err := c.Put(cmd.Context(), "/v1/acl/role", nil, aclRole{Name: name, Description: f.description,
				Policies: linkList(f.policyIDs, f.policyNames), ServiceIdentities: si, NodeIdentities: ni})
			if err != nil {
				return fmt.Errorf("create role %s: %w", name, err)
			}
			return aclOut(cmd, format, resp, "create the role", showRole)
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&name, "name", "", "the role's name")
	addFormatFlag(cmd, &format)
	return cmd
}

func newACLRoleReadCommand(a *app) *cobra.Command {
	var format, id, name string
	cmd := &cobra.Command{
		Use:     "read",
		Short:   "Read a role by -id or -name",
		Example: "  peerctl acl role read -name readers",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(cmd, &format); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			path, err := aclPath(cmd, "role", id, name)
			if err != nil {
				return err
			}
			resp, err := c.Get(cmd.Context(), path, nil)
			if err != nil {
				return fmt.Errorf("read the role: %w", err)
			}
			return aclOut(cmd, format, resp, "read the role", showRole)
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "the role's ID")
	cmd.Flags().StringVar(&name, "name", "", "the role's name")
	addFormatFlag(cmd, &format)
	return cmd
}

func newACLRoleListCommand(a *app) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List the roles (GET /v1/acl/roles)",
		Example: "  peerctl acl role list",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := a.list(cmd, format, "list roles", "/v1/acl/roles", nil)
			if err != nil || resp == nil {
				return err
			}
			var list []aclRole
			if err := resp.Decode(&list); err != nil {
				return fmt.Errorf("list roles: %w", err)
			}
			rows := [][]string{}
			for _, r := range list {
				var names []string
				for _, p := range r.Policies {
					names = append(names, p.Name)
				}
				rows = append(rows, []string{r.ID, r.Name, strings.Join(names, ","), r.Description})
			}
			return printTable(cmd.OutOrStdout(), []string{"ID", "Name", "Policies", "Description"}, rows)
		},
	}
	addFormatFlag(cmd, &format)
	return cmd
}

func newACLRoleUpdateCommand(a *app) *cobra.Command {
	var f roleFlags
	var format, id, name string
	cmd := &cobra.Command{
		Use:   "update",
		Short: "Update a role (PUT /v1/acl/role/<id>)",
		Long: `Update a role found by -id (then -name renames it) or by -name; the
description, policies and identities given replace the role's.`,
		Example: "  peerctl acl role update -name readers -policy-name web-read -policy-name db-read",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(cmd, &format); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			path, err := aclPath(cmd, "role", id, name)
			if err != nil {
				return err
			}
			cur, err := c.Get(cmd.Context(), path, nil)
			if err != nil {
				return fmt.Errorf("read the role: %w", err)
			}
			var r aclRole
			if err := cur.Decode(&r); err != nil {
				return fmt.Errorf("read the role: %w", err)
			}
			fl := cmd.Flags()
			if id != "" && fl.Changed("name") {
				r.Name = name
			}
			if fl.Changed("description") {
				r.Description = f.description
			}
			if fl.Changed("policy-name") || fl.Changed("policy-id") {
				r.Policies = linkList(f.policyIDs, f.policyNames)
			}
			si, ni, err := parseIdentities(cmd, f.serviceIdentities, f.nodeIdent)
			if err != nil {
				return err
			}
			if fl.Changed("service-identity") {
				r.ServiceIdentities = si
			}
			if fl.Changed("node-identity") {
				r.NodeIdentities = ni
			}
			resp, err := c.Put(cmd.Context(), "/v1/acl/role/"+url.PathEscape(r.ID), nil, r)
			if err != nil {
				return fmt.Errorf("update role %s: %w", r.ID, err)
			}
			return aclOut(cmd, format, resp, "update the role", showRole)
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&id, "id", "", "the role's ID")
	cmd.Flags().StringVar(&name, "name", "", "the role's name (with -id: its new name)")
	addFormatFlag(cmd, &format)
	return cmd
}

func newACLRoleDeleteCommand(a *app) *cobra.Command {
	var id, name string
	cmd := &cobra.Command{
		Use:     "delete",
		Short:   "Delete a role by -id or -name",
		Example: "  peerctl acl role delete -name readers",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if id == "" && name != "" {
				if id, err = a.aclIDByName(cmd.Context(), c, "role", name); err != nil {
					return err
				}
			}
			if id == "" {
				return usageErrorf(cmd, "give -id or -name")
			}
			return a.aclDelete(cmd, "/v1/acl/role/"+url.PathEscape(id), "role "+id)
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "the role's ID")
	cmd.Flags().StringVar(&name, "name", "", "the role's name")
	return cmd
}
