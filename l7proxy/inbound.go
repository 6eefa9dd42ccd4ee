package l7proxy

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/peerd/peerd/catalog/configentry"
	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/identity"
	"github.com/peerd/peerd/l7proxy/policy"
)

// connInfo is what the gateway learned about a connection in its
// handshake: which local service it is for and who is calling.
type connInfo struct {
	service  string
	protocol string
	// peer is the local name of the caller's peer; "" for this cluster.
	peer string
	// caller is the client certificate's SPIFFE ID; callerSvc its parsed
	// form when it is a service identity.
	caller    spiffeid.ID
	callerSvc *identity.ServiceIdentity
	// hop is set when the caller is another node's gateway of this
	// cluster, forwarding a request it already authorized and routed.
	hop bool
	// self is the identity the gateway presented (for XFCC "By").
	self spiffeid.ID
	// certHash is the hex SHA-256 of the client certificate (XFCC "Hash").
	certHash string
	// xfcc is the X-Forwarded-Client-Cert value set on its requests.
	xfcc     string
	requests atomic.Int64
	// byClass caches the metric children of this connection's labels.
	byClass sync.Map // class -> *requestMetrics
}

// requestMetrics are the per-request metric children of one label set.
type requestMetrics struct {
	requests prometheus.Counter
	duration prometheus.Observer
	rx, tx   prometheus.Counter
}

// metricsFor returns (and caches) the metric children for class.
func (ci *connInfo) metricsFor(m *metrics, class string) *requestMetrics {
	if v, ok := ci.byClass.Load(class); ok {
		return v.(*requestMetrics)
	}
	labels := []string{dirInbound, ci.service, ci.peer}
	rm := &requestMetrics{
		requests: m.requests.WithLabelValues(append(labels, class)...),
		duration: m.duration.WithLabelValues(append(labels, class)...),
		rx:       m.bytes.WithLabelValues(append(labels, "rx")...),
		tx:       m.bytes.WithLabelValues(append(labels, "tx")...),
	}
	ci.byClass.Store(class, rm)
	return rm
}

// policyCaller is the caller as intentions see it.
func (ci *connInfo) policyCaller() policy.Caller {
	if ci.callerSvc == nil {
		return policy.Caller{Peer: ci.peer}
	}
	return policy.Caller{Service: ci.callerSvc.Service, Namespace: ci.callerSvc.Namespace, Peer: ci.peer}
}

// callerName is the caller for logs and metrics.
func (ci *connInfo) callerName() string {
	if ci.callerSvc != nil {
		return ci.callerSvc.Service
	}
	return ci.caller.String()
}

// handshake carries what GetConfigForClient and VerifyConnection decided,
// or why they refused.
type handshake struct {
	serverName string
	reason     string
	info       *connInfo
}

// gateway is the node's inbound listener.
type gateway struct {
	p     *Proxy
	ln    net.Listener
	queue *connQueue
	http  *http.Server
	infos sync.Map // *tls.Conn -> *connInfo
	fwd   *forwarder
	// handshaking counts connections between accept and their hand-off
	// (to the HTTP server's queue or a serve loop): shutdown waits for
	// them before it closes the queue, so a drain finishes them.
	handshaking sync.WaitGroup
}

func newGateway(p *Proxy, ln net.Listener) *gateway {
	g := &gateway{p: p, ln: ln, queue: newConnQueue(ln.Addr())}
	g.fwd = newForwarder(p)
	idle := p.cfg.IdleTimeout
	if idle == 0 {
		idle = 5 * time.Minute
	}
	g.http = &http.Server{
		Handler:           http.HandlerFunc(g.serveHTTP),
		ReadHeaderTimeout: p.cfg.ReadHeaderTimeout,
		IdleTimeout:       idle,
		MaxHeaderBytes:    p.cfg.MaxHeaderBytes,
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: p.cfg.MaxConcurrentStreams, MaxReceiveBufferPerStream: 1 << 20},
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if v, ok := g.infos.Load(c); ok {
				return context.WithValue(ctx, connInfoKey{}, v.(*connInfo))
			}
			return ctx
		},
		ConnState: func(c net.Conn, s http.ConnState) {
			if s != http.StateClosed && s != http.StateHijacked {
				return
			}
			if v, ok := g.infos.LoadAndDelete(c); ok {
				ci := v.(*connInfo)
				g.noRequest(c, ci)
				p.m.active.WithLabelValues(dirInbound, ci.service, ci.peer).Dec()
			}
		},
		ErrorLog: nil,
	}
	return g
}

type connInfoKey struct{}

func (g *gateway) serve() {
	g.p.wg.Add(1)
	go func() {
		defer g.p.wg.Done()
		if err := g.http.Serve(g.queue); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			g.p.log.Error("gateway HTTP server stopped", "err", err)
		}
	}()
	acceptLoop(g.ln, g.p.log, "gateway", g.handle, time.Sleep)
}

