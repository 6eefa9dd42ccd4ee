// Package httpapi serves peerd's HTTP API: the parts of Consul's API peerd
// has (agent, catalog, health, config entries, status), with Consul's paths,
// bodies, status codes and blocking queries, so the official Consul client
// works against it. It composes the catalog and the agent's local state; it
// must not import agent or cmd/peerctl/cli.
//
// Reads of replicated state are served by the leader, or by any server with
// ?stale; a follower or a client node relays them. Writes go through
// catalog.Cluster.Apply from any node. Errors are plain text, as Consul's:
// 400 for a bad request (the message names the field and the fix), 404 for
// something missing, 413 for an oversized body, 503 while there is no leader.
//
// Intentions (/v1/connect/intentions, intentions.go) are what Consul 1.9+
// makes of them: views and edits of service-intentions config entries,
// written with a check-and-set on the entry, without IDs.
//
// The listeners serve Handler behind an Edge (NewEdge), which refuses what
// a browser page could send on a user's behalf before any endpoint sees
// it: rebound Host names (421), other origins' changes (403) and simple
// content types (415). Relayed requests enter Handler directly.
//
// GET /v1/agent/health is peerd's own (health.go): the Kubernetes probes
// (?probe=live|startup|ready) answer from the agent's Phase, which the
// agent sets with SetPhase, and from the cluster (a leader, this node's
// membership). It needs no token, and a failing probe is a 503 with a
// JSON reason, not plain text. GET /v1/status/leader keeps Consul's
// meaning.
package httpapi
