package l7proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/peerd/peerd/catalog/configentry"
	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/identity"
)

// fuzzGateway is a gateway serving one HTTP service of this cluster, billing,
// whose one instance is an httptest server on this node, and the TLS
// configuration of a caller (web) it lets in.
type fuzzGateway struct {
	addr   string
	client *tls.Config
	p      *Proxy
}

func startFuzzGateway(t testing.TB) *fuzzGateway {
	t.Helper()
	td := spiffeid.RequireTrustDomainFromString("fuzz.peerd")
	root, err := identity.CA{}.NewRoot(td)
	if err != nil {
		t.Fatal(err)
	}
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "billing\n")
	}))
	t.Cleanup(backend.Close)
	port, err := strconv.Atoi(backend.URL[len("http://127.0.0.1:"):])
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.NewStore()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CARootsSet(1, &state.CARootsRequest{Roots: []*state.CARoot{{ID: root.ID, CertPEM: root.CertPEM, KeyPEM: root.KeyPEM,
		TrustDomain: root.TrustDomain, Active: true}}}); err != nil {
		t.Fatal(err)
	}
	if err := st.Register(2, &state.RegisterRequest{Node: &state.Node{Node: "n", Address: "127.0.0.1"},
		Service: &state.Service{ID: "billing-1", Service: "billing", Address: "127.0.0.1", Port: port}}); err != nil {
		t.Fatal(err)
	}
	for i, e := range []struct{ kind, json string }{
		{configentry.ServiceDefaults, `{"Kind":"service-defaults","Name":"billing","Protocol":"http"}`},
		{configentry.ServiceIntentions, `{"Kind":"service-intentions","Name":"billing","Sources":[{"Name":"web","Action":"allow"}]}`},
	} {
		entry, err := configentry.DecodeKind(e.kind, []byte(e.json))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.ConfigSet(uint64(3+i), entry, false, 0); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ca := identity.CA{}
	p, err := New(Config{
		NodeName: "n", Datacenter: "dc1",
		View: func() *state.Store { return st },
		Signer: SignerFunc(func(_ context.Context, req LeafRequest) (string, error) {
			return ca.SignLeaf(root, req.PublicKey, identity.LeafRequest{ID: req.ID, DNSNames: req.DNSNames, TTL: req.TTL, Server: req.Server, Client: req.Client})
		}),
		GatewayListener:   ln,
		Logger:            slog.New(slog.DiscardHandler),
		Registry:          prometheus.NewRegistry(),
		HandshakeTimeout:  2 * time.Second,
		ReadHeaderTimeout: time.Second,
		IdleTimeout:       2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = p.Close(ctx)
	})

	key, _, err := identity.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	web := spiffeid.RequireFromSegments(td, "ns", "default", "dc", "dc1", "svc", "web")
	leafPEM, err := ca.SignLeaf(root, key.Public(), identity.LeafRequest{ID: web, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := identity.ParseCertPEM(leafPEM)
	if err != nil {
		t.Fatal(err)
	}
	g := &fuzzGateway{addr: ln.Addr().String(), p: p, client: &tls.Config{
		ServerName:         identity.InternalSNI("billing", identity.DefaultNamespace, "dc1", td),
		InsecureSkipVerify: true, // the gateway's leaf is not what is tested here
		Certificates:       []tls.Certificate{{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}},
		NextProtos:         []string{"http/1.1"},
		MinVersion:         tls.VersionTLS13,
	}}
	// The intentions compile in the background: wait for the first 200.
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := g.send([]byte("GET / HTTP/1.1\r\nHost: billing\r\nConnection: close\r\n\r\n"))
		if err == nil && bytes.HasPrefix(out, []byte("HTTP/1.1 200 ")) {
			return g
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway did not serve billing within 10 s: %q, %v", out, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// errHeld means the gateway kept a connection open, unanswered, after the
// client had sent all it would and closed its side.
var errHeld = errors.New("the gateway held a half-closed connection")

// send writes data on a new connection, closes the writing side, and
// returns all the gateway wrote back until it closed the connection.
func (g *fuzzGateway) send(data []byte) ([]byte, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", g.addr, g.client)
	if err != nil {
		return nil, fmt.Errorf("dial the gateway: %w", err)
	}
	defer conn.Close()
	// The gateway closes an idle or unfinished connection within its
	// timeouts (2 s idle, 1 s for headers); a connection still open well
	// past them is held.
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(data); err != nil && !errors.Is(err, net.ErrClosed) {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, errHeld
		}
		// The gateway may refuse and close before it read everything.
	}
	_ = conn.CloseWrite()
	out, err := io.ReadAll(conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return out, errHeld
	}
	return out, nil
}

// FuzzGatewayHTTP1 writes raw bytes, as a caller that passed the mTLS
// handshake could, into the gateway's HTTP/1.1 path (h1serve.go: the
// request reader, the header limits, intentions, the router and the
// forwarder). The gateway must not crash or hold the connection, and what
// it writes back must be HTTP/1.1 responses: never a 500, which would be
// the gateway failing on its input.
func FuzzGatewayHTTP1(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: billing\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: billing\r\n\r\nGET /b HTTP/1.1\r\nHost: billing\r\nConnection: close\r\n\r\n",
		"POST /p HTTP/1.1\r\nHost: billing\r\nContent-Length: 5\r\n\r\nhello",
		"POST /p HTTP/1.1\r\nHost: billing\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"POST /p HTTP/1.1\r\nHost: billing\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"PUT /p HTTP/1.1\r\nHost: billing\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
		"GET /ws HTTP/1.1\r\nHost: billing\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: billing\r\nConnection: X-A, close\r\nX-A: 1\r\nX-Forwarded-Client-Cert: By=spiffe://evil\r\n\r\n",
		"HEAD / HTTP/1.0\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: billing\r\n\r\n",
		"CONNECT billing:443 HTTP/1.1\r\nHost: billing:443\r\n\r\n",
		"GET http://other/x?y=%zz HTTP/1.1\r\nHost: billing\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: billing\r\nContent-Length: 3\r\n\r\n",
		"GET /\x00 HTTP/1.1\r\n\r\n",
		"GET / HTTP/2.0\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"\r\n\r\n",
		"",
	} {
		f.Add([]byte(s))
	}
	g := startFuzzGateway(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := g.send(data)
		if err != nil {
			if errors.Is(err, errHeld) {
				t.Fatalf("%q: %v (got %q)", data, err, out)
			}
			// The dial failed: is the gateway gone?
			t.Fatalf("%q: %v", data, err)
		}
		br := bufio.NewReader(bytes.NewReader(out))
		for i := 0; ; i++ {
			line, err := br.ReadString('\n')
			if err == io.EOF && line == "" {
				return
			}
			if i == 0 && !bytes.HasPrefix([]byte(line), []byte("HTTP/1.1 ")) {
				t.Fatalf("%q: the gateway answered %q, not an HTTP/1.1 response", data, out)
			}
			if code, ok := statusLine(line); ok && code == http.StatusInternalServerError {
				t.Fatalf("%q: the gateway answered 500: %q", data, out)
			}
			if err != nil {
				return
			}
		}
	})
}

// statusLine returns the code of an HTTP/1.1 status line.
func statusLine(line string) (int, bool) {
	if len(line) < 12 || line[:9] != "HTTP/1.1 " {
		return 0, false
	}
	code, err := strconv.Atoi(line[9:12])
	return code, err == nil
}

// TestGatewayBrokenBodyIs400 checks that a request whose body ends before
// its Content-Length, or whose chunks are malformed, is answered as a bad
// request, not as the instance's failure (502), and closes the connection.
func TestGatewayBrokenBodyIs400(t *testing.T) {
	g := startFuzzGateway(t)
	for _, tt := range []struct{ name, in string }{
		{"body shorter than its Content-Length", "POST / HTTP/1.1\r\nHost: billing\r\nContent-Length: 10\r\n\r\nabc"},
		{"malformed chunks", "POST / HTTP/1.1\r\nHost: billing\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"},
		{"chunks that stop", "POST / HTTP/1.1\r\nHost: billing\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, err := g.send([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			want := "HTTP/1.1 400 Bad Request\r\n"
			if !bytes.HasPrefix(out, []byte(want)) || !bytes.Contains(out, []byte("Connection: close\r\n")) {
				t.Fatalf("got %q, want a 400 that closes the connection", out)
			}
		})
	}
	if out, err := g.send([]byte("POST / HTTP/1.1\r\nHost: billing\r\nContent-Length: 3\r\n\r\nabc")); err != nil || !bytes.HasPrefix(out, []byte("HTTP/1.1 200 ")) {
		t.Fatalf("a whole body: got %q, %v; want 200", out, err)
	}
}
