package policy

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/peerd/peerd/catalog/configentry"
	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/decode"
)

func resolver(name string, mod func(*configentry.ServiceResolverConfigEntry)) *configentry.ServiceResolverConfigEntry {
	e := &configentry.ServiceResolverConfigEntry{Name: name}
	if mod != nil {
		mod(e)
	}
	e.Normalize()
	return e
}

func subsets(names ...string) map[string]configentry.ServiceResolverSubset {
	m := make(map[string]configentry.ServiceResolverSubset, len(names))
	for _, n := range names {
		m[n] = configentry.ServiceResolverSubset{Filter: fmt.Sprintf("Service.Meta.version == %s", n)}
	}
	return m
}

func candidates(ts ...Target) []Target { return ts }

func TestResolveDefaults(t *testing.T) {
	res, err := Resolve(Target{Service: "web", Namespace: "default"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Resolution{
		Candidates:     candidates(Target{Service: "web"}),
		Filters:        map[Target]*Filter{},
		OnlyPassing:    map[Target]bool{},
		LoadBalancer:   LBLeastRequest,
		ConnectTimeout: 5 * time.Second,
	}
	if !reflect.DeepEqual(res, want) {
		t.Errorf("got %+v, want %+v", res, want)
	}
}

func TestResolve(t *testing.T) {
	lookup := entries(
		resolver("web", func(e *configentry.ServiceResolverConfigEntry) {
			e.DefaultSubset = "v1"
			e.Subsets = subsets("v1", "v2")
			e.Subsets["strict"] = configentry.ServiceResolverSubset{Filter: "Service.Meta.version == v2", OnlyPassing: true}
			e.Subsets["all"] = configentry.ServiceResolverSubset{}
			e.ConnectTimeout = decode.Duration(2 * time.Second)
			e.RequestTimeout = decode.Duration(30 * time.Second)
			e.LoadBalancer = &configentry.LoadBalancer{Policy: "round_robin"}
			e.Failover = map[string]configentry.ServiceResolverFailover{
				"v1": {Targets: []configentry.ServiceResolverFailoverTarget{
					{Peer: "east"},
					{ServiceSubset: "v2"},
					{Service: "web-legacy"},
					{Datacenter: "dc2"},
					{Service: "web", ServiceSubset: "v1"}, // itself: skipped
					{Service: "alias"},                    // redirects to api
					{Peer: "east"},                        // duplicate: skipped
				}},
				"*": {Datacenters: []string{"dc2", "dc3"}},
			}
		}),
		resolver("web-legacy", func(e *configentry.ServiceResolverConfigEntry) {
			e.DefaultSubset = "stable"
			e.Subsets = subsets("stable")
			e.Failover = map[string]configentry.ServiceResolverFailover{"*": {Service: "never-chained"}}
		}),
		resolver("alias", func(e *configentry.ServiceResolverConfigEntry) {
			e.Redirect = &configentry.ServiceResolverRedirect{Service: "api"}
		}),
		resolver("api", func(e *configentry.ServiceResolverConfigEntry) {
			e.Subsets = subsets("v1")
			e.Failover = map[string]configentry.ServiceResolverFailover{"*": {Service: "backup", ServiceSubset: ""}}
			e.LoadBalancer = &configentry.LoadBalancer{Policy: "ring_hash"}
		}),
		resolver("front", func(e *configentry.ServiceResolverConfigEntry) {
			e.Redirect = &configentry.ServiceResolverRedirect{Service: "web"}
		}),
		resolver("to-peer", func(e *configentry.ServiceResolverConfigEntry) {
			e.Redirect = &configentry.ServiceResolverRedirect{Service: "payments", Peer: "west", Namespace: "default"}
		}),
		resolver("to-dc", func(e *configentry.ServiceResolverConfigEntry) {
			e.Redirect = &configentry.ServiceResolverRedirect{Datacenter: "dc9"}
		}),
		resolver("self-subset", func(e *configentry.ServiceResolverConfigEntry) {
			e.Subsets = subsets("v3")
			e.Redirect = &configentry.ServiceResolverRedirect{ServiceSubset: "v3"}
		}),
		resolver("dcs", func(e *configentry.ServiceResolverConfigEntry) {
			e.Failover = map[string]configentry.ServiceResolverFailover{"*": {Service: "other", Datacenters: []string{"dc2", "dc3"}}}
		}),
	)
	tests := []struct {
		name        string
		in          Target
		candidates  []Target
		filtered    []Target // candidates with a filter
		onlyPassing []Target
		lb          string
		connect     time.Duration
		request     time.Duration
		note        string
	}{
		{
			name: "default subset and failover targets in order",
			in:   Target{Service: "web"},
			candidates: candidates(
				Target{Service: "web", Subset: "v1"},
				Target{Service: "web", Peer: "east"},
				Target{Service: "web", Subset: "v2"},
				Target{Service: "web-legacy", Subset: "stable"},
				Target{Service: "web", Subset: "v1", Datacenter: "dc2"},
				Target{Service: "api"},
			),
			filtered: candidates(
				Target{Service: "web", Subset: "v1"},
				Target{Service: "web", Subset: "v2"},
				Target{Service: "web-legacy", Subset: "stable"},
				Target{Service: "web", Subset: "v1", Datacenter: "dc2"},
			),
			lb: LBRoundRobin, connect: 2 * time.Second, request: 30 * time.Second,
			note: `subset "v1" dropped`,
		},
		{
			name:       "wildcard failover with datacenters",
			in:         Target{Service: "web", Subset: "v2"},
			candidates: candidates(Target{Service: "web", Subset: "v2"}, Target{Service: "web", Subset: "v2", Datacenter: "dc2"}, Target{Service: "web", Subset: "v2", Datacenter: "dc3"}),
			filtered:   candidates(Target{Service: "web", Subset: "v2"}, Target{Service: "web", Subset: "v2", Datacenter: "dc2"}, Target{Service: "web", Subset: "v2", Datacenter: "dc3"}),
			lb:         LBRoundRobin, connect: 2 * time.Second, request: 30 * time.Second,
		},
		{
			name:        "only passing, empty filter",
			in:          Target{Service: "web", Subset: "strict"},
			candidates:  candidates(Target{Service: "web", Subset: "strict"}, Target{Service: "web", Subset: "strict", Datacenter: "dc2"}, Target{Service: "web", Subset: "strict", Datacenter: "dc3"}),
			filtered:    candidates(Target{Service: "web", Subset: "strict"}, Target{Service: "web", Subset: "strict", Datacenter: "dc2"}, Target{Service: "web", Subset: "strict", Datacenter: "dc3"}),
			onlyPassing: candidates(Target{Service: "web", Subset: "strict"}, Target{Service: "web", Subset: "strict", Datacenter: "dc2"}, Target{Service: "web", Subset: "strict", Datacenter: "dc3"}),
			lb:          LBRoundRobin, connect: 2 * time.Second, request: 30 * time.Second,
		},
		{
			name:       "subset without filter selects all",
			in:         Target{Service: "web", Subset: "all"},
			candidates: candidates(Target{Service: "web", Subset: "all"}, Target{Service: "web", Subset: "all", Datacenter: "dc2"}, Target{Service: "web", Subset: "all", Datacenter: "dc3"}),
			lb:         LBRoundRobin, connect: 2 * time.Second, request: 30 * time.Second,
		},
		{
			name:       "redirect follows the target's resolver",
			in:         Target{Service: "front"},
			candidates: candidates(Target{Service: "web", Subset: "v1"}, Target{Service: "web", Peer: "east"}, Target{Service: "web", Subset: "v2"}, Target{Service: "web-legacy", Subset: "stable"}, Target{Service: "web", Subset: "v1", Datacenter: "dc2"}, Target{Service: "api"}),
			filtered:   candidates(Target{Service: "web", Subset: "v1"}, Target{Service: "web", Subset: "v2"}, Target{Service: "web-legacy", Subset: "stable"}, Target{Service: "web", Subset: "v1", Datacenter: "dc2"}),
			lb:         LBRoundRobin, connect: 2 * time.Second, request: 30 * time.Second,
			note: `subset "v1" dropped`,
		},
		{
			name:       "redirect to a peer keeps the service and has no resolver",
			in:         Target{Service: "to-peer"},
			candidates: candidates(Target{Service: "payments", Peer: "west"}),
			lb:         LBLeastRequest, connect: 5 * time.Second,
		},
		{
			name:       "redirect to a datacenter keeps the service",
			in:         Target{Service: "to-dc"},
			candidates: candidates(Target{Service: "to-dc", Datacenter: "dc9"}),
			lb:         LBLeastRequest, connect: 5 * time.Second,
		},
		{
			name:       "redirect to a subset of the same service",
			in:         Target{Service: "self-subset"},
			candidates: candidates(Target{Service: "self-subset", Subset: "v3"}),
			filtered:   candidates(Target{Service: "self-subset", Subset: "v3"}),
			lb:         LBLeastRequest, connect: 5 * time.Second,
		},
		{
			name:       "hash-based policy falls back with a note",
			in:         Target{Service: "api"},
			candidates: candidates(Target{Service: "api"}, Target{Service: "backup"}),
			lb:         LBLeastRequest, connect: 5 * time.Second,
			note: `load balancer policy "ring_hash" is not supported by peerd; using least_request`,
		},
		{
			name:       "failover datacenters of another service",
			in:         Target{Service: "dcs"},
			candidates: candidates(Target{Service: "dcs"}, Target{Service: "other", Datacenter: "dc2"}, Target{Service: "other", Datacenter: "dc3"}),
			lb:         LBLeastRequest, connect: 5 * time.Second,
		},
		{
			name:       "a peer target is taken as it is",
			in:         Target{Service: "web", Peer: "east", Subset: "v1"},
			candidates: candidates(Target{Service: "web", Peer: "east"}),
			lb:         LBLeastRequest, connect: 5 * time.Second,
			note: "subsets of a peer's service are the peer's to resolve",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, c := range []*Cache{nil, NewCache()} {
				res, err := c.Resolve(tt.in, lookup)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(res.Candidates, tt.candidates) {
					t.Errorf("candidates:\n got %v\nwant %v", res.Candidates, tt.candidates)
				}
				var filtered []Target
				for _, cand := range res.Candidates {
					if res.Filters[cand] != nil {
						filtered = append(filtered, cand)
					}
				}
				if !reflect.DeepEqual(filtered, tt.filtered) {
					t.Errorf("filtered:\n got %v\nwant %v", filtered, tt.filtered)
				}
				var onlyPassing []Target
				for _, cand := range res.Candidates {
					if res.OnlyPassing[cand] {
						onlyPassing = append(onlyPassing, cand)
					}
				}
				if !reflect.DeepEqual(onlyPassing, tt.onlyPassing) {
					t.Errorf("only passing: got %v, want %v", onlyPassing, tt.onlyPassing)
				}
				if res.LoadBalancer != tt.lb || res.ConnectTimeout != tt.connect || res.RequestTimeout != tt.request {
					t.Errorf("got lb %q, connect %v, request %v; want %q, %v, %v", res.LoadBalancer, res.ConnectTimeout, res.RequestTimeout, tt.lb, tt.connect, tt.request)
				}
				notes := strings.Join(res.Notes, "\n")
				if len(res.Notes) > 1 {
					t.Errorf("got %d notes, want at most 1: %q", len(res.Notes), res.Notes)
				}
				if (tt.note == "") != (notes == "") || !strings.Contains(notes, tt.note) {
					t.Errorf("got notes %q, want %q", notes, tt.note)
				}
			}
		})
	}
}

func TestResolveFilters(t *testing.T) {
	lookup := entries(resolver("web", func(e *configentry.ServiceResolverConfigEntry) {
		e.DefaultSubset = "v1"
		e.Subsets = map[string]configentry.ServiceResolverSubset{
			"v1":     {Filter: "Service.Meta.version == v1"},
			"canary": {Filter: `Service.Tags contains "canary"`, OnlyPassing: true},
		}
	}))
	v1 := instance("n1", "a", "v1")
	v2 := instance("n2", "a", "v2", "canary")
	v1warn := instance("n3", "a", "v1")
	v1warn.Checks = append(v1warn.Checks, &state.HealthCheck{Status: state.HealthWarning})
	v2warn := instance("n4", "a", "v2", "canary")
	v2warn.Checks = append(v2warn.Checks, &state.HealthCheck{Status: state.HealthWarning})
	v1crit := instance("n5", "a", "v1")
	v1crit.Checks = append(v1crit.Checks, &state.HealthCheck{Status: state.HealthCritical})
	v1maint := instance("n6", "a", "v1")
	v1maint.Checks = append(v1maint.Checks, &state.HealthCheck{Status: state.HealthMaint})
	all := []state.CheckServiceNode{v1, v2, v1warn, v2warn, v1crit, v1maint}

	names := func(ns []state.CheckServiceNode) []string {
		var out []string
		for _, n := range ns {
			out = append(out, n.Node.Node)
		}
		return out
	}
	c := NewCache()
	res, err := c.Resolve(Target{Service: "web"}, lookup)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(res.Select(res.Candidates[0], all)); !reflect.DeepEqual(got, []string{"n1", "n3"}) {
		t.Errorf("v1: got %v, want [n1 n3]", got)
	}
	res, err = c.Resolve(Target{Service: "web", Subset: "canary"}, lookup)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(res.Select(res.Candidates[0], all)); !reflect.DeepEqual(got, []string{"n2"}) {
		t.Errorf("canary: got %v, want [n2]", got)
	}
	if got := names(res.Select(Target{Service: "unknown"}, all)); !reflect.DeepEqual(got, []string{"n1", "n2", "n3", "n4"}) {
		t.Errorf("no subset: got %v, want the healthy ones", got)
	}
	// The second resolution reused the cached filters.
	res2, _ := c.Resolve(Target{Service: "web", Subset: "canary"}, lookup)
	if res2.Filters[res2.Candidates[0]] != res.Filters[res.Candidates[0]] {
		t.Error("filter compiled twice")
	}
}

func TestResolveErrors(t *testing.T) {
	loop := entries(
		resolver("a", func(e *configentry.ServiceResolverConfigEntry) {
			e.Redirect = &configentry.ServiceResolverRedirect{Service: "b"}
		}),
		resolver("b", func(e *configentry.ServiceResolverConfigEntry) {
			e.Redirect = &configentry.ServiceResolverRedirect{Service: "a"}
		}),
	)
	var chain []configentry.Entry
	for i := 0; i < 10; i++ {
		next := fmt.Sprintf("s%d", i+1)
		chain = append(chain, resolver(fmt.Sprintf("s%d", i), func(e *configentry.ServiceResolverConfigEntry) {
			e.Redirect = &configentry.ServiceResolverRedirect{Service: next}
		}))
	}
	withSubsets := entries(
		resolver("web", func(e *configentry.ServiceResolverConfigEntry) {
			e.Subsets = subsets("v1", "v2")
			e.Failover = map[string]configentry.ServiceResolverFailover{"*": {Targets: []configentry.ServiceResolverFailoverTarget{{Service: "api", ServiceSubset: "nope"}}}}
		}),
		resolver("bad", func(e *configentry.ServiceResolverConfigEntry) {
			e.DefaultSubset = "x"
			e.Subsets = map[string]configentry.ServiceResolverSubset{"x": {Filter: "Service.Meta.version =="}}
		}),
	)
	tests := []struct {
		name   string
		in     Target
		lookup Lookup
		want   string
	}{
		{"redirect loop", Target{Service: "a"}, loop, "circular service-resolver redirect: a -> b -> a"},
		{"too many redirects", Target{Service: "s0"}, entries(chain...), `service-resolver "s8": more than 8 redirects`},
		{"unknown subset", Target{Service: "web", Subset: "v3"}, withSubsets, `service-resolver "web": service "web" has no subset "v3" (subsets: v1, v2)`},
		{"subset without resolver", Target{Service: "api", Subset: "v1"}, withSubsets, `service "api" has no service-resolver, so no subset "v1"`},
		{"unknown failover subset", Target{Service: "web", Subset: "v1"}, withSubsets, `service-resolver "web" Failover["*"]: target nope.api: service "api" has no service-resolver, so no subset "nope"`},
		{"bad filter", Target{Service: "bad"}, withSubsets, `service-resolver "bad" Subsets["x"].Filter: invalid filter "Service.Meta.version =="`},
		{"wrong entry type", Target{Service: "web"}, func(kind, name string) configentry.Entry { return router(name) }, `service-resolver "web": lookup returned a *configentry.ServiceRouterConfigEntry`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Resolve(tt.in, tt.lookup)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got error %v, want one containing %q", err, tt.want)
			}
		})
	}
}
