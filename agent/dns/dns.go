// Package dns is peerd's DNS server: it answers names under the cluster's
// domain from the catalog (imported services' virtual IPs, their peers'
// gateways, local services) and forwards every other name to the
// configured recursors.
//
// Names (case-insensitive; the domain defaults to "peerd."):
//
//	<svc>.virtual.<peer>.<domain>         A/AAAA: the service's virtual IP
//	<svc>.service.<peer>.peer.<domain>    A/AAAA/SRV: the peer's gateways of its passing instances
//	<svc>.service.<domain>                A/AAAA/SRV: passing local instances
//	<node>.node.<domain>                  A/AAAA: the node's address
//	<hex>.addr.<domain>                   A/AAAA: the address spelled in hex (SRV targets)
//
// With ACLs (Config.Authorizer), a name is answered only when the agent's
// DNS token (its dns token, else its default one) may read it, as Consul
// does: service:read on the service and node:read on each instance's node
// (an instance on a node it may not read is dropped), node:read for a
// node. What the token may not read is not found (NXDOMAIN), as if it did
// not exist; each such answer is counted in peerd_dns_acl_hidden_total.
//
// An SRV answer carries the A/AAAA record of each target in the additional
// section, as Consul's does, so a client needs no second query.
//
// Answers carry TTL 0, as Consul's service lookups do by default: the
// catalog changes faster than any cache should hold it.
//
// Lifecycle: New validates the Config and opens nothing (Handle answers a
// query without a network); Start listens on UDP and TCP; Close(ctx) shuts
// both listeners down within ctx, waits for the serving goroutines, and is
// idempotent. Serve(pc, ln) answers on more listeners opened by the caller
// (peerd's DNS inside each workload network namespace, agent/workloads);
// the caller closes them, or Close does.
package dns

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/acl"
	"github.com/peerd/peerd/internal/sockets"
)

const (
	// DefaultDomain is the domain answered from the catalog.
	DefaultDomain = "peerd."
	// DefaultRecursorTimeout bounds one exchange with one recursor.
	DefaultRecursorTimeout = 2 * time.Second
	// forwardBudget bounds the whole forwarding of one query, however many
	// recursors are tried.
	forwardBudget = 5 * time.Second
	// maxUDPSize caps the EDNS0 buffer size a client may ask for.
	maxUDPSize = 4096
)

// Config configures the DNS server.
type Config struct {
	// Addr is host:port for both UDP and TCP; port 0 picks a free port
	// (the same for both).
	Addr string
	// Domain is the domain answered from the catalog; zero value
	// DefaultDomain.
	Domain string
	// Recursors are host[:port] addresses (IPs; port 53 by default) the
	// other names are forwarded to, tried in order. None: SERVFAIL.
	Recursors []string
	// RecursorTimeout bounds one exchange with one recursor; zero value
	// DefaultRecursorTimeout.
	RecursorTimeout time.Duration
	// View returns the catalog state to answer from (Cluster.View).
	View func() *state.Store
	// Registerer receives the server's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Logger receives structured logs; nil means slog.Default().
	Logger *slog.Logger
	// Authorizer resolves the token DNS answers with, once per query (it
	// may change at run time); nil = no ACLs, everything is answered. An
	// error (the token unknown, no server to ask) answers SERVFAIL.
	Authorizer func() (acl.Enforcer, error)
	// Sockets opens the UDP and TCP sockets (internal/sockets); nil opens
	// them directly. A reloading agent passes one that hands them over.
	Sockets sockets.Opener
}

// Server is a running DNS server.
type Server struct {
	domain    string
	recursors []string
	timeout   time.Duration
	view      func() *state.Store
	log       *slog.Logger
	authz     func() (acl.Enforcer, error)

	queries   *prometheus.CounterVec
	forwarded *prometheus.CounterVec
	hidden    *prometheus.CounterVec

	addr     string
	sockets  sockets.Opener
	udp, tcp *dns.Server
	wg       sync.WaitGroup
	once     sync.Once

	// extra are the servers of Serve's listeners, shut down by Close.
	mu     sync.Mutex
	extra  map[*dns.Server]struct{}
	closed bool
}

