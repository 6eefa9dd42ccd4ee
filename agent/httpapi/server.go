package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/peerd/peerd/agent/local"
	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/acl"
)

// MaxBodyBytes bounds a request body; larger bodies get 413.
const MaxBodyBytes = 1 << 20

// Config configures the HTTP API.
type Config struct {
	// Cluster is this node's cluster membership; required.
	Cluster *catalog.Cluster
	// Local is this agent's local services and checks; required.
	Local *local.State
	// Registry is where /metrics gathers from and where the API registers
	// its own metrics; nil means a new registry.
	Registry *prometheus.Registry
	// Version is reported by /v1/agent/self.
	Version string
	// Peering is the peering controller behind /v1/peering/* and
	// /v1/peerings; nil means those endpoints answer 501.
	// /v1/exported-services and /v1/imported-services read the catalog and
	// work without it.
	Peering Peering
	// Logger receives structured logs; nil means slog.Default().
	Logger *slog.Logger
	// JoinTokens makes, lists and revokes join tokens (servers with
	// cluster trust); nil: /v1/operator/join-token* answer 501.
	JoinTokens JoinTokens
	// DataplaneStatus reports the eBPF dataplane's status (any value that
	// encodes as JSON) and whether the node runs one; nil = never.
	DataplaneStatus func() (status any, enabled bool)
	// WorkloadNamespaces lists the workload network namespaces peerd has
	// listeners in (agent/workloads' Status, any value that encodes as
	// JSON), shown with the dataplane status; nil = none managed.
	WorkloadNamespaces func() any
	// InsecureGossip is the agent's -insecure-gossip, shown by
	// /v1/agent/self.
	InsecureGossip bool
	// ACL resolves request tokens; nil = ACLs off (everything allowed).
	ACL ACLResolver
	// ACLBootstrapResetFile is Consul's <data-dir>/acl-bootstrap-reset: a
	// reset index written there allows one more PUT /v1/acl/bootstrap.
	// "" = no reset (dev mode).
	ACLBootstrapResetFile string
	// CapturedCgroup is the node's captured cgroup (-cgroup-path): a
	// service registered on this node that claims a cgroup (meta
	// peerd-cgroup) must name it or a directory below it. "" = capture
	// off: only the claim's form is checked.
	CapturedCgroup string
	// Tokens are the agent's own ACL tokens: the default token stands in
	// for requests without one, the agent recovery token is honoured here,
	// and PUT /v1/agent/token/* changes them. Nil = none (501 on that
	// endpoint).
	Tokens *Tokens
}

// Server is the HTTP API. Its Handler is safe for concurrent use.
type Server struct {
	cluster  *catalog.Cluster
	local    *local.State
	registry *prometheus.Registry
	version  string
	peering  Peering
	tokens   JoinTokens
	log      *slog.Logger
	duration *prometheus.HistogramVec
	// dataplaneStatus reports the eBPF dataplane (see Config).
	dataplaneStatus func() (any, bool)
	// workloadNamespaces lists the workload namespaces (see Config).
	workloadNamespaces func() any
	capturedCgroup     string
	insecureGossip     bool
	acl                ACLResolver
	aclm               *aclMetrics
	aclResetFile       string
	aclTokens          *Tokens
	enforcem           enforceMetrics
	mux                *http.ServeMux
	// literalPaths are the paths some method routes without a wildcard
	// (POST /v1/peering/token): only there can a wildcard route of another
	// method (GET /v1/peering/{name}) match a request it must not serve.
	literalPaths map[string]bool
	// patterns are the routes, in the order registered (the ACL test
	// walks them all).
	patterns []string
	// phase is the agent's Phase (SetPhase), for GET /v1/agent/health.
	phase atomic.Int32
	// healthMu guards lastReady and readySeen: the last readiness answer's
	// reason ("" = ready), logged when it changes.
	healthMu  sync.Mutex
	lastReady string
	readySeen bool
}

