package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/peerd/peerd/internal/testutil"
)

// TestConsulAPIClient drives a dev agent with the official Consul API client
// (github.com/hashicorp/consul/api) and checks that each call means what it
// means against Consul: same paths, bodies, status codes, indexes and
// blocking behaviour. The sub-tests share one agent and run in order.
func TestConsulAPIClient(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an agent and waits on blocking queries; skipped with -short")
	}
	a, client := capiStartDevAgent(t, "consulapi-node")
	// The targets of web-1's HTTP and TCP checks live as long as the agent,
	// so the checks keep passing in every sub-test.
	httpTarget := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(httpTarget.Close)
	tcpTarget, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen for the TCP check: %v", err)
	}
	t.Cleanup(func() { _ = tcpTarget.Close() })
	go func() {
		for {
			conn, err := tcpTarget.Accept()
			if err != nil {
				return
			}
			_ = conn.Close()
		}
	}()

	t.Run("Agent", func(t *testing.T) { capiTestAgentEndpoints(t, a, client, httpTarget.URL, tcpTarget.Addr().String()) })
	t.Run("Catalog", func(t *testing.T) { capiTestCatalogEndpoints(t, client) })
	t.Run("Health", func(t *testing.T) { capiTestHealthEndpoints(t, client) })
	t.Run("BlockingQueries", func(t *testing.T) { capiTestBlockingQueries(t, client) })
	t.Run("ConfigEntries", func(t *testing.T) { capiTestConfigEntries(t, client) })
	t.Run("Status", func(t *testing.T) { capiTestStatusEndpoints(t, client) })
	t.Run("BadInput", func(t *testing.T) { capiTestBadInput(t, a) })
}

