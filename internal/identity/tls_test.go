package identity

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// handshake runs a TLS handshake between server and client over net.Pipe
// and returns both sides' errors. Once the client is done it keeps reading,
// so that whatever the server still writes (session tickets, or an alert
// after it rejects the client certificate under TLS 1.3) does not block the
// synchronous pipe.
func handshake(t *testing.T, server, client *tls.Config) (serverErr, clientErr error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sc, cc := net.Pipe()
	defer sc.Close()
	defer cc.Close()
	srv, cli := tls.Server(sc, server), tls.Client(cc, client)
	errc := make(chan error, 1)
	go func() { errc <- srv.HandshakeContext(ctx) }()
	clientErr = cli.HandshakeContext(ctx)
	if clientErr != nil {
		cc.Close() // the server may be waiting for more
	} else {
		go func() { _, _ = io.Copy(io.Discard, cli) }()
	}
	return <-errc, clientErr
}

func keyPair(t *testing.T, chainPEM, keyPEM string) tls.Certificate {
	t.Helper()
	c, err := tls.X509KeyPair([]byte(chainPEM), []byte(keyPEM))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// peers builds the server and client configs of the peering mTLS pattern:
// the client verifies the server's DNS SAN through RootCAs and ServerName;
// the server verifies the client's SPIFFE ID with VerifyLeaf in
// VerifyPeerCertificate and records it in *gotID.
func peers(serverCert, clientCert tls.Certificate, serverRoots, clientRoots *x509.CertPool, serverName string, now time.Time, gotID *spiffeid.ID) (server, client *tls.Config) {
	clock := func() time.Time { return now }
	server = &tls.Config{
		Certificates: []tls.Certificate{serverCert},
		ClientAuth:   tls.RequireAnyClientCert,
		MinVersion:   tls.VersionTLS12,
		Time:         clock,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			chain := make([]*x509.Certificate, len(raw))
			for i, der := range raw {
				c, err := x509.ParseCertificate(der)
				if err != nil {
					return err
				}
				chain[i] = c
			}
			id, err := VerifyLeaf(chain, serverRoots, now, x509.ExtKeyUsageClientAuth)
			if err != nil {
				return err
			}
			*gotID = id
			return nil
		},
	}
	client = &tls.Config{
		Certificates: []tls.Certificate{clientCert},
		RootCAs:      clientRoots,
		ServerName:   serverName,
		MinVersion:   tls.VersionTLS12,
		Time:         clock,
	}
	return server, client
}

func TestTLSHandshake(t *testing.T) {
	td := testTD(t)
	root := newRoot(t, td)
	stranger := newRoot(t, td) // same trust domain, another CA
	ca := CA{Now: at(t0)}
	web, _ := ServiceID(td, "default", "dc1", "web")
	name := ServerName("dc1", td)

	_, srvPEM, srvKey := leaf(t, ca, root, LeafRequest{DNSNames: []string{name}, Server: true})
	_, cliPEM, cliKey := leaf(t, ca, root, LeafRequest{ID: web, Client: true})
	_, badCliPEM, badCliKey := leaf(t, ca, stranger, LeafRequest{ID: web, Client: true})
	_, srvAsCliPEM, srvAsCliKey := leaf(t, ca, root, LeafRequest{ID: web, Server: true})
	serverCert, clientCert := keyPair(t, srvPEM, srvKey), keyPair(t, cliPEM, cliKey)
	roots := mustPool(t, root.CertPEM)

	tests := []struct {
		name          string
		clientCert    tls.Certificate
		clientRoots   *x509.CertPool
		serverName    string
		now           time.Time
		wantServerErr string // "" = no error
		wantClientErr string
		maxVersion    uint16
	}{
		{name: "mTLS 1.3", clientCert: clientCert, clientRoots: roots, serverName: name, now: t0},
		{name: "mTLS 1.2", clientCert: clientCert, clientRoots: roots, serverName: name, now: t0, maxVersion: tls.VersionTLS12},
		{name: "wrong server name", clientCert: clientCert, clientRoots: roots, serverName: ServerName("dc2", td), now: t0,
			wantClientErr: "certificate is valid for " + name},
		{name: "client distrusts server CA", clientCert: clientCert, clientRoots: mustPool(t, stranger.CertPEM), serverName: name, now: t0,
			wantClientErr: "unknown authority"},
		{name: "client of another CA", clientCert: keyPair(t, badCliPEM, badCliKey), clientRoots: roots, serverName: name, now: t0,
			wantServerErr: "unknown authority"},
		{name: "server-only leaf as client", clientCert: keyPair(t, srvAsCliPEM, srvAsCliKey), clientRoots: roots, serverName: name, now: t0,
			wantServerErr: "usage"},
		{name: "after expiry", clientCert: clientCert, clientRoots: roots, serverName: name, now: t0.Add(73 * time.Hour),
			wantClientErr: "expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var gotID spiffeid.ID
			server, client := peers(serverCert, tt.clientCert, roots, tt.clientRoots, tt.serverName, tt.now, &gotID)
			client.MaxVersion = tt.maxVersion
			serverErr, clientErr := handshake(t, server, client)
			checkErr(t, "client", clientErr, tt.wantClientErr)
			if tt.wantClientErr != "" {
				return // the server only sees the client's alert
			}
			checkErr(t, "server", serverErr, tt.wantServerErr)
			if tt.wantServerErr != "" && !errors.Is(serverErr, ErrVerify) {
				t.Errorf("server: got %v, want an error wrapping ErrVerify", serverErr)
			}
			if tt.wantServerErr == "" && tt.wantClientErr == "" && gotID != web {
				t.Errorf("client ID: got %q, want %q", gotID, web)
			}
		})
	}
}