// New returns the HTTP API server.
func New(cfg Config) (*Server, error) {
	if cfg.Cluster == nil || cfg.Local == nil {
		return nil, errors.New("http api: cluster and local state are required")
	}
	s := &Server{
		cluster: cfg.Cluster, local: cfg.Local, registry: cfg.Registry, version: cfg.Version, log: cfg.Logger,
		peering: cfg.Peering, tokens: cfg.JoinTokens, dataplaneStatus: cfg.DataplaneStatus, insecureGossip: cfg.InsecureGossip,
		capturedCgroup: cfg.CapturedCgroup, workloadNamespaces: cfg.WorkloadNamespaces,
		acl: cfg.ACL, aclResetFile: cfg.ACLBootstrapResetFile, aclTokens: cfg.Tokens,
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.registry == nil {
		s.registry = prometheus.NewRegistry()
	}
	s.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "peerd_http_request_duration_seconds",
		Help:    "HTTP API request durations by route, method and status code.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	}, []string{"route", "method", "code"})
	if err := s.registry.Register(s.duration); err != nil {
		return nil, fmt.Errorf("register http metrics: %w", err)
	}
	var err error
	if s.enforcem, err = newEnforceMetrics(s.registry); err != nil {
		return nil, err
	}
	if err := s.initACL(); err != nil {
		return nil, err
	}
	s.mux = http.NewServeMux()
	s.literalPaths = map[string]bool{}
	s.routes()
	return s, nil
}

// MetricsHandler serves the registry's metrics without any check: for a
// metrics listener of its own, on a private address.
func (s *Server) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{})
}

// Handler returns the API's HTTP handler.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// serveHTTP answers 405 when r's method has no route of r's path's own: a
// literal route (POST /v1/peering/token) shadows the wildcard routes of
// other methods (GET /v1/peering/{name}) for that path, as in Consul, so
// GET /v1/peering/token is a wrong method, not a peering named "token".
// Only a literal route's path needs the check up front; any other wrong
// method ends at the catch-all, which makes it there, off the hot path.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if s.literalPaths[r.URL.Path] && s.refuseMethod(w, r) {
		return
	}
	s.mux.ServeHTTP(w, r)
}

// refuseMethod answers 405, naming the methods r's path takes, when r's
// method is not one of them, and reports whether it did.
func (s *Server) refuseMethod(w http.ResponseWriter, r *http.Request) bool {
	allowed, ok := s.routeMethods(r)
	if ok {
		return false
	}
	w.Header().Set("Allow", strings.Join(allowed, ", "))
	s.writeError(w, r, &httpError{code: http.StatusMethodNotAllowed,
		msg: fmt.Sprintf("method %s not allowed on %s: use %s", r.Method, r.URL.Path, strings.Join(allowed, " or "))})
	return true
}

// route registers pattern's path as literal when it has a method and no
// wildcard.
func (s *Server) route(pattern string) {
	s.patterns = append(s.patterns, pattern)
	if _, path, found := strings.Cut(pattern, " "); found && !strings.Contains(path, "{") {
		s.literalPaths[path] = true
	}
}

// endpoint is a handler that returns a value to encode as JSON, or an error.
type endpoint func(w http.ResponseWriter, r *http.Request) (any, error)

func (s *Server) handle(pattern string, ep endpoint) {
	s.handleLimit(pattern, MaxBodyBytes, ep)
}

// handleLimit is handle with a route-specific body limit.
func (s *Server) handleLimit(pattern string, maxBody int64, ep endpoint) {
	s.route(pattern)
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		r.Body = http.MaxBytesReader(rec, r.Body, maxBody)
		out, err := ep(rec, r)
		if err != nil {
			if isACLRefusal(err) {
				s.refused(pattern, r, err)
			}
			s.writeError(rec, r, err)
		} else if out != nil {
			rec.Header().Set("Content-Type", "application/json")
			enc := json.NewEncoder(rec)
			if _, ok := r.URL.Query()["pretty"]; ok {
				enc.SetIndent("", "    ")
			}
			if err := enc.Encode(out); err != nil {
				s.log.Warn("write response", "route", pattern, "err", err)
			}
		}
		s.duration.WithLabelValues(pattern, r.Method, strconv.Itoa(rec.code)).Observe(time.Since(start).Seconds())
	})
}

func (s *Server) handleRaw(pattern string, h http.Handler) {
	s.route(pattern)
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(rec, r)
		s.duration.WithLabelValues(pattern, r.Method, strconv.Itoa(rec.code)).Observe(time.Since(start).Seconds())
	})
}

type statusRecorder struct {
	http.ResponseWriter
	code        int
	wroteHeader bool
}