// capiStartDevAgent starts an in-memory single-server agent, waits until it has
// a leader, and returns it with an official client pointed at it.
func capiStartDevAgent(t *testing.T, name string) (*Agent, *api.Client) {
	t.Helper()
	cfg := DevConfig()
	cfg.NodeName = name
	cfg.LogLevel = "warn"
	a, err := startAgent(cfg)
	if err != nil {
		t.Fatalf("start agent: %v", err)
	}
	t.Cleanup(func() {
		if err := a.Close(context.Background()); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	client, err := api.NewClient(&api.Config{Address: a.HTTPAddr()})
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	capiWaitFor(t, 10*time.Second, "a leader at /v1/status/leader", func() (bool, string) {
		leader, err := client.Status().Leader()
		return err == nil && leader != "", fmt.Sprintf("leader %q, err %v", leader, err)
	})
	// The agent's first anti-entropy sync is built before there is a leader
	// and retried until one exists; when it lands after a registration it
	// undoes it (see TestRegistrationSurvivesFirstSync). Wait until a probe
	// registration has stayed in the catalog for a second, so the sub-tests
	// start after that sync.
	probe := &api.AgentServiceRegistration{ID: "startup-probe", Name: "startup-probe"}
	var since time.Time
	capiWaitFor(t, 15*time.Second, "a registration that stays in the catalog", func() (bool, string) {
		svcs, _, readErr := client.Catalog().Service(probe.Name, "", nil)
		if readErr != nil || len(svcs) == 0 {
			since = time.Time{}
			if err := client.Agent().ServiceRegister(probe); err != nil {
				return false, err.Error()
			}
			return false, fmt.Sprintf("probe not in the catalog (read err %v)", readErr)
		}
		if since.IsZero() {
			since = time.Now()
		}
		return time.Since(since) > time.Second, "probe in the catalog for " + time.Since(since).String()
	})
	if err := client.Agent().ServiceDeregister(probe.ID); err != nil {
		t.Fatalf("deregister the probe: %v", err)
	}
	// The agent's own node (and its serfHealth check) is in the catalog once
	// the leader has reconciled it.
	capiWaitFor(t, 10*time.Second, "the agent's node in the catalog", func() (bool, string) {
		checks, _, err := client.Health().Node(name, nil)
		if err != nil {
			return false, err.Error()
		}
		for _, c := range checks {
			if c.CheckID == "serfHealth" && c.Status == api.HealthPassing {
				return true, ""
			}
		}
		return false, fmt.Sprintf("node checks %v", capiCheckStatuses(checks))
	})
	return a, client
}

// capiWaitFor is testutil.Eventually for a cond that says what it last saw
// when it does not hold.
func capiWaitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	testutil.Eventually(t, timeout, what, func() error {
		if ok, last := cond(); !ok {
			return fmt.Errorf("last: %s", last)
		}
		return nil
	})
}

func capiCheckStatuses(checks api.HealthChecks) map[string]string {
	out := map[string]string{}
	for _, c := range checks {
		out[c.CheckID] = c.Status
	}
	return out
}

// capiStatusCode returns the HTTP status of an error from the official client,
// or 0 when it is not a StatusError.
func capiStatusCode(err error) int {
	var se api.StatusError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

// capiServiceStatus returns the aggregated status of one instance as
// /v1/health/service sees it, or "" when the instance is not listed.
func capiServiceStatus(t *testing.T, c *api.Client, service, id string) string {
	t.Helper()
	entries, _, err := c.Health().Service(service, "", false, nil)
	if err != nil {
		t.Fatalf("Health().Service(%q): %v", service, err)
	}
	for _, e := range entries {
		if e.Service.ID == id {
			return e.Checks.AggregatedStatus()
		}
	}
	return ""
}

func capiTestAgentEndpoints(t *testing.T, a *Agent, c *api.Client, httpURL, tcpAddr string) {

	upstream := api.Upstream{DestinationPeer: "dc2-peer", DestinationName: "db", LocalBindPort: 9191}
	web := &api.AgentServiceRegistration{
		ID:      "web-1",
		Name:    "web",
		Tags:    []string{"v1", "primary"},
		Address: "127.0.0.1",
		Port:    8080,
		Meta:    map[string]string{"version": "1"},
		Weights: &api.AgentWeights{Passing: 10, Warning: 2},
		Checks: api.AgentServiceChecks{
			{CheckID: "web-ttl", Name: "web TTL", TTL: "30s"},
			{CheckID: "web-http", Name: "web HTTP", HTTP: httpURL, Interval: "200ms", Timeout: "1s"},
			{CheckID: "web-tcp", Name: "web TCP", TCP: tcpAddr, Interval: "200ms", Timeout: "1s"},
		},
		Connect: &api.AgentServiceConnect{
			SidecarService: &api.AgentServiceRegistration{
				Proxy: &api.AgentServiceConnectProxyConfig{Upstreams: []api.Upstream{upstream}},
			},
		},
	}
	proxy := &api.AgentServiceRegistration{
		Kind: api.ServiceKindConnectProxy,
		ID:   "web-proxy-1",
		Name: "web-proxy",
		Port: 21000,
		Proxy: &api.AgentServiceConnectProxyConfig{
			DestinationServiceName: "web",
			DestinationServiceID:   "web-1",
			LocalServiceAddress:    "127.0.0.1",
			LocalServicePort:       8080,
			Upstreams:              []api.Upstream{upstream},
		},
	}

	t.Run("ServiceRegister", func(t *testing.T) {
		for _, reg := range []*api.AgentServiceRegistration{web, proxy} {
			if err := c.Agent().ServiceRegister(reg); err != nil {
				t.Fatalf("ServiceRegister(%s): %v", reg.ID, err)
			}
		}
	})

	t.Run("Services", func(t *testing.T) {
		svcs, err := c.Agent().Services()
		if err != nil {
			t.Fatalf("Services: %v", err)
		}
		got, ok := svcs["web-1"]
		if !ok {
			t.Fatalf("Services: got IDs %v, want web-1 among them", slices.Sorted(maps.Keys(svcs)))
		}
		capiCheckAgentService(t, got)
		p, ok := svcs["web-proxy-1"]
		if !ok {
			t.Fatalf("Services: got IDs %v, want web-proxy-1 among them", slices.Sorted(maps.Keys(svcs)))
		}
		if p.Kind != api.ServiceKindConnectProxy {
			t.Errorf("web-proxy-1 Kind: got %q, want %q", p.Kind, api.ServiceKindConnectProxy)
		}
		if p.Proxy == nil {
			t.Fatalf("web-proxy-1 Proxy: got nil, want the proxy config")
		}
		if p.Proxy.DestinationServiceName != "web" || p.Proxy.DestinationServiceID != "web-1" ||
			p.Proxy.LocalServiceAddress != "127.0.0.1" || p.Proxy.LocalServicePort != 8080 {
			t.Errorf("web-proxy-1 Proxy: got %+v, want destination web/web-1 at 127.0.0.1:8080", p.Proxy)
		}
		if len(p.Proxy.Upstreams) != 1 || p.Proxy.Upstreams[0].DestinationPeer != "dc2-peer" ||
			p.Proxy.Upstreams[0].DestinationName != "db" || p.Proxy.Upstreams[0].LocalBindPort != 9191 {
			t.Errorf("web-proxy-1 Proxy.Upstreams: got %+v, want db from peer dc2-peer on port 9191", p.Proxy.Upstreams)
		}
	})

	t.Run("Service", func(t *testing.T) {
		got, meta, err := c.Agent().Service("web-1", nil)
		if err != nil {
			t.Fatalf("Service(web-1): %v", err)
		}
		capiCheckAgentService(t, got)
		if got.ContentHash == "" {
			t.Errorf("ContentHash: got empty, want the hash blocking clients use")
		}
		if meta == nil || meta.LastContentHash != got.ContentHash {
			t.Errorf("X-Consul-ContentHash: got %+v, want %q", meta, got.ContentHash)
		}
		_, _, err = c.Agent().Service("no-such-service", nil)
		if code := capiStatusCode(err); code != http.StatusNotFound {
			t.Errorf("Service(no-such-service): got %v (status %d), want status 404", err, code)
		}
	})

	t.Run("Checks", func(t *testing.T) {
		checks, err := c.Agent().Checks()
		if err != nil {
			t.Fatalf("Checks: %v", err)
		}
		tests := []struct{ id, typ string }{{"web-ttl", "ttl"}, {"web-http", "http"}, {"web-tcp", "tcp"}}
		for _, tt := range tests {
			chk, ok := checks[tt.id]
			if !ok {
				t.Errorf("Checks: got IDs %v, want %s among them", slices.Sorted(maps.Keys(checks)), tt.id)
				continue
			}
			if chk.ServiceID != "web-1" || chk.ServiceName != "web" {
				t.Errorf("check %s: got service %q/%q, want web-1/web", tt.id, chk.ServiceID, chk.ServiceName)
			}
			if chk.Type != tt.typ {
				t.Errorf("check %s Type: got %q, want %q", tt.id, chk.Type, tt.typ)
			}
			if chk.Node != "consulapi-node" {
				t.Errorf("check %s Node: got %q, want consulapi-node", tt.id, chk.Node)
			}
		}
		if chk := checks["web-http"]; chk != nil && chk.Definition.HTTP != httpURL {
			t.Errorf("web-http Definition.HTTP: got %q, want %q", chk.Definition.HTTP, httpURL)
		}
		if chk := checks["web-tcp"]; chk != nil && chk.Definition.TCP != tcpAddr {
			t.Errorf("web-tcp Definition.TCP: got %q, want %q", chk.Definition.TCP, tcpAddr)
		}
		if chk := checks["web-ttl"]; chk != nil && chk.Status != api.HealthCritical {
			t.Errorf("web-ttl Status before any update: got %q, want critical (Consul's initial TTL status)", chk.Status)
		}
		// The HTTP and TCP checks run on their own and pass.
		capiWaitFor(t, 10*time.Second, "web-http and web-tcp passing", func() (bool, string) {
			checks, err := c.Agent().Checks()
			if err != nil {
				return false, err.Error()
			}
			h, p := checks["web-http"], checks["web-tcp"]
			return h != nil && p != nil && h.Status == api.HealthPassing && p.Status == api.HealthPassing,
				fmt.Sprintf("http %+v, tcp %+v", h, p)
		})
	})

	t.Run("TTL", func(t *testing.T) {
		tests := []struct {
			name   string
			update func() error
			want   string
		}{
			{"PassTTL", func() error { return c.Agent().PassTTL("web-ttl", "all good") }, api.HealthPassing},
			{"WarnTTL", func() error { return c.Agent().WarnTTL("web-ttl", "slow") }, api.HealthWarning},
			{"FailTTL", func() error { return c.Agent().FailTTL("web-ttl", "down") }, api.HealthCritical},
			{"UpdateTTL passing", func() error { return c.Agent().UpdateTTL("web-ttl", "back", api.HealthPassing) }, api.HealthPassing},
			{"UpdateTTL warning", func() error { return c.Agent().UpdateTTL("web-ttl", "meh", "warn") }, api.HealthWarning},
			{"UpdateTTL critical", func() error { return c.Agent().UpdateTTL("web-ttl", "gone", "fail") }, api.HealthCritical},
			{"UpdateTTL pass", func() error { return c.Agent().UpdateTTL("web-ttl", "ok", "pass") }, api.HealthPassing},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if err := tt.update(); err != nil {
					t.Fatalf("update: %v", err)
				}
				capiWaitFor(t, 10*time.Second, "web-1 "+tt.want+" in /v1/health/service/web", func() (bool, string) {
					got := capiServiceStatus(t, c, "web", "web-1")
					return got == tt.want, fmt.Sprintf("got %q, want %q", got, tt.want)
				})
			})
		}
		if err := c.Agent().PassTTL("no-such-check", ""); capiStatusCode(err) != http.StatusNotFound {
			t.Errorf("PassTTL(no-such-check): got %v, want status 404", err)
		}
		if err := c.Agent().UpdateTTL("web-ttl", "", "maintenance"); err == nil {
			t.Errorf("UpdateTTL(maintenance): got nil error, want the client to refuse the status")
		}
	})

	t.Run("CheckRegister", func(t *testing.T) {
		reg := &api.AgentCheckRegistration{
			ID:    "mem",
			Name:  "Memory utilization",
			Notes: "node-level TTL check",
			AgentServiceCheck: api.AgentServiceCheck{
				TTL:    "30s",
				Status: api.HealthPassing,
			},
		}
		if err := c.Agent().CheckRegister(reg); err != nil {
			t.Fatalf("CheckRegister: %v", err)
		}
		checks, err := c.Agent().Checks()
		if err != nil {
			t.Fatalf("Checks: %v", err)
		}
		chk, ok := checks["mem"]
		switch {
		case !ok:
			t.Errorf("Checks after CheckRegister: got IDs %v, want mem among them", slices.Sorted(maps.Keys(checks)))
		case chk.Name != "Memory utilization" || chk.Notes != "node-level TTL check" || chk.ServiceID != "":
			t.Errorf("check mem: got name %q notes %q service %q, want the registered node-level check", chk.Name, chk.Notes, chk.ServiceID)
		case chk.Status != api.HealthPassing:
			t.Errorf("check mem Status: got %q, want passing (the registered initial status)", chk.Status)
		}
		capiWaitFor(t, 10*time.Second, "mem in /v1/health/node", func() (bool, string) {
			hc, _, err := c.Health().Node("consulapi-node", nil)
			if err != nil {
				return false, err.Error()
			}
			_, ok := capiCheckStatuses(hc)["mem"]
			return ok, fmt.Sprintf("node checks %v", capiCheckStatuses(hc))
		})

		svcCheck := &api.AgentCheckRegistration{
			ID: "web-extra", Name: "web extra", ServiceID: "web-1",
			AgentServiceCheck: api.AgentServiceCheck{TTL: "30s"},
		}
		if err := c.Agent().CheckRegister(svcCheck); err != nil {
			t.Fatalf("CheckRegister(web-extra): %v", err)
		}
		checks, err = c.Agent().Checks()
		if err != nil {
			t.Fatalf("Checks: %v", err)
		}
		if got := checks["web-extra"]; got == nil || got.ServiceID != "web-1" || got.ServiceName != "web" {
			t.Errorf("web-extra: got %+v, want a check bound to web-1/web", got)
		}

		for _, id := range []string{"mem", "web-extra"} {
			if err := c.Agent().CheckDeregister(id); err != nil {
				t.Fatalf("CheckDeregister(%s): %v", id, err)
			}
		}
		checks, err = c.Agent().Checks()
		if err != nil {
			t.Fatalf("Checks: %v", err)
		}
		for _, id := range []string{"mem", "web-extra"} {
			if _, ok := checks[id]; ok {
				t.Errorf("Checks after CheckDeregister(%s): still listed", id)
			}
		}
		if err := c.Agent().CheckDeregister("mem"); capiStatusCode(err) != http.StatusNotFound {
			t.Errorf("CheckDeregister(mem) twice: got %v, want status 404", err)
		}
	})

	t.Run("ServiceDeregister", func(t *testing.T) {
		if err := c.Agent().ServiceDeregister("web-proxy-1"); err != nil {
			t.Fatalf("ServiceDeregister(web-proxy-1): %v", err)
		}
		svcs, err := c.Agent().Services()
		if err != nil {
			t.Fatalf("Services: %v", err)
		}
		if _, ok := svcs["web-proxy-1"]; ok {
			t.Errorf("Services after ServiceDeregister: got web-proxy-1, want it gone")
		}
		if _, ok := svcs["web-1"]; !ok {
			t.Errorf("Services after ServiceDeregister(web-proxy-1): web-1 is gone too, want it kept")
		}
		cat, _, err := c.Catalog().Service("web-proxy", "", nil)
		if err != nil {
			t.Fatalf("Catalog().Service(web-proxy): %v", err)
		}
		if len(cat) != 0 {
			t.Errorf("Catalog().Service(web-proxy) after deregister: got %d instances, want 0", len(cat))
		}
		err = c.Agent().ServiceDeregister("web-proxy-1")
		if code := capiStatusCode(err); code != http.StatusNotFound {
			t.Errorf("ServiceDeregister(web-proxy-1) twice: got %v (status %d), want status 404", err, code)
		}
	})

	t.Run("Members", func(t *testing.T) {
		members, err := c.Agent().Members(false)
		if err != nil {
			t.Fatalf("Members: %v", err)
		}
		if len(members) != 1 {
			t.Fatalf("Members: got %d, want 1 (the dev server)", len(members))
		}
		m := members[0]
		if m.Name != "consulapi-node" {
			t.Errorf("member Name: got %q, want consulapi-node", m.Name)
		}
		if m.Status != 1 {
			t.Errorf("member Status: got %d, want 1 (serf's StatusAlive)", m.Status)
		}
		if m.Tags["role"] != "consul" || m.Tags["dc"] != "dc1" {
			t.Errorf("member Tags: got %v, want role=consul dc=dc1", m.Tags)
		}
		gossip := a.Cluster().GossipAddr()
		if got := net.JoinHostPort(m.Addr, fmt.Sprint(m.Port)); got != gossip {
			t.Errorf("member address: got %s, want the gossip address %s", got, gossip)
		}
	})

	t.Run("Self", func(t *testing.T) {
		name, err := c.Agent().NodeName()
		if err != nil {
			t.Fatalf("NodeName: %v", err)
		}
		if name != "consulapi-node" {
			t.Errorf("NodeName: got %q, want consulapi-node", name)
		}
		self, err := c.Agent().Self()
		if err != nil {
			t.Fatalf("Self: %v", err)
		}
		if got := self["Config"]["Datacenter"]; got != "dc1" {
			t.Errorf("Self Config.Datacenter: got %v, want dc1", got)
		}
		if got := self["Config"]["Server"]; got != true {
			t.Errorf("Self Config.Server: got %v, want true", got)
		}
		if got := self["Member"]["Name"]; got != "consulapi-node" {
			t.Errorf("Self Member.Name: got %v, want consulapi-node", got)
		}
	})
}

