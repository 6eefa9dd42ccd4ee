package l7proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/l7proxy/policy"
)

// Headers the gateway reads or writes.
const (
	headerXFCC = "X-Forwarded-Client-Cert"
	// headerInstance names the instance a forwarding node chose, for the
	// node that owns it.
	headerInstance = "X-Peerd-Instance"
)

// forwarder sends requests and connections on from the gateway: it turns a
// route into endpoints (resolver, failover, health) and keeps the
// keep-alive pools toward them.
type forwarder struct {
	p  *Proxy
	rp *httputil.ReverseProxy

	mu         sync.Mutex
	transports map[string]*http.Transport
	// local is the synchronous HTTP/1.1 pool toward this node's instances.
	local *h1Pool
}

func newForwarder(p *Proxy) *forwarder {
	f := &forwarder{p: p, transports: map[string]*http.Transport{}}
	d := &net.Dialer{Control: p.mark.Control, Timeout: p.cfg.ConnectTimeout}
	f.local = newH1Pool(func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, &dialError{err}
		}
		return c, nil
	}, p.cfg.MaxIdleConnsPerEndpoint, int64(p.cfg.MaxHeaderBytes)*4)
	f.rp = &httputil.ReverseProxy{
		Rewrite:        func(*httputil.ProxyRequest) {}, // the plan's transport sets the destination
		Transport:      roundTripFunc(f.roundTrip),
		ErrorHandler:   f.errorHandler,
		ModifyResponse: f.modifyResponse,
		ErrorLog:       nil,
		BufferPool:     &bufferPool{},
	}
	return f
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// plan is the forwarding decision for one request, carried in its context.
type plan struct {
	ci       *connInfo
	route    policy.Route
	choice   choice
	lbPolicy string
	timeout  time.Duration
	as       spiffeid.ID
	hint     string
}

type planKey struct{}

// destination resolves a route's target to endpoints: the resolver's
// candidates in failover order, and only this node's instances on a hop
// from another node (which already chose this node).
func (f *forwarder) destination(st *state.Store, route policy.Route, hop bool) (choice, string, time.Duration, error) {
	return f.p.views.destination(st, destKey{target: route.Target, hop: hop}, func() (choice, string, time.Duration, error) {
		return f.resolveDestination(st, route, hop)
	})
}

func (f *forwarder) resolveDestination(st *state.Store, route policy.Route, hop bool) (choice, string, time.Duration, error) {
	res, err := f.p.policy.Resolve(route.Target, f.p.views.lookup(st))
	if err != nil {
		return choice{}, "", 0, err
	}
	if hop {
		res.Candidates = []policy.Target{{Service: route.Target.Service}}
	}
	ch, err := f.p.choose(st, res, false)
	if err != nil {
		return choice{}, "", 0, err
	}
	if hop {
		local := slices.DeleteFunc(slices.Clone(ch.eps), func(ep *endpoint) bool { return ep.kind != epLocal })
		if len(local) == 0 {
			return choice{}, "", 0, fmt.Errorf("%w: no healthy instance of %s on this node", errNoHealthy, route.Target.Service)
		}
		ch.eps = local
	}
	return ch, res.LoadBalancer, res.ConnectTimeout, nil
}

// onwardIdentity is who the gateway is when it dials on: the gateway
// identity toward another node of this cluster, the destination service's
// identity toward a peer (failover at the destination), none for a local
// instance.
func (f *forwarder) onwardIdentity(ch choice, service string) (spiffeid.ID, error) {
	switch ch.eps[0].kind {
	case epNode:
		return f.p.gatewayID()
	case epPeer:
		return f.p.serviceID(service)
	}
	return spiffeid.ID{}, nil
}

// refusal is a response the gateway gives itself instead of forwarding.
type refusal struct {
	code int
	msg  string
	// class is the request's "class" label when it is not the status's
	// ("denied" for an intention's 403, as TCP denials are counted).
	class string
}

// requestClass is the "class" label of a request answered with code, or
// refused with ref.
func requestClass(code int, ref *refusal) string {
	if ref != nil && ref.class != "" {
		return ref.class
	}
	return statusClass(code)
}