// TestTLSRotation: after rotation a server presents its new leaf with the
// cross-signed certificate; a client that has only the old root accepts it,
// and a server that trusts both roots accepts clients of either.
func TestTLSRotation(t *testing.T) {
	td := testTD(t)
	later := t0.Add(time.Hour)
	old := newRoot(t, td)
	newer, err := CA{Now: at(later)}.NewRoot(td)
	if err != nil {
		t.Fatal(err)
	}
	newer.CrossSignedPEM, err = CA{Now: at(later)}.CrossSign(newer, old)
	if err != nil {
		t.Fatal(err)
	}
	name := ServerName("dc1", td)
	web, _ := ServiceID(td, "default", "dc1", "web")
	_, srvPEM, srvKey := leaf(t, CA{Now: at(later)}, newer, LeafRequest{DNSNames: []string{name}, Server: true})
	_, oldCliPEM, oldCliKey := leaf(t, CA{Now: at(t0)}, old, LeafRequest{ID: web, Client: true})
	_, newCliPEM, newCliKey := leaf(t, CA{Now: at(later)}, newer, LeafRequest{ID: web, Client: true})

	tests := []struct {
		name          string
		serverChain   string
		clientCert    tls.Certificate
		clientRoots   *x509.CertPool
		serverRoots   *x509.CertPool
		wantClientErr string
	}{
		{"new server leaf + cross, client trusts old root, old client leaf",
			srvPEM + newer.CrossSignedPEM, keyPair(t, oldCliPEM, oldCliKey), mustPool(t, old.CertPEM), mustPool(t, old.CertPEM, newer.CertPEM), ""},
		{"new server leaf + cross, client trusts old root, new client leaf + cross",
			srvPEM + newer.CrossSignedPEM, keyPair(t, newCliPEM+newer.CrossSignedPEM, newCliKey), mustPool(t, old.CertPEM), mustPool(t, old.CertPEM), ""},
		{"new server leaf without cross, client trusts old root",
			srvPEM, keyPair(t, oldCliPEM, oldCliKey), mustPool(t, old.CertPEM), mustPool(t, old.CertPEM), "unknown authority"},
		{"new server leaf, client trusts both",
			srvPEM, keyPair(t, newCliPEM, newCliKey), mustPool(t, old.CertPEM, newer.CertPEM), mustPool(t, newer.CertPEM), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var gotID spiffeid.ID
			server, client := peers(keyPair(t, tt.serverChain, srvKey), tt.clientCert, tt.serverRoots, tt.clientRoots, name, later.Add(time.Minute), &gotID)
			serverErr, clientErr := handshake(t, server, client)
			checkErr(t, "client", clientErr, tt.wantClientErr)
			if tt.wantClientErr == "" {
				checkErr(t, "server", serverErr, "")
				if gotID != web {
					t.Errorf("client ID: got %q, want %q", gotID, web)
				}
			}
		})
	}
}

func checkErr(t *testing.T, side string, err error, wantSub string) {
	t.Helper()
	switch {
	case wantSub == "" && err != nil:
		t.Errorf("%s: got %v, want no error", side, err)
	case wantSub != "" && err == nil:
		t.Errorf("%s: got no error, want one mentioning %q", side, wantSub)
	case wantSub != "" && !strings.Contains(err.Error(), wantSub):
		t.Errorf("%s: got %v, want an error mentioning %q", side, err, wantSub)
	}
}
