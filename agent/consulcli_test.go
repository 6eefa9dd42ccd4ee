package agent

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// TestConsulCLICommands drives a dev agent with the official client calls
// behind the consul CLI's everyday commands (README, "The consul CLI
// against peerd"): intention list|get|check|match|create|delete, maint,
// info, members, config list of kinds peerd lacks, kv, and operator raft
// list-peers / autopilot state. Each works, or fails with an honest error.
func TestConsulCLICommands(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an agent; skipped with -short")
	}
	_, client := capiStartDevAgent(t, "consulcli-node")
	t.Run("Intentions", func(t *testing.T) { cliTestIntentions(t, client) })
	t.Run("Maint", func(t *testing.T) { cliTestMaint(t, client) })
	t.Run("InfoAndMembers", func(t *testing.T) { cliTestInfoMembers(t, client) })
	t.Run("ConfigKinds", func(t *testing.T) { cliTestConfigKinds(t, client) })
	t.Run("KV", func(t *testing.T) { cliTestKV(t, client) })
	t.Run("Operator", func(t *testing.T) { cliTestOperator(t, client) })
}

func cliTestIntentions(t *testing.T, c *api.Client) {
	cn := c.Connect()
	// A peer source written as a config entry, as `consul config write`.
	if _, _, err := c.ConfigEntries().Set(&api.ServiceIntentionsConfigEntry{
		Kind: api.ServiceIntentions, Name: "db",
		Sources: []*api.SourceIntention{{Name: "frontend", Peer: "dc2-peer", Action: api.IntentionActionAllow}},
	}, nil); err != nil {
		t.Fatalf("write the db entry: %v", err)
	}
	// consul intention create web db
	//lint:ignore SA1019 the consul CLI (intention create, and the ID-based legacy calls) still uses it: what it gets is tested
	if _, _, err := cn.IntentionCreate(&api.Intention{SourceName: "web", DestinationName: "db",
		SourceType: api.IntentionSourceConsul, Action: api.IntentionActionAllow}, nil); err != nil {
		t.Fatalf("create web => db: %v", err)
	}
	//lint:ignore SA1019 the consul CLI (intention create, and the ID-based legacy calls) still uses it: what it gets is tested
	_, _, err := cn.IntentionCreate(&api.Intention{SourceName: "web", DestinationName: "db", Action: api.IntentionActionDeny}, nil)
	if err == nil || !strings.Contains(err.Error(), "duplicate intention found") {
		t.Fatalf("create web => db again: got %v, want duplicate intention found", err)
	}
	// PUT .../exact, what `consul intention create -replace` means.
	if _, err := cn.IntentionUpsert(&api.Intention{SourceName: "api", DestinationName: "db",
		Action: api.IntentionActionDeny, Description: "no direct reads"}, nil); err != nil {
		t.Fatalf("upsert api => db: %v", err)
	}
	if _, err := cn.IntentionUpsert(&api.Intention{SourceName: "*", DestinationName: "db", Action: api.IntentionActionDeny}, nil); err != nil {
		t.Fatalf("upsert * => db: %v", err)
	}

	// consul intention list
	list, _, err := cn.Intentions(nil)
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	var got []string
	for _, ixn := range list {
		got = append(got, fmt.Sprintf("%s@%s=>%s:%s:%d", ixn.SourceName, ixn.SourcePeer, ixn.DestinationName, ixn.Action, ixn.Precedence))
	}
	want := []string{"api@=>db:deny:9", "frontend@dc2-peer=>db:allow:9", "web@=>db:allow:9", "*@=>db:deny:8"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("list: got %v, want %v", got, want)
	}
	if list[0].ID != "" || list[0].Description != "no direct reads" || list[0].SourceNS != "default" || list[0].ModifyIndex == 0 {
		t.Errorf("list: got %+v, want no ID, the description, namespace default and the entry's index", list[0])
	}

	// consul intention get web db
	ixn, _, err := cn.IntentionGetExact("web", "db", nil)
	if err != nil || ixn == nil || ixn.Action != api.IntentionActionAllow || ixn.String() != "web => db (allow)" {
		t.Fatalf("get web db: got %v (%v), want web => db (allow)", ixn, err)
	}
	if ixn, _, err := cn.IntentionGetExact("nope", "db", nil); ixn != nil || err != nil {
		t.Fatalf("get nope db: got %v, %v; want not found (nil, nil)", ixn, err)
	}

	// consul intention check
	for _, tt := range []struct {
		src, dst string
		want     bool
	}{{"web", "db", true}, {"api", "db", false}, {"other", "db", false}, {"web", "nothing-for-it", false}} {
		allowed, _, err := cn.IntentionCheck(&api.IntentionCheck{Source: tt.src, Destination: tt.dst, SourceType: api.IntentionSourceConsul}, nil)
		if err != nil || allowed != tt.want {
			t.Errorf("check %s => %s: got %v (%v), want %v", tt.src, tt.dst, allowed, err, tt.want)
		}
	}
	// An intention with L7 permissions denies at the connection level, as
	// Consul's check does.
	if _, _, err := c.ConfigEntries().Set(&api.ServiceIntentionsConfigEntry{
		Kind: api.ServiceIntentions, Name: "l7",
		Sources: []*api.SourceIntention{{Name: "web", Permissions: []*api.IntentionPermission{{
			Action: api.IntentionActionAllow, HTTP: &api.IntentionHTTPPermission{PathPrefix: "/"}}}}},
	}, nil); err != nil {
		t.Fatalf("write the l7 entry: %v", err)
	}
	if allowed, _, err := cn.IntentionCheck(&api.IntentionCheck{Source: "web", Destination: "l7"}, nil); err != nil || allowed {
		t.Errorf("check web => l7 (L7 permissions): got %v (%v), want false", allowed, err)
	}
	if _, _, err := cn.IntentionCheck(&api.IntentionCheck{Source: "web", Destination: "db", SourceType: "other"}, nil); err == nil || !strings.Contains(err.Error(), "source-type") {
		t.Errorf("check with source-type other: got %v, want an error naming source-type", err)
	}

	// consul intention match
	m, _, err := cn.IntentionMatch(&api.IntentionMatch{By: api.IntentionMatchDestination, Names: []string{"db", "l7"}}, nil)
	if err != nil || len(m["db"]) != 4 || len(m["l7"]) != 1 || m["l7"][0].String() != "web => l7 (1 permission)" {
		t.Fatalf("match by destination: got %v (%v), want 4 for db and web => l7", m, err)
	}
	m, _, err = cn.IntentionMatch(&api.IntentionMatch{By: api.IntentionMatchSource, Names: []string{"web"}}, nil)
	if err != nil || len(m["web"]) != 3 { // web => db, web => l7, * => db
		t.Fatalf("match by source web: got %v (%v), want 3", m["web"], err)
	}
	if m["web"][len(m["web"])-1].SourceName != "*" {
		t.Errorf("match by source web: got %v, want the wildcard source last (lowest precedence)", m["web"])
	}
	if _, _, err := cn.IntentionMatch(&api.IntentionMatch{By: "sideways", Names: []string{"web"}}, nil); err == nil || !strings.Contains(err.Error(), "by=source") {
		t.Errorf("match by sideways: got %v, want an error naming by=source", err)
	}

	// Bad bodies are refused with the field and the fix.
	for _, tt := range []struct {
		ixn  *api.Intention
		want string
	}{
		{&api.Intention{SourceName: "x", DestinationName: "db", Action: "maybe"}, "Action"},
		{&api.Intention{SourceName: "x", DestinationName: "db", Action: api.IntentionActionAllow, Meta: map[string]string{"k": "v"}}, "Meta"},
		{&api.Intention{SourceName: "x", DestinationNS: "other", DestinationName: "db", Action: api.IntentionActionAllow}, "namespaces"},
	} {
		if _, err := cn.IntentionUpsert(tt.ixn, nil); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("upsert %v: got %v, want an error naming %s", tt.ixn, err, tt.want)
		}
	}

	// The legacy ID-based endpoints: config-entry intentions have no ID.
	//lint:ignore SA1019 the consul CLI (intention create, and the ID-based legacy calls) still uses it: what it gets is tested
	if ixn, _, err := cn.IntentionGet("0b3f0ac9-0b0b-4f2a-9bb0-8a2a6d1f3c11", nil); ixn != nil || err != nil {
		t.Errorf("get by ID: got %v, %v; want not found", ixn, err)
	}
	//lint:ignore SA1019 the consul CLI (intention create, and the ID-based legacy calls) still uses it: what it gets is tested
	if _, err := cn.IntentionDelete("0b3f0ac9-0b0b-4f2a-9bb0-8a2a6d1f3c11", nil); err == nil || !strings.Contains(err.Error(), "have no IDs") {
		t.Errorf("delete by ID: got %v, want an error saying intentions have no IDs", err)
	}
	// `consul intention create -replace` updates by the ID it read: "".
	//lint:ignore SA1019 the consul CLI (intention create, and the ID-based legacy calls) still uses it: what it gets is tested
	if _, err := cn.IntentionUpdate(&api.Intention{SourceName: "web", DestinationName: "db", Action: api.IntentionActionDeny}, nil); err == nil || !strings.Contains(err.Error(), "/v1/connect/intentions/exact") {
		t.Errorf("update with no ID: got %v, want an error naming the exact API", err)
	}

	// consul intention delete web db: the entry keeps its other sources.
	if _, err := cn.IntentionDeleteExact("web", "db", nil); err != nil {
		t.Fatalf("delete web db: %v", err)
	}
	if _, err := cn.IntentionDeleteExact("web", "db", nil); err == nil || !strings.Contains(err.Error(), "Intention not found") {
		t.Errorf("delete web db again: got %v, want Intention not found", err)
	}
	entry, _, err := c.ConfigEntries().Get(api.ServiceIntentions, "db", nil)
	if err != nil {
		t.Fatalf("read the db entry: %v", err)
	}
	var names []string
	for _, src := range entry.(*api.ServiceIntentionsConfigEntry).Sources {
		names = append(names, src.Name+"@"+src.Peer)
	}
	if strings.Join(names, " ") != "frontend@dc2-peer api@ *@" {
		t.Errorf("db entry sources after delete: got %v, want frontend@dc2-peer api@ *@", names)
	}
	// Deleting the last source of an entry deletes the entry.
	if _, err := cn.IntentionDeleteExact("web", "l7", nil); err != nil {
		t.Fatalf("delete web l7: %v", err)
	}
	if _, _, err := c.ConfigEntries().Get(api.ServiceIntentions, "l7", nil); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("l7 entry after deleting its last source: got %v, want 404", err)
	}
}