// capiCheckAgentService compares what the agent returns for web-1 with what
// capiTestAgentEndpoints registered.
func capiCheckAgentService(t *testing.T, got *api.AgentService) {
	t.Helper()
	if got.ID != "web-1" || got.Service != "web" {
		t.Errorf("ID/Service: got %q/%q, want web-1/web", got.ID, got.Service)
	}
	if !slices.Equal(got.Tags, []string{"v1", "primary"}) {
		t.Errorf("Tags: got %q, want [v1 primary]", got.Tags)
	}
	if got.Address != "127.0.0.1" || got.Port != 8080 {
		t.Errorf("Address:Port: got %s:%d, want 127.0.0.1:8080", got.Address, got.Port)
	}
	if got.Meta["version"] != "1" || len(got.Meta) != 1 {
		t.Errorf("Meta: got %v, want map[version:1]", got.Meta)
	}
	if got.Weights != (api.AgentWeights{Passing: 10, Warning: 2}) {
		t.Errorf("Weights: got %+v, want {Passing:10 Warning:2}", got.Weights)
	}
	if got.Datacenter != "dc1" {
		t.Errorf("Datacenter: got %q, want dc1", got.Datacenter)
	}
	// peerd keeps the sidecar definition on the service (Consul instead
	// registers a separate "<id>-sidecar-proxy" service from it); either way
	// the upstream must survive the round trip.
	if got.Connect == nil || got.Connect.SidecarService == nil || got.Connect.SidecarService.Proxy == nil {
		t.Fatalf("Connect.SidecarService.Proxy: got %+v, want the registered sidecar proxy", got.Connect)
	}
	ups := got.Connect.SidecarService.Proxy.Upstreams
	want := api.Upstream{DestinationPeer: "dc2-peer", DestinationName: "db", LocalBindPort: 9191}
	if len(ups) != 1 || ups[0].DestinationPeer != want.DestinationPeer || ups[0].DestinationName != want.DestinationName ||
		ups[0].LocalBindPort != want.LocalBindPort {
		t.Errorf("sidecar Upstreams: got %+v, want [%+v]", ups, want)
	}
}

