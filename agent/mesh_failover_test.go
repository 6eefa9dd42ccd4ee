package agent

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// TestMeshFailoverToThirdCluster: a's resolver fails billing over from
// peer b to peer c when b's instances go critical, and back when they
// recover.
func TestMeshFailoverToThirdCluster(t *testing.T) {
	a := startMeshCluster(t, "a", nil)
	b := startMeshCluster(t, "b", nil)
	c := startMeshCluster(t, "c", nil)
	a.peerWith(t, b)
	a.peerWith(t, c)
	for _, x := range []*meshCluster{b, c} {
		port := startEcho(t, "billing-"+x.name, false)
		x.register(t, &api.AgentServiceRegistration{ID: "billing-" + x.name, Name: "billing", Port: port, Address: "127.0.0.1",
			Check: &api.AgentServiceCheck{CheckID: "ttl-" + x.name, TTL: "10m", Status: api.HealthPassing}})
		x.write(t, &api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: "billing", Protocol: "http"})
		x.export(t, "a", "billing")
		x.write(t, &api.ServiceIntentionsConfigEntry{Kind: api.ServiceIntentions, Name: "billing",
			Sources: []*api.SourceIntention{{Name: "web", Peer: "a", Action: api.IntentionActionAllow}}})
	}
	a.write(t, &api.ServiceResolverConfigEntry{Kind: api.ServiceResolver, Name: "billing",
		Failover: map[string]api.ServiceResolverFailover{"*": {Targets: []api.ServiceResolverFailoverTarget{{Peer: "b"}, {Peer: "c"}}}}})
	up := freePort(t)
	a.register(t, &api.AgentServiceRegistration{Name: "web", Port: 9, Proxy: &api.AgentServiceConnectProxyConfig{
		Upstreams: []api.Upstream{{DestinationName: "billing", LocalBindPort: up}},
	}})
	a.waitImportedPassing(t, "billing", "b", 1)
	a.waitImportedPassing(t, "billing", "c", 1)
	url := fmt.Sprintf("http://127.0.0.1:%d/", up)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	expect := func(instance string) {
		t.Helper()
		eventually(t, 20*time.Second, "requests reach "+instance, func() error {
			for i := 0; i < 5; i++ {
				code, got, body, err := get(client, url)
				if err != nil || code != 200 || got.Instance != instance {
					return fmt.Errorf("status %d %q instance %q, %v", code, body, got.Instance, err)
				}
			}
			return nil
		})
	}
	expect("billing-b")
	if err := b.api.Agent().FailTTL("ttl-b", "down for the test"); err != nil {
		t.Fatal(err)
	}
	expect("billing-c")
	if err := b.api.Agent().PassTTL("ttl-b", "back"); err != nil {
		t.Fatal(err)
	}
	expect("billing-b")
}

// TestMeshCARotationUnderLoad rotates both clusters' CAs while requests
// flow over new connections; none may fail.
func TestMeshCARotationUnderLoad(t *testing.T) {
	m := startMeshPair(t, "http")
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	m.waitOK(t, client, "/warm")

	var ok, failed atomic.Int64
	var lastErr atomic.Value
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				code, _, body, err := get(client, m.url+"/rotate")
				if err != nil || code != 200 {
					failed.Add(1)
					lastErr.Store(fmt.Sprintf("status %d %q, %v", code, body, err))
					continue
				}
				ok.Add(1)
			}
		}()
	}
	rotate := func(c *meshCluster) {
		t.Helper()
		before, _, err := c.api.Connect().CARoots(nil)
		if err != nil {
			t.Fatal(err)
		}
		code, body, err := httpDo(http.MethodPost, "http://"+c.agent.HTTPAddr()+"/v1/connect/ca/rotate", nil)
		if err != nil || code != 200 {
			t.Fatalf("rotate %s: %d %s %v", c.name, code, body, err)
		}
		eventually(t, 20*time.Second, c.name+": new active root", func() error {
			after, _, err := c.api.Connect().CARoots(nil)
			if err != nil || after.ActiveRootID == before.ActiveRootID || len(after.Roots) != 2 {
				return fmt.Errorf("roots %+v, %v", after, err)
			}
			return nil
		})
	}
	time.Sleep(300 * time.Millisecond)
	rotate(m.b)
	time.Sleep(1500 * time.Millisecond) // leaves renew, the bundle reaches a
	rotate(m.a)
	time.Sleep(1500 * time.Millisecond)
	stop()
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d of %d requests failed during CA rotation; last: %v", failed.Load(), ok.Load()+failed.Load(), lastErr.Load())
	}
	if ok.Load() < 20 {
		t.Fatalf("only %d requests completed", ok.Load())
	}
	// Both sides now present leaves of the new roots.
	for _, c := range []*meshCluster{m.a, m.b} {
		metrics := scrape(t, c.agent)
		if !containsMetricAtLeast(metrics, `peerd_proxy_leaf_certificates_signed_total{result="ok"}`, 2) {
			t.Errorf("%s: leaves were not re-signed after rotation:\n%s", c.name, grepLines(metrics, "leaf_certificates"))
		}
	}
	t.Logf("%d requests during two rotations, none failed", ok.Load())
}

// TestMeshRetriesAndEjectsDeadEndpoint: billing in b has a second instance
// on a node whose gateway does not answer. Every request still succeeds
// (the connect failure is retried on the other endpoint) and the dead
// endpoint is ejected.
func TestMeshRetriesAndEjectsDeadEndpoint(t *testing.T) {
	m := startMeshPair(t, "http")
	dead := freePort(t) // nothing listens there
	_, err := m.b.api.Catalog().Register(&api.CatalogRegistration{
		Node: "ghost", Address: "127.0.0.1", NodeMeta: map[string]string{"peerd-gateway-port": fmt.Sprint(dead)},
		Service: &api.AgentService{ID: "billing-ghost", Service: "billing", Port: 1, Address: "127.0.0.1"},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.a.waitImportedPassing(t, "billing", "b", 2)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := 0; i < 20; i++ {
		code, got, body, err := get(client, m.url+"/retry")
		if err != nil || code != 200 || got.Instance != "billing-1" {
			t.Fatalf("request %d: status %d %q %+v, %v", i, code, body, got, err)
		}
	}
	metrics := scrape(t, m.a.agent)
	if metricValue(metrics, `peerd_proxy_outlier_ejections_total{peer="b",service="billing"}`) < 1 {
		t.Fatalf("the dead endpoint was not ejected:\n%s", grepLines(metrics, "peerd_proxy_"))
	}
	if v := metricValue(metrics, `peerd_proxy_upstream_connect_failures_total{peer="b",service="billing"}`); v < 3 || v > 6 {
		t.Fatalf("%v connect failures: want the 3 that eject it, and few after", v)
	}
}
