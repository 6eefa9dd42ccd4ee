package httpapi

import (
	"errors"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/internal/acl"
)

// The raft and autopilot operator endpoints in Consul's JSON shape. The
// raft configuration is read from the serving server; the autopilot views
// exist on the leader only, so a follower relays them to it and a client
// relays everything to a server. A peer removal is relayed by the cluster.

type raftServerJSON struct {
	ID, Node, Address string
	Leader            bool
	ProtocolVersion   string
	Voter             bool
	LastIndex         uint64
}

// operatorRaftConfiguration is GET /v1/operator/raft/configuration.
func (s *Server) operatorRaftConfiguration(w http.ResponseWriter, r *http.Request) (any, error) {
	if _, err := s.require(r, acl.ResourceOperator, "", acl.AccessRead); err != nil {
		return nil, err
	}
	if !s.cluster.IsServer() {
		return nil, s.relay(w, r, true)
	}
	servers, index, err := s.cluster.RaftConfiguration()
	if err != nil {
		return nil, err
	}
	// The leader knows every server's last index from its autopilot pass.
	ap, _ := s.cluster.AutopilotState()
	out := struct {
		Servers []raftServerJSON
		Index   uint64
	}{Servers: []raftServerJSON{}, Index: index}
	for _, sv := range servers {
		out.Servers = append(out.Servers, raftServerJSON{ID: sv.ID, Node: sv.Node, Address: sv.Address,
			Leader: sv.Leader, ProtocolVersion: "3", Voter: sv.Voter, LastIndex: ap.Servers[sv.ID].LastIndex})
	}
	return out, nil
}

// leaderOnly relays r to the leader unless this server is it; it reports
// whether it did (or why it could not).
func (s *Server) leaderOnly(w http.ResponseWriter, r *http.Request) (bool, error) {
	if s.cluster.IsLeader() {
		return false, nil
	}
	if r.Header.Get(relayedHeader) != "" {
		return true, catalog.ErrNoLeader
	}
	return true, s.relay(w, r, false)
}

// durationJSON is Consul's ReadableDuration: a duration string.
type durationJSON time.Duration

func (d durationJSON) MarshalJSON() ([]byte, error) {
	return []byte(`"` + time.Duration(d).String() + `"`), nil
}

type autopilotServerJSON struct {
	ID, Name, Address, NodeStatus, Version string
	LastContact                            durationJSON
	LastTerm, LastIndex                    uint64
	Healthy                                bool
	StableSince                            time.Time
	ReadReplica                            bool
	Status                                 string
	Meta                                   map[string]string
	NodeType                               string
}

// operatorAutopilotState is GET /v1/operator/autopilot/state.
func (s *Server) operatorAutopilotState(w http.ResponseWriter, r *http.Request) (any, error) {
	if _, err := s.require(r, acl.ResourceOperator, "", acl.AccessRead); err != nil {
		return nil, err
	}
	if relayed, err := s.leaderOnly(w, r); relayed {
		return nil, err
	}
	st, err := s.cluster.AutopilotState()
	if err != nil {
		return nil, autopilotErr(err)
	}
	out := struct {
		Healthy                    bool
		FailureTolerance           int
		OptimisticFailureTolerance int
		Servers                    map[string]autopilotServerJSON
		Leader                     string
		Voters                     []string
	}{Healthy: st.Healthy, FailureTolerance: st.FailureTolerance, OptimisticFailureTolerance: st.OptimisticFailureTolerance,
		Servers: map[string]autopilotServerJSON{}, Leader: st.Leader, Voters: st.Voters}
	if out.Voters == nil {
		out.Voters = []string{}
	}
	for id, sv := range st.Servers {
		out.Servers[id] = autopilotServerJSON{ID: sv.ID, Name: sv.Name, Address: sv.Address, NodeStatus: sv.NodeStatus,
			Version: sv.Version, LastContact: durationJSON(max(sv.LastContact, 0)), LastTerm: sv.LastTerm, LastIndex: sv.LastIndex,
			Healthy: sv.Healthy, StableSince: sv.StableSince, Status: sv.Status, Meta: sv.Meta, NodeType: "voter"}
	}
	return out, nil
}

