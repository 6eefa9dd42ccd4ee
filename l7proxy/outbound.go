package l7proxy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"github.com/peerd/peerd/internal/sockets"
	"net"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-memdb"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/l7proxy/policy"
)

// Upstream is one explicit upstream of a local service: a local listener
// whose connections go to DestinationName (at DestinationPeer, or in this
// cluster when empty).
type Upstream struct {
	// Caller is the local service that owns the upstream; its identity is
	// presented to the destination.
	Caller          string
	DestinationName string
	DestinationPeer string
	Datacenter      string
	BindAddr        string
}

// upstreamListener is an open upstream listener.
type upstreamListener struct {
	up Upstream
	ln net.Listener
}

// upstreamsOf returns the explicit upstreams of a service registration:
// Proxy.Upstreams, and the Consul form Connect.SidecarService.Proxy.Upstreams.
func upstreamsOf(svc *state.Service) []state.Upstream {
	var out []state.Upstream
	if svc.Proxy != nil {
		out = append(out, svc.Proxy.Upstreams...)
	}
	if svc.Connect != nil && svc.Connect.SidecarService != nil && svc.Connect.SidecarService.Proxy != nil {
		out = append(out, svc.Connect.SidecarService.Proxy.Upstreams...)
	}
	return out
}

// desiredUpstreams reads this node's services and returns the upstream
// listeners they ask for, by bind address, and the names of the services
// (whose leaves are kept warm).
func (p *Proxy) desiredUpstreams(ws memdb.WatchSet) (map[string]Upstream, []string, error) {
	_, svcs, err := p.cfg.View().NodeServices(ws, "", p.cfg.NodeName)
	if err != nil {
		return nil, nil, fmt.Errorf("services of node %q: %w", p.cfg.NodeName, err)
	}
	want := map[string]Upstream{}
	var names []string
	for _, svc := range svcs {
		if svc.Kind != "" {
			continue
		}
		names = append(names, svc.Service)
		for _, u := range listenedUpstreams(svc) {
			want[u.BindAddr] = u
		}
	}
	return want, names, nil
}

// listenedUpstreams are the upstreams of svc served by a TCP listener.
func listenedUpstreams(svc *state.Service) []Upstream {
	var out []Upstream
	for _, u := range upstreamsOf(svc) {
		if u.DestinationType == "prepared_query" || u.LocalBindSocketPath != "" || u.LocalBindPort <= 0 {
			continue // validated on registration; unsupported kinds are skipped
		}
		addr := net.JoinHostPort(cmp.Or(u.LocalBindAddress, "127.0.0.1"), strconv.Itoa(u.LocalBindPort))
		out = append(out, Upstream{Caller: svc.Service, DestinationName: u.DestinationName,
			DestinationPeer: u.DestinationPeer, Datacenter: u.Datacenter, BindAddr: addr})
	}
	return out
}

// ServiceUpstreams returns the explicit upstreams the local service
// (registered on this node) asks for, sorted by bind address, from the
// current catalog view; ws, when not nil, is added the watches that fire
// when they may have changed. A service not registered here has none.
func (p *Proxy) ServiceUpstreams(ws memdb.WatchSet, service string) ([]Upstream, error) {
	_, svcs, err := p.cfg.View().NodeServices(ws, "", p.cfg.NodeName)
	if err != nil {
		return nil, fmt.Errorf("upstreams of service %q: services of node %q: %w", service, p.cfg.NodeName, err)
	}
	byAddr := map[string]Upstream{}
	for _, svc := range svcs {
		if svc.Kind == "" && svc.Service == service {
			for _, u := range listenedUpstreams(svc) {
				byAddr[u.BindAddr] = u
			}
		}
	}
	out := make([]Upstream, 0, len(byAddr))
	for _, u := range byAddr {
		out = append(out, u)
	}
	slices.SortFunc(out, func(a, b Upstream) int { return cmp.Compare(a.BindAddr, b.BindAddr) })
	return out, nil
}

// reconcileLoop keeps the upstream listeners equal to what the node's
// services ask for; a listener that cannot be opened (port in use) is
// retried every few seconds.
func (p *Proxy) reconcileLoop() {
	for {
		ws := memdb.NewWatchSet()
		want, names, err := p.desiredUpstreams(ws)
		if err != nil {
			p.log.Warn("read upstreams", "err", err)
		} else {
			p.reconcile(want)
			for _, name := range names {
				if id, err := p.serviceID(name); err == nil {
					p.leaves.touch(id)
				}
			}
			if id, err := p.gatewayID(); err == nil {
				p.leaves.touch(id)
			}
		}
		_ = ws.WatchCtx(withTimeout(p.ctx, 3*time.Second))
		if p.ctx.Err() != nil {
			return
		}
	}
}

func (p *Proxy) reconcile(want map[string]Upstream) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	for addr, u := range p.upstreams {
		if w, ok := want[addr]; !ok || w != u.up {
			u.ln.Close()
			delete(p.upstreams, addr)
			p.log.Info("closed upstream listener", "addr", addr, "service", u.up.Caller, "destination", u.up.DestinationName, "peer", u.up.DestinationPeer)
		}
	}
	for addr, up := range want {
		if _, ok := p.upstreams[addr]; ok {
			continue
		}
		lc := net.ListenConfig{Control: p.mark.Control}
		ln, err := sockets.Or(p.cfg.Sockets).Listen(p.ctx, &lc, "upstream", "tcp", addr)
		if err != nil {
			p.log.Warn("open upstream listener; retrying", "addr", addr, "service", up.Caller, "err", err)
			continue
		}
		ul := &upstreamListener{up: up, ln: ln}
		p.upstreams[addr] = ul
		p.log.Info("upstream listener", "addr", addr, "service", up.Caller, "destination", up.DestinationName, "peer", up.DestinationPeer)
		p.wg.Add(1)
		go func() { defer p.wg.Done(); p.serveUpstream(ul) }()
	}
	p.m.listeners.Set(float64(len(p.upstreams)))
}