// decide runs the gateway's L7 decision for one request: header limits,
// intentions (with XFCC set for the instance), routing, and the endpoints
// of the routed target. It rewrites r for forwarding (path rewrite, header
// modifiers) and returns the forwarding plan, or the refusal to answer.
func (g *gateway) decide(ci *connInfo, r *http.Request) (*plan, *refusal) {
	p := g.p
	if headerBytes(r) > p.cfg.MaxHeaderBytes {
		p.m.handshakeFail.WithLabelValues("gateway", "header_too_large").Inc()
		p.log.Info("gateway refused a request: headers too large", "service", ci.service, "caller", ci.callerName(), "peer", ci.peer)
		return nil, &refusal{code: http.StatusRequestHeaderFieldsTooLarge, msg: "request headers too large\n"}
	}
	pl := &plan{ci: ci}
	st := p.cfg.View()
	if ci.hop {
		pl.hint = r.Header.Get(headerInstance)
		pl.route = policy.Route{Target: policy.Target{Service: ci.service}}
	} else {
		if d := p.intentionsNow().Authorize(ci.service, ci.policyCaller(), r); !d.Allow {
			g.denied(ci, d.Reason, r.URL.Path)
			return nil, &refusal{code: http.StatusForbidden, msg: "RBAC: access denied\n", class: "denied"}
		}
		r.Header.Set(headerXFCC, ci.xfcc)
		var err error
		if pl.route, err = p.policy.RouteRequest(ci.service, r, p.views.lookup(st), rand.Float64); err != nil {
			p.log.Warn("gateway: route request", "service", ci.service, "err", err)
			return nil, &refusal{code: http.StatusServiceUnavailable, msg: "peerd gateway: " + err.Error() + "\n"}
		}
	}
	r.Header.Del(headerInstance)
	ch, lbPolicy, connectTimeout, err := g.fwd.destination(st, pl.route, ci.hop)
	if err != nil {
		p.log.Warn("gateway: no destination", "service", ci.service, "target", targetName(pl.route.Target), "err", err)
		return nil, &refusal{code: http.StatusServiceUnavailable, msg: "no healthy upstream\n"}
	}
	pl.choice, pl.lbPolicy, pl.timeout = ch, lbPolicy, connectTimeout
	if pl.as, err = g.fwd.onwardIdentity(ch, pl.route.Target.Service); err != nil {
		return nil, &refusal{code: http.StatusServiceUnavailable, msg: "peerd gateway: " + err.Error() + "\n"}
	}
	rt := pl.route
	if rw := rt.RewritePath(r.URL.Path); rw != r.URL.Path {
		r.URL.Path, r.URL.RawPath = rw, ""
	}
	policy.ApplyHeaderModifiers(r.Header, rt.RequestHeaders)
	return pl, nil
}

// observe records one request's metrics under class (requestClass).
func (g *gateway) observe(ci *connInfo, start time.Time, class string, rx, tx int64) {
	m := ci.metricsFor(g.p.m, class)
	m.requests.Inc()
	m.duration.Observe(time.Since(start).Seconds())
	m.rx.Add(float64(rx))
	m.tx.Add(float64(tx))
}

// serveHTTP is the gateway's L7 path for HTTP/2 connections (served by
// net/http): intentions, routing, forwarding through the reverse proxy.
func (g *gateway) serveHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	ci, _ := r.Context().Value(connInfoKey{}).(*connInfo)
	if ci == nil {
		http.Error(w, "peerd gateway: connection without identity", http.StatusInternalServerError)
		return
	}
	ci.requests.Add(1)
	rw := &statusWriter{ResponseWriter: w}
	body := &trackedBody{rc: r.Body}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = body
	}
	var ref *refusal
	defer func() { g.observe(ci, start, requestClass(rw.status(), ref), body.n.Load(), rw.written) }()
	pl, ref := g.decide(ci, r)
	if ref != nil {
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		rw.WriteHeader(ref.code)
		_, _ = io.WriteString(rw, ref.msg)
		return
	}
	ctx := context.WithValue(r.Context(), planKey{}, pl)
	if pl.route.RequestTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, pl.route.RequestTimeout)
		defer cancel()
	}
	g.fwd.rp.ServeHTTP(rw, r.WithContext(ctx))
}

