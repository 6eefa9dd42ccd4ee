// Package state is the cluster's replicated state as data: the go-memdb
// tables (nodes, services, checks, config entries, peerings, peering
// secrets, trust bundles, CA roots, cluster meta, virtual IPs, the ACL
// system's tokens, policies, roles and bootstrap record), the writes
// and queries on them, the structs they hold, the conventions shared by
// the exporter, importer, terminator and DNS, and the pure virtual IP
// allocation. Replicating it is package catalog's business: a raft FSM
// there applies the log to a Store, and client nodes keep a Store in sync
// from a server's mirror.
//
// # Writes
//
// Every write (Register, SyncNode, ConfigSet, PeeringWrite,
// VirtualIPsUpdate, ...) takes the raft index that produced it and stamps
// it on what it changes. A write is deterministic: it reads no clock and no
// randomness (a request carries the leader's time when one is needed, as
// PeeringSecretsRequest.Now does) and never depends on map order, so the
// same entry applied to the same state gives the same state and the same
// error on every server. A write is all or nothing, and a write that
// changes nothing bumps no index and wakes no watcher. Writes come from one
// goroutine at a time (the FSM, or a test); reads may run concurrently with
// them and with each other.
//
// # Reads
//
// Reads return the highest index of the tables (or, for one service, of
// that service) they looked at, and add to a non-nil memdb.WatchSet the
// channels that fire when any of it changes, or when the whole state is
// replaced (Restore). That is what blocking queries wait on. Rows returned
// are shared with the store and must not be modified. Names in keys are
// case-insensitive, as in Consul. PeerName "" holds this cluster's own
// nodes and services; a peer's name holds what was imported from it.
//
// # One rule, one home
//
//   - Export resolution: an exported-services entry naming a service
//     decides for it alone; "*" covers only the services no entry names
//     (Exports). The exporter lists through Store.ExportedServices, the
//     gateway asks Exports.ExportedTo.
//   - A service's protocol: service-defaults, else the global
//     proxy-defaults, else "tcp" (Store.ServiceProtocol); routers and
//     splitters need configentry.L7Protocol.
//   - Secrets are compared in constant time, and an empty stored secret
//     matches nothing (SecretMatches): the store's secret operations and
//     peering's stream-secret check both call it.
//   - Name rules (configentry.MaxServiceNameLength, ValidServiceNameChars)
//     live one floor below, in configentry, so config entries apply them
//     too.
//
// # Records
//
// Snapshot.Write writes the whole state, secrets included, as JSON
// records, one a line; Restore reads them back (raft snapshots and `peerd
// snapshot save` files). WriteMirror writes what a client node may see:
// never the peering secrets, never a CA root's private key, never an ACL
// token's SecretID (tokens go with the SHA-256 of it, which is what every
// node resolves a presented secret by); RestoreMirror refuses a state that
// holds any of them. Restore and RestoreMirror read all of
// their input before changing anything.
//
// # Virtual IPs
//
// VIPAllocator plans which imported services get which addresses: the
// lowest free ones of the configured ranges, in (peer, service) order, and
// releases only after a grace period. The plan is deterministic for a given
// store, ranges and absence times; the leader loop that writes it lives in
// catalog.
//
// # Errors
//
// Sentinels (ErrNotFound, ErrMissingNode, ErrMissingService,
// ErrPeeringNotFound, ErrInvalidSecret, ErrPeeringRole, ErrPeeringDeleting,
// ErrVirtualIPInUse, ErrVirtualIPFormat) are wrapped with the step that
// failed; test them with errors.Is. Replicated through raft, a write's error
// reaches the caller as text (catalog.ApplyError).
//
// # Imports
//
// The package imports nothing of peerd's but catalog/configentry and leaf
// packages (internal/decode, internal/identity, internal/acl to refuse a
// policy whose rules do not parse), and nothing of raft,
// memberlist, bbolt or gRPC: internal/depcheck enforces it. Packages that
// only read the state (l7proxy/policy, DNS, the HTTP API's handlers) depend
// on it without pulling in the cluster.
package state