func capiTestCatalogEndpoints(t *testing.T, c *api.Client) {
	t.Run("Datacenters", func(t *testing.T) {
		dcs, err := c.Catalog().Datacenters()
		if err != nil {
			t.Fatalf("Datacenters: %v", err)
		}
		if !slices.Equal(dcs, []string{"dc1"}) {
			t.Errorf("Datacenters: got %q, want [dc1]", dcs)
		}
	})

	t.Run("Services", func(t *testing.T) {
		capiWaitFor(t, 10*time.Second, "web in /v1/catalog/services", func() (bool, string) {
			svcs, meta, err := c.Catalog().Services(nil)
			if err != nil {
				return false, err.Error()
			}
			if meta.LastIndex == 0 {
				return false, "X-Consul-Index 0"
			}
			tags, ok := svcs["web"]
			slices.Sort(tags)
			return ok && slices.Equal(tags, []string{"primary", "v1"}), fmt.Sprintf("services %v", svcs)
		})
	})

	t.Run("Service", func(t *testing.T) {
		tests := []struct {
			tag  string
			want int
		}{{"", 1}, {"primary", 1}, {"v1", 1}, {"canary", 0}}
		for _, tt := range tests {
			t.Run("tag="+tt.tag, func(t *testing.T) {
				svcs, meta, err := c.Catalog().Service("web", tt.tag, nil)
				if err != nil {
					t.Fatalf("Service: %v", err)
				}
				if len(svcs) != tt.want {
					t.Fatalf("instances: got %d, want %d", len(svcs), tt.want)
				}
				if !meta.KnownLeader || meta.LastIndex == 0 {
					t.Errorf("QueryMeta: got KnownLeader %t LastIndex %d, want true and > 0", meta.KnownLeader, meta.LastIndex)
				}
				if tt.want == 0 {
					return
				}
				s := svcs[0]
				if s.Node != "consulapi-node" || s.ServiceID != "web-1" || s.ServiceName != "web" ||
					s.ServiceAddress != "127.0.0.1" || s.ServicePort != 8080 || s.Datacenter != "dc1" {
					t.Errorf("instance: got node %q id %q name %q at %s:%d dc %q, want consulapi-node web-1 web 127.0.0.1:8080 dc1",
						s.Node, s.ServiceID, s.ServiceName, s.ServiceAddress, s.ServicePort, s.Datacenter)
				}
				if s.ServiceWeights != (api.Weights{Passing: 10, Warning: 2}) {
					t.Errorf("ServiceWeights: got %+v, want {10 2}", s.ServiceWeights)
				}
				if s.ServiceMeta["version"] != "1" {
					t.Errorf("ServiceMeta: got %v, want version=1", s.ServiceMeta)
				}
				if s.CreateIndex == 0 || s.ModifyIndex < s.CreateIndex {
					t.Errorf("indexes: got create %d modify %d, want 0 < create <= modify", s.CreateIndex, s.ModifyIndex)
				}
			})
		}
		none, _, err := c.Catalog().Service("no-such-service", "", nil)
		if err != nil {
			t.Fatalf("Service(no-such-service): %v", err)
		}
		if none == nil || len(none) != 0 {
			t.Errorf("Service(no-such-service): got %v, want an empty list (Consul answers [])", none)
		}
	})

	t.Run("Nodes", func(t *testing.T) {
		nodes, _, err := c.Catalog().Nodes(nil)
		if err != nil {
			t.Fatalf("Nodes: %v", err)
		}
		var names []string
		for _, n := range nodes {
			names = append(names, n.Node)
		}
		if !slices.Contains(names, "consulapi-node") {
			t.Errorf("Nodes: got %q, want consulapi-node among them", names)
		}
	})

	t.Run("Node", func(t *testing.T) {
		n, _, err := c.Catalog().Node("consulapi-node", nil)
		if err != nil {
			t.Fatalf("Node: %v", err)
		}
		if n == nil || n.Node == nil {
			t.Fatalf("Node: got %+v, want the node and its services", n)
		}
		if n.Node.Node != "consulapi-node" || n.Node.Address != "127.0.0.1" {
			t.Errorf("Node: got %q at %q, want consulapi-node at 127.0.0.1", n.Node.Node, n.Node.Address)
		}
		if s, ok := n.Services["web-1"]; !ok || s.Service != "web" || s.Port != 8080 {
			t.Errorf("Node.Services[web-1]: got %+v, want web on port 8080", s)
		}
		missing, _, err := c.Catalog().Node("no-such-node", nil)
		if err != nil {
			t.Fatalf("Node(no-such-node): %v", err)
		}
		if missing != nil {
			t.Errorf("Node(no-such-node): got %+v, want nil (Consul answers null)", missing)
		}
	})

	t.Run("RegisterDeregister", func(t *testing.T) {
		reg := &api.CatalogRegistration{
			Node:     "ext-node-1",
			Address:  "10.1.2.3",
			NodeMeta: map[string]string{"external-node": "true"},
			Service: &api.AgentService{
				ID: "ext-db-1", Service: "ext-db", Tags: []string{"pg"}, Port: 5432, Address: "10.1.2.3",
				Meta: map[string]string{"engine": "postgres"},
			},
			Check: &api.AgentCheck{
				Node: "ext-node-1", CheckID: "ext-db-alive", Name: "ext db alive", Status: api.HealthPassing,
				ServiceID: "ext-db-1",
			},
		}
		wm, err := c.Catalog().Register(reg, nil)
		if err != nil {
			t.Fatalf("Register: %v", err)
		}
		if wm == nil {
			t.Fatalf("Register: got nil WriteMeta")
		}
		svcs, _, err := c.Catalog().Service("ext-db", "", nil)
		if err != nil {
			t.Fatalf("Service(ext-db): %v", err)
		}
		if len(svcs) != 1 || svcs[0].Node != "ext-node-1" || svcs[0].Address != "10.1.2.3" ||
			svcs[0].ServicePort != 5432 || svcs[0].NodeMeta["external-node"] != "true" {
			t.Fatalf("Service(ext-db): got %+v, want one instance on ext-node-1 (10.1.2.3) port 5432", svcs)
		}
		entries, _, err := c.Health().Service("ext-db", "", true, nil)
		if err != nil {
			t.Fatalf("Health().Service(ext-db): %v", err)
		}
		if len(entries) != 1 || entries[0].Checks.AggregatedStatus() != api.HealthPassing {
			t.Errorf("Health().Service(ext-db, passing): got %d entries, want 1 passing", len(entries))
		}
		byMeta, _, err := c.Catalog().Nodes(&api.QueryOptions{NodeMeta: map[string]string{"external-node": "true"}})
		if err != nil {
			t.Fatalf("Nodes(node-meta): %v", err)
		}
		if len(byMeta) != 1 || byMeta[0].Node != "ext-node-1" {
			t.Errorf("Nodes(node-meta external-node:true): got %d nodes, want only ext-node-1", len(byMeta))
		}

		if _, err := c.Catalog().Deregister(&api.CatalogDeregistration{Node: "ext-node-1", ServiceID: "ext-db-1"}, nil); err != nil {
			t.Fatalf("Deregister(service): %v", err)
		}
		svcs, _, err = c.Catalog().Service("ext-db", "", nil)
		if err != nil {
			t.Fatalf("Service(ext-db): %v", err)
		}
		if len(svcs) != 0 {
			t.Errorf("Service(ext-db) after deregistering it: got %d instances, want 0", len(svcs))
		}
		n, _, err := c.Catalog().Node("ext-node-1", nil)
		if err != nil || n == nil {
			t.Fatalf("Node(ext-node-1) after deregistering its service: got %+v, %v, want the node kept", n, err)
		}
		if _, err := c.Catalog().Deregister(&api.CatalogDeregistration{Node: "ext-node-1"}, nil); err != nil {
			t.Fatalf("Deregister(node): %v", err)
		}
		n, _, err = c.Catalog().Node("ext-node-1", nil)
		if err != nil {
			t.Fatalf("Node(ext-node-1): %v", err)
		}
		if n != nil {
			t.Errorf("Node(ext-node-1) after deregistering it: got %+v, want nil", n.Node)
		}
	})
}

