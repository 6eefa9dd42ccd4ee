package catalog

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

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
	v := st.Meta(revokedNodePrefix + a.Node)
	if v == "" || leaf == nil {
		return false
	}
	at, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return true // a revocation that does not parse still revokes
	}
	return !leaf.NotBefore.Add(identity.Backdate).After(at)
}