// headerBytes approximates the size of a request's header block.
func headerBytes(r *http.Request) int {
	n := len(r.Method) + len(r.RequestURI) + len(r.Host) + 16
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

// roundTrip sends the request to an endpoint of the plan, retrying connect
// failures on other endpoints, and statuses the route asks to retry while
// the request body has not been sent.
func (f *forwarder) roundTrip(r *http.Request) (*http.Response, error) {
	pl, _ := r.Context().Value(planKey{}).(*plan)
	if pl == nil {
		return nil, errors.New("request without a forwarding plan")
	}
	body, _ := r.Body.(*trackedBody)
	if body == nil {
		body = &trackedBody{}
	}
	tried := map[string]bool{}
	retries := int(pl.route.NumRetries)
	var lastErr error
	for attempt := 0; ; attempt++ {
		ep := f.pickFor(pl, tried)
		if ep == nil {
			if lastErr == nil {
				lastErr = errNoHealthy
			}
			return nil, lastErr
		}
		tried[ep.key()] = true
		// r is the proxy's own outgoing request (ReverseProxy's copy, or
		// the one the HTTP/1.1 loop read): it is aimed at each attempt's
		// endpoint in place rather than cloned.
		out := r
		out.URL.Host = ep.addr
		out.URL.Scheme = "http"
		if ep.kind != epLocal {
			out.URL.Scheme = "https"
		}
		if ep.kind == epNode {
			out.Header.Set(headerInstance, ep.instance)
		} else {
			out.Header.Del(headerInstance)
		}
		ep.stats.active.Add(1)
		var rt http.RoundTripper = f.local
		if ep.kind != epLocal || out.Header.Get("Upgrade") != "" || ep.protocol != "http" {
			rt = f.transport(ep, pl)
		}
		resp, err := rt.RoundTrip(out)
		ep.stats.active.Add(-1)
		if err != nil {
			lastErr = err
			var de *dialError
			connectFailure := errors.As(err, &de)
			if connectFailure {
				f.p.lb.failed(ep)
			}
			canRetry := !body.read.Load() && r.Context().Err() == nil &&
				(connectFailure && attempt+1 < f.p.cfg.ConnectAttempts ||
					!connectFailure && attempt < retries && retryOn(pl.route, 0))
			if canRetry {
				continue
			}
			return nil, err
		}
		f.p.lb.succeeded(ep)
		if attempt < retries && !body.read.Load() && retryStatus(pl.route, resp.StatusCode) {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			delete(tried, ep.key()) // the endpoint answered; it may be tried again
			continue
		}
		return resp, nil
	}
}

// pickFor picks an endpoint: on a hop, the instance the previous node
// chose if it is here and healthy.
func (f *forwarder) pickFor(pl *plan, tried map[string]bool) *endpoint {
	if pl.hint != "" {
		for _, ep := range pl.choice.eps {
			if ep.instance == pl.hint && !tried[ep.key()] {
				return ep
			}
		}
	}
	return f.p.lb.pick(targetKey(pl.choice.target), pl.lbPolicy, pl.choice.eps, tried)
}

// retryOn reports whether a route retries a request that failed after it
// was sent (a reset, or a refused stream).
func retryOn(rt policy.Route, _ int) bool {
	for _, c := range rt.RetryOn {
		switch c {
		case "reset", "connect-failure", "refused-stream", "gateway-error", "5xx":
			return true
		}
	}
	return false
}

// retryStatus reports whether a route retries a response status.
func retryStatus(rt policy.Route, code int) bool {
	if slices.Contains(rt.RetryOnStatusCodes, uint32(code)) {
		return true
	}
	for _, c := range rt.RetryOn {
		switch {
		case c == "5xx" && code >= 500:
			return true
		case c == "gateway-error" && (code == 502 || code == 503 || code == 504):
			return true
		case c == "retriable-4xx" && code == 409:
			return true
		}
	}
	return false
}

// dialError marks a failure to connect (before anything was sent).
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// transport returns the keep-alive pool toward ep: one shared pool per
// kind for local instances (HTTP/1.1, or h2c for http2 and grpc services),
// one per endpoint for mTLS hops (their server name and identity differ).
func (f *forwarder) transport(ep *endpoint, pl *plan) *http.Transport {
	protocol := ep.protocol
	key := ep.kind.String() + "|" + protocol
	if ep.kind != epLocal {
		key += "|" + ep.key() + "|" + pl.as.String()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if t := f.transports[key]; t != nil {
		return t
	}
	t := &http.Transport{
		MaxIdleConnsPerHost:    f.p.cfg.MaxIdleConnsPerEndpoint,
		IdleConnTimeout:        90 * time.Second,
		ResponseHeaderTimeout:  0,
		MaxResponseHeaderBytes: int64(f.p.cfg.MaxHeaderBytes) * 4,
		Protocols:              new(http.Protocols),
	}
	t.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: f.p.cfg.MaxConcurrentStreams}
	timeout := pl.timeout
	if ep.kind == epLocal {
		d := &net.Dialer{Control: f.p.mark.Control, Timeout: cmpDuration(timeout, f.p.cfg.ConnectTimeout)}
		t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, &dialError{err}
			}
			return c, nil
		}
		if protocol == "http2" || protocol == "grpc" {
			t.Protocols.SetUnencryptedHTTP2(true)
		} else {
			t.Protocols.SetHTTP1(true)
		}
	} else {
		as, target := pl.as, *ep
		t.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			c, err := f.p.dial(ctx, &target, as, alpnFor(protocol))
			if err != nil {
				return nil, &dialError{err}
			}
			return c, nil
		}
		if protocol == "http" {
			t.Protocols.SetHTTP1(true)
		} else {
			t.Protocols.SetHTTP2(true)
		}
	}
	f.transports[key] = t
	return t
}