// ParseDomain checks a domain and returns it lower-cased and fully
// qualified.
func ParseDomain(d string) (string, error) {
	fq := dns.Fqdn(strings.ToLower(strings.TrimSpace(d)))
	if fq == "." {
		return "", fmt.Errorf("domain %q: want a domain such as %s, not the root", d, DefaultDomain)
	}
	if _, ok := dns.IsDomainName(fq); !ok || strings.Contains(fq, "..") || strings.Contains(fq, "\\") || strings.Contains(fq, " ") {
		return "", fmt.Errorf("domain %q: not a valid domain name (letters, digits, '-', dots), e.g. %s", d, DefaultDomain)
	}
	return fq, nil
}

// ParseRecursor checks one recursor (an IP with an optional port) and
// returns it as host:port.
func ParseRecursor(r string) (string, error) {
	host, port := r, "53"
	if h, p, err := net.SplitHostPort(r); err == nil {
		host, port = h, p
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return "", fmt.Errorf("recursor %q: want an IP address with an optional port, e.g. 1.1.1.1 or [2606:4700::1111]:53", r)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("recursor %q: port %q is not 1-65535", r, port)
	}
	return net.JoinHostPort(host, port), nil
}

// New checks cfg and returns a server that is not listening yet: Start
// listens; Handle answers a query without a network (tests, fuzzing).
func New(cfg Config) (*Server, error) {
	if cfg.View == nil {
		return nil, errors.New("dns: a catalog view is required")
	}
	if cfg.Domain == "" {
		cfg.Domain = DefaultDomain
	}
	domain, err := ParseDomain(cfg.Domain)
	if err != nil {
		return nil, fmt.Errorf("dns: %w", err)
	}
	s := &Server{domain: domain, timeout: cfg.RecursorTimeout, view: cfg.View, log: cfg.Logger, addr: cfg.Addr, authz: cfg.Authorizer,
		sockets: sockets.Or(cfg.Sockets)}
	if s.timeout <= 0 {
		s.timeout = DefaultRecursorTimeout
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	for _, r := range cfg.Recursors {
		hp, err := ParseRecursor(r)
		if err != nil {
			return nil, fmt.Errorf("dns: %w", err)
		}
		s.recursors = append(s.recursors, hp)
	}
	s.queries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "peerd_dns_queries_total",
		Help: "DNS queries answered, by question type and response code.",
	}, []string{"type", "rcode"})
	s.forwarded = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "peerd_dns_forwarded_total",
		Help: "DNS queries forwarded to recursors, by result (ok, error, none: no recursor configured).",
	}, []string{"result"})
	s.hidden = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "peerd_dns_acl_hidden_total",
		Help: "DNS names or instances not answered because the DNS token may not read them, by kind (service, node).",
	}, []string{"kind"})
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{s.queries, s.forwarded, s.hidden} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("dns: register metrics: %w", err)
			}
		}
	}
	return s, nil
}

// Start listens on UDP and TCP and serves until Close.
func (s *Server) Start() error {
	pc, ln, err := listenBoth(s.sockets, s.addr)
	if err != nil {
		return fmt.Errorf("dns: listen on %s: %w", s.addr, err)
	}
	s.addr = ln.Addr().String()
	started := make(chan struct{}, 2)
	notify := func() { started <- struct{}{} }
	s.udp = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(s.serveUDP), NotifyStartedFunc: notify}
	s.tcp = &dns.Server{Listener: ln, Handler: dns.HandlerFunc(s.serveTCP), NotifyStartedFunc: notify,
		ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, IdleTimeout: func() time.Duration { return 10 * time.Second }}
	errs := make(chan error, 2)
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := srv.ActivateAndServe(); err != nil {
				errs <- err
			}
		}()
	}
	for range 2 {
		select {
		case <-started:
		case err := <-errs:
			_ = pc.Close()
			_ = ln.Close()
			return fmt.Errorf("dns: serve on %s: %w", s.addr, err)
		}
	}
	return nil
}