func (g *gateway) shutdown(ctx context.Context) error {
	g.ln.Close()
	// Connections accepted before the close finish their handshake (each
	// bounded by HandshakeTimeout) and are served: cancelling them would
	// fail requests that a reload or a stop is meant to drain.
	handshakes := make(chan struct{})
	go func() { g.handshaking.Wait(); close(handshakes) }()
	select {
	case <-handshakes:
	case <-ctx.Done():
	}
	g.queue.Close()
	err := g.http.Shutdown(ctx)
	if err != nil {
		g.http.Close()
	}
	g.fwd.closeIdle()
	return err
}

// handle runs the TLS handshake of one connection (bounded by
// HandshakeTimeout) and hands it to the HTTP server or the TCP path.
func (g *gateway) handle(raw net.Conn) {
	p := g.p
	// Tracked from accept on, so that a drain waits for the handshake
	// too (Close cuts what is left at its deadline).
	done, ok := p.track(raw)
	if !ok {
		raw.Close()
		return
	}
	defer done()
	g.handshaking.Add(1)
	handOff := sync.OnceFunc(g.handshaking.Done)
	defer handOff()
	p.mark.MarkConn(raw)
	hs := &handshake{}
	tc := tls.Server(raw, &tls.Config{
		MinVersion: p.cfg.MinTLSVersion,
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			return g.configFor(hello, hs)
		},
	})
	ctx, cancel := context.WithTimeout(p.ctx, p.cfg.HandshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		reason := hs.reason
		var rhe tls.RecordHeaderError
		switch {
		case reason != "":
		case errors.As(err, &rhe):
			reason = "plaintext"
			if rhe.Conn != nil {
				_, _ = rhe.Conn.Write([]byte("HTTP/1.0 400 Bad Request\r\n\r\nThis is a peerd gateway: it speaks mutual TLS only.\n"))
			}
		case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
			reason = "timeout"
		default:
			reason = "handshake"
		}
		p.m.handshakeFail.WithLabelValues("gateway", reason).Inc()
		p.log.Info("gateway refused a connection", "remote", raw.RemoteAddr().String(), "reason", reason, "sni", hs.sni(), "err", err)
		raw.Close()
		return
	}
	ci := hs.info
	if ci == nil { // cannot happen: VerifyConnection sets it
		raw.Close()
		return
	}
	p.m.connections.WithLabelValues(dirInbound, ci.service, ci.peer).Inc()
	p.m.active.WithLabelValues(dirInbound, ci.service, ci.peer).Inc()
	if configentry.L7Protocol(ci.protocol) && tc.ConnectionState().NegotiatedProtocol != "h2" {
		defer p.m.active.WithLabelValues(dirInbound, ci.service, ci.peer).Dec()
		handOff()
		g.serveH1(tc, ci)
		return
	}
	if configentry.L7Protocol(ci.protocol) {
		g.infos.Store(tc, ci)
		if !g.queue.push(tc) {
			g.infos.Delete(tc)
			p.m.active.WithLabelValues(dirInbound, ci.service, ci.peer).Dec()
			tc.Close()
		}
		return
	}
	defer p.m.active.WithLabelValues(dirInbound, ci.service, ci.peer).Dec()
	handOff()
	g.serveTCP(tc, ci)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (hs *handshake) sni() string { return hs.serverName }

// parseSNI splits a gateway server name: the peered form
// "<svc>.<ns>.<partition>.<peer>.external.<td>" or the local form
// "<svc>.<ns>.<dc>.internal.<td>", both under this cluster's trust domain.
func parseSNI(sni string, td spiffeid.TrustDomain) (service, peer string, internal, ok bool) {
	rest, found := strings.CutSuffix(sni, "."+td.Name())
	if !found {
		return "", "", false, false
	}
	labels := strings.Split(rest, ".")
	switch {
	case len(labels) == 5 && labels[4] == "external":
		if labels[1] != identity.DefaultNamespace || labels[2] != identity.DefaultPartition || labels[0] == "" || labels[3] == "" {
			return "", "", false, false
		}
		return labels[0], labels[3], false, true
	case len(labels) == 4 && labels[3] == "internal":
		if labels[1] != identity.DefaultNamespace || labels[0] == "" {
			return "", "", false, false
		}
		return labels[0], "", true, true
	}
	return "", "", false, false
}