func cmpDuration(a, b time.Duration) time.Duration {
	if a > 0 {
		return a
	}
	return b
}

func (f *forwarder) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	pl, _ := r.Context().Value(planKey{}).(*plan)
	code := f.errorCode(pl, err, r.Context().Err())
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, errorMessage(code)+"\n")
}

// errorCode maps a forwarding error, and the request context's error, to
// the status answered, and logs it. A request timeout surfaces as a socket
// deadline on the instance's connection, so the context decides.
func (f *forwarder) errorCode(pl *plan, err, ctxErr error) int {
	code := http.StatusBadGateway
	switch {
	case errors.Is(ctxErr, context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded):
		code = http.StatusGatewayTimeout
	case errors.Is(err, errNoHealthy):
		code = http.StatusServiceUnavailable
	case errors.Is(err, context.Canceled):
		code = 499
	}
	if pl != nil {
		f.p.log.Warn("gateway: forward request", "service", pl.ci.service, "target", targetName(pl.choice.target), "err", err)
	}
	return code
}

// errorMessage is Envoy's wording for the proxy's own errors.
func errorMessage(code int) string {
	switch code {
	case http.StatusGatewayTimeout:
		return "upstream request timeout"
	case http.StatusServiceUnavailable:
		return "no healthy upstream"
	case 499:
		return "client closed request"
	}
	return "upstream connect error"
}

func (f *forwarder) modifyResponse(resp *http.Response) error {
	pl, _ := resp.Request.Context().Value(planKey{}).(*plan)
	if pl != nil && pl.route.ResponseHeaders != nil {
		policy.ApplyHeaderModifiers(resp.Header, pl.route.ResponseHeaders)
	}
	return nil
}

// trackedBody records whether any of a request body was read (then it
// cannot be replayed on another endpoint).
type trackedBody struct {
	rc   io.ReadCloser
	read atomic.Bool
	eof  atomic.Bool
	// broken is set when the client's body failed to read: it ended
	// before its Content-Length, or its chunked encoding is malformed.
	broken atomic.Bool
	n      atomic.Int64
}

func (b *trackedBody) Read(p []byte) (int, error) {
	b.read.Store(true)
	n, err := b.rc.Read(p)
	b.n.Add(int64(n))
	switch {
	case err == io.EOF:
		b.eof.Store(true)
	case err != nil:
		b.broken.Store(true)
	}
	return n, err
}

func (b *trackedBody) Close() error { return b.rc.Close() }

// statusWriter records the status and bytes written for metrics; Unwrap
// keeps flushing (gRPC streams) working through http.ResponseController.
type statusWriter struct {
	http.ResponseWriter
	code    int
	written int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 && code >= 200 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.written += int64(n)
	return n, err
}

func (w *statusWriter) Flush() {
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}

// bufferPool recycles the reverse proxy's copy buffers.
type bufferPool struct{ pool sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.pool.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.pool.Put(&buf) }

// closeIdle closes the idle connections of every pool (shutdown).
func (f *forwarder) closeIdle() {
	f.local.closeIdle()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, t := range f.transports {
		t.CloseIdleConnections()
	}
}
