package l7proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-memdb"

	"github.com/peerd/peerd/catalog/configentry"
	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/netutil"
	"github.com/peerd/peerd/l7proxy/policy"
)

// Proxy is a running terminator.
type Proxy struct {
	cfg      Config
	log      *slog.Logger
	m        *metrics
	mark     *netutil.Marker
	trust    trust
	leaves   leaves
	lb       balancer
	sessions tls.ClientSessionCache

	ctx    context.Context
	cancel context.CancelFunc
	// draining ends when Close starts: idle keep-alive connections close.
	draining    context.Context
	stopServing context.CancelFunc
	wg          sync.WaitGroup

	intentions atomic.Pointer[policy.Intentions]
	// policy caches compiled route regexes and subset filters.
	policy *policy.Cache
	// views caches the request path's catalog reads briefly.
	views viewCache

	gw *gateway

	mu        sync.Mutex
	upstreams map[string]*upstreamListener
	// extra are listeners served for others (ServeTransparent,
	// ServeUpstream): closed by their owner or by Close.
	extra   map[net.Listener]struct{}
	started bool
	closed  bool
	// conns tracks raw TCP streams (outbound and tcp inbound) for drain.
	conns  map[net.Conn]struct{}
	connWG sync.WaitGroup
}

// New validates cfg and returns a proxy that is not yet serving.
func New(cfg Config) (*Proxy, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	p := &Proxy{cfg: cfg, log: cfg.Logger.With("component", "l7proxy"), m: newMetrics(cfg.Registry),
		sessions: tls.NewLRUClientSessionCache(1024), upstreams: map[string]*upstreamListener{}, extra: map[net.Listener]struct{}{},
		conns: map[net.Conn]struct{}{}, policy: policy.NewCache()}
	p.trust.peers = map[string]*trustSet{}
	p.leaves.p, p.lb.p = p, p
	p.mark = netutil.NewMarker(cfg.Mark, func(err error) {
		p.log.Warn("cannot set SO_MARK on the terminator's sockets (needs CAP_NET_ADMIN); running unmarked", "mark", cfg.Mark, "err", err)
		p.m.markEnabled.Set(0)
	})
	if cfg.Mark != 0 {
		p.m.markEnabled.Set(1)
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.draining, p.stopServing = context.WithCancel(p.ctx)
	return p, nil
}

// Start serves the gateway (if configured) and keeps the upstream
// listeners and the compiled intentions in step with the catalog until
// Close. It fails after Close or a second time.
func (p *Proxy) Start() error {
	p.mu.Lock()
	closed, started := p.closed, p.started
	p.started = true
	p.mu.Unlock()
	switch {
	case closed:
		return errors.New("l7proxy: start: the proxy is closed")
	case started:
		return errors.New("l7proxy: start: already started")
	}
	if p.cfg.GatewayListener != nil {
		p.gw = newGateway(p, p.cfg.GatewayListener)
		p.wg.Add(1)
		go func() { defer p.wg.Done(); p.gw.serve() }()
	}
	for _, ln := range p.cfg.TransparentListeners {
		p.wg.Add(1)
		go func() { defer p.wg.Done(); p.serveTransparent(ln) }()
	}
	// The upstream listeners the view asks for now are opened before
	// Start returns: on a reload they are the old process's sockets,
	// which the hand-over closes unless claimed by the time this process
	// says it serves (tableflip's Ready); a queued connection on an
	// unclaimed one is reset. reconcileLoop keeps them in step after.
	if want, _, err := p.desiredUpstreams(memdb.NewWatchSet()); err == nil {
		p.reconcile(want)
	}
	p.wg.Add(3)
	go func() { defer p.wg.Done(); p.watchIntentions() }()
	go func() { defer p.wg.Done(); p.reconcileLoop() }()
	go func() { defer p.wg.Done(); p.leafLoop() }()
	return nil
}

// Close stops accepting, lets open connections and requests finish until
// ctx ends (graceful drain), then closes what is left and waits for the
// proxy's goroutines, which end promptly once its connections are closed.
// It is idempotent: later calls return nil.
func (p *Proxy) Close(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.stopServing()
	for _, ln := range p.cfg.TransparentListeners {
		ln.Close()
	}
	for ln := range p.extra {
		ln.Close()
	}
	for key, u := range p.upstreams {
		u.ln.Close()
		delete(p.upstreams, key)
	}
	p.mu.Unlock()
	var err error
	if p.gw != nil {
		err = p.gw.shutdown(ctx)
	}
	drained := make(chan struct{})
	go func() { p.connWG.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-ctx.Done():
		p.mu.Lock()
		n := len(p.conns)
		for c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.log.Warn("drain timeout: closed open connections", "connections", n)
		<-drained
	}
	p.cancel()
	p.wg.Wait()
	return err
}

// track registers a stream for drain; the returned func unregisters it.
func (p *Proxy) track(c net.Conn) (func(), bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed && p.ctx.Err() != nil {
		return nil, false
	}
	p.conns[c] = struct{}{}
	p.connWG.Add(1)
	return func() {
		p.mu.Lock()
		delete(p.conns, c)
		p.mu.Unlock()
		p.connWG.Done()
	}, true
}

// protocolOf is a local service's protocol (state.Store.ServiceProtocol);
// tcp when it cannot be read.
func protocolOf(st *state.Store, service string) string {
	p, err := st.ServiceProtocol(nil, service)
	if err != nil {
		return "tcp"
	}
	return p
}

// watchIntentions recompiles the service-intentions entries whenever they
// change, so the request path only evaluates.
func (p *Proxy) watchIntentions() {
	for {
		st := p.cfg.View()
		ws := memdb.NewWatchSet()
		_, entries, err := st.ConfigEntries(ws, configentry.ServiceIntentions)
		if err == nil {
			var list []*configentry.ServiceIntentionsConfigEntry
			for _, e := range entries {
				if si, ok := e.(*configentry.ServiceIntentionsConfigEntry); ok {
					list = append(list, si)
				}
			}
			compiled, cerr := policy.CompileIntentions(list)
			if cerr != nil {
				// Entries are validated on write, so this is a bug or a
				// newer writer; keep the previous set rather than open up.
				p.log.Error("compile service-intentions; keeping the previous set", "err", cerr)
			} else {
				p.intentions.Store(compiled)
			}
		} else {
			p.log.Warn("read service-intentions", "err", err)
		}
		// The view of a client node may be replaced wholesale; a timeout
		// bounds how long a missed replacement goes unnoticed.
		if err := ws.WatchCtx(withTimeout(p.ctx, 5*time.Second)); err != nil && p.ctx.Err() != nil {
			return
		}
	}
}

// intentionsNow returns the compiled intentions; none compiled yet means
// deny everything (CompileIntentions(nil) denies by default).
func (p *Proxy) intentionsNow() *policy.Intentions {
	if in := p.intentions.Load(); in != nil {
		return in
	}
	in, _ := policy.CompileIntentions(nil)
	return in
}

// leafLoop renews due leaves in the background and forgets identities no
// longer used.
func (p *Proxy) leafLoop() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
			p.leaves.refresh(10 * time.Minute)
		}
	}
}

// withTimeout returns a context that ends with parent or after d. Its
// cancel func is released by the timer.
func withTimeout(parent context.Context, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(parent, d)
	context.AfterFunc(ctx, cancel)
	return ctx
}
