package catalog

import (
	"encoding/json"
	"fmt"
)

// CommandType names a kind of replicated write.
type CommandType string

// The replicated writes. Each is one raft log entry.
const (
	CmdRegister        CommandType = "register"
	CmdDeregister      CommandType = "deregister"
	CmdCheckStatus     CommandType = "check-status"
	CmdConfigSet       CommandType = "config-set"
	CmdConfigDelete    CommandType = "config-delete"
	CmdRegisterBatch   CommandType = "register-batch"
	CmdSyncNode        CommandType = "sync-node"
	CmdDeregisterBatch CommandType = "deregister-batch"
	CmdPeeringWrite    CommandType = "peering-write"
	CmdPeeringSecrets  CommandType = "peering-secrets"
	CmdPeeringDelete   CommandType = "peering-delete"
	CmdTrustBundle     CommandType = "trust-bundle-write"
	CmdMetaSet         CommandType = "meta-set"
	CmdCARoots         CommandType = "ca-roots-set"
	CmdVirtualIPs      CommandType = "virtual-ips"
)

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

// CheckStatusRequest sets a check's status and output.
type CheckStatusRequest struct {
	Node     string
	CheckID  string
	Status   string
	Output   string `json:",omitempty"`
	PeerName string `json:",omitempty"`
}

// ConfigEntryRequest writes or deletes a config entry, optionally with
// check-and-set on the entry's ModifyIndex.
type ConfigEntryRequest struct {
	Kind string
	Name string
	// Entry is the entry as JSON (set for CmdConfigSet).
	Entry json.RawMessage `json:",omitempty"`
	CAS   bool            `json:",omitempty"`
	Index uint64          `json:",omitempty"`
}

// Command is one replicated write: a type and the matching request.
type Command struct {
	Type           CommandType
	Register       *RegisterRequest       `json:",omitempty"`
	Registers      []*RegisterRequest     `json:",omitempty"`
	Deregister     *DeregisterRequest     `json:",omitempty"`
	SyncNode       *SyncNodeRequest       `json:",omitempty"`
	Deregisters    []*DeregisterRequest   `json:",omitempty"`
	Peering        *PeeringWriteRequest   `json:",omitempty"`
	PeeringSecrets *PeeringSecretsRequest `json:",omitempty"`
	PeeringDelete  *PeeringDeleteRequest  `json:",omitempty"`
	TrustBundle    *PeeringTrustBundle    `json:",omitempty"`
	MetaSet        *MetaSetRequest        `json:",omitempty"`
	CARoots        *CARootsRequest        `json:",omitempty"`
	CheckStatus    *CheckStatusRequest    `json:",omitempty"`
	ConfigEntry    *ConfigEntryRequest    `json:",omitempty"`
	VirtualIPs     *VirtualIPsRequest     `json:",omitempty"`
}

// Encode returns the command as it is stored in the raft log.
func (c *Command) Encode() ([]byte, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode %s command: %w", c.Type, err)
	}
	return b, nil
}

// DecodeCommand parses a command from the raft log.
func DecodeCommand(b []byte) (*Command, error) {
	var c Command
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("decode command: %w", err)
	}
	return &c, nil
}

// ApplyResult is what applying a command produced.
type ApplyResult struct {
	// Index is the raft index the command was committed at.
	Index uint64
	// OK is false when a check-and-set did not match.
	OK bool
	// Err is the deterministic error the state store returned, if any.
	Err string `json:",omitempty"`
}