// configFor decides a handshake from its ClientHello, before any leaf is
// signed: the server name must name a service this cluster serves (see
// served), exported to a live peering it names, or be the internal form of
// this datacenter; the client must present a certificate chaining to that
// peer's trust bundle (or to this cluster's roots).
func (g *gateway) configFor(hello *tls.ClientHelloInfo, hs *handshake) (*tls.Config, error) {
	p := g.p
	hs.serverName = hello.ServerName
	st := p.cfg.View()
	local, err := p.trust.localTrust(st)
	if err != nil {
		hs.reason = "no_ca"
		return nil, err
	}
	service, peer, internal, ok := parseSNI(hello.ServerName, local.td)
	if !ok {
		hs.reason = "unknown_sni"
		return nil, fmt.Errorf("server name %q is not a service of this cluster", hello.ServerName)
	}
	if internal && hello.ServerName != identity.InternalSNI(service, identity.DefaultNamespace, p.cfg.Datacenter, local.td) {
		hs.reason = "unknown_sni"
		return nil, fmt.Errorf("server name %q is not of datacenter %q", hello.ServerName, p.cfg.Datacenter)
	}
	ts := local
	if !internal {
		if reason, err := exportedTo(st, service, peer); err != nil {
			hs.reason = reason
			return nil, err
		}
	}
	// Only then is a leaf signed (or taken from the cache): a name that
	// no client could be routed by costs no signature and no memory.
	if err := served(st, service); err != nil {
		hs.reason = "unknown_service"
		return nil, err
	}
	if !internal {
		if ts, err = p.trust.peerTrust(st, peer); err != nil {
			hs.reason = "no_trust_bundle"
			return nil, err
		}
	}
	self, err := identity.ServiceID(local.td, identity.DefaultNamespace, p.cfg.Datacenter, service)
	if err != nil {
		hs.reason = "unknown_sni"
		return nil, err
	}
	cert, err := p.leaves.get(hello.Context(), self)
	if err != nil {
		hs.reason = "no_certificate"
		return nil, err
	}
	protocol := protocolOf(st, service)
	var protos []string
	if configentry.L7Protocol(protocol) {
		protos = []string{"h2", "http/1.1"}
	}
	gatewayID, _ := identity.GatewayID(local.td, p.cfg.Datacenter)
	return &tls.Config{
		MinVersion:   p.cfg.MinTLSVersion,
		Certificates: []tls.Certificate{*cert},
		ClientAuth:   tls.RequireAnyClientCert,
		NextProtos:   protos,
		VerifyConnection: func(cs tls.ConnectionState) error {
			id, err := identity.VerifyLeaf(cs.PeerCertificates, ts.pool, p.cfg.Now(), x509.ExtKeyUsageClientAuth)
			if err != nil {
				hs.reason = verifyReason(err)
				return err
			}
			if id.TrustDomain() != ts.td {
				hs.reason = "wrong_trust_domain"
				return fmt.Errorf("client %s is not in trust domain %s", id, ts.td.Name())
			}
			ci := &connInfo{service: service, protocol: protocol, peer: peer, caller: id, self: self}
			sum := sha256.Sum256(cs.PeerCertificates[0].Raw)
			ci.certHash = hex.EncodeToString(sum[:])
			ci.xfcc = fmt.Sprintf("By=%s;Hash=%s;URI=%s", self, ci.certHash, id)
			if sid, err := identity.ParseServiceID(id); err == nil {
				ci.callerSvc = &sid
			}
			ci.hop = internal && p.isHop(id, gatewayID, local.td, cs.PeerCertificates[0])
			if ci.callerSvc == nil && !ci.hop {
				hs.reason = "not_a_service_identity"
				return fmt.Errorf("client %s is neither a service nor a node of this cluster", id)
			}
			hs.info = ci
			return nil
		},
	}, nil
}

// isHop reports whether a verified client identity is another node of this
// cluster on the node-to-node hop: with cluster trust, a node certificate
// of this trust domain and datacenter (the gateway identity is then not
// enough: every gateway node can hold it); without, the gateway identity.
func (p *Proxy) isHop(id, gatewayID spiffeid.ID, td spiffeid.TrustDomain, leaf *x509.Certificate) bool {
	if p.cfg.NodeCertificate == nil {
		return id == gatewayID
	}
	a, err := identity.ParseAgentID(id)
	if err != nil || a.TrustDomain != td || a.Datacenter != p.cfg.Datacenter {
		return false
	}
	return p.cfg.NodeRevoked == nil || !p.cfg.NodeRevoked(a, leaf)
}

// exportedTo checks that service is exported to peer and that the peering
// is live; it returns the refusal's metric reason with the error.
func exportedTo(st *state.Store, service, peer string) (string, error) {
	_, pr, err := st.Peering(nil, peer)
	if err != nil || pr == nil || pr.State == state.PeeringDeleting || pr.State == state.PeeringTerminated {
		return "unknown_peer", fmt.Errorf("no live peering named %q", peer)
	}
	_, exports, err := st.Exports(nil)
	if err != nil {
		return "not_exported", err
	}
	if !exports.ExportedTo(service, peer) {
		return "not_exported", fmt.Errorf("service %q is not exported to peer %q", service, peer)
	}
	return "", nil
}

