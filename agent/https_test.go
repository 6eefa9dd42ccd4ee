package agent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/peerd/peerd/cmd/peerctl/cli"
	"github.com/peerd/peerd/internal/testutil"
)

// testCA is a CA made by a test, standing in for an operator's own.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // the CA certificate, PEM
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &testCA{cert: cert, key: key, file: filepath.Join(t.TempDir(), "ca.pem")}
	writePEM(t, ca.file, "CERTIFICATE", der)
	return ca
}

// issue writes a certificate (server or client) and its key to files.
func (ca *testCA) issue(t *testing.T, name string, usage x509.ExtKeyUsage, ips ...net.IP) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, DNSNames: []string{name}, IPAddresses: ips}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, keyFile, "PRIVATE KEY", kder)
	return certFile, keyFile
}

func writePEM(t *testing.T, path, kind string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// httpsClient is the official client for an HTTPS agent.
func httpsClient(t *testing.T, addr string, tc api.TLSConfig) *api.Client {
	t.Helper()
	c, err := api.NewClient(&api.Config{Address: addr, Scheme: "https", TLSConfig: tc})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestHTTPSClusterCA: by default the HTTPS API's certificate comes from
// the cluster CA. The official client verifies it with the CA file and the
// API's server name; another CA, or no server name (the cluster CA names
// no address), fails; peerctl works the same way. The browser protections
// stand in front of HTTPS too.
func TestHTTPSClusterCA(t *testing.T) {
	a := devAgent(t, func(c *Config) { c.HTTPSAddr = "127.0.0.1:0" })
	plain, err := api.NewClient(&api.Config{Address: a.HTTPAddr()})
	if err != nil {
		t.Fatal(err)
	}
	var roots *api.CARootList
	eventually(t, 10*time.Second, "the cluster CA exists", func() error {
		roots, _, err = plain.Connect().CARoots(nil)
		if err == nil && (len(roots.Roots) == 0 || roots.TrustDomain == "") {
			err = fmt.Errorf("no active root yet")
		}
		return err
	})
	caFile := filepath.Join(t.TempDir(), "cluster-ca.pem")
	var bundle []byte
	for _, r := range roots.Roots {
		bundle = append(bundle, r.RootCertPEM...)
	}
	if err := os.WriteFile(caFile, bundle, 0o600); err != nil {
		t.Fatal(err)
	}
	serverName := "api." + roots.TrustDomain

	c := httpsClient(t, a.HTTPSAddr(), api.TLSConfig{CAFile: caFile, Address: serverName})
	eventually(t, 10*time.Second, "the HTTPS API answers with its cluster-CA certificate", func() error {
		_, err := c.Agent().Self()
		return err
	})
	if err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{Name: "web", Port: 8080}); err != nil {
		t.Fatalf("register over HTTPS: %v", err)
	}
	svcs, err := c.Agent().Services()
	if err != nil || svcs["web"] == nil {
		t.Fatalf("services over HTTPS: %v, %v; want web", svcs, err)
	}
	nodeName := httpsClient(t, a.HTTPSAddr(), api.TLSConfig{CAFile: caFile, Address: "dev1.node." + serverName})
	if _, err := nodeName.Agent().Self(); err != nil {
		t.Fatalf("the node's own API name: %v", err)
	}

	other := newTestCA(t)
	if _, err := httpsClient(t, a.HTTPSAddr(), api.TLSConfig{CAFile: other.file, Address: serverName}).Agent().Self(); err == nil ||
		!strings.Contains(err.Error(), "certificate") {
		t.Fatalf("another CA: got %v, want a certificate error", err)
	}
	if _, err := httpsClient(t, a.HTTPSAddr(), api.TLSConfig{CAFile: caFile}).Agent().Self(); err == nil {
		t.Fatal("no server name: got no error, want the address refused (the cluster CA names no address)")
	}
	if _, err := httpsClient(t, a.HTTPSAddr(), api.TLSConfig{CAFile: caFile, Address: "api.other.peerd"}).Agent().Self(); err == nil {
		t.Fatal("another cluster's API name: got no error")
	}

	// A browser page's cross-origin change is refused on HTTPS as on HTTP.
	req, _ := http.NewRequest("PUT", "https://"+a.HTTPSAddr()+"/v1/agent/service/register", strings.NewReader(`{"Name":"evil"}`))
	req.Header.Set("Origin", "https://evil.example")
	req.Header.Set("Content-Type", "application/json")
	hc, err := api.NewHttpClient(&http.Transport{}, api.TLSConfig{CAFile: caFile, Address: serverName})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-origin PUT over HTTPS: got %d, want 403", resp.StatusCode)
	}
	if svcs, _ := c.Agent().Services(); svcs["evil"] != nil {
		t.Fatal("the cross-origin PUT registered its service")
	}

	run := func(args ...string) (string, error) {
		var out, errb bytes.Buffer
		err := cli.Run(context.Background(), args, &out, &errb)
		return out.String(), err
	}
	pemOut, err := run("-http-addr", a.HTTPAddr(), "ca", "roots", "-pem")
	if err != nil || pemOut != string(bundle) {
		t.Fatalf("peerctl ca roots -pem: got %q, %v; want the roots' PEM %q", pemOut, err, bundle)
	}
	out, err := run("-http-addr", "https://"+a.HTTPSAddr(), "-ca-file", caFile, "-tls-server-name", serverName, "catalog", "services")
	if err != nil || !strings.Contains(out, "web") {
		t.Fatalf("peerctl over HTTPS: got %q, %v; want web", out, err)
	}
	if _, err := run("-http-addr", "https://"+a.HTTPSAddr(), "-ca-file", caFile, "members"); err == nil || !strings.Contains(err.Error(), "-tls-server-name") {
		t.Fatalf("peerctl without the server name: got %v, want a hint naming -tls-server-name", err)
	}
	if _, err := run("-http-addr", "https://"+a.HTTPSAddr(), "-ca-file", other.file, "-tls-server-name", serverName, "members"); err == nil || !strings.Contains(err.Error(), "-ca-file") {
		t.Fatalf("peerctl with another CA: got %v, want a hint naming -ca-file", err)
	}

	// A CA rotation renews the API certificate under the new root, as it
	// does the node certificate.
	if _, err := run("-http-addr", a.HTTPAddr(), "ca", "rotate"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "the HTTPS certificate is signed by the new root", func() error {
		roots, _, err := plain.Connect().CARoots(nil)
		if err != nil {
			return err
		}
		conn, err := tls.Dial("tcp", a.HTTPSAddr(), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // only the served chain is read
		if err != nil {
			return err
		}
		defer conn.Close()
		leaf := conn.ConnectionState().PeerCertificates[0]
		if got := fmt.Sprintf("%x", leaf.AuthorityKeyId); got != roots.ActiveRootID {
			return fmt.Errorf("served certificate signed by %s, active root %s", got, roots.ActiveRootID)
		}
		return nil
	})
	// A client holding only the previous root still verifies it, through
	// the cross-signed certificate served with it.
	if _, err := httpsClient(t, a.HTTPSAddr(), api.TLSConfig{CAFile: caFile, Address: serverName}).Agent().Self(); err != nil {
		t.Fatalf("a client with the previous root after a rotation: %v", err)
	}
}

// TestHTTPSFilesVerifyIncoming: an operator's certificate files, HTTP
// turned off, and verify_incoming: a client without a certificate, or with
// one of another CA, is refused and counted; one signed by the CA gets
// in, with the official client and with peerctl.
func TestHTTPSFilesVerifyIncoming(t *testing.T) {
	ca := newTestCA(t)
	serverCert, serverKey := ca.issue(t, "peerd.example", x509.ExtKeyUsageServerAuth, net.IPv4(127, 0, 0, 1))
	clientCert, clientKey := ca.issue(t, "operator", x509.ExtKeyUsageClientAuth)
	other := newTestCA(t)
	otherCert, otherKey := other.issue(t, "intruder", x509.ExtKeyUsageClientAuth)

	cfg := DevConfig()
	cfg.NodeName, cfg.LogLevel = "dev1", "error"
	cfg.HTTPAddr, cfg.HTTPSAddr = "", "127.0.0.1:0"
	cfg.HTTPSCertFile, cfg.HTTPSKeyFile, cfg.HTTPSCAFile, cfg.HTTPSVerifyIncoming = serverCert, serverKey, ca.file, true
	a, err := startAgent(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close(context.Background()) })
	if a.httpLn != nil || a.HTTPAddr() != "" {
		t.Fatalf("HTTP off: got a listener on %q", a.HTTPAddr())
	}
	var banner bytes.Buffer
	a.PrintBanner(&banner)
	if strings.Contains(banner.String(), " http: ") || !strings.Contains(banner.String(), "https: "+a.HTTPSAddr()) {
		t.Fatalf("banner: got\n%s\nwant an https line and no http line", banner.String())
	}

	good := httpsClient(t, a.HTTPSAddr(), api.TLSConfig{CAFile: ca.file, CertFile: clientCert, KeyFile: clientKey})
	eventually(t, 10*time.Second, "the HTTPS API has a leader", func() error {
		leader, err := good.Status().Leader()
		if err == nil && leader == "" {
			err = fmt.Errorf("no leader yet")
		}
		return err
	})
	if err := good.Agent().ServiceRegister(&api.AgentServiceRegistration{Name: "web", Port: 8080}); err != nil {
		t.Fatalf("register with a client certificate: %v", err)
	}

	count := func() float64 {
		req, _ := http.NewRequest("GET", "https://"+a.HTTPSAddr()+"/metrics", nil)
		hc, err := api.NewHttpClient(&http.Transport{}, api.TLSConfig{CAFile: ca.file, CertFile: clientCert, KeyFile: clientKey})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return metricValue(b.String(), `peerd_http_refusals_total{listener="https",reason="client-certificate"}`)
	}
	before := count()
	if _, err := httpsClient(t, a.HTTPSAddr(), api.TLSConfig{CAFile: ca.file}).Agent().Self(); err == nil {
		t.Fatal("a client without a certificate got in")
	}
	if _, err := httpsClient(t, a.HTTPSAddr(), api.TLSConfig{CAFile: ca.file, CertFile: otherCert, KeyFile: otherKey}).Agent().Self(); err == nil {
		t.Fatal("a client with another CA's certificate got in")
	}
	eventually(t, 5*time.Second, "both refusals counted", func() error {
		if got := count(); got < before+2 {
			return fmt.Errorf("peerd_http_refusals_total{client-certificate} = %v, want %v", got, before+2)
		}
		return nil
	})

	var out, errb bytes.Buffer
	args := []string{"-http-addr", "https://" + a.HTTPSAddr(), "-ca-file", ca.file, "-client-cert", clientCert, "-client-key", clientKey, "catalog", "services"}
	if err := cli.Run(context.Background(), args, &out, &errb); err != nil || !strings.Contains(out.String(), "web") {
		t.Fatalf("peerctl with a client certificate: got %q, %v", out.String(), err)
	}
	if err := cli.Run(context.Background(), append(args[:4:4], "catalog", "services"), &out, &errb); err == nil {
		t.Fatal("peerctl without a client certificate got in")
	}
}