func cliTestMaint(t *testing.T, c *api.Client) {
	ag := c.Agent()
	if err := ag.ServiceRegister(&api.AgentServiceRegistration{ID: "maint-web", Name: "maint-web", Port: 8080,
		Check: &api.AgentServiceCheck{CheckID: "maint-web-ttl", TTL: "10m", Status: api.HealthPassing}}); err != nil {
		t.Fatalf("register: %v", err)
	}
	healthy := func() int {
		t.Helper()
		out, _, err := c.Health().Service("maint-web", "", true, nil)
		if err != nil {
			t.Fatalf("health: %v", err)
		}
		return len(out)
	}
	capiWaitFor(t, 10*time.Second, "maint-web healthy", func() (bool, string) { n := healthy(); return n == 1, fmt.Sprint(n) })

	// consul maint -enable -service maint-web -reason deploying
	if err := ag.EnableServiceMaintenance("maint-web", "deploying"); err != nil {
		t.Fatalf("enable service maintenance: %v", err)
	}
	capiWaitFor(t, 10*time.Second, "maint-web out of healthy results", func() (bool, string) { n := healthy(); return n == 0, fmt.Sprint(n) })
	checks, err := ag.Checks()
	if err != nil {
		t.Fatal(err)
	}
	mc := checks["_service_maintenance:maint-web"]
	if mc == nil || mc.Status != api.HealthCritical || mc.Notes != "deploying" || mc.ServiceID != "maint-web" {
		t.Fatalf("maintenance check: got %+v, want critical with the reason", mc)
	}
	if err := ag.EnableServiceMaintenance("no-such-service", ""); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("maintenance of an unknown service: got %v, want 404", err)
	}
	if err := ag.DisableServiceMaintenance("maint-web"); err != nil {
		t.Fatalf("disable service maintenance: %v", err)
	}
	capiWaitFor(t, 10*time.Second, "maint-web healthy again", func() (bool, string) { n := healthy(); return n == 1, fmt.Sprint(n) })

	// consul maint -enable (the node): every service on it drops out.
	if err := ag.EnableNodeMaintenance(""); err != nil {
		t.Fatalf("enable node maintenance: %v", err)
	}
	capiWaitFor(t, 10*time.Second, "node maintenance taking maint-web out", func() (bool, string) { n := healthy(); return n == 0, fmt.Sprint(n) })
	checks, _ = ag.Checks()
	if nc := checks["_node_maintenance"]; nc == nil || nc.Status != api.HealthCritical || !strings.Contains(nc.Notes, "no reason was provided") {
		t.Fatalf("node maintenance check: got %+v, want critical with Consul's default note", nc)
	}
	if err := ag.DisableNodeMaintenance(); err != nil {
		t.Fatalf("disable node maintenance: %v", err)
	}
	capiWaitFor(t, 10*time.Second, "maint-web healthy after node maintenance", func() (bool, string) { n := healthy(); return n == 1, fmt.Sprint(n) })
	if err := ag.ServiceDeregister("maint-web"); err != nil {
		t.Fatal(err)
	}
}

