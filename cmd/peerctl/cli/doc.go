// Package cli implements peerctl, the operator CLI for peerd, modelled on the
// consul CLI: the same command names, the same single-dash flags (-http-addr,
// -format json, -name web) and the same messages where Consul has one.
//
// Every command talks to an agent's Consul-compatible HTTP API through
// [Client]; none of them imports the daemon's packages, so peerctl works
// against any node, local or remote. The package must not import
// agent, catalog, peering, dataplane or l7proxy: only the wire
// format ties it to the daemon.
//
// Layout: cli.go builds the command tree (no package-level state; [Run]
// builds a fresh tree per call), flags.go holds the single-dash flag
// rewriting and shared flag types, output.go the table and JSON printers,
// client.go the HTTP client, and each command group lives in its own file
// (members.go, catalog.go, services.go, config.go, version.go).
//
// Errors: [Run] returns nil on success, a [*UsageError] when the command
// line is wrong (exit code 2), a [*StatusError] when the agent answered with a
// non-2xx status, and other errors (connection, file, decoding) otherwise.
// [ExitCode] maps an error to the process exit code.
package cli
