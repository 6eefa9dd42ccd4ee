package agent

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/peerd/peerd/l7proxy"
)

// TestMeshLeafRenewal: with 3-second leaves, both terminators renew before
// expiry and requests over new connections keep working well past the
// first leaves' lifetime.
func TestMeshLeafRenewal(t *testing.T) {
	short := func(c *Config) {
		c.Proxy = func(pc *l7proxy.Config) { pc.LeafTTL = 3 * time.Second }
	}
	a := startMeshCluster(t, "a", short)
	b := startMeshCluster(t, "b", short)
	a.peerWith(t, b)
	b.register(t, &api.AgentServiceRegistration{ID: "billing-1", Name: "billing", Port: startEcho(t, "billing-1", false), Address: "127.0.0.1"})
	b.write(t, &api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: "billing", Protocol: "http"})
	b.export(t, "a", "billing")
	b.write(t, &api.ServiceIntentionsConfigEntry{Kind: api.ServiceIntentions, Name: "billing",
		Sources: []*api.SourceIntention{{Name: "web", Peer: "a", Action: api.IntentionActionAllow}}})
	up := freePort(t)
	a.register(t, &api.AgentServiceRegistration{Name: "web", Port: 9, Proxy: &api.AgentServiceConnectProxyConfig{
		Upstreams: []api.Upstream{{DestinationPeer: "b", DestinationName: "billing", LocalBindPort: up}},
	}})
	a.waitImportedPassing(t, "billing", "b", 1)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	url := fmt.Sprintf("http://127.0.0.1:%d/", up)
	eventually(t, 20*time.Second, "first request", func() error {
		code, _, body, err := get(client, url)
		if err != nil || code != 200 {
			return fmt.Errorf("%d %q %v", code, body, err)
		}
		return nil
	})
	deadline := time.Now().Add(7 * time.Second) // more than twice the leaf lifetime
	for n := 0; time.Now().Before(deadline); n++ {
		code, _, body, err := get(client, url)
		if err != nil || code != 200 {
			t.Fatalf("request %d at %v: %d %q %v", n, time.Until(deadline), code, body, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, c := range []*meshCluster{a, b} {
		if v := metricValue(scrape(t, c.agent), `peerd_proxy_leaf_certificates_signed_total{result="ok"}`); v < 3 {
			t.Errorf("%s signed %v leaves in 7 s of 3-second leaves: not renewed", c.name, v)
		}
	}
}

// TestMeshGracefulDrain: a request in flight when b's agent shuts down
// completes; new connections are refused afterwards.
func TestMeshGracefulDrain(t *testing.T) {
	m := startMeshPair(t, "http")
	slow := startSlowServer(t, 1500*time.Millisecond)
	m.b.register(t, &api.AgentServiceRegistration{ID: "slow-1", Name: "slow", Port: slow, Address: "127.0.0.1"})
	m.b.write(t, &api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: "slow", Protocol: "http"})
	m.b.export(t, "a", "billing", "slow")
	up := freePort(t)
	m.a.register(t, &api.AgentServiceRegistration{Name: "web2", Port: 9, Proxy: &api.AgentServiceConnectProxyConfig{
		Upstreams: []api.Upstream{{DestinationPeer: "b", DestinationName: "slow", LocalBindPort: up}},
	}})
	m.b.write(t, &api.ServiceIntentionsConfigEntry{Kind: api.ServiceIntentions, Name: "slow",
		Sources: []*api.SourceIntention{{Name: "web2", Peer: "a", Action: api.IntentionActionAllow}}})
	m.a.waitImportedPassing(t, "slow", "b", 1)
	client := &http.Client{Timeout: 10 * time.Second}
	url := fmt.Sprintf("http://127.0.0.1:%d/", up)
	eventually(t, 20*time.Second, "the slow service answers", func() error {
		code, _, body, err := get(client, url)
		if err != nil || code != 200 {
			return fmt.Errorf("%d %q %v", code, body, err)
		}
		return nil
	})
	result := make(chan error, 1)
	go func() {
		code, _, body, err := get(client, url+"in-flight")
		if err == nil && code != 200 {
			err = fmt.Errorf("status %d %q", code, body)
		}
		result <- err
	}()
	time.Sleep(500 * time.Millisecond) // the request is now waiting on the instance
	gw := m.b.agent.GatewayAddr()
	if err := m.b.agent.Close(context.Background()); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if err := <-result; err != nil {
		t.Fatalf("the in-flight request failed during the drain: %v", err)
	}
	if c, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", gw, &tls.Config{InsecureSkipVerify: true}); err == nil {
		c.Close()
		t.Fatal("the gateway still accepts connections after shutdown")
	}
}

// startSlowServer answers every request after delay.
func startSlowServer(t *testing.T, delay time.Duration) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "in-flight") {
			time.Sleep(delay)
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"Instance":"slow-1"}`)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	return ln.Addr().(*net.TCPAddr).Port
}