// listenBoth opens UDP and TCP on the same port; with port 0, it retries
// until a free TCP port is free for UDP too.
func listenBoth(socks sockets.Opener, addr string) (net.PacketConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, err
	}
	for attempt := 0; ; attempt++ {
		ln, err := socks.Listen(context.Background(), nil, "dns", "tcp", addr)
		if err != nil {
			return nil, nil, err
		}
		p := port
		if p == "0" {
			p = strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
		}
		pc, err := socks.ListenPacket(context.Background(), nil, "dns", "udp", net.JoinHostPort(host, p))
		if err == nil {
			return pc, ln, nil
		}
		_ = ln.Close()
		if port != "0" || attempt >= 10 {
			return nil, nil, err
		}
	}
}

// Addr returns the address the server listens on (UDP and TCP).
func (s *Server) Addr() string { return s.addr }

// Serve answers on extra listeners (those peerd opens in workload network
// namespaces): pc for UDP and ln for TCP, either may be nil. It returns at
// once; each is served until its owner closes it or Close shuts it down.
// It fails after Close.
func (s *Server) Serve(pc net.PacketConn, ln net.Listener) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("dns: serve extra listeners: the server is closed")
	}
	if s.extra == nil {
		s.extra = map[*dns.Server]struct{}{}
	}
	var srvs []*dns.Server
	if pc != nil {
		srvs = append(srvs, &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(s.serveUDP)})
	}
	if ln != nil {
		srvs = append(srvs, &dns.Server{Listener: ln, Handler: dns.HandlerFunc(s.serveTCP),
			ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, IdleTimeout: func() time.Duration { return 10 * time.Second }})
	}
	for _, srv := range srvs {
		s.extra[srv] = struct{}{}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			// It returns when its listener is closed: by the owner
			// (an error, expected) or by Close (nil).
			_ = srv.ActivateAndServe()
			s.mu.Lock()
			delete(s.extra, srv)
			s.mu.Unlock()
		}()
	}
	return nil
}

// StopAccepting closes the TCP listener only: connections already accepted
// are still answered, new ones go to whoever else holds the socket (the
// new process of a reload). Close would cut an accepted connection whose
// query has not been read yet; a reload calls this first, waits a moment,
// then Close. UDP goes on until Close.
func (s *Server) StopAccepting() {
	if s.tcp != nil && s.tcp.Listener != nil {
		_ = s.tcp.Listener.Close()
	}
}

// Close stops every listener (Start's and Serve's) and waits for the
// serving goroutines.
func (s *Server) Close(ctx context.Context) error {
	var errs []error
	s.once.Do(func() {
		s.mu.Lock()
		s.closed = true
		extra := make([]*dns.Server, 0, len(s.extra))
		for srv := range s.extra {
			extra = append(extra, srv)
		}
		s.mu.Unlock()
		for _, srv := range extra {
			// Not started yet or already ended: ShutdownContext
			// fails; the listener is closed either way below.
			_ = srv.ShutdownContext(ctx)
			if srv.PacketConn != nil {
				_ = srv.PacketConn.Close()
			}
			if srv.Listener != nil {
				_ = srv.Listener.Close()
			}
		}
		for _, srv := range []*dns.Server{s.udp, s.tcp} {
			if srv != nil {
				if err := srv.ShutdownContext(ctx); err != nil {
					errs = append(errs, err)
				}
			}
		}
		s.wg.Wait()
	})
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("stop DNS server: %w", err)
	}
	return nil
}

func (s *Server) serveUDP(w dns.ResponseWriter, r *dns.Msg) { s.serve(w, r, false) }
func (s *Server) serveTCP(w dns.ResponseWriter, r *dns.Msg) { s.serve(w, r, true) }

func (s *Server) serve(w dns.ResponseWriter, r *dns.Msg, tcp bool) {
	ctx, cancel := context.WithTimeout(context.Background(), forwardBudget)
	defer cancel()
	resp := s.Handle(ctx, r, tcp)
	if resp == nil {
		return // dropped
	}
	if err := w.WriteMsg(resp); err != nil {
		s.log.Debug("dns: write response", "err", err)
	}
}