// TestBrowserAttacksOnAgent: the edge checks stand in front of the real
// API: a cross-origin registration, a text/plain one and a rebound Host
// change nothing, while the official client and same-origin pages work.
func TestBrowserAttacksOnAgent(t *testing.T) {
	a := devAgent(t, func(c *Config) { c.HTTPAllowedOrigins = []string{"https://ui.example.com"} })
	c, err := api.NewClient(&api.Config{Address: a.HTTPAddr()})
	if err != nil {
		t.Fatal(err)
	}
	register := func(name, host, origin, ctype string) int {
		t.Helper()
		req, _ := http.NewRequest("PUT", "http://"+a.HTTPAddr()+"/v1/agent/service/register", strings.NewReader(`{"Name":"`+name+`"}`))
		if host != "" {
			req.Host = host
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	_, port, _ := net.SplitHostPort(a.HTTPAddr())
	for _, tt := range []struct {
		name, host, origin, ctype string
		want                      int
	}{
		{"cross-origin", "", "https://evil.example", "application/json", 403},
		{"text-plain", "", "", "text/plain", 415},
		{"form", "", "", "application/x-www-form-urlencoded", 415},
		{"rebound", "evil.example:" + port, "http://evil.example:" + port, "application/json", 421},
		{"same-origin", "", "http://" + a.HTTPAddr(), "application/json", 200},
		{"localhost", "localhost:" + port, "http://localhost:" + port, "application/json", 200},
		{"allowed-origin", "", "https://ui.example.com", "application/json", 200},
		{"cli", "", "", "", 200},
	} {
		if got := register(tt.name, tt.host, tt.origin, tt.ctype); got != tt.want {
			t.Errorf("%s: got %d, want %d", tt.name, got, tt.want)
		}
	}
	svcs, err := c.Agent().Services()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"cross-origin", "text-plain", "form", "rebound"} {
		if svcs[name] != nil {
			t.Errorf("the %s attack registered its service", name)
		}
	}
	for _, name := range []string{"same-origin", "localhost", "allowed-origin", "cli"} {
		if svcs[name] == nil {
			t.Errorf("%s: not registered", name)
		}
	}
	// The official client's own writes pass: JSON bodies, and snapshot
	// restore's octet-stream.
	if err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{Name: "official"}); err != nil {
		t.Fatalf("official client: %v", err)
	}
	snap, _, err := c.Snapshot().Save(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	if err := c.Snapshot().Restore(nil, snap); err != nil {
		t.Fatalf("snapshot restore through the edge: %v", err)
	}
	metrics := scrape(t, a)
	for _, reason := range []string{"origin", "content-type", "host"} {
		if metricValue(metrics, fmt.Sprintf(`peerd_http_refusals_total{listener="http",reason=%q}`, reason)) < 1 {
			t.Errorf("refusals of reason %s not counted", reason)
		}
	}
}

// TestHTTPSClientNodeClusterCA: a client node holds no CA key: a server
// signs its HTTPS API certificate over the internal mTLS port, named for
// that node. With verify_incoming and no CA file, client certificates of
// the cluster CA (a node certificate here) get in, and nothing else.
func TestHTTPSClientNodeClusterCA(t *testing.T) {
	if testing.Short() {
		t.Skip("two agents with cluster trust: skipped with -short")
	}
	s1, err := trustedAgent(t, "s1", true, "")
	if err != nil {
		t.Fatal(err)
	}
	tok := createJoinToken(t, s1, "client", "1h")
	c1, err := trustedAgentWith(t, "c1", false, tok.Token, func(c *Config) {
		c.HTTPSAddr, c.HTTPSVerifyIncoming = "127.0.0.1:0", true
	})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := api.NewClient(&api.Config{Address: s1.HTTPAddr()})
	if err != nil {
		t.Fatal(err)
	}
	roots, _, err := plain.Connect().CARoots(nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	caFile, certFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "s1.pem"), filepath.Join(dir, "s1-key.pem")
	var bundle string
	for _, r := range roots.Roots {
		bundle += r.RootCertPEM
	}
	m := s1.trust.source // the server's node certificate stands in for an operator's client certificate
	for path, body := range map[string]string{caFile: bundle, certFile: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: m.Leaf().Raw}))} {
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	kder, err := x509.MarshalPKCS8PrivateKey(m.Certificate().PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, keyFile, "PRIVATE KEY", kder)

	name := "c1.node.api." + roots.TrustDomain
	c := httpsClient(t, c1.HTTPSAddr(), api.TLSConfig{CAFile: caFile, Address: name, CertFile: certFile, KeyFile: keyFile})
	eventually(t, 20*time.Second, "the client node's HTTPS API has a certificate signed for c1", func() error {
		_, err := c.Agent().Self()
		return err
	})
	if _, err := httpsClient(t, c1.HTTPSAddr(), api.TLSConfig{CAFile: caFile, Address: "s1.node.api." + roots.TrustDomain, CertFile: certFile, KeyFile: keyFile}).Agent().Self(); err == nil {
		t.Fatal("the client node's certificate names another node")
	}
	if _, err := httpsClient(t, c1.HTTPSAddr(), api.TLSConfig{CAFile: caFile, Address: name}).Agent().Self(); err == nil {
		t.Fatal("a client without a certificate got in")
	}
	other := newTestCA(t)
	oc, ok := other.issue(t, "intruder", x509.ExtKeyUsageClientAuth)
	if _, err := httpsClient(t, c1.HTTPSAddr(), api.TLSConfig{CAFile: caFile, Address: name, CertFile: oc, KeyFile: ok}).Agent().Self(); err == nil {
		t.Fatal("a client certificate of another CA got in")
	}
}

