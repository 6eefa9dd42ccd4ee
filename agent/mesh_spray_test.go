package agent

import (
	"crypto/tls"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/peerd/peerd/internal/identity"
)

// TestGatewaySNISpray sends a real gateway thousands of handshakes, each
// with a distinct server name that looks valid (this cluster's trust
// domain, the peered and the internal forms, a wildcard export covering
// every peered name) but names no service the cluster serves. None may cost
// a signature or a cache entry; each is refused at ClientHello and counted.
func TestGatewaySNISpray(t *testing.T) {
	const names = 4000
	m := startMeshPair(t, "http")
	client := m.plainClient()
	m.waitOK(t, client, "/warm")
	// Every service is exported to a: only the catalog can refuse a name.
	m.b.write(t, &api.ExportedServicesConfigEntry{Name: "default", Services: []api.ExportedService{
		{Name: "*", Consumers: []api.ServiceConsumer{{Peer: "a"}}}}})
	gw := m.b.agent.GatewayAddr()
	rootA := clusterRoot(t, m.a)
	tdA := spiffeid.RequireTrustDomainFromString(rootA.TrustDomain)
	tdB := spiffeid.RequireTrustDomainFromString(clusterRoot(t, m.b).TrustDomain)
	web := spiffeid.RequireFromSegments(tdA, "ns", "default", "dc", "dc-a", "svc", "web")
	good := leafFor(t, identity.CA{}, rootA, identity.LeafRequest{ID: web})

	const (
		signedOK  = `peerd_proxy_leaf_certificates_signed_total{result="ok"}`
		signedErr = `peerd_proxy_leaf_certificates_signed_total{result="error"}`
		cache     = `peerd_proxy_leaf_cache_entries`
		unknown   = `peerd_proxy_tls_handshake_failures_total{listener="gateway",reason="unknown_service"}`
		otherDC   = `peerd_proxy_tls_handshake_failures_total{listener="gateway",reason="unknown_sni"}`
	)
	// The identities the gateway holds have their leaves: the refresh
	// loop signs touched ones within a second, and nothing else may sign.
	var before string
	eventually(t, 10*time.Second, "the node's own leaves are signed", func() error {
		before = scrape(t, m.b.agent)
		if ok, n := metricValue(before, signedOK), metricValue(before, cache); ok < n || n == 0 {
			return fmt.Errorf("%v leaves signed for %v cached identities", ok, n)
		}
		return nil
	})
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	heapBefore := ms.HeapAlloc

	var next, served atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= names {
					return
				}
				var sni string
				switch i % 4 {
				case 0, 1:
					sni = identity.PeeredSNI(fmt.Sprintf("spray-%d", i), "default", "default", "a", tdB)
				case 2:
					sni = identity.InternalSNI(fmt.Sprintf("spray-%d", i), "default", "dc-b", tdB)
				case 3: // a served service, but of another datacenter
					sni = identity.InternalSNI("billing", "default", fmt.Sprintf("dc-%d", i), tdB)
				}
				conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", gw, &tls.Config{
					ServerName: sni, InsecureSkipVerify: true, Certificates: []tls.Certificate{good}, MinVersion: tls.VersionTLS13})
				if err == nil {
					served.Add(1)
					conn.Close()
				}
			}
		}()
	}
	wg.Wait()
	if n := served.Load(); n != 0 {
		t.Fatalf("%d of %d sprayed names completed a handshake", n, names)
	}
	var after string
	eventually(t, 10*time.Second, "every refusal is counted", func() error {
		after = scrape(t, m.b.agent)
		if got := metricValue(after, unknown) - metricValue(before, unknown); got < names*3/4 {
			return fmt.Errorf("%s grew by %v, want %d", unknown, got, names*3/4)
		}
		if got := metricValue(after, otherDC) - metricValue(before, otherDC); got < names/4 {
			return fmt.Errorf("%s grew by %v, want %d", otherDC, got, names/4)
		}
		return nil
	})
	for _, series := range []string{signedOK, signedErr} {
		if metricValue(after, series) != metricValue(before, series) {
			t.Errorf("the spray made the gateway sign: %s went from %v to %v", series, metricValue(before, series), metricValue(after, series))
		}
	}
	if got, was := metricValue(after, cache), metricValue(before, cache); got != was || got > 1024 {
		t.Errorf("the leaf cache went from %v to %v entries (bound 1024)", was, got)
	}
	runtime.GC()
	runtime.ReadMemStats(&ms)
	t.Logf("%d sprayed names: heap %.1f MiB -> %.1f MiB (both agents and the test in one process); leaf cache %v entries",
		names, float64(heapBefore)/(1<<20), float64(ms.HeapAlloc)/(1<<20), metricValue(after, cache))
	m.waitOK(t, client, "/after")
}
