package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/peerd/peerd/agent/admission"
	"github.com/peerd/peerd/agent/admission/pbadmission"
	"github.com/peerd/peerd/agent/httpapi"
	"github.com/peerd/peerd/internal/ca"
	"github.com/peerd/peerd/internal/identity"
)

// errNoAPICert is the handshake error of the HTTPS API until the cluster
// CA has signed its certificate.
var errNoAPICert = errors.New("the HTTPS API has no certificate yet: the cluster CA has not signed it (no leader elected so far?)")

// apiCert is the HTTPS API's serving certificate: from files, or signed by
// the cluster CA and renewed by renewAPICert.
type apiCert struct {
	mu   sync.RWMutex
	cert *tls.Certificate
}

func (c *apiCert) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.cert == nil {
		return nil, errNoAPICert
	}
	return c.cert, nil
}

func (c *apiCert) leaf() *x509.Certificate {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.cert == nil {
		return nil
	}
	return c.cert.Leaf
}

func (c *apiCert) set(cert *tls.Certificate) {
	c.mu.Lock()
	c.cert = cert
	c.mu.Unlock()
}

// httpsConfig is the HTTPS API's TLS configuration: TLS 1.2 or later (the
// -https-tls-min-version), no session tickets (every connection does a
// full handshake, so a client certificate is verified on each), and with
// -https-verify-incoming a client certificate verified against
// -https-ca-file or, without one, the cluster's roots. Refused client
// certificates are counted and logged by edge.
func (a *Agent) httpsConfig(cert *apiCert, edge *httpapi.Edge) (*tls.Config, error) {
	cfg := &a.cfg
	minVersion, err := cfg.HTTPSMinVersion()
	if err != nil {
		return nil, err
	}
	if cfg.HTTPSCertFile != "" {
		pair, err := tls.LoadX509KeyPair(cfg.HTTPSCertFile, cfg.HTTPSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("load the HTTPS certificate (-https-cert-file %s, -https-key-file %s): %w", cfg.HTTPSCertFile, cfg.HTTPSKeyFile, err)
		}
		cert.set(&pair)
	}
	tc := &tls.Config{
		MinVersion:             minVersion,
		GetCertificate:         cert.get,
		SessionTicketsDisabled: true,
	}
	if !cfg.HTTPSVerifyIncoming {
		return tc, nil
	}
	var fileCAs *x509.CertPool
	if cfg.HTTPSCAFile != "" {
		pem, err := os.ReadFile(cfg.HTTPSCAFile)
		if err != nil {
			return nil, fmt.Errorf("read the HTTPS client CA (-https-ca-file): %w", err)
		}
		fileCAs = x509.NewCertPool()
		if !fileCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-https-ca-file %s: no PEM certificate in it", cfg.HTTPSCAFile)
		}
	} else if a.trust == nil {
		return nil, errors.New("-https-verify-incoming needs -https-ca-file or cluster trust")
	}
	// Asked for, and required in VerifyConnection, which crypto/tls calls
	// without a certificate too: a missing one is refused like a bad one.
	tc.ClientAuth = tls.RequestClientCert
	tc.VerifyConnection = func(cs tls.ConnectionState) error {
		roots := fileCAs
		if roots == nil {
			roots = a.trust.source.Roots()
		}
		if err := verifyClient(cs.PeerCertificates, roots); err != nil {
			edge.Refused("https", httpapi.ReasonClientCert, "err", err)
			return err
		}
		return nil
	}
	return tc, nil
}

// verifyClient checks an HTTPS client's chain (leaf first) against roots.
func verifyClient(chain []*x509.Certificate, roots *x509.CertPool) error {
	if len(chain) == 0 {
		return errors.New("no client certificate: this API verifies incoming connections; present one signed by its CA (peerctl -client-cert, CONSUL_CLIENT_CERT)")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return fmt.Errorf("client certificate not signed by this API's CA: %w", err)
	}
	return nil
}

