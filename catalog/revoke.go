package catalog

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/peerd/peerd/catalog/pbcatalog"
	"github.com/peerd/peerd/internal/nodetls"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/identity"
)

// revokedNodePrefix keys a node's revocation in the cluster meta: the
// value is the time (RFC 3339, nanoseconds) before which its certificates
// were signed.
const revokedNodePrefix = "revoked-node/"

// ErrNotServer is a call only a server can make.
var ErrNotServer = errors.New("only servers can do this")

// RevokeNode revokes every certificate of node signed until now: from then
// on the node's handshakes on raft and the internal port are refused, and
// its calls on connections already open are refused too (streams end
// within a second). A node admitted again later, with a new join token,
// gets a new certificate and is not affected. Servers only.
func (c *Cluster) RevokeNode(ctx context.Context, node string, now time.Time) (time.Time, error) {
	if c.store == nil {
		return time.Time{}, fmt.Errorf("revoke node %s: %w", node, ErrNotServer)
	}
	if node == "" {
		return time.Time{}, errors.New("revoke node: no node name")
	}
	if node == c.cfg.NodeName {
		return time.Time{}, fmt.Errorf("revoke node %s: this is the server you are talking to; ask another server", node)
	}
	at := now.UTC()
	_, err := c.Apply(ctx, &Command{Type: CmdMetaSet, MetaSet: &state.MetaSetRequest{
		Key: revokedNodePrefix + node, Value: at.Format(time.RFC3339Nano),
	}})
	if err != nil {
		return time.Time{}, fmt.Errorf("revoke node %s: %w", node, err)
	}
	c.log.Warn("node certificate revoked", "revoked_node", node, "at", at)
	return at, nil
}

// NodeRevoked reports whether a node certificate is revoked: signed no
// later than its node's revocation.
func (c *Cluster) NodeRevoked(a identity.Agent, leaf *x509.Certificate) bool {
	st := c.store // a server's own state, there from New
	if st == nil {
		st = c.View() // a client's mirror, there once Start set it up
	}
	return leaf != nil && revoked(st, a.Node, leaf.NotBefore.Add(identity.Backdate))
}

// revoked reports whether st holds a revocation of node's certificates
// that covers one signed at signed.
func revoked(st *state.Store, node string, signed time.Time) bool {
	v := st.Meta(revokedNodePrefix + node)
	if v == "" {
		return false
	}
	at, err := time.Parse(time.RFC3339Nano, v)
	return err != nil || !signed.After(at) // a revocation that does not parse still revokes
}

// peerLeaf is the leaf certificate of the TLS connection a call on the
// internal port came on.
func peerLeaf(ctx context.Context) (*x509.Certificate, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, false
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return nil, false
	}
	return info.State.PeerCertificates[0], true
}

// origin is the client node a write is made for, as its certificate says.
type origin struct {
	node   string
	signed time.Time // NotBefore + Backdate
}

type originKey struct{}

// originOf is the client node of a call on the internal port, if its
// caller is a client node.
func originOf(ctx context.Context, req *pbcatalog.ApplyRequest) (origin, bool) {
	a, ok := nodetls.PeerFrom(ctx)
	if !ok {
		return origin{}, false
	}
	if a.IsServer() {
		// Only a server relays for a client; a client's own claim of an
		// origin is never read.
		if req.GetOriginNode() == "" {
			return origin{}, false
		}
		return origin{node: req.GetOriginNode(), signed: time.Unix(0, req.GetOriginSignedUnixNano())}, true
	}
	leaf, ok := peerLeaf(ctx)
	if !ok {
		return origin{}, false
	}
	return origin{node: a.Node, signed: leaf.NotBefore.Add(identity.Backdate)}, true
}

// revokedOrigin reports whether the write's client node is revoked, by this
// server's state: the leader's is current, so a write relayed by a
// follower that had not applied the revocation yet is still refused.
func (c *Cluster) revokedOrigin(o origin) bool { return revoked(c.store, o.node, o.signed) }

// CallerRevoked reports whether the client node calling on the internal
// port (ctx of a call there) is revoked, by this server's state once it has
// applied everything committed before the call: a follower that had not
// yet applied a revocation must not renew the revoked node's certificate.
func (c *Cluster) CallerRevoked(ctx context.Context) (bool, error) {
	a, ok := nodetls.PeerFrom(ctx)
	if !ok {
		return false, nil
	}
	leaf, ok := peerLeaf(ctx)
	if !ok {
		return false, nil
	}
	if err := c.WaitCaughtUp(ctx); err != nil {
		return false, fmt.Errorf("catch up before checking revocation: %w", err)
	}
	return c.NodeRevoked(a, leaf), nil
}
