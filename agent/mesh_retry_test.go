package agent

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// TestMeshRouteRetriesAndTimeouts: a service-router's retries on status
// codes hide an instance's transient 503s, and its request timeout turns a
// slow answer into a 504.
func TestMeshRouteRetriesAndTimeouts(t *testing.T) {
	m := startMeshPair(t, "http")
	client := m.plainClient()
	m.waitOK(t, client, "/warm")
	var calls atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/flaky":
			if calls.Add(1)%3 != 0 { // two 503s, then a 200
				http.Error(w, "busy", http.StatusServiceUnavailable)
				return
			}
			_, _ = io.WriteString(w, `{"Instance":"ledger-1"}`)
		case "/slow":
			time.Sleep(2 * time.Second)
			_, _ = io.WriteString(w, `{"Instance":"ledger-1"}`)
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	m.b.register(t, &api.AgentServiceRegistration{ID: "ledger-1", Name: "ledger", Port: ln.Addr().(*net.TCPAddr).Port, Address: "127.0.0.1"})
	m.b.write(t, &api.ServiceConfigEntry{Kind: api.ServiceDefaults, Name: "ledger", Protocol: "http"})
	m.b.write(t, &api.ServiceRouterConfigEntry{Kind: api.ServiceRouter, Name: "billing", Routes: []api.ServiceRoute{
		{Match: &api.ServiceRouteMatch{HTTP: &api.ServiceRouteHTTPMatch{PathExact: "/flaky"}},
			Destination: &api.ServiceRouteDestination{Service: "ledger", NumRetries: 3, RetryOnStatusCodes: []uint32{503}}},
		{Match: &api.ServiceRouteMatch{HTTP: &api.ServiceRouteHTTPMatch{PathExact: "/slow"}},
			Destination: &api.ServiceRouteDestination{Service: "ledger", RequestTimeout: 300 * time.Millisecond}},
	}})
	eventually(t, 10*time.Second, "retries hide the 503s", func() error {
		before := calls.Load()
		code, got, body, err := get(client, m.url+"/flaky")
		if err != nil || code != 200 || got.Instance != "ledger-1" {
			return fmt.Errorf("status %d %q %+v, %v", code, body, got, err)
		}
		if n := calls.Load() - before; n < 2 {
			return fmt.Errorf("%d call(s) reached the instance: no retry happened", n)
		}
		return nil
	})
	start := time.Now()
	code, _, body, err := get(client, m.url+"/slow")
	if err != nil || code != http.StatusGatewayTimeout {
		t.Fatalf("slow: status %d %q, %v; want 504", code, body, err)
	}
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Fatalf("the request timeout did not cut the request: %v", d)
	}
}
