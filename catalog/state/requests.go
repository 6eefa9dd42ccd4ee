package state

// Requests the store's writes take. The raft log carries them inside the
// cluster's commands (catalog.Command); the store does not know about the log.

// RegisterRequest upserts a node and optionally one service and its checks.
type RegisterRequest struct {
	Node    *Node
	Service *Service       `json:",omitempty"`
	Checks  []*HealthCheck `json:",omitempty"`
	// SkipNodeUpdate leaves the node row alone (it must exist).
	SkipNodeUpdate bool   `json:",omitempty"`
	PeerName       string `json:",omitempty"`
}

// DeregisterRequest removes a check, a service, or (neither set) a whole node.
type DeregisterRequest struct {
	Node      string
	ServiceID string `json:",omitempty"`
	CheckID   string `json:",omitempty"`
	PeerName  string `json:",omitempty"`
}

// SyncNodeRequest makes the catalog's view of one node equal to the node's own
// (anti-entropy): services and checks not listed are removed, except the
// serfHealth check, which belongs to the leader.
type SyncNodeRequest struct {
	Node     *Node
	Services []*Service     `json:",omitempty"`
	Checks   []*HealthCheck `json:",omitempty"`
}
