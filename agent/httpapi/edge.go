package httpapi

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/peerd/peerd/internal/weborigin"
)

// Reasons of peerd_http_refusals_total, one per check of the edge.
const (
	// ReasonOrigin is a state-changing request from a browser page of an
	// origin that is neither the API's own nor allowed (CSRF).
	ReasonOrigin = "origin"
	// ReasonContentType is a state-changing request with a CORS
	// "simple" content type (text/plain, a form), which a page of any
	// origin can send without a preflight.
	ReasonContentType = "content-type"
	// ReasonHost is a request whose Host header names neither an IP
	// address, localhost, the node nor an allowed host (DNS rebinding).
	ReasonHost = "host"
	// ReasonClientCert is an HTTPS connection refused for its client
	// certificate (verify_incoming).
	ReasonClientCert = "client-certificate"
)

// warnEvery is how often the edge logs refusals of one reason at Warn;
// the others in between go to Debug, so a hostile page cannot flood the
// log.
const warnEvery = time.Minute

// EdgeConfig configures the browser protections in front of the API (see
// NewEdge). The zero value is the secure default: only the API's own
// origin, and only IP addresses, localhost and NodeName as hosts.
type EdgeConfig struct {
	// NodeName is this node's name, accepted as a Host (case-insensitive).
	NodeName string
	// AllowedOrigins are the origins ("https://ui.example.com:8443") whose
	// pages may change state through the API, besides the API's own; the
	// same origins get CORS answers. Check them with weborigin.Parse.
	AllowedOrigins []string
	// AllowedHosts are the names accepted in the Host header besides IP
	// addresses, localhost and NodeName, case-insensitive, without port.
	// Check them with weborigin.ValidateHost.
	AllowedHosts []string
	// Registry is where peerd_http_refusals_total is registered; nil
	// means it is not exported.
	Registry prometheus.Registerer
	// Logger receives the refusals; nil means slog.Default().
	Logger *slog.Logger
}

// Edge is the API's outer handler: it refuses what a browser could be
// made to send on a user's behalf, before any endpoint sees it.
//
//   - Host: a request whose Host is not an IP address, localhost, the node
//     name or an allowed host is refused (421), so a page whose name was
//     rebound to 127.0.0.1 cannot reach the API in its own origin.
//   - Origin: a state-changing request (any method but GET, HEAD and
//     OPTIONS) that carries an Origin other than the API's own or an
//     allowed one is refused (403). Requests without Origin (CLIs, the
//     official client) are not affected.
//   - Content-Type: a state-changing request with a CORS simple content
//     type (text/plain, application/x-www-form-urlencoded,
//     multipart/form-data), or a malformed one, is refused (415): such a
//     request is sent cross-origin without a preflight.
//
// Every refusal is counted in peerd_http_refusals_total{listener,reason}
// and logged (at Warn once a minute per reason, else at Debug). It is
// safe for concurrent use.
type Edge struct {
	next     http.Handler
	node     string
	origins  map[string]bool
	hosts    map[string]bool
	log      *slog.Logger
	refusals *prometheus.CounterVec

	mu       sync.Mutex
	lastWarn map[string]time.Time
}

// NewEdge returns next behind the checks of cfg.
func NewEdge(cfg EdgeConfig, next http.Handler) (*Edge, error) {
	e := &Edge{next: next, node: strings.ToLower(cfg.NodeName), origins: map[string]bool{}, hosts: map[string]bool{},
		log: cfg.Logger, lastWarn: map[string]time.Time{}}
	if e.log == nil {
		e.log = slog.Default()
	}
	for _, o := range cfg.AllowedOrigins {
		norm, err := weborigin.Parse(o)
		if err != nil {
			return nil, fmt.Errorf("http edge: allowed origin: %w", err)
		}
		e.origins[norm] = true
	}
	for _, h := range cfg.AllowedHosts {
		if err := weborigin.ValidateHost(h); err != nil {
			return nil, fmt.Errorf("http edge: allowed host: %w", err)
		}
		e.hosts[weborigin.Canonical(h)] = true
	}
	e.refusals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "peerd_http_refusals_total",
		Help: "HTTP API requests and connections refused at the edge, by listener (http, https) and reason (host, origin, content-type, client-certificate).",
	}, []string{"listener", "reason"})
	if cfg.Registry != nil {
		if err := cfg.Registry.Register(e.refusals); err != nil {
			return nil, fmt.Errorf("register http edge metrics: %w", err)
		}
	}
	return e, nil
}

// Refused counts and logs one refusal on listener; the HTTPS listener
// calls it for refused client certificates.
func (e *Edge) Refused(listener, reason string, attrs ...any) {
	e.refusals.WithLabelValues(listener, reason).Inc()
	level := slog.LevelDebug
	e.mu.Lock()
	if now := time.Now(); now.Sub(e.lastWarn[reason]) >= warnEvery {
		e.lastWarn[reason] = now
		level = slog.LevelWarn
	}
	e.mu.Unlock()
	e.log.Log(context.Background(), level, "http request refused", append([]any{"listener", listener, "reason", reason}, attrs...)...)
}