// operatorAutopilotHealth is GET /v1/operator/autopilot/health: the same
// pass as a list, as Consul's OperatorHealthReply.
func (s *Server) operatorAutopilotHealth(w http.ResponseWriter, r *http.Request) (any, error) {
	if _, err := s.require(r, acl.ResourceOperator, "", acl.AccessRead); err != nil {
		return nil, err
	}
	if relayed, err := s.leaderOnly(w, r); relayed {
		return nil, err
	}
	st, err := s.cluster.AutopilotState()
	if err != nil {
		return nil, autopilotErr(err)
	}
	type serverHealth struct {
		ID, Name, Address, SerfStatus, Version string
		Leader                                 bool
		LastContact                            durationJSON
		LastTerm, LastIndex                    uint64
		Healthy, Voter                         bool
		StableSince                            time.Time
	}
	out := struct {
		Healthy          bool
		FailureTolerance int
		Servers          []serverHealth
	}{Healthy: st.Healthy, FailureTolerance: st.FailureTolerance, Servers: []serverHealth{}}
	for _, sv := range sortedServers(st) {
		out.Servers = append(out.Servers, serverHealth{ID: sv.ID, Name: sv.Name, Address: sv.Address, SerfStatus: sv.NodeStatus,
			Version: sv.Version, Leader: sv.Status == catalog.AutopilotLeader, LastContact: durationJSON(max(sv.LastContact, 0)),
			LastTerm: sv.LastTerm, LastIndex: sv.LastIndex, Healthy: sv.Healthy,
			Voter: sv.Status != catalog.AutopilotNonVoter, StableSince: sv.StableSince})
	}
	if !st.Healthy {
		// Consul answers 429 when the cluster is unhealthy, with the body.
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
	}
	return out, nil
}

func sortedServers(st catalog.AutopilotState) []catalog.AutopilotServer {
	var out []catalog.AutopilotServer
	for _, id := range slices.Sorted(maps.Keys(st.Servers)) {
		out = append(out, st.Servers[id])
	}
	return out
}

// operatorAutopilotConfiguration is GET /v1/operator/autopilot/configuration:
// the settings in effect on the leader (set by its flags or config file).
func (s *Server) operatorAutopilotConfiguration(w http.ResponseWriter, r *http.Request) (any, error) {
	if _, err := s.require(r, acl.ResourceOperator, "", acl.AccessRead); err != nil {
		return nil, err
	}
	if relayed, err := s.leaderOnly(w, r); relayed {
		return nil, err
	}
	c := s.cluster.AutopilotConfiguration()
	return struct {
		CleanupDeadServers      bool
		LastContactThreshold    durationJSON
		MaxTrailingLogs         uint64
		MinQuorum               uint
		ServerStabilizationTime durationJSON
		DeadServerReapTime      durationJSON
	}{c.CleanupDeadServers, durationJSON(c.LastContactThreshold), c.MaxTrailingLogs, 0,
		durationJSON(c.ServerStabilizationTime), durationJSON(c.DeadServerReapTime)}, nil
}

// operatorRaftPeerDelete is DELETE /v1/operator/raft/peer?id=…: remove a
// server from the raft configuration by hand.
func (s *Server) operatorRaftPeerDelete(w http.ResponseWriter, r *http.Request) (any, error) {
	if _, err := s.require(r, acl.ResourceOperator, "", acl.AccessWrite); err != nil {
		return nil, err
	}
	id := r.URL.Query().Get("id")
	if id == "" {
		if r.URL.Query().Get("address") != "" {
			return nil, errBadRequest("removing a peer by address is not supported: give ?id= (the server's node name, see peerctl operator raft list-peers)")
		}
		return nil, errBadRequest("missing ?id= (the server's node name, see peerctl operator raft list-peers)")
	}
	// The cluster relays the removal to the leader over the internal gRPC
	// port (the HTTP relay carries reads only).
	err := s.cluster.RemovePeer(r.Context(), id)
	switch {
	case errors.Is(err, catalog.ErrUnknownPeer):
		return nil, &httpError{code: http.StatusNotFound, msg: err.Error()}
	case errors.Is(err, catalog.ErrRemovalRefused):
		return nil, &httpError{code: http.StatusConflict, msg: err.Error()}
	}
	return nil, err
}

func autopilotErr(err error) error {
	if errors.Is(err, catalog.ErrNotLeader) {
		return catalog.ErrNoLeader // lost leadership since the check
	}
	return err
}
