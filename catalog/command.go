package catalog

import (
	"encoding/json"
	"fmt"

	"github.com/peerd/peerd/catalog/state"
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
	CmdJoinToken       CommandType = "join-token"
	// CmdACL writes the ACL system (tokens, policies, roles, the
	// bootstrap). It carries token secrets: like every entry, it is sealed
	// in the log when the cluster has a secrets key (Config.Secrets).
	CmdACL CommandType = "acl"
)

// CheckStatusRequest sets a check's status and output.
type CheckStatusRequest struct {
	Node     string
	CheckID  string
	Status   string
	Output   string `json:",omitempty"`
	PeerName string `json:",omitempty"`
}

// PeeringDeleteRequest removes a peering with its secrets and trust bundle.
type PeeringDeleteRequest struct {
	Name string
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
	Register       *state.RegisterRequest       `json:",omitempty"`
	Registers      []*state.RegisterRequest     `json:",omitempty"`
	Deregister     *state.DeregisterRequest     `json:",omitempty"`
	SyncNode       *state.SyncNodeRequest       `json:",omitempty"`
	Deregisters    []*state.DeregisterRequest   `json:",omitempty"`
	Peering        *state.PeeringWriteRequest   `json:",omitempty"`
	PeeringSecrets *state.PeeringSecretsRequest `json:",omitempty"`
	PeeringDelete  *PeeringDeleteRequest        `json:",omitempty"`
	TrustBundle    *state.PeeringTrustBundle    `json:",omitempty"`
	MetaSet        *state.MetaSetRequest        `json:",omitempty"`
	CARoots        *state.CARootsRequest        `json:",omitempty"`
	CheckStatus    *CheckStatusRequest          `json:",omitempty"`
	ConfigEntry    *ConfigEntryRequest          `json:",omitempty"`
	VirtualIPs     *state.VirtualIPsRequest     `json:",omitempty"`
	JoinToken      *state.JoinTokenRequest      `json:",omitempty"`
	ACL            *state.ACLRequest            `json:",omitempty"`
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
