// Package ca is the cluster's certificate authority: the one trust domain
// of the cluster, its roots (the first one, created by the first leader,
// and each rotation's), and the leaves it signs for the terminator, the
// gateway and the peering listener.
//
// The contract:
//
//   - State lives in a Store, never here. The cluster ID, from which the
//     trust domain <cluster-id>.peerd is derived, and the roots with their
//     keys are kept by the caller (peerd keeps them in raft, so every server
//     holds the keys and signs locally). A CA keeps no state of its own
//     beyond its Config and is safe for concurrent use if its Store and
//     Forward are.
//   - Bootstrap and Rotate write; they run on the node that may write (the
//     raft leader). Every write is idempotent: the cluster ID is set only if
//     absent, the first root only if there is none. Rotate makes a new
//     active root cross-signed by the current one, keeps the current one
//     (inactive) in the trust bundle so that the leaves it signed keep
//     verifying until they are renewed, and drops older roots.
//   - Sign signs with the active root and returns the chain to present: the
//     leaf, then the active root's cross-signed certificate when there is
//     one, so that peers that still trust only the previous root verify it.
//     A node without a Store (a client node) signs through Forward. SignLeaf
//     is Sign's chain alone: *CA implements the terminator's Signer
//     (l7proxy.LeafRequest is this package's LeafRequest).
//   - Sign applies the issuance rules that need no caller identity before
//     it signs (request.go): a SPIFFE ID of the cluster's trust domain, a
//     service's or a mesh gateway's and nothing else; DNS SANs only the
//     server names the gateway serves that service under, no wildcard; the
//     lifetime capped at Config.MaxLeafTTL (the agent's -leaf-ttl). A
//     refusal wraps ErrRefused. Who may ask for which identity is not
//     checked here: that needs the caller's node identity.
//   - The X.509 mechanics (key generation, root certificates, cross-signing,
//     leaf templates) are internal/identity's CA; this package decides which
//     root signs, when roots are made and what a chain holds.
//
// Errors: ErrRefused for a request the rules refuse; ErrNoCA when the cluster has no active root (or no ID) yet, which
// goes away once a leader has run Bootstrap; ErrNoStore when a node without
// a Store is asked for what only the state can answer. Other errors are
// wrapped with the step that failed ("sign leaf <id>: ...", "rotate CA:
// ...", "create CA root: ...").
//
// The package is a leaf: it imports internal/identity and nothing else of
// peerd's (in particular not peering, l7proxy, catalog or raft).
package ca