func (r *statusRecorder) WriteHeader(code int) {
	if !r.wroteHeader {
		r.code, r.wroteHeader = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *Server) routes() {
	// Agent: this node's own view.
	s.handle("GET /v1/agent/self", s.agentSelf)
	s.handle("GET /v1/agent/members", s.agentMembers)
	s.handle("PUT /v1/agent/join/{address}", s.agentJoin)
	s.handle("PUT /v1/agent/leave", s.agentLeave)
	s.handle("GET /v1/agent/services", s.agentServices)
	s.handle("GET /v1/agent/service/{id}", s.agentService)
	s.handle("PUT /v1/agent/service/register", s.agentServiceRegister)
	s.handle("PUT /v1/agent/service/deregister/{id}", s.agentServiceDeregister)
	s.handle("GET /v1/agent/checks", s.agentChecks)
	s.handle("PUT /v1/agent/check/register", s.agentCheckRegister)
	s.handle("PUT /v1/agent/check/deregister/{id}", s.agentCheckDeregister)
	s.handle("PUT /v1/agent/check/pass/{id}", s.agentCheckTTL(state.HealthPassing))
	s.handle("PUT /v1/agent/check/warn/{id}", s.agentCheckTTL(state.HealthWarning))
	s.handle("PUT /v1/agent/check/fail/{id}", s.agentCheckTTL(state.HealthCritical))
	s.handle("PUT /v1/agent/check/update/{id}", s.agentCheckUpdate)
	s.handle("PUT /v1/agent/service/maintenance/{id}", s.agentServiceMaintenance) // maintenance.go
	s.handle("PUT /v1/agent/maintenance", s.agentNodeMaintenance)

	// Catalog and health: the replicated state.
	s.handle("GET /v1/catalog/datacenters", s.catalogDatacenters)
	s.handle("GET /v1/catalog/nodes", s.catalogNodes)
	s.handle("GET /v1/catalog/node/{node}", s.catalogNode)
	s.handle("GET /v1/catalog/services", s.catalogServices)
	s.handle("GET /v1/catalog/service/{service}", s.catalogService)
	s.handle("PUT /v1/catalog/register", s.catalogRegister)
	s.handle("PUT /v1/catalog/deregister", s.catalogDeregister)
	s.handle("GET /v1/health/service/{service}", s.healthService)
	s.handle("GET /v1/health/checks/{service}", s.healthChecks)
	s.handle("GET /v1/health/node/{node}", s.healthNode)
	s.handle("GET /v1/health/state/{state}", s.healthState)

	// Config entries.
	s.handle("PUT /v1/config", s.configApply)
	s.handle("GET /v1/config/{kind}", s.configList)
	s.handle("GET /v1/config/{kind}/{name}", s.configGet)
	s.handle("DELETE /v1/config/{kind}/{name}", s.configDelete)

	// Cluster peering.
	s.handle("POST /v1/peering/token", s.peeringToken)
	s.handle("POST /v1/peering/establish", s.peeringEstablish)
	s.handle("GET /v1/peering/{name}", s.peeringRead)
	s.handle("DELETE /v1/peering/{name}", s.peeringDelete)
	s.handle("POST /v1/peering/{name}/rotate-secret", s.peeringRotateSecret)
	s.handle("GET /v1/peerings", s.peeringList)
	s.handle("GET /v1/exported-services", s.exportedServices)
	s.handle("GET /v1/imported-services", s.importedServices)
	s.handle("GET /v1/virtual-ips", s.virtualIPs)

	// Status.
	s.handle("GET /v1/agent/dataplane", s.agentDataplane)
	s.handle("GET /v1/agent/health", s.agentHealth)
	s.handle("GET /v1/connect/ca/roots", s.caRoots)
	s.handle("POST /v1/connect/ca/rotate", s.caRotate)
	s.intentionRoutes() // intentions.go
	s.handle("GET /v1/operator/keyring", s.keyringList)
	s.handle("POST /v1/operator/keyring", s.keyringOp(catalog.KeyringInstall))
	s.handle("PUT /v1/operator/keyring", s.keyringOp(catalog.KeyringUse))
	s.handle("DELETE /v1/operator/keyring", s.keyringOp(catalog.KeyringRemove))
	s.handle("GET /v1/status/leader", s.statusLeader)
	s.handle("GET /v1/status/peers", s.statusPeers)
	s.handle("GET /v1/operator/raft/configuration", s.operatorRaftConfiguration)
	s.handle("DELETE /v1/operator/raft/peer", s.operatorRaftPeerDelete)
	s.handle("GET /v1/operator/autopilot/state", s.operatorAutopilotState)
	s.handle("GET /v1/operator/autopilot/health", s.operatorAutopilotHealth)
	s.handle("GET /v1/operator/autopilot/configuration", s.operatorAutopilotConfiguration)
	s.handle("GET /v1/snapshot", s.snapshotSave)
	s.handle("POST /v1/operator/join-token", s.joinTokenCreate)
	s.handle("GET /v1/operator/join-tokens", s.joinTokenList)
	s.handle("DELETE /v1/operator/join-token/{id}", s.joinTokenRevoke)
	s.handle("POST /v1/operator/revoke-node/{node}", s.nodeRevoke)
	s.handleLimit("PUT /v1/snapshot", maxSnapshotUpload, s.snapshotRestore)

	// The ACL system (acl.go, acl_policy.go).
	s.aclRoutes()

	s.handle("PUT /v1/agent/token/{kind}", s.agentTokenPut)

	// Metrics need agent:read here; a separate metrics listener
	// (MetricsHandler, -metrics-addr) is for a scraper without a token.
	metrics := s.MetricsHandler()
	s.handleRaw("GET /metrics", s.requireAgentRead("GET /metrics", metrics))
	s.handleRaw("GET /v1/agent/metrics", s.requireAgentRead("GET /v1/agent/metrics", metrics))

	// Consul's KV store is not peerd's (yet). Consul's client reads a 404
	// on /v1/kv/ as a missing key (KV().Get returns nil, nil), so answer
	// 501, which it reports as an error.
	s.handle("/v1/kv/", func(http.ResponseWriter, *http.Request) (any, error) {
		return nil, &httpError{code: http.StatusNotImplemented,
			msg: "peerd has no KV store: /v1/kv is not implemented (see Status and limits in the README)"}
	})

	// The catch-all: a wrong method for a path some route has (405, see
	// serveHTTP), or a path no route has.
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if s.refuseMethod(w, r) {
			return
		}
		s.writeError(w, r, errNotFound("no such endpoint %s %s: see the API section of the README", r.Method, r.URL.Path))
	})
}

// routeMethods returns the methods of the most specific routes that match
// r's path (the fewest wildcards), and whether r's own method is one of
// them. No route at all for the path: nil, true (the catch-all's 404).
func (s *Server) routeMethods(r *http.Request) (allowed []string, ok bool) {
	_, own := s.mux.Handler(r)
	if own == "" {
		return nil, true // a redirect (trailing slash, unclean path): the mux answers it
	}
	if _, ownPath, found := strings.Cut(own, " "); found && !strings.Contains(ownPath, "{") {
		return nil, true // a literal route of r's method: none is more specific
	}
	best := -1
	paths := map[string]string{}
	for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodPost, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		_, pattern := s.mux.Handler(probe)
		method, path, found := strings.Cut(pattern, " ")
		if !found || method != m {
			continue // the catch-all, or no route
		}
		paths[m] = path
		if n := strings.Count(path, "{"); best < 0 || n < best {
			best = n
		}
	}
	for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodPost, http.MethodDelete} {
		if path, found := paths[m]; found && strings.Count(path, "{") == best {
			allowed = append(allowed, m)
		}
	}
	if len(allowed) == 0 {
		return nil, true
	}
	_, ownPath, _ := strings.Cut(own, " ")
	return allowed, strings.Count(ownPath, "{") == best && own != "/"
}

// ---- errors ----

type httpError struct {
	code int
	msg  string
	// reason, when set, is the refusal's label in a refusal counter (the
	// ACL endpoints').
	reason string
}

func (e *httpError) Error() string { return e.msg }

func errBadRequest(format string, a ...any) error {
	return &httpError{code: http.StatusBadRequest, msg: fmt.Sprintf(format, a...)}
}

func errNotFound(format string, a ...any) error {
	return &httpError{code: http.StatusNotFound, msg: fmt.Sprintf(format, a...)}
}

// writeError maps an error onto the status Consul would answer with and writes
// the message as plain text (Consul's clients show the body verbatim).
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := http.StatusInternalServerError
	msg := err.Error()
	var he *httpError
	var mbe *http.MaxBytesError
	var ae *catalog.ApplyError
	switch {
	case errors.As(err, &he):
		code = he.code
	case errors.Is(err, acl.ErrPermissionDenied):
		code = http.StatusForbidden
	case errors.As(err, &mbe):
		code = http.StatusRequestEntityTooLarge
		msg = fmt.Sprintf("request body is larger than %d bytes: split it or trim it", mbe.Limit)
	case errors.Is(err, catalog.ErrNoLeader):
		code, msg = http.StatusServiceUnavailable, "No cluster leader: "+msg
	case errors.Is(err, catalog.ErrNoServers):
		code = http.StatusServiceUnavailable
	case errors.Is(err, local.ErrUnknownService), errors.Is(err, local.ErrUnknownCheck):
		code = http.StatusNotFound
	case errors.As(err, &ae):
		code = http.StatusBadRequest
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		code = http.StatusServiceUnavailable
	}
	if code >= 500 {
		s.log.Warn("request failed", "method", r.Method, "path", r.URL.Path, "code", code, "err", err)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, msg+"\n")
}
