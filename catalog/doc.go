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
// # Trust
//
// With Config.TLS (a nodetls.Source: this node's certificate and the
// cluster's roots) both internal listeners speak mutual TLS 1.3; nil keeps
// them plaintext and every caller admitted, as in dev mode.
//
//   - Raft admits and dials server certificates of this cluster only: a
//     client certificate, another CA's, none at all or plaintext is refused
//     at the handshake, so no fake leader's AppendEntries or RequestVote
//     reaches raft. Handshakes run in a goroutine per connection with a
//     10 s deadline, before Accept returns the connection, so a slow or
//     plaintext peer never delays the others. The raft-port probe before
//     bootstrap and AddVoter completes a handshake.
//   - The internal gRPC port (GRPCServerOptions, which the agent passes to
//     grpc.NewServer) admits server and client certificates of this
//     cluster, and its interceptors put the verified caller in each call's
//     context (nodetls.PeerFrom). Every node dials it (writes, the mirror,
//     LeaderConn) as a client of a server certificate.
//   - CatalogService.Apply is authorised by the caller's role: a server may
//     send any command (followers forward to the leader); a client node may
//     send only what a client originates, for its own node (the table
//     clientCommands: its registrations, deregistrations and anti-entropy,
//     and config entries from its HTTP API), and never with Forwarded set.
//     Everything else (CA roots, cluster meta, peering state and secrets,
//     trust bundles, imported services, virtual IPs, check status) is
//     refused with codes.PermissionDenied naming the command and the caller.
//     A client's command is re-encoded after the check, so what is
//     committed is what was checked. Watch is open to every admitted node;
//     RaftStats (the leader's autopilot) to servers only; RemovePeer may
//     be asked by a client node (its HTTP API relays an operator's
//     removal) but, like Apply, never relayed by one.
//
// Every refusal is logged at WARN and counted in
// peerd_security_refusals_total{listener,reason} (listener raft or grpc;
// reasons nodetls.Reason*, "handshake" and "permission"). One
// RefusalCounter serves a node: create it with NewRefusalCounter, pass its
// Refused method to nodetls.Config.Refused, and both the Source and the
// counter to the Config (TLS, Refusals); the Cluster's Collector exports it.
// Server TLS configs disable session tickets: a resumed session would skip
// the certificate check.
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
// catalog imports catalog/state, catalog/configentry, catalog/pbcatalog,
// internal/decode and the node TLS identity (internal/nodetls,
// internal/identity) of peerd's own, and owns the dependencies on raft,
// memberlist, bbolt and gRPC: nothing below it may import them
// (internal/depcheck).
package catalog