// Handle answers one query: a response sized for the transport (tcp or
// UDP with the client's EDNS0 size), or nil to drop the message (it is a
// response, not a query).
func (s *Server) Handle(ctx context.Context, req *dns.Msg, tcp bool) *dns.Msg {
	if req == nil || req.Response {
		return nil
	}
	resp := s.answer(ctx, req)
	qtype := "none"
	if len(req.Question) == 1 {
		qtype = typeName(req.Question[0].Qtype)
	}
	s.queries.WithLabelValues(qtype, rcodeName(resp.Rcode)).Inc()
	size := 65535
	if !tcp {
		size = dns.MinMsgSize
		if o := req.IsEdns0(); o != nil {
			size = min(max(int(o.UDPSize()), dns.MinMsgSize), maxUDPSize)
		}
	}
	resp.Truncate(size)
	return resp
}

// typeName bounds the type label to known types.
func typeName(t uint16) string {
	if n, ok := dns.TypeToString[t]; ok {
		return n
	}
	return "other"
}

func rcodeName(c int) string {
	if n, ok := dns.RcodeToString[c]; ok {
		return n
	}
	return "other"
}

func (s *Server) answer(ctx context.Context, req *dns.Msg) *dns.Msg {
	resp := new(dns.Msg)
	switch {
	case req.Opcode != dns.OpcodeQuery:
		resp.SetRcode(req, dns.RcodeNotImplemented)
		return withEDNS(resp, req)
	case len(req.Question) != 1:
		resp.SetRcode(req, dns.RcodeFormatError)
		return withEDNS(resp, req)
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	if !dns.IsSubDomain(s.domain, name) {
		return s.forward(ctx, req)
	}
	resp.SetReply(req)
	resp.Authoritative = true
	resp.RecursionAvailable = len(s.recursors) > 0
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		resp.SetRcode(req, dns.RcodeNotImplemented)
		return withEDNS(resp, req)
	}
	vis, err := s.visibility()
	if err != nil {
		s.log.Warn("DNS: resolve the DNS token", "name", name, "err", err)
		resp.SetRcode(req, dns.RcodeServerFailure)
		return withEDNS(resp, req)
	}
	rcode, answer, extra := s.lookup(name, q.Qtype, vis)
	resp.Rcode = rcode
	for _, rr := range answer {
		rr.Header().Name = q.Name // echo the client's spelling
	}
	resp.Answer, resp.Extra = answer, extra
	if len(answer) == 0 {
		resp.Ns = []dns.RR{s.soa()}
	}
	return withEDNS(resp, req)
}

// withEDNS adds an OPT record to resp when req had one.
func withEDNS(resp, req *dns.Msg) *dns.Msg {
	if o := req.IsEdns0(); o != nil {
		resp.SetEdns0(uint16(min(max(int(o.UDPSize()), dns.MinMsgSize), maxUDPSize)), false)
	}
	return resp
}

func (s *Server) soa() dns.RR {
	return &dns.SOA{
		Hdr: dns.RR_Header{Name: s.domain, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 0},
		Ns:  "ns." + s.domain, Mbox: "hostmaster." + s.domain,
		Serial: uint32(time.Now().Unix()), Refresh: 3600, Retry: 600, Expire: 86400, Minttl: 0,
	}
}

// visible is what the DNS token may read; nil = everything.
type visible struct {
	s *Server
	e *acl.Enforcer
}

func (s *Server) visibility() (visible, error) {
	if s.authz == nil {
		return visible{s: s}, nil
	}
	e, err := s.authz()
	if err != nil {
		return visible{}, err
	}
	return visible{s: s, e: &e}, nil
}

func (v visible) allow(kind acl.Resource, name string) bool {
	if v.e == nil || v.e.Allowed(kind, name, acl.AccessRead) {
		return true
	}
	v.s.hidden.WithLabelValues(string(kind)).Inc()
	v.s.log.Info("DNS: not answered, the DNS token may not read it", "kind", string(kind), "name", name)
	return false
}