// ServeHTTP applies the checks, then hands r to the API.
func (e *Edge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if code, reason, msg := e.check(r); code != 0 {
		listener := "http"
		if r.TLS != nil {
			listener = "https"
		}
		e.Refused(listener, reason, "method", r.Method, "path", r.URL.Path, "host", r.Host,
			"origin", r.Header.Get("Origin"), "remote", r.RemoteAddr)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(code)
		_, _ = io.WriteString(w, msg+"\n")
		return
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		if norm, err := weborigin.Parse(origin); err == nil && e.origins[norm] {
			e.cors(w, r, origin)
			if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
				w.WriteHeader(http.StatusNoContent) // the preflight's answer
				return
			}
		}
	}
	e.next.ServeHTTP(w, r)
}

// cors answers an allowed origin: its pages may read responses and send
// the API's headers (a token, JSON).
func (e *Edge) cors(w http.ResponseWriter, r *http.Request, origin string) {
	h := w.Header()
	h.Add("Vary", "Origin")
	h.Set("Access-Control-Allow-Origin", origin)
	if r.Method == http.MethodOptions {
		h.Set("Access-Control-Allow-Methods", "GET, HEAD, PUT, POST, DELETE")
		h.Set("Access-Control-Allow-Headers", "Content-Type, X-Consul-Token, Authorization")
		h.Set("Access-Control-Max-Age", "600")
	}
	h.Set("Access-Control-Expose-Headers", "X-Consul-Index, X-Consul-Knownleader, X-Consul-Lastcontact, X-Consul-Results-Filtered-By-Acls")
}

// check returns the status, reason and message that refuse r, or a zero
// status when r may pass.
func (e *Edge) check(r *http.Request) (code int, reason, msg string) {
	if msg := e.checkHost(r.Host); msg != "" {
		return http.StatusMisdirectedRequest, ReasonHost, msg
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return 0, "", ""
	}
	if origin, ok := r.Header["Origin"]; ok {
		if msg := e.checkOrigin(origin, r); msg != "" {
			return http.StatusForbidden, ReasonOrigin, msg
		}
	}
	if msg := checkContentType(r.Header.Values("Content-Type")); msg != "" {
		return http.StatusUnsupportedMediaType, ReasonContentType, msg
	}
	return 0, "", ""
}

// checkHost refuses a Host header that could be a rebound name: it must
// be an IP address, localhost, the node name or an allowed host.
func (e *Edge) checkHost(hostport string) string {
	host, ok := weborigin.SplitHost(hostport)
	switch {
	case !ok:
		return fmt.Sprintf("request refused: Host %q is not a host name or IP address", hostport)
	case host == "":
		return "request refused: no Host header; send the address you connect to as Host"
	}
	if _, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return ""
	}
	name := weborigin.Canonical(host)
	if name == "localhost" || (e.node != "" && name == e.node) || e.hosts[name] {
		return ""
	}
	return fmt.Sprintf("request refused: Host %q is not a name of this agent (a browser page whose name points here, DNS rebinding, sends it). "+
		"Connect by IP address, localhost or the node name, or allow the name with -http-allowed-hosts %s (http_config { allowed_hosts = [%q] })",
		hostport, name, name)
}

// checkOrigin refuses a state-changing request from another origin's
// page.
func (e *Edge) checkOrigin(values []string, r *http.Request) string {
	if len(values) != 1 {
		return fmt.Sprintf("request refused: %d Origin headers; a browser sends one", len(values))
	}
	origin := values[0]
	norm, err := weborigin.Parse(origin)
	if err != nil {
		return fmt.Sprintf("request refused: Origin %q: %v; changes from a browser page need an allowed origin (-http-allowed-origins)", origin, err)
	}
	if norm == ownOrigin(r) || e.origins[norm] {
		return ""
	}
	return fmt.Sprintf("request refused: %s %s from a page of origin %q, which is not this API's origin (%s) and not allowed (a cross-site request forgery would look so). "+
		"Allow the origin with -http-allowed-origins %s (http_config { allowed_origins = [%q] })",
		r.Method, r.URL.Path, origin, ownOrigin(r), norm, norm)
}

// simpleTypes are the content types a page of any origin may POST without
// a CORS preflight (the Fetch standard's CORS-safelisted request header).
var simpleTypes = []string{"text/plain", "application/x-www-form-urlencoded", "multipart/form-data"}

// checkContentType refuses a simple or malformed content type. No
// Content-Type (the API's clients without a body) passes.
func checkContentType(values []string) string {
	switch len(values) {
	case 0:
		return ""
	case 1:
	default:
		return fmt.Sprintf("request refused: %d Content-Type headers; send one, application/json", len(values))
	}
	mt, _, err := mime.ParseMediaType(values[0])
	if err != nil {
		return fmt.Sprintf("request refused: Content-Type %q does not parse (%v); send application/json", values[0], err)
	}
	if slices.Contains(simpleTypes, mt) {
		return fmt.Sprintf("request refused: Content-Type %s can be sent by a page of any site without the browser asking first, so the API takes no change with it; "+
			"send application/json (or no Content-Type)", mt)
	}
	return ""
}

// ownOrigin is the origin of the API as r reached it: scheme and Host.
func ownOrigin(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	norm, err := weborigin.Parse(scheme + "://" + r.Host)
	if err != nil {
		return ""
	}
	return norm
}