func (p *Proxy) serveUpstream(ul *upstreamListener) {
	acceptLoop(ul.ln, p.log.With("addr", ul.up.BindAddr), "upstream listener", func(c net.Conn) { p.handleOutbound(c, ul.up) }, time.Sleep)
}

// handleOutbound carries one workload connection to a healthy endpoint of
// the upstream's destination: resolve (with failover), dial with mTLS as
// the calling service, retry connect failures on other endpoints, then
// splice.
func (p *Proxy) handleOutbound(c net.Conn, up Upstream) {
	done, ok := p.track(c)
	if !ok {
		c.Close()
		return
	}
	defer done()
	p.mark.MarkConn(c)
	start := time.Now()
	st := p.cfg.View()
	res, err := p.policy.Resolve(policy.Target{Service: up.DestinationName, Peer: up.DestinationPeer, Datacenter: up.Datacenter}, p.views.lookup(st))
	if err != nil {
		p.log.Warn("resolve upstream", "service", up.Caller, "destination", up.DestinationName, "peer", up.DestinationPeer, "err", err)
		c.Close()
		return
	}
	as, err := p.serviceID(up.Caller)
	if err != nil {
		p.log.Warn("identity of upstream caller", "service", up.Caller, "err", err)
		c.Close()
		return
	}
	ch, err := p.choose(st, res, true)
	if err != nil {
		p.log.Warn("upstream has no healthy endpoint", "service", up.Caller, "destination", up.DestinationName, "peer", up.DestinationPeer, "err", err)
		p.m.requests.WithLabelValues(dirOutbound, up.DestinationName, up.DestinationPeer, "no_endpoint").Inc()
		c.Close()
		return
	}
	peer := ch.target.Peer
	labels := []string{dirOutbound, ch.target.Service, peer}
	p.m.connections.WithLabelValues(labels...).Inc()
	active := p.m.active.WithLabelValues(labels...)
	active.Inc()
	defer active.Dec()

	upConn, ep, err := p.dialAny(p.ctx, ch, res.LoadBalancer, as, alpnFor(ch.eps[0].protocol), res.ConnectTimeout)
	if err != nil {
		p.log.Warn("connect upstream", "service", up.Caller, "destination", targetName(ch.target), "err", err)
		p.m.requests.WithLabelValues(append(labels, "connect_failure")...).Inc()
		c.Close()
		return
	}
	ep.stats.active.Add(1)
	defer ep.stats.active.Add(-1)
	p.splice(c, upConn, p.tcpIdle(), p.m.bytes.WithLabelValues(append(labels, "rx")...), p.m.bytes.WithLabelValues(append(labels, "tx")...))
	p.m.requests.WithLabelValues(append(labels, "tcp")...).Inc()
	p.m.duration.WithLabelValues(append(labels, "tcp")...).Observe(time.Since(start).Seconds())
}

// dialAny tries up to ConnectAttempts endpoints of ch (a different one each
// time), counting failures for outlier ejection.
func (p *Proxy) dialAny(ctx context.Context, ch choice, lbPolicy string, as spiffeid.ID, alpn []string, timeout time.Duration) (net.Conn, *endpoint, error) {
	tried := map[string]bool{}
	var errs []error
	for attempt := 0; attempt < p.cfg.ConnectAttempts; attempt++ {
		ep := p.lb.pick(targetKey(ch.target), lbPolicy, ch.eps, tried)
		if ep == nil {
			break
		}
		tried[ep.key()] = true
		dctx, cancel := ctx, context.CancelFunc(func() {})
		if timeout > 0 {
			dctx, cancel = context.WithTimeout(ctx, timeout)
		}
		conn, err := p.dial(dctx, ep, as, alpn)
		cancel()
		if err == nil {
			p.lb.succeeded(ep)
			return conn, ep, nil
		}
		p.lb.failed(ep)
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return nil, nil, errNoHealthy
	}
	return nil, nil, errors.Join(errs...)
}

func (p *Proxy) tcpIdle() time.Duration {
	if p.cfg.IdleTimeout > 0 {
		return p.cfg.IdleTimeout
	}
	return time.Hour
}

// splice copies both ways until both directions end, closing each write
// side as its read side ends (half-close), and closes both after idle
// without traffic. Bytes from a are added to rx as they pass, bytes to a to
// tx.
func (p *Proxy) splice(a, b net.Conn, idle time.Duration, rx, tx adder) {
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(min(idle/4+1, 30*time.Second))
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case now := <-t.C:
				if now.Sub(time.Unix(0, last.Load())) > idle {
					a.Close()
					b.Close()
					return
				}
			}
		}
	}()
	done := make(chan struct{}, 2)
	cp := func(count adder, dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			k, err := src.Read(buf)
			if k > 0 {
				last.Store(time.Now().UnixNano())
				if _, werr := dst.Write(buf[:k]); werr != nil {
					break
				}
				count.Add(float64(k))
			}
			if err != nil {
				break
			}
		}
		closeWrite(dst)
		done <- struct{}{}
	}
	go cp(rx, b, a)
	go cp(tx, a, b)
	<-done
	<-done
	close(stop)
	a.Close()
	b.Close()
}

// adder is what splice counts bytes into (a prometheus.Counter).
type adder interface{ Add(float64) }

// closeWrite half-closes a connection when it supports it.
func closeWrite(c net.Conn) {
	switch cw := c.(type) {
	case interface{ CloseWrite() error }:
		_ = cw.CloseWrite()
	default:
		_ = c.Close()
	}
}
