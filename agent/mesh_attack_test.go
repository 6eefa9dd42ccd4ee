package agent

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/peerd/peerd/internal/identity"
	"github.com/peerd/peerd/l7proxy"
)

// clusterRoot returns a cluster's active CA root with its key (read from
// the server's store, as only a test can).
func clusterRoot(t *testing.T, c *meshCluster) identity.Root {
	t.Helper()
	_, roots, err := c.agent.Cluster().Store().CARoots(nil)
	if err != nil || len(roots) == 0 {
		t.Fatalf("roots: %v", err)
	}
	r := roots[0]
	return identity.Root{ID: r.ID, CertPEM: r.CertPEM, KeyPEM: r.KeyPEM, TrustDomain: r.TrustDomain}
}

// leafFor signs a client leaf with root, as the CA would.
func leafFor(t *testing.T, ca identity.CA, root identity.Root, req identity.LeafRequest) tls.Certificate {
	t.Helper()
	key, _, err := identity.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	req.Client = true
	certPEM, err := ca.SignLeaf(root, key.Public(), req)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := identity.ParseCertPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
}

// forgedLeaf signs, with root's key but outside the CA's rules, a client
// leaf with any SPIFFE ID and expiry.
func forgedLeaf(t *testing.T, root identity.Root, id string, notAfter time.Time) tls.Certificate {
	t.Helper()
	rootCert, err := identity.ParseCertPEM(root.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	rootKey, err := identity.ParseKeyPEM(root.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(id)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(42), NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, URIs: []*url.URL{u}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, rootCert, &key.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}
}

// TestGatewayRefusesBadClients sends the gateway every kind of bad client
// and checks each is refused with its reason counted, and never routed.
func TestGatewayRefusesBadClients(t *testing.T) {
	m := startMeshPairWith(t, "http", func(c *Config) {
		c.Proxy = func(pc *l7proxy.Config) {
			pc.ReadHeaderTimeout, pc.HandshakeTimeout, pc.MaxHeaderBytes = 500*time.Millisecond, time.Second, 8<<10
		}
	})
	client := m.plainClient()
	m.waitOK(t, client, "/warm")
	gw := m.b.agent.GatewayAddr()
	rootA := clusterRoot(t, m.a)
	tdA := spiffeid.RequireTrustDomainFromString(rootA.TrustDomain)
	tdB := spiffeid.RequireTrustDomainFromString(clusterRoot(t, m.b).TrustDomain)
	web := spiffeid.RequireFromSegments(tdA, "ns", "default", "dc", "dc-a", "svc", "web")
	goodSNI := identity.PeeredSNI("billing", "default", "default", "a", tdB)
	good := leafFor(t, identity.CA{}, rootA, identity.LeafRequest{ID: web})

	otherRoot, err := identity.CA{}.NewRoot(tdA) // same trust domain name, another key
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, reason, sni string
		cert              *tls.Certificate
	}{
		{"certificate from an unknown CA", "unknown_ca", goodSNI, ptr(leafFor(t, identity.CA{}, otherRoot, identity.LeafRequest{ID: web}))},
		{"right CA, another trust domain", "wrong_trust_domain", goodSNI, ptr(forgedLeaf(t, rootA, "spiffe://evil.peerd/ns/default/dc/dc-a/svc/web", time.Now().Add(time.Hour)))},
		{"expired certificate", "expired", goodSNI, ptr(forgedLeaf(t, rootA, web.String(), time.Now().Add(-time.Minute)))},
		{"no SPIFFE SAN", "no_spiffe_id", goodSNI, ptr(leafFor(t, identity.CA{}, rootA, identity.LeafRequest{DNSNames: []string{"web.example"}}))},
		{"no client certificate", "", goodSNI, nil},
		{"SNI of a service not exported to the peer", "not_exported", identity.PeeredSNI("secret", "default", "default", "a", tdB), &good},
		{"SNI of an unknown peer", "unknown_peer", identity.PeeredSNI("billing", "default", "default", "zzz", tdB), &good},
		{"SNI of another trust domain", "unknown_sni", "billing.default.default.a.external.other.peerd", &good},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := scrape(t, m.b.agent)
			cfg := &tls.Config{ServerName: tc.sni, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, NextProtos: []string{"http/1.1"}}
			if tc.cert != nil {
				cfg.Certificates = []tls.Certificate{*tc.cert}
			}
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", gw, cfg)
			if err == nil {
				// TLS 1.3: a refused client certificate shows on first read.
				_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
				fmt.Fprintf(conn, "GET /attack HTTP/1.1\r\nHost: billing\r\n\r\n")
				line, rerr := bufio.NewReader(conn).ReadString('\n')
				conn.Close()
				if rerr == nil {
					t.Fatalf("the gateway answered %q", line)
				}
			}
			if tc.reason == "" {
				return
			}
			series := fmt.Sprintf(`peerd_proxy_tls_handshake_failures_total{listener="gateway",reason="%s"}`, tc.reason)
			eventually(t, 5*time.Second, "the refusal is counted", func() error {
				if metricValue(scrape(t, m.b.agent), series) <= metricValue(before, series) {
					return fmt.Errorf("%s did not grow", series)
				}
				return nil
			})
		})
	}

	t.Run("TLS 1.2 is refused by default", func(t *testing.T) {
		_, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", gw, &tls.Config{
			ServerName: goodSNI, InsecureSkipVerify: true, Certificates: []tls.Certificate{good}, MaxVersion: tls.VersionTLS12})
		if err == nil || !strings.Contains(err.Error(), "version") {
			t.Fatalf("got %v, want a protocol version alert", err)
		}
	})

	t.Run("plaintext on the TLS port", func(t *testing.T) {
		conn, err := net.DialTimeout("tcp", gw, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
		fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: billing\r\n\r\n")
		line, _ := bufio.NewReader(conn).ReadString('\n')
		if !strings.Contains(line, "400") {
			t.Fatalf("got %q, want a 400", line)
		}
		eventually(t, 5*time.Second, "counted", func() error {
			if metricValue(scrape(t, m.b.agent), `peerd_proxy_tls_handshake_failures_total{listener="gateway",reason="plaintext"}`) < 1 {
				return fmt.Errorf("not counted")
			}
			return nil
		})
	})

	dialGood := func(t *testing.T) *tls.Conn {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", gw, &tls.Config{
			ServerName: goodSNI, InsecureSkipVerify: true, Certificates: []tls.Certificate{good}, NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		return conn
	}

	t.Run("slow headers (slowloris) are cut off", func(t *testing.T) {
		conn := dialGood(t)
		defer conn.Close()
		start := time.Now()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(conn, "GET /slow HTTP/1.1\r\nHost: billing\r\n")
		var err error
		for i := 0; i < 40 && err == nil; i++ {
			time.Sleep(100 * time.Millisecond)
			_, err = fmt.Fprintf(conn, "X-Slow-%d: 1\r\n", i)
		}
		buf := make([]byte, 512)
		n, rerr := conn.Read(buf)
		if rerr == nil && strings.Contains(string(buf[:n]), "200 OK") {
			t.Fatalf("a slow request was served: %q", buf[:n])
		}
		if time.Since(start) > 4500*time.Millisecond {
			t.Fatalf("connection held for %v", time.Since(start))
		}
		eventually(t, 5*time.Second, "counted", func() error {
			if metricValue(scrape(t, m.b.agent), `peerd_proxy_tls_handshake_failures_total{listener="gateway",reason="no_request"}`) < 1 {
				return fmt.Errorf("not counted")
			}
			return nil
		})
	})

	t.Run("oversized headers get 431", func(t *testing.T) {
		conn := dialGood(t)
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(conn, "GET /big HTTP/1.1\r\nHost: billing\r\nX-Big: %s\r\n\r\n", strings.Repeat("a", 64<<10))
		line, _ := bufio.NewReader(conn).ReadString('\n')
		if !strings.Contains(line, "431") {
			t.Fatalf("got %q, want 431", line)
		}
	})

	t.Run("Content-Length with Transfer-Encoding (request smuggling) gets 400 and a close", func(t *testing.T) {
		conn := dialGood(t)
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		// Read as chunked, the body ends at once and "GET /smuggled" is a
		// second request; read by its Content-Length, it is body.
		fmt.Fprintf(conn, "POST /front HTTP/1.1\r\nHost: billing\r\nContent-Length: 28\r\nTransfer-Encoding: chunked\r\n\r\n"+
			"0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusBadRequest || !resp.Close || !strings.Contains(string(body), "Content-Length and Transfer-Encoding") {
			t.Fatalf("got %d (close %v) %q, want 400 with Connection: close naming both headers", resp.StatusCode, resp.Close, body)
		}
		if n, err := conn.Read(make([]byte, 1)); err == nil {
			t.Fatalf("the connection stayed open (read %d bytes): the smuggled request could follow", n)
		}
		eventually(t, 5*time.Second, "counted", func() error {
			if metricValue(scrape(t, m.b.agent), `peerd_proxy_tls_handshake_failures_total{listener="gateway",reason="conflicting_length"}`) < 1 {
				return fmt.Errorf("not counted")
			}
			return nil
		})
	})

	t.Run("the good client is still served", func(t *testing.T) {
		m.waitOK(t, client, "/after")
	})
}

func ptr[T any](v T) *T { return &v }

// metricValue returns a series' value in a metrics text, 0 when absent.
func metricValue(metrics, series string) float64 {
	for _, l := range strings.Split(metrics, "\n") {
		if rest, ok := strings.CutPrefix(l, series+" "); ok {
			var v float64
			if _, err := fmt.Sscan(rest, &v); err == nil {
				return v
			}
		}
	}
	return 0
}

var _ = api.HealthPassing