// TestHTTPSCertFileReload: a renewed certificate written over the files
// serves new handshakes; a broken pair keeps the previous one serving.
func TestHTTPSCertFileReload(t *testing.T) {
	ca := newTestCA(t)
	certFile, keyFile := ca.issue(t, "one", x509.ExtKeyUsageServerAuth, net.IPv4(127, 0, 0, 1))
	logs := &testutil.SyncBuffer{}
	a := devAgent(t, func(c *Config) {
		c.HTTPSAddr, c.HTTPSCertFile, c.HTTPSKeyFile = "127.0.0.1:0", certFile, keyFile
		c.LogLevel, c.LogOutput = "warn", logs
	})
	served := func() string {
		pool := x509.NewCertPool()
		pool.AddCert(ca.cert)
		conn, err := tls.Dial("tcp", a.HTTPSAddr(), &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if got := served(); got != "one" {
		t.Fatalf("served %q, want one", got)
	}
	copyOver := func(from, to string) {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A broken pair (the new certificate with the old key) is not loaded.
	twoCert, twoKey := ca.issue(t, "two", x509.ExtKeyUsageServerAuth, net.IPv4(127, 0, 0, 1))
	copyOver(twoCert, certFile)
	eventually(t, 10*time.Second, "the mismatched pair is refused and logged", func() error {
		if !strings.Contains(logs.String(), "reload the HTTPS certificate files") {
			return fmt.Errorf("not logged yet")
		}
		return nil
	})
	if got := served(); got != "one" {
		t.Fatalf("a certificate without its key is served: %q", got)
	}
	copyOver(twoKey, keyFile)
	eventually(t, 10*time.Second, "the renewed certificate is served", func() error {
		if got := served(); got != "two" {
			return fmt.Errorf("served %q", got)
		}
		return nil
	})
}