// served checks that this cluster serves service: it has instances in the
// catalog, or a service-resolver that routes it elsewhere (a redirect or a
// failover). A wildcard export names every service; this is what keeps a
// made-up name from being signed for.
func served(st *state.Store, service string) error {
	ok, err := st.Served(service)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("service %q has no instance in this cluster", service)
	}
	return nil
}

// verifyReason names why a client certificate was refused.
func verifyReason(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "not authorized to sign for this name") && strings.Contains(msg, `URI "`):
		// The root's name constraints: a SPIFFE ID outside its trust domain.
		return "wrong_trust_domain"
	case strings.Contains(msg, "not authorized to sign for this name"):
		return "name_not_permitted"
	case strings.Contains(msg, "expired") || strings.Contains(msg, "not yet valid"):
		return "expired"
	case strings.Contains(msg, "URI SAN") || strings.Contains(msg, "SPIFFE"):
		return "no_spiffe_id"
	case strings.Contains(msg, "other trust domains"):
		return "wrong_trust_domain"
	case strings.Contains(msg, "unknown authority"):
		return "unknown_ca"
	case strings.Contains(msg, "no certificate"):
		return "no_client_certificate"
	}
	return "bad_client_certificate"
}

// serveTCP authorizes an L4 connection and forwards it to a healthy
// instance.
func (g *gateway) serveTCP(tc *tls.Conn, ci *connInfo) {
	p := g.p
	done, ok := p.track(tc)
	if !ok {
		tc.Close()
		return
	}
	defer done()
	start := time.Now()
	labels := []string{dirInbound, ci.service, ci.peer}
	if !ci.hop {
		if d := p.intentionsNow().Authorize(ci.service, ci.policyCaller(), nil); !d.Allow {
			g.denied(ci, d.Reason, "")
			p.m.requests.WithLabelValues(append(labels, "denied")...).Inc()
			resetClose(tc)
			return
		}
	}
	st := p.cfg.View()
	ch, lbPolicy, timeout, err := g.fwd.destination(st, policy.Route{Target: policy.Target{Service: ci.service}}, ci.hop)
	if err != nil {
		p.log.Warn("gateway: no destination for TCP connection", "service", ci.service, "caller", ci.callerName(), "peer", ci.peer, "err", err)
		p.m.requests.WithLabelValues(append(labels, "no_endpoint")...).Inc()
		tc.Close()
		return
	}
	as, err := g.fwd.onwardIdentity(ch, ci.service)
	if err != nil {
		tc.Close()
		return
	}
	up, ep, err := p.dialAny(p.ctx, ch, lbPolicy, as, alpnFor(ci.protocol), timeout)
	if err != nil {
		p.log.Warn("gateway: connect to instance", "service", ci.service, "err", err)
		p.m.requests.WithLabelValues(append(labels, "connect_failure")...).Inc()
		tc.Close()
		return
	}
	ep.stats.active.Add(1)
	defer ep.stats.active.Add(-1)
	p.splice(tc, up, p.tcpIdle(), p.m.bytes.WithLabelValues(append(labels, "rx")...), p.m.bytes.WithLabelValues(append(labels, "tx")...))
	p.m.requests.WithLabelValues(append(labels, "tcp")...).Inc()
	p.m.duration.WithLabelValues(append(labels, "tcp")...).Observe(time.Since(start).Seconds())
}

// denied counts and logs an intention denial.
func (g *gateway) denied(ci *connInfo, reason, path string) {
	g.p.m.denials.WithLabelValues(ci.service, ci.callerName(), ci.peer).Inc()
	g.p.log.Info("intention denied", "service", ci.service, "caller", ci.caller.String(), "peer", ci.peer, "path", path, "reason", reason)
}

// resetClose closes a TLS connection with a TCP reset (RBAC-style), not a
// clean close.
func resetClose(tc *tls.Conn) {
	if tcp, ok := tc.NetConn().(*net.TCPConn); ok {
		_ = tcp.SetLinger(0)
	}
	tc.Close()
}

// connQueue is a net.Listener fed with connections the gateway accepted
// and authenticated, for the HTTP server.
type connQueue struct {
	addr   net.Addr
	ch     chan net.Conn
	done   chan struct{}
	closed sync.Once
}

func newConnQueue(addr net.Addr) *connQueue {
	return &connQueue{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (q *connQueue) push(c net.Conn) bool {
	select {
	case q.ch <- c:
		return true
	case <-q.done:
		return false
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.closed.Do(func() { close(q.done) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }
