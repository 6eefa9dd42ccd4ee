package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/peerd/peerd/catalog"
)

// Phase is where the agent is in its life, as GET /v1/agent/health
// reports it. The agent sets it with SetPhase; a new Server is starting.
type Phase int32

// The agent's phases, in the order they come.
const (
	// PhaseStarting: Start has not finished (the listeners are open, the
	// parts are coming up).
	PhaseStarting Phase = iota
	// PhaseServing: Start has finished; joining and leader election may
	// still be going on in the background.
	PhaseServing
	// PhaseShuttingDown: Leave or Close has begun; the terminator drains,
	// then the API stops.
	PhaseShuttingDown
)

func (p Phase) String() string {
	switch p {
	case PhaseStarting:
		return "starting"
	case PhaseServing:
		return "serving"
	case PhaseShuttingDown:
		return "shutting_down"
	}
	return fmt.Sprintf("phase(%d)", int32(p))
}

// SetPhase records the agent's phase for GET /v1/agent/health. It is safe
// for concurrent use.
func (s *Server) SetPhase(p Phase) { s.phase.Store(int32(p)) }

// Phase returns the phase SetPhase recorded last.
func (s *Server) Phase() Phase { return Phase(s.phase.Load()) }

// The probes GET /v1/agent/health?probe= answers, Kubernetes' three.
const (
	// ProbeLive: the process answers. 200 in every phase, leader or not:
	// a liveness failure restarts the container, which helps neither a
	// cluster without quorum nor a node that is draining.
	ProbeLive = "live"
	// ProbeStartup: Start has finished (200 once serving). No leader is
	// needed: servers with -bootstrap-expect elect one only when enough
	// of them have started.
	ProbeStartup = "startup"
	// ProbeReady, the default: serving, the cluster has a leader and this
	// node is part of it.
	ProbeReady = "ready"
)

// The reasons of a 503 from GET /v1/agent/health.
const (
	// HealthStarting: Start has not finished.
	HealthStarting = "starting"
	// HealthShuttingDown: the agent is leaving or closing.
	HealthShuttingDown = "shutting_down"
	// HealthNoLeader: no leader is known (a server's raft has none, or the
	// servers a client asks have none), or none could be asked.
	HealthNoLeader = "no_leader"
	// HealthNotJoined: this node is not part of the cluster yet: a client
	// sees no live server in its gossip pool, a server is not in the raft
	// configuration.
	HealthNotJoined = "not_joined"
	// HealthNotSynced: a client has not received the cluster's state from
	// a server yet, so its DNS and dataplane would answer from nothing.
	HealthNotSynced = "not_synced"
)

// healthLeaderTimeout bounds a client's question to a server about the
// leader; a probe's own timeout (Kubernetes: 1 s by default) may end it
// sooner.
const healthLeaderTimeout = 2 * time.Second

// healthAnswer is GET /v1/agent/health's body. It carries nothing a
// reader of the open GET /v1/status/leader could not learn: no address,
// no token, no service.
type healthAnswer struct {
	// Status is "ok" (200) or "unavailable" (503).
	Status string
	// Probe is the probe answered: live, startup or ready.
	Probe string
	// Phase is the agent's phase: starting, serving or shutting_down.
	Phase string
	// Reason is why the probe fails, one of the Health* reasons.
	Reason string `json:",omitempty"`
	// Message says the same for a person, with what to look at.
	Message string `json:",omitempty"`
	// Node is this node's name; Server whether it is a server.
	Node   string
	Server bool
}

// agentHealth is GET /v1/agent/health?probe=live|startup|ready, peerd's
// own (Consul has none): 200 {"Status": "ok"} or 503 with a reason. It
// needs no token (see TestEveryRouteIsEnforced) and passes the edge with
// the kubelet's Host (the pod's or node's IP address), so it is what the
// Kubernetes probes ask. GET /v1/status/leader keeps Consul's meaning
// (200 with "" while there is no leader) and is no readiness probe.
func (s *Server) agentHealth(w http.ResponseWriter, r *http.Request) (any, error) {
	probe := r.URL.Query().Get("probe")
	switch probe {
	case "":
		probe = ProbeReady
	case ProbeLive, ProbeStartup, ProbeReady:
	default:
		return nil, errBadRequest("probe %q is not one of live, startup and ready: use ?probe=live for liveness, ?probe=startup for startup, ?probe=ready (the default) for readiness", probe)
	}
	phase := s.Phase()
	ans := healthAnswer{Status: "ok", Probe: probe, Phase: phase.String(), Node: s.nodeName(), Server: s.cluster.IsServer()}
	if probe != ProbeLive {
		ans.Reason, ans.Message = s.unhealthy(r.Context(), probe, phase)
	}
	code := http.StatusOK
	if ans.Reason != "" {
		code, ans.Status = http.StatusServiceUnavailable, "unavailable"
	}
	s.noteReadiness(probe, ans.Reason, ans.Message)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	if err := json.NewEncoder(w).Encode(ans); err != nil {
		s.log.Debug("write health answer", "err", err)
	}
	return nil, nil
}

// unhealthy returns why probe fails in phase, or "" when it passes.
func (s *Server) unhealthy(ctx context.Context, probe string, phase Phase) (reason, msg string) {
	switch phase {
	case PhaseStarting:
		return HealthStarting, "the agent is starting"
	case PhaseShuttingDown:
		return HealthShuttingDown, "the agent is shutting down"
	}
	if probe == ProbeStartup {
		return "", ""
	}
	if s.cluster.IsServer() {
		return s.serverUnready()
	}
	return s.clientUnready(ctx)
}

// serverUnready: a server is ready once its raft knows a leader and holds
// this server in its configuration (a voter, or a non-voter being
// promoted), so a rolling update waits for each server to be back in the
// cluster before it takes down the next.
func (s *Server) serverUnready() (reason, msg string) {
	if s.cluster.Leader() == "" {
		return HealthNoLeader, "no raft leader is known: the servers have not elected one (too few have joined for -bootstrap-expect, or quorum is lost)"
	}
	servers, _, err := s.cluster.RaftConfiguration()
	if err != nil {
		return HealthNoLeader, fmt.Sprintf("read the raft configuration: %v", err)
	}
	name := s.cluster.Config().NodeName
	for _, srv := range servers {
		if srv.ID == name {
			return "", ""
		}
	}
	return HealthNotJoined, fmt.Sprintf("server %s is not in the raft configuration yet: the leader adds it once it has joined the gossip pool (and been admitted, with cluster trust)", name)
}

// clientUnready: a client is ready once it sees a live server, a server
// it asks knows a leader, and its mirror of the state has synced.
func (s *Server) clientUnready(ctx context.Context) (reason, msg string) {
	if len(s.cluster.Servers()) == 0 {
		return HealthNotJoined, "no live server in this node's gossip pool: it has not joined yet (check -retry-join and the gossip key)"
	}
	leader, err := s.askLeader(ctx)
	if err != nil {
		if errors.Is(err, catalog.ErrNoServers) {
			return HealthNotJoined, fmt.Sprintf("ask a server for the leader: %v", err)
		}
		return HealthNoLeader, fmt.Sprintf("ask a server for the leader: %v", err)
	}
	if leader == "" {
		return HealthNoLeader, "the servers know no leader: they have not elected one (too few have joined, or quorum is lost)"
	}
	if !s.cluster.ViewSynced() {
		return HealthNotSynced, "this node has not received the cluster's state from a server yet"
	}
	return "", ""
}

// askLeader asks a live server, over the relay, what its
// GET /v1/status/leader says.
func (s *Server) askLeader(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, healthLeaderTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "/v1/status/leader", nil)
	if err != nil {
		return "", err
	}
	rec := &bufferWriter{header: http.Header{}, code: http.StatusOK}
	if err := s.relay(rec, req, true); err != nil {
		return "", err
	}
	if rec.code != http.StatusOK {
		return "", fmt.Errorf("%w: the server answered %d %s", catalog.ErrNoLeader, rec.code, bytes.TrimSpace(rec.body.Bytes()))
	}
	var leader string
	if err := json.Unmarshal(rec.body.Bytes(), &leader); err != nil {
		return "", fmt.Errorf("decode the server's answer %q: %w", rec.body.Bytes(), err)
	}
	return leader, nil
}

// noteReadiness logs, at Info, when the readiness answer changes, so the
// log says why a pod went unready (the probes themselves log nothing).
func (s *Server) noteReadiness(probe, reason, msg string) {
	if probe != ProbeReady {
		return
	}
	s.healthMu.Lock()
	prev, seen := s.lastReady, s.readySeen
	s.lastReady, s.readySeen = reason, true
	s.healthMu.Unlock()
	if seen && prev == reason {
		return
	}
	if reason == "" {
		s.log.Info("readiness: ready")
	} else {
		s.log.Info("readiness: not ready", "reason", reason, "detail", msg)
	}
}

// bufferWriter is an http.ResponseWriter that keeps the answer, for a
// relayed request the server makes itself.
type bufferWriter struct {
	header http.Header
	code   int
	wrote  bool
	body   bytes.Buffer
}

func (b *bufferWriter) Header() http.Header { return b.header }

func (b *bufferWriter) WriteHeader(code int) {
	if !b.wrote {
		b.code, b.wrote = code, true
	}
}

func (b *bufferWriter) Write(p []byte) (int, error) {
	b.WriteHeader(http.StatusOK)
	return b.body.Write(p)
}