// lookup answers a name under the domain (lower-cased).
func (s *Server) lookup(name string, qtype uint16, vis visible) (rcode int, answer, extra []dns.RR) {
	rel := strings.TrimSuffix(strings.TrimSuffix(name, s.domain), ".")
	if rel == "" { // the apex
		if qtype == dns.TypeSOA || qtype == dns.TypeANY {
			return dns.RcodeSuccess, []dns.RR{s.soa()}, nil
		}
		return dns.RcodeSuccess, nil, nil
	}
	labels := dns.SplitDomainName(rel)
	var addrs []endpoint
	var known bool
	switch {
	case len(labels) == 3 && labels[1] == "virtual":
		if vis.allow(acl.ResourceService, labels[0]) {
			addrs, known = s.virtualIPs(labels[2], labels[0])
		}
	case len(labels) == 4 && labels[1] == "service" && labels[3] == "peer":
		if vis.allow(acl.ResourceService, labels[0]) {
			addrs, known = s.instances(labels[2], labels[0], true, vis)
		}
	case len(labels) == 2 && labels[1] == "service":
		if vis.allow(acl.ResourceService, labels[0]) {
			addrs, known = s.instances("", labels[0], false, vis)
		}
	case len(labels) == 2 && labels[1] == "node":
		if vis.allow(acl.ResourceNode, labels[0]) {
			addrs, known = s.node(labels[0])
		}
	case len(labels) == 2 && labels[1] == "addr":
		addrs, known = hexAddr(labels[0])
	}
	if !known {
		return dns.RcodeNameError, nil, nil
	}
	answer, extra = s.records(name, qtype, addrs, labels[1] == "service")
	return dns.RcodeSuccess, answer, extra
}

// endpoint is one address (and port, for SRV) to answer with.
type endpoint struct {
	ip   netip.Addr
	port int
}

// records builds the answer for eps and, for SRV records, the additional
// section: each target's A or AAAA record, once.
func (s *Server) records(name string, qtype uint16, eps []endpoint, srv bool) (answer, extra []dns.RR) {
	seen := map[netip.Addr]bool{}
	for _, ep := range eps {
		dup := seen[ep.ip]
		seen[ep.ip] = true
		if qtype == dns.TypeA || qtype == dns.TypeAAAA || qtype == dns.TypeANY {
			if rr := addrRecord(name, qtype, ep.ip); rr != nil && !dup {
				answer = append(answer, rr)
			}
		}
		if srv && (qtype == dns.TypeSRV || qtype == dns.TypeANY) {
			target := hex.EncodeToString(ep.ip.AsSlice()) + ".addr." + s.domain
			answer = append(answer, &dns.SRV{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: 0},
				Priority: 1, Weight: 1, Port: uint16(ep.port), Target: target})
			if !dup {
				extra = append(extra, addrRecord(target, dns.TypeANY, ep.ip))
			}
		}
	}
	rand.Shuffle(len(answer), func(i, j int) { answer[i], answer[j] = answer[j], answer[i] })
	return answer, extra
}

// addrRecord returns ip's A or AAAA record named name when qtype asks for
// that family (ANY asks for both), else nil.
func addrRecord(name string, qtype uint16, ip netip.Addr) dns.RR {
	switch {
	case (qtype == dns.TypeA || qtype == dns.TypeANY) && ip.Is4():
		return &dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 0}, A: net.IP(ip.AsSlice())}
	case (qtype == dns.TypeAAAA || qtype == dns.TypeANY) && ip.Is6():
		return &dns.AAAA{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: 0}, AAAA: net.IP(ip.AsSlice())}
	}
	return nil
}

func (s *Server) virtualIPs(peer, svc string) ([]endpoint, bool) {
	_, v, err := s.view().VirtualIP(nil, peer, svc)
	if err != nil || v == nil {
		return nil, false
	}
	v4, v6 := v.Addrs()
	var out []endpoint
	for _, a := range []netip.Addr{v4, v6} {
		if a.IsValid() {
			out = append(out, endpoint{ip: a})
		}
	}
	return out, true
}

// node returns a local node's address. A node whose address is a hostname
// exists but has nothing to answer with.
func (s *Server) node(name string) ([]endpoint, bool) {
	_, n, err := s.view().Node(nil, "", name)
	if err != nil || n == nil {
		return nil, false
	}
	ip, err := netip.ParseAddr(n.Address)
	if err != nil {
		return nil, true
	}
	return []endpoint{{ip: ip.Unmap().WithZone("")}}, true
}