func cliTestInfoMembers(t *testing.T, c *api.Client) {
	self, err := c.Agent().Self()
	if err != nil {
		t.Fatalf("self: %v", err)
	}
	stats, ok := self["Stats"]
	if !ok {
		t.Fatal("self: no Stats")
	}
	// consul info prints every section as key = value strings.
	for section, keys := range map[string][]string{
		"agent":    {"services", "checks", "check_ttls", "check_monitors"},
		"build":    {"version"},
		"consul":   {"server", "leader", "leader_addr", "acl", "known_datacenters"},
		"raft":     {"state", "term", "last_log_index", "applied_index", "commit_index", "num_peers", "protocol_version"},
		"serf_lan": {"members", "failed", "left", "health_score", "encrypted"},
		"runtime":  {"os", "arch", "version", "cpu_count", "goroutines", "max_procs"},
	} {
		sec, ok := stats[section].(map[string]any)
		if !ok {
			t.Errorf("Stats.%s: got %T, want an object", section, stats[section])
			continue
		}
		for _, k := range keys {
			if _, ok := sec[k].(string); !ok {
				t.Errorf("Stats.%s.%s: got %v (%T), want a string", section, k, sec[k], sec[k])
			}
		}
	}
	raft := stats["raft"].(map[string]any)
	serf := stats["serf_lan"].(map[string]any)
	consul := stats["consul"].(map[string]any)
	if raft["state"] != "Leader" || serf["members"] != "1" || consul["leader"] != "true" || consul["server"] != "true" {
		t.Errorf("Stats: raft.state %v, serf_lan.members %v, consul.leader %v, consul.server %v; want Leader, 1, true, true",
			raft["state"], serf["members"], consul["leader"], consul["server"])
	}

	// consul members: the Build and Protocol columns.
	members, err := c.Agent().Members(false)
	if err != nil || len(members) != 1 {
		t.Fatalf("members: got %v (%v), want 1", members, err)
	}
	tags := members[0].Tags
	if tags["vsn"] != "2" || tags["vsn_min"] != "2" || tags["vsn_max"] != "3" || tags["role"] != "consul" || tags["raft_vsn"] != "3" {
		t.Errorf("member tags: got %v, want vsn 2 (min 2, max 3), role consul, raft_vsn 3", tags)
	}
}

func cliTestConfigKinds(t *testing.T, c *api.Client) {
	ce := c.ConfigEntries()
	for _, kind := range []string{api.IngressGateway, api.TerminatingGateway, api.APIGateway, api.SamenessGroup, api.JWTProvider} {
		entries, _, err := ce.List(kind, nil)
		if err != nil || len(entries) != 0 {
			t.Errorf("config list -kind %s: got %v (%v), want an empty list", kind, entries, err)
		}
	}
	if _, _, err := ce.Get(api.IngressGateway, "gw", nil); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("config read ingress-gateway gw: got %v, want 404", err)
	}
	if _, _, err := ce.List("no-such-kind", nil); err == nil || !strings.Contains(err.Error(), "invalid config entry kind: no-such-kind") {
		t.Errorf("config list -kind no-such-kind: got %v, want Consul's invalid config entry kind", err)
	}
}

func cliTestKV(t *testing.T, c *api.Client) {
	kv := c.KV()
	if p, _, err := kv.Get("a/key", nil); err == nil || !strings.Contains(err.Error(), "no KV store") {
		t.Errorf("kv get: got %v, %v; want an error saying peerd has no KV store (not a missing key)", p, err)
	}
	if _, _, err := kv.List("a/", nil); err == nil || !strings.Contains(err.Error(), "501") {
		t.Errorf("kv get -recurse: got %v, want 501", err)
	}
	if _, err := kv.Put(&api.KVPair{Key: "a/key", Value: []byte("v")}, nil); err == nil || !strings.Contains(err.Error(), "501") {
		t.Errorf("kv put: got %v, want 501", err)
	}
	if _, err := kv.Delete("a/key", nil); err == nil || !strings.Contains(err.Error(), "501") {
		t.Errorf("kv delete: got %v, want 501", err)
	}
}

func cliTestOperator(t *testing.T, c *api.Client) {
	op := c.Operator()
	conf, err := op.RaftGetConfiguration(nil)
	if err != nil || len(conf.Servers) != 1 {
		t.Fatalf("raft list-peers: got %+v (%v), want one server", conf, err)
	}
	s := conf.Servers[0]
	if !s.Leader || !s.Voter || s.Node != "consulcli-node" || s.ProtocolVersion != "3" || s.Address == "" || s.ID == "" {
		t.Errorf("raft list-peers: got %+v, want the leader, a voter, node consulcli-node, raft protocol 3", s)
	}
	st, err := op.AutopilotState(nil)
	if err != nil || !st.Healthy || st.Leader != s.ID || len(st.Servers) != 1 || len(st.Voters) != 1 {
		t.Fatalf("autopilot state: got %+v (%v), want healthy with this server the leader and the voter", st, err)
	}
	if srv := st.Servers[s.ID]; srv.Name != "consulcli-node" || srv.Status != "leader" || srv.NodeStatus != "alive" {
		t.Errorf("autopilot state server: got %+v, want consulcli-node, leader, alive", srv)
	}
}
