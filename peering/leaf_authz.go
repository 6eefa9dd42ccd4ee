package peering

import (
	"context"
	"errors"
	"fmt"

	"github.com/peerd/peerd/internal/ca"
	"github.com/peerd/peerd/internal/identity"
	"github.com/peerd/peerd/internal/nodetls"
)

// Leaf refusal reasons, reported to Config.Refused under ListenerSignLeaf.
const (
	ListenerSignLeaf = "sign-leaf"

	reasonNoNodeIdentity = "no-node-identity"
	reasonNotOnNode      = "service-not-on-node"
	reasonNotGateway     = "not-a-gateway"
)

// authorizeLeaf decides whether the node that asked (over the internal
// mTLS port) may hold req's identity, and narrows req to what it may:
//
//   - a server holds the CA key itself: it may ask for any identity the
//     issuance rules allow;
//   - a client node gets a service's leaf, for client and server use, only
//     if the service is registered on that node;
//   - a client node that runs a gateway (it advertises a gateway port)
//     also terminates peers' and other nodes' connections for the services
//     the cluster serves: it gets their leaves for server use only, so it
//     can never dial another service as them; and it gets the mesh
//     gateway (node hop) identity;
//   - anything else is refused.
//
// Without a verified node identity (cluster trust off) the request passes
// unless Config.RequireNodeIdentity is set.
func (s *Server) authorizeLeaf(ctx context.Context, req *LeafRequest) error {
	peer, ok := nodetls.PeerFrom(ctx)
	if !ok {
		if s.cfg.RequireNodeIdentity {
			return s.refuseLeaf(reasonNoNodeIdentity, "", req, errors.New("the caller presented no node certificate"))
		}
		return nil
	}
	if peer.IsServer() {
		return nil
	}
	st := s.cfg.Cluster.Store()
	_, node, err := st.Node(nil, "", peer.Node)
	if err != nil {
		return fmt.Errorf("look up node %s: %w", peer.Node, err)
	}
	gateway := node != nil && node.Meta[GatewayPortMeta] != ""
	if _, err := identity.ParseGatewayID(req.ID); err == nil {
		if !gateway {
			return s.refuseLeaf(reasonNotGateway, peer.Node, req, errors.New("the node runs no gateway"))
		}
		return nil
	}
	svc, err := identity.ParseServiceID(req.ID)
	if err != nil {
		return nil // the CA's issuance rules refuse it
	}
	_, services, err := st.NodeServices(nil, "", peer.Node)
	if err != nil {
		return fmt.Errorf("services of node %s: %w", peer.Node, err)
	}
	for _, sv := range services {
		if sv.Service == svc.Service {
			return nil
		}
	}
	if ok, _ := st.Served(svc.Service); gateway && ok {
		req.Client = false
		return nil
	}
	return s.refuseLeaf(reasonNotOnNode, peer.Node, req, fmt.Errorf("service %q is not registered on node %s", svc.Service, peer.Node))
}

func (s *Server) refuseLeaf(reason, node string, req *LeafRequest, err error) error {
	s.cfg.refused(ListenerSignLeaf, reason)
	s.log.Warn("leaf request refused", "reason", reason, "node", node, "id", req.ID.String(), "err", err)
	return fmt.Errorf("sign leaf %s for node %s: %w: %w", req.ID, node, ca.ErrRefused, err)
}