func capiTestHealthEndpoints(t *testing.T, c *api.Client) {
	// web-1 passes (TTL passed at the end of the agent tests); fail its TTL
	// and add a second, passing instance to tell the filters apart.
	if err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: "web-2", Name: "web", Port: 8081, Tags: []string{"v2"},
		Check: &api.AgentServiceCheck{CheckID: "web-2-ttl", TTL: "30s", Status: api.HealthPassing},
	}); err != nil {
		t.Fatalf("ServiceRegister(web-2): %v", err)
	}
	t.Cleanup(func() { _ = c.Agent().ServiceDeregister("web-2") })
	if err := c.Agent().FailTTL("web-ttl", "down for the test"); err != nil {
		t.Fatalf("FailTTL: %v", err)
	}
	capiWaitFor(t, 10*time.Second, "web-1 critical and web-2 passing", func() (bool, string) {
		s1, s2 := capiServiceStatus(t, c, "web", "web-1"), capiServiceStatus(t, c, "web", "web-2")
		return s1 == api.HealthCritical && s2 == api.HealthPassing, fmt.Sprintf("web-1 %q, web-2 %q", s1, s2)
	})

	t.Run("Service", func(t *testing.T) {
		tests := []struct {
			name    string
			tag     string
			passing bool
			want    []string
		}{
			{"all", "", false, []string{"web-1", "web-2"}},
			{"passing only", "", true, []string{"web-2"}},
			{"tag v1", "v1", false, []string{"web-1"}},
			{"tag v1 passing", "v1", true, nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				entries, meta, err := c.Health().Service("web", tt.tag, tt.passing, nil)
				if err != nil {
					t.Fatalf("Health().Service: %v", err)
				}
				var ids []string
				for _, e := range entries {
					ids = append(ids, e.Service.ID)
					if e.Node == nil || e.Node.Node != "consulapi-node" {
						t.Errorf("entry %s Node: got %+v, want consulapi-node", e.Service.ID, e.Node)
					}
					if st := capiCheckStatuses(e.Checks); st["serfHealth"] == "" {
						t.Errorf("entry %s Checks: got %v, want the node's serfHealth included", e.Service.ID, st)
					}
				}
				slices.Sort(ids)
				if !slices.Equal(ids, tt.want) {
					t.Errorf("instances: got %q, want %q", ids, tt.want)
				}
				if meta.LastIndex == 0 {
					t.Errorf("LastIndex: got 0, want > 0")
				}
			})
		}
	})

	t.Run("Checks", func(t *testing.T) {
		checks, _, err := c.Health().Checks("web", nil)
		if err != nil {
			t.Fatalf("Health().Checks: %v", err)
		}
		got := capiCheckStatuses(checks)
		want := map[string]string{
			"web-ttl": api.HealthCritical, "web-http": api.HealthPassing, "web-tcp": api.HealthPassing,
			"web-2-ttl": api.HealthPassing,
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("Health().Checks(web): got %v, want %v (service checks only, no serfHealth)", got, want)
		}
		// peerd has no filter expressions yet: it must refuse them rather
		// than answer unfiltered.
		filtered, _, err := c.Health().Checks("web", &api.QueryOptions{Filter: `Status == "critical"`})
		if code := capiStatusCode(err); code != http.StatusBadRequest || !strings.Contains(err.Error(), "filter") {
			t.Errorf("Health().Checks with ?filter: got %v, %v, want a 400 naming the unsupported filter", capiCheckStatuses(filtered), err)
		}
	})

	t.Run("Node", func(t *testing.T) {
		checks, _, err := c.Health().Node("consulapi-node", nil)
		if err != nil {
			t.Fatalf("Health().Node: %v", err)
		}
		got := capiCheckStatuses(checks)
		for _, id := range []string{"serfHealth", "web-ttl", "web-http", "web-tcp", "web-2-ttl"} {
			if _, ok := got[id]; !ok {
				t.Errorf("Health().Node: got %v, want %s among them", got, id)
			}
		}
		none, _, err := c.Health().Node("no-such-node", nil)
		if err != nil {
			t.Fatalf("Health().Node(no-such-node): %v", err)
		}
		if len(none) != 0 {
			t.Errorf("Health().Node(no-such-node): got %v, want none", capiCheckStatuses(none))
		}
	})

	t.Run("State", func(t *testing.T) {
		tests := []struct {
			state   string
			want    []string
			wantNot []string
		}{
			{"any", []string{"serfHealth", "web-ttl", "web-http", "web-2-ttl"}, nil},
			{api.HealthCritical, []string{"web-ttl"}, []string{"web-http", "serfHealth"}},
			{api.HealthPassing, []string{"serfHealth", "web-http", "web-2-ttl"}, []string{"web-ttl"}},
		}
		for _, tt := range tests {
			t.Run(tt.state, func(t *testing.T) {
				checks, _, err := c.Health().State(tt.state, nil)
				if err != nil {
					t.Fatalf("Health().State(%s): %v", tt.state, err)
				}
				got := capiCheckStatuses(checks)
				for _, id := range tt.want {
					if _, ok := got[id]; !ok {
						t.Errorf("got %v, want %s among them", got, id)
					}
				}
				for _, id := range tt.wantNot {
					if _, ok := got[id]; ok {
						t.Errorf("got %v, want no %s", got, id)
					}
				}
			})
		}
		_, _, err := c.Health().State("bogus", nil)
		if err == nil {
			t.Errorf("Health().State(bogus): got nil error, want one")
		}
	})
}

