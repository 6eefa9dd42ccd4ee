package l7proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/peerd/peerd/catalog/state"
)

// noCapture finds no original destination: every connection is refused.
type noCapture struct{}

func (noCapture) OriginalDestination(net.Conn) (netip.AddrPort, uint64, bool, error) {
	return netip.AddrPort{}, 0, false, nil
}

func newExtraProxy(t *testing.T, st *state.Store) *Proxy {
	t.Helper()
	own, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(Config{NodeName: "n", Datacenter: "dc", View: func() *state.Store { return st },
		Signer: SignerFunc(func(context.Context, LeafRequest) (string, error) {
			return "", errors.New("no CA in this test")
		}),
		Capture: noCapture{}, TransparentListeners: []net.Listener{own}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestServiceUpstreamsAreTheOwnersOnly(t *testing.T) {
	st, err := state.NewStore()
	if err != nil {
		t.Fatal(err)
	}
	reg := func(idx uint64, svc, dest string, port int) {
		t.Helper()
		if err := st.Register(idx, &state.RegisterRequest{Node: &state.Node{Node: "n", Address: "127.0.0.1"},
			Service: &state.Service{Service: svc, Port: 80, Proxy: &state.ProxyConfig{Upstreams: []state.Upstream{
				{DestinationName: dest, DestinationPeer: "b", LocalBindPort: port},
				{DestinationName: "skipped", DestinationType: "prepared_query", LocalBindPort: port + 1},
			}}}}); err != nil {
			t.Fatal(err)
		}
	}
	reg(1, "web", "db", 9191)
	reg(2, "api", "cache", 9191) // the same bind address as web's: each namespace has its own loopback
	p := newExtraProxy(t, st)
	defer p.Close(context.Background())
	for svc, dest := range map[string]string{"web": "db", "api": "cache"} {
		ups, err := p.ServiceUpstreams(nil, svc)
		if err != nil {
			t.Fatal(err)
		}
		if len(ups) != 1 || ups[0].Caller != svc || ups[0].DestinationName != dest || ups[0].BindAddr != "127.0.0.1:9191" || ups[0].DestinationPeer != "b" {
			t.Errorf("ServiceUpstreams(%s) = %+v, want only its own upstream to %s on 127.0.0.1:9191", svc, ups, dest)
		}
	}
	if ups, err := p.ServiceUpstreams(nil, "nobody"); err != nil || len(ups) != 0 {
		t.Errorf("ServiceUpstreams(nobody) = %+v, %v; want none", ups, err)
	}
}

func TestServeExtraListeners(t *testing.T) {
	st, err := state.NewStore()
	if err != nil {
		t.Fatal(err)
	}
	p := newExtraProxy(t, st)
	listen := func() net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return ln
	}
	if err := p.ServeUpstream(Upstream{DestinationName: "db"}, listen()); err == nil {
		t.Error("ServeUpstream without a caller: no error")
	}
	tl, ul, mine := listen(), listen(), listen()
	if err := p.ServeTransparent(tl); err != nil {
		t.Fatal(err)
	}
	if err := p.ServeUpstream(Upstream{Caller: "web", DestinationName: "db", BindAddr: ul.Addr().String()}, ul); err != nil {
		t.Fatal(err)
	}
	// A connection not found by the capture layer is refused (closed).
	c, err := net.Dial("tcp", tl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read on a refused captured connection: %v, want EOF/reset", err)
	}
	c.Close()
	// The caller stops one by closing it; the proxy's Close closes the rest.
	if err := p.ServeTransparent(mine); err != nil {
		t.Fatal(err)
	}
	mine.Close()
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, ln := range []net.Listener{tl, ul} {
		if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts after Close", ln.Addr())
		}
	}
	if err := p.ServeTransparent(listen()); err == nil {
		t.Error("ServeTransparent after Close: no error")
	}
}

// TestStartOpensUpstreamsBeforeReturning: the upstream listeners the view
// asks for are open when Start returns. On a reload they are the old
// process's sockets, which the hand-over closes (resetting the
// connections queued on them) unless claimed before the new process says
// it serves; the fault suite saw 46 calls reset when the first reconcile
// ran a moment after that.
func TestStartOpensUpstreamsBeforeReturning(t *testing.T) {
	st, err := state.NewStore()
	if err != nil {
		t.Fatal(err)
	}
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := free.Addr().(*net.TCPAddr).Port
	free.Close()
	if err := st.Register(1, &state.RegisterRequest{Node: &state.Node{Node: "n", Address: "127.0.0.1"},
		Service: &state.Service{Service: "web", Port: 80, Proxy: &state.ProxyConfig{Upstreams: []state.Upstream{
			{DestinationName: "billing", DestinationPeer: "b", LocalBindPort: port},
		}}}}); err != nil {
		t.Fatal(err)
	}
	p := newExtraProxy(t, st)
	defer p.Close(context.Background())
	p.mu.Lock()
	_, open := p.upstreams[net.JoinHostPort("127.0.0.1", strconv.Itoa(port))]
	p.mu.Unlock()
	if !open {
		t.Fatal("web's upstream listener was not open when Start returned")
	}
}
