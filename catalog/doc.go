// Package catalog is this node's part in its cluster: membership in the
// gossip pool (hashicorp/memberlist) and, on server-mode nodes, a member of
// the raft log (hashicorp/raft, stored in bbolt through raft-boltdb or kept
// in memory in dev mode) whose FSM applies every committed Command to a
// state.Store. The state itself, its tables and queries, is package
// catalog/state; this package replicates it.
//
// # Life of a write
//
// Apply encodes a Command and commits it from any node: on the leader
// directly, from a follower forwarded to the leader, from a client sent to
// a live server, which relays it, over the internal gRPC service
// (RegisterGRPC). It retries while a leader is being elected, up to
// Timing.ApplyTimeout. The FSM (unexported, implementing raft.FSM) decodes
// the command and calls the state.Store write; Apply is deterministic on
// every server, reads no clock and no randomness.
//
// # Reads
//
// Store is the raft store on a server (nil on a client). View is what every
// node reads: the raft store on a server, and on a client a state.Store kept
// in sync by streaming a server's mirror (Watch), which never carries the
// peering secrets or the CA's private keys.
//
// # The leader's work
//
// While a server leads it reconciles the catalog with the gossip pool
// (serfHealth checks, removing members that left, adding new servers to raft
// as non-voters), runs autopilot (autopilot.go: it promotes a non-voter once
// it has been healthy for the stabilization time and removes servers failed
// for the reap time, never below a healthy quorum), keeps a virtual IP on every imported service (the plan of a
// state.VIPAllocator) and runs every LeaderRoutine registered with
// AddLeaderRoutine (the peering controller's streams, CA bootstrap). A
// routine runs from when every earlier entry is applied until its context
// ends with the leadership, and must return promptly then.
//
// # Events
//
// MemberEvents is a coalescing channel woken by memberlist's event delegate
// (a member joined, changed its metadata, left or failed) and, on a server,
// by raft's leader observations. Wait on it instead of polling Members,
// Servers or Leader.
//
// # Lifecycle
//
// New validates the Config and allocates the member (and, on a server, its
// state.Store) without opening a socket or starting a goroutine. Start opens
// the raft and gossip listeners and returns; joining and bootstrapping
// continue in the background. Leave(ctx) is the graceful leave (leadership
// handed over, the leave intent gossiped, the pool left) so the leader
// removes this node's registrations rather than marking them critical; it is
// optional and comes before Close. Close(ctx) stops the member, waits for its
// goroutines within ctx, and is idempotent. SaveSnapshot and RestoreSnapshot
// copy the replicated state out and back (disaster recovery, on the leader).
//
// # Errors
//
// A write fails with ErrNoLeader (no leader known within ApplyTimeout),
// ErrNoServers (a client knows no live server), ErrShutdown, or an
// *ApplyError: the state store refused the request, deterministically, on
// every server (its message is the store's error). Test with errors.Is and
// errors.As.
//
// # Imports
//
// catalog imports catalog/state, catalog/configentry, catalog/pbcatalog and
// internal/decode of peerd's own, and owns the dependencies on raft,
// memberlist, bbolt and gRPC: nothing below it may import them
// (internal/depcheck).
package catalog