func capiTestBlockingQueries(t *testing.T, c *api.Client) {
	if err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "blk", Name: "blk", Port: 7000}); err != nil {
		t.Fatalf("ServiceRegister(blk): %v", err)
	}
	t.Cleanup(func() { _ = c.Agent().ServiceDeregister("blk") })

	t.Run("WakesOnWrite", func(t *testing.T) {
		var meta *api.QueryMeta
		capiWaitFor(t, 10*time.Second, "blk in /v1/health/service/blk", func() (bool, string) {
			entries, m, err := c.Health().Service("blk", "", false, nil)
			meta = m
			return err == nil && len(entries) == 1, fmt.Sprintf("%d entries, err %v", len(entries), err)
		})
		type result struct {
			entries []*api.ServiceEntry
			meta    *api.QueryMeta
			err     error
			took    time.Duration
		}
		done := make(chan result, 1)
		go func() {
			start := time.Now()
			e, m, err := c.Health().Service("blk", "", false, &api.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: 5 * time.Second})
			done <- result{e, m, err, time.Since(start)}
		}()
		// Give the query time to block before writing.
		time.Sleep(200 * time.Millisecond)
		select {
		case r := <-done:
			t.Fatalf("blocking query returned before any write (index %d -> %d, %d entries, err %v)",
				meta.LastIndex, r.meta.LastIndex, len(r.entries), r.err)
		default:
		}
		if err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "blk", Name: "blk", Port: 7001}); err != nil {
			t.Fatalf("ServiceRegister(blk, new port): %v", err)
		}
		select {
		case r := <-done:
			if r.err != nil {
				t.Fatalf("blocking query: %v", r.err)
			}
			if r.meta.LastIndex <= meta.LastIndex {
				t.Errorf("LastIndex after the write: got %d, want > %d", r.meta.LastIndex, meta.LastIndex)
			}
			if r.took >= 5*time.Second {
				t.Errorf("blocking query took %s, want it woken by the write well before the 5s wait", r.took)
			}
			if len(r.entries) != 1 || r.entries[0].Service.Port != 7001 {
				t.Errorf("entries after the write: got %d, want blk on port 7001", len(r.entries))
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("blocking query did not return 10s after the write")
		}
	})

	t.Run("TimesOutUnchanged", func(t *testing.T) {
		// Nodes only change when a node is (de)registered, so nothing the
		// agent does in the background wakes this query.
		_, meta, err := c.Catalog().Nodes(nil)
		if err != nil {
			t.Fatalf("Nodes: %v", err)
		}
		const wait = 2 * time.Second
		start := time.Now()
		_, meta2, err := c.Catalog().Nodes(&api.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: wait})
		took := time.Since(start)
		if err != nil {
			t.Fatalf("blocking Nodes: %v", err)
		}
		if meta2.LastIndex != meta.LastIndex {
			t.Errorf("LastIndex: got %d, want %d (nothing changed)", meta2.LastIndex, meta.LastIndex)
		}
		// The server adds up to wait/16 of jitter, as Consul does.
		if took < wait-50*time.Millisecond || took > wait+wait/16+time.Second {
			t.Errorf("blocking Nodes returned after %s, want about %s", took, wait)
		}
	})
}