// instances returns the passing instances of a service: for an imported
// one, the peer's gateway they are reached through; for a local one, the
// service's address (or its node's).
func (s *Server) instances(peer, svc string, imported bool, vis visible) ([]endpoint, bool) {
	_, all, err := s.view().CheckServiceNodes(nil, peer, svc)
	if err != nil {
		return nil, false
	}
	// A local instance on a node the token may not read is dropped (the
	// nodes of an imported service are the peer's, not ours to rule).
	csns := all[:0:0]
	for _, csn := range all {
		if imported || csn.Node == nil || vis.allow(acl.ResourceNode, csn.Node.Node) {
			csns = append(csns, csn)
		}
	}
	if len(csns) == 0 {
		return nil, false
	}
	var out []endpoint
	for _, csn := range csns {
		if csn.Service.Kind != "" || state.AggregatedStatus(csn.Checks) != state.HealthPassing {
			continue
		}
		var host string
		var port int
		if imported {
			gw, ok := csn.Service.TaggedAddresses[state.TaggedAddressGateway]
			if !ok {
				continue
			}
			host, port = gw.Address, gw.Port
		} else {
			host, port = csn.Service.Address, csn.Service.Port
			if host == "" && csn.Node != nil {
				host = csn.Node.Address
			}
		}
		ip, err := netip.ParseAddr(host)
		if err != nil || port < 0 || port > 65535 {
			continue // a hostname or garbage: nothing to answer with
		}
		out = append(out, endpoint{ip: ip.Unmap().WithZone(""), port: port})
	}
	slices.SortFunc(out, func(a, b endpoint) int { return a.ip.Compare(b.ip) })
	return out, true
}

// hexAddr parses the label of an <hex>.addr name: 8 hex digits for IPv4,
// 32 for IPv6.
func hexAddr(label string) ([]endpoint, bool) {
	if len(label) != 8 && len(label) != 32 {
		return nil, false
	}
	b, err := hex.DecodeString(label)
	if err != nil {
		return nil, false
	}
	ip, ok := netip.AddrFromSlice(b)
	if !ok {
		return nil, false
	}
	return []endpoint{{ip: ip}}, true
}

// forward sends a query outside the domain to the recursors in order: UDP,
// then TCP when the answer is truncated. A recursor that fails or answers
// SERVFAIL/REFUSED passes the query to the next. None: SERVFAIL.
func (s *Server) forward(ctx context.Context, req *dns.Msg) *dns.Msg {
	fail := func(result string) *dns.Msg {
		s.forwarded.WithLabelValues(result).Inc()
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeServerFailure)
		m.RecursionAvailable = len(s.recursors) > 0
		return withEDNS(m, req)
	}
	if len(s.recursors) == 0 {
		return fail("none")
	}
	q := req.Copy()
	q.Id = dns.Id()
	var lastErr error
	for _, r := range s.recursors {
		if ctx.Err() != nil {
			break
		}
		resp, err := s.exchange(ctx, q, r)
		if err != nil {
			lastErr = err
			continue
		}
		if resp.Rcode == dns.RcodeServerFailure || resp.Rcode == dns.RcodeRefused {
			lastErr = fmt.Errorf("%s answered %s", r, dns.RcodeToString[resp.Rcode])
			continue
		}
		s.forwarded.WithLabelValues("ok").Inc()
		resp.Id = req.Id
		resp.Compress = true
		return resp
	}
	s.log.Debug("dns: no recursor answered", "name", req.Question[0].Name, "err", lastErr)
	return fail("error")
}

func (s *Server) exchange(ctx context.Context, q *dns.Msg, recursor string) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	c := &dns.Client{Net: "udp", UDPSize: maxUDPSize, Timeout: s.timeout}
	resp, _, err := c.ExchangeContext(ctx, q, recursor)
	if err == nil && !resp.Truncated {
		return resp, nil
	}
	if err != nil && !errors.Is(err, dns.ErrBuf) {
		return nil, fmt.Errorf("forward to %s over UDP: %w", recursor, err)
	}
	c.Net = "tcp"
	resp, _, err = c.ExchangeContext(ctx, q, recursor)
	if err != nil {
		return nil, fmt.Errorf("forward to %s over TCP: %w", recursor, err)
	}
	return resp, nil
}
