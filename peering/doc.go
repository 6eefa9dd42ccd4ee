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
// This package sits below the HTTP API, the agent wiring and the CLI: it must
// not import internal/httpapi, internal/agent or internal/cli.
//
// Errors: token problems are *TokenError values that match ErrInvalidToken
// (a client error: the HTTP API answers 400); an expired token's error also
// matches ErrTokenExpired. Error text is written for the user who pasted the
// token and says how to fix the problem.
package peering