func capiTestConfigEntries(t *testing.T, c *api.Client) {
	ce := c.ConfigEntries()
	entries := []api.ConfigEntry{
		&api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: "web", Protocol: "http"},
		&api.ProxyConfigEntry{Kind: api.ProxyDefaults, Name: api.ProxyConfigGlobal, Config: map[string]interface{}{"protocol": "http"}},
		&api.ExportedServicesConfigEntry{
			Name: "default",
			Services: []api.ExportedService{{
				Name: "web", Consumers: []api.ServiceConsumer{{Peer: "dc2-peer"}},
			}},
		},
		&api.ServiceIntentionsConfigEntry{
			Kind: api.ServiceIntentions, Name: "web",
			Sources: []*api.SourceIntention{{Name: "frontend", Peer: "dc2-peer", Action: api.IntentionActionAllow}},
		},
		&api.ServiceResolverConfigEntry{
			Kind: api.ServiceResolver, Name: "web", DefaultSubset: "v1",
			Subsets: map[string]api.ServiceResolverSubset{
				"v1": {Filter: "Service.Meta.version == 1"},
				"v2": {Filter: "Service.Meta.version == 2"},
			},
			Failover: map[string]api.ServiceResolverFailover{
				"*": {Targets: []api.ServiceResolverFailoverTarget{{Peer: "dc2-peer"}}},
			},
			ConnectTimeout: 5 * time.Second,
		},
		&api.ServiceSplitterConfigEntry{
			Kind: api.ServiceSplitter, Name: "web",
			Splits: []api.ServiceSplit{{Weight: 90, ServiceSubset: "v1"}, {Weight: 10, ServiceSubset: "v2"}},
		},
		&api.ServiceRouterConfigEntry{
			Kind: api.ServiceRouter, Name: "web",
			Routes: []api.ServiceRoute{{
				Match:       &api.ServiceRouteMatch{HTTP: &api.ServiceRouteHTTPMatch{PathPrefix: "/admin"}},
				Destination: &api.ServiceRouteDestination{Service: "web-admin"},
			}},
		},
		&api.MeshConfigEntry{TransparentProxy: api.TransparentProxyMeshConfig{MeshDestinationsOnly: true}},
	}

	t.Run("SetGet", func(t *testing.T) {
		for _, e := range entries {
			t.Run(e.GetKind(), func(t *testing.T) {
				ok, _, err := ce.Set(e, nil)
				if err != nil {
					t.Fatalf("Set: %v", err)
				}
				if !ok {
					t.Fatalf("Set: got false, want true")
				}
				got, meta, err := ce.Get(e.GetKind(), e.GetName(), nil)
				if err != nil {
					t.Fatalf("Get: %v", err)
				}
				if got.GetKind() != e.GetKind() || got.GetName() != e.GetName() {
					t.Errorf("Get: got %s/%s, want %s/%s", got.GetKind(), got.GetName(), e.GetKind(), e.GetName())
				}
				if got.GetCreateIndex() == 0 || got.GetModifyIndex() < got.GetCreateIndex() {
					t.Errorf("indexes: got create %d modify %d, want 0 < create <= modify", got.GetCreateIndex(), got.GetModifyIndex())
				}
				if meta.LastIndex < got.GetModifyIndex() {
					t.Errorf("LastIndex: got %d, want >= ModifyIndex %d", meta.LastIndex, got.GetModifyIndex())
				}
				capiCheckEntryContent(t, got)
			})
		}
	})

	t.Run("List", func(t *testing.T) {
		for _, e := range entries {
			list, _, err := ce.List(e.GetKind(), nil)
			if err != nil {
				t.Fatalf("List(%s): %v", e.GetKind(), err)
			}
			if len(list) != 1 || list[0].GetName() != e.GetName() {
				var names []string
				for _, l := range list {
					names = append(names, l.GetName())
				}
				t.Errorf("List(%s): got %q, want [%s]", e.GetKind(), names, e.GetName())
			}
		}
		_, _, err := ce.List("no-such-kind", nil)
		if code := capiStatusCode(err); code != http.StatusBadRequest {
			t.Errorf("List(no-such-kind): got %v, want status 400", err)
		}
	})

	t.Run("CAS", func(t *testing.T) {
		got, _, err := ce.Get(api.ServiceDefaults, "web", nil)
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		idx := got.GetModifyIndex()
		update := &api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: "web", Protocol: "http", Meta: map[string]string{"rev": "2"}}
		ok, _, err := ce.CAS(update, idx+1000, nil)
		if err != nil {
			t.Fatalf("CAS(wrong index): %v", err)
		}
		if ok {
			t.Errorf("CAS(wrong index): got true, want false")
		}
		ok, _, err = ce.CAS(update, idx, nil)
		if err != nil {
			t.Fatalf("CAS(right index): %v", err)
		}
		if !ok {
			t.Errorf("CAS(right index %d): got false, want true", idx)
		}
		got, _, err = ce.Get(api.ServiceDefaults, "web", nil)
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if got.GetMeta()["rev"] != "2" || got.GetModifyIndex() <= idx {
			t.Errorf("after CAS: got meta %v modify %d, want rev=2 and modify > %d", got.GetMeta(), got.GetModifyIndex(), idx)
		}
		created, _, err := ce.CAS(&api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: "web", Protocol: "http"}, 0, nil)
		if err != nil || created {
			t.Errorf("CAS(index 0) on an existing entry: got %t, %v, want false (0 means create only)", created, err)
		}
	})

	t.Run("Delete", func(t *testing.T) {
		// Delete the chain from the top so no entry is left depending on a
		// deleted one.
		if _, err := ce.Delete(api.ServiceRouter, "web", nil); err != nil {
			t.Fatalf("Delete(router): %v", err)
		}
		if _, _, err := ce.Get(api.ServiceRouter, "web", nil); capiStatusCode(err) != http.StatusNotFound {
			t.Errorf("Get after Delete: got %v, want status 404", err)
		}
		if _, err := ce.Delete(api.ServiceRouter, "web", nil); err != nil {
			t.Errorf("Delete of a missing entry: got %v, want success (as Consul)", err)
		}
		got, _, err := ce.Get(api.ServiceSplitter, "web", nil)
		if err != nil {
			t.Fatalf("Get(splitter): %v", err)
		}
		ok, _, err := ce.DeleteCAS(api.ServiceSplitter, "web", got.GetModifyIndex()+1000, nil)
		if err != nil || ok {
			t.Errorf("DeleteCAS(wrong index): got %t, %v, want false", ok, err)
		}
		ok, _, err = ce.DeleteCAS(api.ServiceSplitter, "web", got.GetModifyIndex(), nil)
		if err != nil || !ok {
			t.Errorf("DeleteCAS(right index): got %t, %v, want true", ok, err)
		}
		if _, _, err := ce.Get(api.ServiceSplitter, "web", nil); capiStatusCode(err) != http.StatusNotFound {
			t.Errorf("Get after DeleteCAS: got %v, want status 404", err)
		}
	})

	t.Run("Invalid", func(t *testing.T) {
		tests := []struct {
			name     string
			setup    []api.ConfigEntry
			entry    api.ConfigEntry
			wantText []string
		}{
			{
				name: "consumer with both Peer and Partition",
				entry: &api.ExportedServicesConfigEntry{
					Name: "default",
					Services: []api.ExportedService{{
						Name: "web", Consumers: []api.ServiceConsumer{{Peer: "dc2-peer", Partition: "other"}},
					}},
				},
				wantText: []string{"Consumers[0]", "Peer", "Partition"},
			},
			{
				name:     "router for a tcp service",
				setup:    []api.ConfigEntry{&api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: "rawtcp", Protocol: "tcp"}},
				entry:    &api.ServiceRouterConfigEntry{Kind: api.ServiceRouter, Name: "rawtcp"},
				wantText: []string{"rawtcp", "tcp"},
			},
			{
				name:     "proxy-defaults not named global",
				entry:    &api.ProxyConfigEntry{Kind: api.ProxyDefaults, Name: "mine"},
				wantText: []string{"global"},
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				for _, s := range tt.setup {
					if _, _, err := ce.Set(s, nil); err != nil {
						t.Fatalf("Set(%s/%s): %v", s.GetKind(), s.GetName(), err)
					}
				}
				ok, _, err := ce.Set(tt.entry, nil)
				if err == nil {
					t.Fatalf("Set: got %t and no error, want a 400", ok)
				}
				var se api.StatusError
				if !errors.As(err, &se) {
					t.Fatalf("Set: got %T %v, want api.StatusError", err, err)
				}
				if se.Code != http.StatusBadRequest {
					t.Errorf("status: got %d, want 400 (%s)", se.Code, se.Body)
				}
				for _, w := range tt.wantText {
					if !strings.Contains(se.Body, w) {
						t.Errorf("message: got %q, want it to mention %q", se.Body, w)
					}
				}
			})
		}
	})

	t.Run("RouterBlocksProtocolChange", func(t *testing.T) {
		// With a router on web, web cannot become tcp: Consul checks the
		// whole chain on every write.
		if _, _, err := ce.Set(&api.ServiceRouterConfigEntry{Kind: api.ServiceRouter, Name: "web"}, nil); err != nil {
			t.Fatalf("Set(router): %v", err)
		}
		_, _, err := ce.Set(&api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: "web", Protocol: "tcp"}, nil)
		if code := capiStatusCode(err); code != http.StatusBadRequest {
			t.Errorf("Set(service-defaults web tcp) under a router: got %v, want status 400", err)
		}
	})
}