// renewAPICert keeps the HTTPS API's certificate from the cluster CA
// current, as renewTrust does the node certificate: a new one when there
// is none, at half its life, or when the active root changed. It checks
// at once, then every second. seed is the first server's seed CA as it
// was at start (renewTrust replaces the material, and drops the seed once
// raft holds the CA, which is then used first).
func (a *Agent) renewAPICert(ctx context.Context, cert *apiCert, seed *ca.Seed) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		if err := a.refreshAPICert(ctx, cert, seed); err != nil && ctx.Err() == nil {
			a.log.Warn("obtain the HTTPS API certificate from the cluster CA; retrying", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (a *Agent) refreshAPICert(ctx context.Context, cert *apiCert, seed *ca.Seed) error {
	t := a.trust
	var active string
	if _, roots, err := a.cluster.View().CARoots(nil); err == nil && len(roots) > 0 {
		active = roots[0].CertPEM
	} else if seed != nil {
		active = seed.Root.CertPEM
	} else {
		return nil // no CA in the state yet: the first election is pending
	}
	if leaf := cert.leaf(); leaf != nil && !identity.NeedsRenewal(leaf, time.Now()) && rootSigned(leaf, active) {
		return nil
	}
	key, keyPEM, err := identity.NewKey()
	if err != nil {
		return err
	}
	req := ca.APIRequest{PublicKey: key.Public(), Agent: t.source.Self()}
	var chain string
	switch {
	case a.cluster.Store() != nil && a.hasCA():
		signed, err := a.peering.CA().SignAPI(ctx, req)
		if err != nil {
			return err
		}
		chain = signed.ChainPEM
	case seed != nil:
		// The first server before raft holds the CA: its seed signs.
		if chain, err = ca.SignAPIWith(seed.Root, req, nil); err != nil {
			return err
		}
	default:
		pub, err := admission.PublicKeyPEM(key.Public())
		if err != nil {
			return err
		}
		conn, err := a.cluster.LeaderConn()
		if err != nil {
			return err
		}
		resp, err := pbadmission.NewAdmissionServiceClient(conn).SignAPI(ctx, &pbadmission.SignAPIRequest{PublicKeyPem: pub})
		if err != nil {
			return fmt.Errorf("ask a server to sign the HTTPS API certificate: %w", err)
		}
		chain = resp.GetChainPem()
	}
	pair, err := tls.X509KeyPair([]byte(chain), []byte(keyPEM))
	if err != nil {
		return fmt.Errorf("HTTPS API certificate: %w", err)
	}
	cert.set(&pair) // pair.Leaf is parsed by X509KeyPair
	a.log.Info("HTTPS API certificate issued by the cluster CA", "names", pair.Leaf.DNSNames, "expires", pair.Leaf.NotAfter)
	return nil
}

// hasCA reports whether this server's copy of the state holds the CA.
func (a *Agent) hasCA() bool {
	_, _, err := a.peering.CA().ActiveRoot()
	return err == nil
}

// certFileInterval is how often the HTTPS certificate files are checked
// for a change.
const certFileInterval = 2 * time.Second

// watchCertFiles reloads -https-cert-file and -https-key-file when either
// changes (a renewal by cert-manager or an ACME client): new handshakes
// use the new pair. A pair that does not load keeps the old one serving
// and is logged until it is fixed.
func (a *Agent) watchCertFiles(ctx context.Context, cert *apiCert) {
	certFile, keyFile := a.cfg.HTTPSCertFile, a.cfg.HTTPSKeyFile
	stamp := func() string {
		var s strings.Builder
		for _, f := range []string{certFile, keyFile} {
			if st, err := os.Stat(f); err == nil {
				fmt.Fprintf(&s, "%d/%d;", st.ModTime().UnixNano(), st.Size())
			}
		}
		return s.String()
	}
	last, failed := stamp(), ""
	tick := time.NewTicker(certFileInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := stamp()
		if now == last || now == failed {
			continue
		}
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			failed = now
			a.log.Warn("reload the HTTPS certificate files; the previous certificate keeps serving", "cert_file", certFile, "key_file", keyFile, "err", err)
			continue
		}
		last, failed = now, ""
		cert.set(&pair)
		a.log.Info("HTTPS certificate reloaded from its files", "cert_file", certFile, "expires", pair.Leaf.NotAfter)
	}
}

// serverErrorLog is the API servers' ErrorLog. Failed TLS handshakes (a
// refused client certificate, which the edge has counted and logged; a
// scanner; a client that distrusts the certificate) go to Debug, so that
// nobody can flood the log with them; anything else to Warn.
func serverErrorLog(l *slog.Logger) *log.Logger {
	return log.New(errorLogWriter{l}, "", 0)
}

type errorLogWriter struct{ log *slog.Logger }

func (w errorLogWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	level := slog.LevelWarn
	if strings.Contains(msg, "TLS handshake error") {
		level = slog.LevelDebug
	}
	w.log.Log(context.Background(), level, msg)
	return len(p), nil
}
