package identity

import (
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Agent roles: what a node certificate lets its holder be inside the
// cluster. A server holds the replicated state and may take part in raft;
// a client may not.
const (
	RoleServer = "server"
	RoleClient = "client"
)

// Agent is a node's identity inside its cluster, as its node certificate
// names it: spiffe://<td>/agent/<role>/dc/<datacenter>/node/<node>.
type Agent struct {
	TrustDomain spiffeid.TrustDomain
	// Role is RoleServer or RoleClient.
	Role       string
	Datacenter string
	Node       string
}

// IsServer reports whether the identity is a server's.
func (a Agent) IsServer() bool { return a.Role == RoleServer }

// ID returns the agent's SPIFFE ID. It fails with ErrInvalidName for an
// empty trust domain, an unknown role, or a datacenter or node name that is
// not a valid path segment.
func (a Agent) ID() (spiffeid.ID, error) {
	if a.TrustDomain.IsZero() {
		return spiffeid.ID{}, fmt.Errorf("agent ID: empty trust domain: %w", ErrInvalidName)
	}
	if a.Role != RoleServer && a.Role != RoleClient {
		return spiffeid.ID{}, fmt.Errorf("agent ID: role %q: want %q or %q: %w", a.Role, RoleServer, RoleClient, ErrInvalidName)
	}
	for what, seg := range map[string]string{"datacenter": a.Datacenter, "node": a.Node} {
		if err := spiffeid.ValidatePathSegment(seg); err != nil {
			return spiffeid.ID{}, fmt.Errorf("agent ID: %s %q: %v: %w", what, seg, err, ErrInvalidName)
		}
	}
	id, err := spiffeid.FromSegments(a.TrustDomain, "agent", a.Role, "dc", a.Datacenter, "node", a.Node)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("agent ID: %v: %w", err, ErrInvalidName)
	}
	return id, nil
}

// String is the SPIFFE ID, or a description of why there is none.
func (a Agent) String() string {
	id, err := a.ID()
	if err != nil {
		return "<invalid agent identity: " + err.Error() + ">"
	}
	return id.String()
}

// ParseAgentID takes an agent's SPIFFE ID apart; any other ID fails with
// ErrNotAgentID. Like ParseServiceID it does not check the trust domain:
// the caller compares it with its own.
func ParseAgentID(id spiffeid.ID) (Agent, error) {
	segs := strings.Split(strings.TrimPrefix(id.Path(), "/"), "/")
	if id.IsZero() || len(segs) != 6 || segs[0] != "agent" || segs[2] != "dc" || segs[4] != "node" ||
		(segs[1] != RoleServer && segs[1] != RoleClient) || segs[3] == "" || segs[5] == "" {
		return Agent{}, fmt.Errorf("%q: %w", id, ErrNotAgentID)
	}
	return Agent{TrustDomain: id.TrustDomain(), Role: segs[1], Datacenter: segs[3], Node: segs[5]}, nil
}