// capiCheckEntryContent checks the fields that carry the peering semantics
// survived the round trip.
func capiCheckEntryContent(t *testing.T, got api.ConfigEntry) {
	t.Helper()
	switch e := got.(type) {
	case *api.ExportedServicesConfigEntry:
		if len(e.Services) != 1 || len(e.Services[0].Consumers) != 1 || e.Services[0].Consumers[0].Peer != "dc2-peer" {
			t.Errorf("exported-services: got %+v, want web exported to peer dc2-peer", e.Services)
		}
	case *api.ServiceIntentionsConfigEntry:
		if len(e.Sources) != 1 || e.Sources[0].Peer != "dc2-peer" || e.Sources[0].Action != api.IntentionActionAllow {
			t.Fatalf("service-intentions: got %+v, want frontend from peer dc2-peer allowed", e.Sources)
		}
		if e.Sources[0].Type != api.IntentionSourceConsul || e.Sources[0].Precedence == 0 {
			t.Errorf("service-intentions source: got type %q precedence %d, want consul and the computed precedence",
				e.Sources[0].Type, e.Sources[0].Precedence)
		}
	case *api.ServiceConfigEntry:
		if e.Protocol != "http" {
			t.Errorf("service-defaults Protocol: got %q, want http", e.Protocol)
		}
	case *api.ProxyConfigEntry:
		if e.Config["protocol"] != "http" {
			t.Errorf("proxy-defaults Config: got %v, want protocol=http", e.Config)
		}
	case *api.ServiceResolverConfigEntry:
		f, ok := e.Failover["*"]
		if !ok || len(f.Targets) != 1 || f.Targets[0].Peer != "dc2-peer" {
			t.Errorf("service-resolver Failover: got %+v, want * -> peer dc2-peer", e.Failover)
		}
		if e.ConnectTimeout != 5*time.Second {
			t.Errorf("service-resolver ConnectTimeout: got %s, want 5s", e.ConnectTimeout)
		}
		if e.DefaultSubset != "v1" || len(e.Subsets) != 2 {
			t.Errorf("service-resolver subsets: got default %q and %d subsets, want v1 and 2", e.DefaultSubset, len(e.Subsets))
		}
	case *api.ServiceSplitterConfigEntry:
		if len(e.Splits) != 2 || e.Splits[0].Weight != 90 || e.Splits[1].ServiceSubset != "v2" {
			t.Errorf("service-splitter Splits: got %+v, want 90 v1 / 10 v2", e.Splits)
		}
	case *api.ServiceRouterConfigEntry:
		if len(e.Routes) != 1 || e.Routes[0].Match == nil || e.Routes[0].Match.HTTP == nil ||
			e.Routes[0].Match.HTTP.PathPrefix != "/admin" || e.Routes[0].Destination.Service != "web-admin" {
			t.Errorf("service-router Routes: got %+v, want /admin -> web-admin", e.Routes)
		}
	case *api.MeshConfigEntry:
		if !e.TransparentProxy.MeshDestinationsOnly {
			t.Errorf("mesh TransparentProxy.MeshDestinationsOnly: got false, want true")
		}
	default:
		t.Errorf("Get decoded a %T, want one of the api config entry types", got)
	}
}

func capiTestStatusEndpoints(t *testing.T, c *api.Client) {
	leader, err := c.Status().Leader()
	if err != nil {
		t.Fatalf("Leader: %v", err)
	}
	if _, _, err := net.SplitHostPort(leader); err != nil {
		t.Errorf("Leader: got %q, want the leader's raft host:port", leader)
	}
	peers, err := c.Status().Peers()
	if err != nil {
		t.Fatalf("Peers: %v", err)
	}
	if !slices.Equal(peers, []string{leader}) {
		t.Errorf("Peers: got %q, want [%s] (the only voter)", peers, leader)
	}
}

func capiTestBadInput(t *testing.T, a *Agent) {
	base := "http://" + a.HTTPAddr()
	big := `{"Name":"big","Meta":{"k":"` + strings.Repeat("x", 1<<20) + `"}}`
	tests := []struct {
		name     string
		method   string
		path     string
		body     string
		wantCode int
		wantText []string
	}{
		{"malformed JSON", "PUT", "/v1/agent/service/register", `{"Name": "x",`, 400, []string{"unexpected end of JSON"}},
		{"not an object", "PUT", "/v1/agent/service/register", `["x"]`, 400, []string{"object"}},
		{"empty body", "PUT", "/v1/agent/service/register", ``, 400, []string{"empty"}},
		{"unknown field", "PUT", "/v1/agent/service/register", `{"Name":"x","Prot":1}`, 400, []string{"Prot"}},
		{"wrong type", "PUT", "/v1/agent/service/register", `{"Name":"x","Port":"abc"}`, 400, []string{"Port"}},
		{"bad service name", "PUT", "/v1/agent/service/register", `{"Name":"no spaces"}`, 400, []string{"Name"}},
		{"body over 1 MiB", "PUT", "/v1/agent/service/register", big, 413, []string{"larger than"}},
		{"catalog unknown field", "PUT", "/v1/catalog/register", `{"Node":"n","Address":"1.2.3.4","Servce":{}}`, 400, []string{"Servce"}},
		{"catalog missing node", "PUT", "/v1/catalog/register", `{"Address":"1.2.3.4"}`, 400, []string{"Node"}},
		{"config entry missing kind", "PUT", "/v1/config", `{"Name":"web"}`, 400, []string{"Kind"}},
		{"config entry unknown kind", "PUT", "/v1/config", `{"Kind":"service-default","Name":"web"}`, 400, []string{"service-defaults"}},
		{"unsupported filter", "GET", "/v1/catalog/nodes?filter=" + url.QueryEscape(`Node == "x"`), "", 400, []string{"filter"}},
		{"unsupported agent filter", "GET", "/v1/agent/services?filter=" + url.QueryEscape(`Service == "x"`), "", 400, []string{"filter"}},
		{"bad index", "GET", "/v1/catalog/services?index=abc", "", 400, []string{"index"}},
		{"bad wait", "GET", "/v1/catalog/services?index=1&wait=forever", "", 400, []string{"wait"}},
		{"negative wait", "GET", "/v1/catalog/services?index=1&wait=-5s", "", 400, []string{"wait"}},
		{"unknown service on deregister", "PUT", "/v1/agent/service/deregister/no-such-service", "", 404, []string{"no-such-service"}},
		{"unknown check on deregister", "PUT", "/v1/agent/check/deregister/no-such-check", "", 404, []string{"no-such-check"}},
		{"unknown path", "GET", "/v1/no/such/endpoint", "", 404, []string{"/v1/no/such/endpoint"}},
		{"wrong method", "DELETE", "/v1/agent/service/register", "", 405, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, base+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", tt.method, tt.path, err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantCode {
				t.Errorf("status: got %d, want %d (body %q)", resp.StatusCode, tt.wantCode, b)
			}
			for _, w := range tt.wantText {
				if !strings.Contains(string(b), w) {
					t.Errorf("body: got %q, want it to mention %q", b, w)
				}
			}
		})
	}
}

// TestRegistrationSurvivesFirstSync registers a service as soon as a new
// agent has a leader and checks the catalog keeps it. Against Consul the
// instance stays registered. (It used to be lost: a first full sync built
// before the registration committed after it. Writes are ordered now.)
func TestRegistrationSurvivesFirstSync(t *testing.T) {
	cfg := DevConfig()
	cfg.NodeName = "first-sync-node"
	cfg.LogLevel = "error"
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	a, err := startAgent(cfg)
	if err != nil {
		t.Fatalf("start agent: %v", err)
	}
	t.Cleanup(func() { _ = a.Close(context.Background()) })
	c, err := api.NewClient(&api.Config{Address: a.HTTPAddr()})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Cluster().WaitForLeader(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "early", Name: "early", Port: 1}); err != nil {
		t.Fatalf("ServiceRegister: %v", err)
	}
	deadline := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(deadline) {
		svcs, meta, err := c.Catalog().Service("early", "", &api.QueryOptions{AllowStale: true})
		if err != nil {
			t.Fatalf("Catalog().Service(early): %v", err)
		}
		if len(svcs) != 1 {
			t.Fatalf("at index %d the catalog has %d instances of early, want 1 (the registration was undone)", meta.LastIndex, len(svcs))
		}
		time.Sleep(5 * time.Millisecond)
	}
}
