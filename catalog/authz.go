package catalog

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/peerd/peerd/catalog/pbcatalog"
	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/identity"
	"github.com/peerd/peerd/internal/nodetls"
)

// clientRule decides whether a client node may apply one command; node is
// the node its certificate names. It returns why not, or nil.
type clientRule func(cmd *Command, node string) error

// clientCommands is every command a client node may send over the internal
// gRPC port (CatalogService.Apply), with the rule it must meet: the writes a
// client node originates itself. Every other type (CA roots, cluster meta,
// peering state and secrets, trust bundles, imported services, virtual IPs,
// check status, batches, the ACL system) is written by servers only: the
// leader's routines and the peering controller, which run on servers, and a
// server's own HTTP API. A client node's /v1/acl requests are relayed as
// HTTP to the leader, whose API checks the caller's token, so no client
// ever sends an ACL write here. Servers may send anything (followers forward every write to
// the leader). The table is read-only.
var clientCommands = map[CommandType]clientRule{
	// agent/local: registering the node's own services and checks
	// (AddService, AddCheck). /v1/catalog/register on a client node can
	// therefore register only that node; external nodes are registered
	// through a server's HTTP API.
	CmdRegister: func(cmd *Command, node string) error {
		r := cmd.Register
		if r == nil || r.Node == nil {
			return errors.New("register without a node")
		}
		if err := ownNode(r.Node.Node, node); err != nil {
			return err
		}
		if r.PeerName != "" {
			return fmt.Errorf("imported (peer %q) registrations are the peering controller's", r.PeerName)
		}
		return noSerfHealth(r.Checks)
	},
	// agent/local (RemoveService, RemoveCheck) and the agent's leave,
	// which deregisters its own node: its own registrations only.
	CmdDeregister: func(cmd *Command, node string) error {
		r := cmd.Deregister
		if r == nil {
			return errors.New("deregister without a request")
		}
		if err := ownNode(r.Node, node); err != nil {
			return err
		}
		if r.PeerName != "" {
			return fmt.Errorf("imported (peer %q) registrations are the peering controller's", r.PeerName)
		}
		if strings.EqualFold(r.CheckID, state.SerfCheckID) {
			return fmt.Errorf("the %s check is the leader's", state.SerfCheckID)
		}
		return nil
	},
	// agent/local's anti-entropy: the node's own full state.
	CmdSyncNode: func(cmd *Command, node string) error {
		r := cmd.SyncNode
		if r == nil || r.Node == nil {
			return errors.New("sync-node without a node")
		}
		if err := ownNode(r.Node.Node, node); err != nil {
			return err
		}
		return noSerfHealth(r.Checks)
	},
	// agent/httpapi's /v1/config on a client node (peerctl config write
	// and delete). Config entries are cluster-wide policy (intentions,
	// exports): who may write them is the HTTP API's decision (ACLs),
	// which a client node relays here; the certificate alone cannot tell.
	CmdConfigSet:    func(*Command, string) error { return nil },
	CmdConfigDelete: func(*Command, string) error { return nil },
}

func ownNode(name, node string) error {
	if name != node {
		return fmt.Errorf("node %q is not the caller's own node %q", name, node)
	}
	return nil
}

func noSerfHealth(checks []*state.HealthCheck) error {
	for _, c := range checks {
		if c != nil && strings.EqualFold(c.CheckID, state.SerfCheckID) {
			return fmt.Errorf("the %s check is the leader's", state.SerfCheckID)
		}
	}
	return nil
}

// authorizeClient reports whether a client node may apply data, and
// returns the command re-encoded, so that what was checked is exactly what
// is committed.
func authorizeClient(data []byte, forwarded bool, caller identity.Agent) (CommandType, []byte, error) {
	if forwarded {
		return "", nil, errors.New("only servers relay writes (forwarded is set)")
	}
	cmd, err := DecodeCommand(data)
	if err != nil {
		return "", nil, err
	}
	rule, ok := clientCommands[cmd.Type]
	if !ok {
		return cmd.Type, nil, errors.New("servers only")
	}
	if err := rule(cmd, caller.Node); err != nil {
		return cmd.Type, nil, err
	}
	out, err := cmd.Encode()
	return cmd.Type, out, err
}

// authorizeApply decides an Apply received on the internal gRPC port.
// Without Config.TLS every call is admitted, as before. With it, the
// caller's verified node identity decides: a server may send anything, a
// client only clientCommands; no identity is refused. It returns the data
// to commit, or a PermissionDenied status (logged and counted).
func (c *Cluster) authorizeApply(ctx context.Context, req *pbcatalog.ApplyRequest) ([]byte, error) {
	if c.cfg.TLS == nil {
		return req.GetCommand(), nil
	}
	caller, ok := nodetls.PeerFrom(ctx)
	if !ok {
		c.permissionRefused(ListenerGRPC, "call", "Apply", "forwarded", req.GetForwarded(), "err", "no verified node identity")
		return nil, status.Error(codes.PermissionDenied, "apply refused: the call carries no verified node identity")
	}
	if caller.IsServer() {
		return req.GetCommand(), nil
	}
	typ, data, err := authorizeClient(req.GetCommand(), req.GetForwarded(), caller)
	if err != nil {
		if typ == "" {
			typ = "(undecoded)"
		}
		c.permissionRefused(ListenerGRPC, "call", "Apply", "command", string(typ), "caller", caller.String(), "err", err)
		return nil, status.Errorf(codes.PermissionDenied, "apply %s refused for %s: %v", typ, caller, err)
	}
	return data, nil
}

// authorizeCall decides the other calls of the internal catalog service
// with Config.TLS: serverOnly calls are refused to client nodes, and a
// relayed (forwarded) call is refused to them everywhere, since only servers
// relay. It returns nil or a PermissionDenied status (logged and counted).
func (c *Cluster) authorizeCall(ctx context.Context, method string, serverOnly, forwarded bool) error {
	if c.cfg.TLS == nil {
		return nil
	}
	caller, ok := nodetls.PeerFrom(ctx)
	if !ok {
		c.permissionRefused(ListenerGRPC, "call", method, "err", "no verified node identity")
		return status.Errorf(codes.PermissionDenied, "%s refused: the call carries no verified node identity", method)
	}
	if caller.IsServer() {
		return nil
	}
	var why string
	switch {
	case serverOnly:
		why = "servers only"
	case forwarded:
		why = "only servers relay (forwarded is set)"
	default:
		return nil
	}
	c.permissionRefused(ListenerGRPC, "call", method, "caller", caller.String(), "err", why)
	return status.Errorf(codes.PermissionDenied, "%s refused for %s: %s", method, caller, why)
}
