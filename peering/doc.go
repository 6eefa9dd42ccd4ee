// Package peering implements cluster peering as Consul does it: the peering
// token, the establishment and stream secrets, the PeeringService and
// PeerStreamService gRPC services (their protobuf definitions are in
// pbpeering and pbpeerstream), replication of exported services between
// clusters, and the lifecycle of a peering.
//
// A peering links two clusters. The acceptor generates a Token (state
// PENDING); the dialer decodes it with DecodeToken, exchanges its one-time
// establishment secret for a stream secret (ESTABLISHING), and its raft
// leader opens the replication stream (ACTIVE on both sides).
//
// The files read in the order of the protocol:
//
//	token.go            the peering token: what the acceptor hands out, DecodeToken, its checks
//	establish.go        establishment: GenerateToken and Establish, the dialer's secret exchange
//	                    next to the acceptor's ExchangeSecret, and the stream-secret check
//	binding.go          a stream secret bound to the dialer's TLS identity: what the exchange
//	                    records from the dialer's certificate, what a stream must present
//	secrets.go          stream secret rotation (on schedule, on demand, over the open stream)
//	                    and how secret refusals are counted and logged
//	ratelimit.go        the per-peering token buckets of the secret checks peers drive
//	dialer.go           the dialer's leader routine: one stream per peering, backoff, redirects
//	grpc_peerstream.go  PeerStreamService: the TLS listener's options, the acceptor's Open
//	session.go          one open stream, either end: the registry of streams, the read, dispatch,
//	                    write and heartbeat loops, Terminated
//	outbox.go           the session's send queue (priorities, the last message, backpressure)
//	exports.go          what is exported to whom: the exported-services entry resolved
//	export.go           the exporter: subscriptions, snapshots, deltas, chunks, ACK/NACK
//	export_watch.go     what wakes the exporter: watches of the exported list and of each
//	                    service, and the snapshot of a service built from the catalog
//	import.go           the importer: reassembly, decoding and checks of a peer's resources
//	import_plan.go      a received resource turned into catalog writes (imported instances)
//	import_batch.go     queued upserts committed together in one raft write
//	resume.go           what the importer holds (digests), so a resubscription is not a full resync
//	status.go           the leader's live view of each stream (Status, the tracker)
//	deletion.go         the end of a peering: Terminated, imports purged, the row removed
//	api.go              the Go API the HTTP API calls: Read, List, Delete, TrustBundleRead
//	errors.go           the API's sentinels and how they cross servers as gRPC statuses
//	forward.go          client nodes and followers forwarding management calls to the leader
//	grpc_peering.go     PeeringService: the management API over gRPC
//	ca.go               the cluster CA (internal/ca) kept in the catalog; SignLeaf, RotateCA
//	tls.go              the peering listener's certificate and the dialer's trust of a peer
//	server.go           the Server: construction, leadership, the write helpers
//	config.go           Config, DefaultConfig, Validate
//	metrics.go          the peering metrics
//
// Lifecycle: New(cfg) validates and allocates (the CA, the metrics) and
// starts nothing; Start registers the leader routines with the cluster
// (dialer, CA bootstrap, deletion, secret rotation, the leadership the acceptor's streams end
// with); Close(ctx) ends them, waits for them within ctx, and is idempotent.
// The gRPC services are served by the caller's servers (RegisterStream,
// RegisterManagement). Close the Server before its catalog.Cluster.
//
// This package sits below the HTTP API, the agent wiring and the CLI: it must
// not import agent/httpapi, agent or cmd/peerctl/cli.
//
// Self-healing: both ends of a stream reset it as stale when nothing
// (no heartbeat, no data) arrived, or a send stayed blocked, for
// Config.StaleStreamTimeout (3 heartbeat intervals by default), counting
// the reset in peerd_peering_stream_resets_total; the dialer then
// reconnects with full-jitter backoff and resubscribes from what its
// importer holds (resume.go).
//
// Errors: token problems are *TokenError values that match ErrInvalidToken
// (a client error: the HTTP API answers 400); an expired token's error also
// matches ErrTokenExpired. Error text is written for the user who pasted the
// token and says how to fix the problem.
package peering
