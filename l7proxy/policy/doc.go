// Package policy is the pure decision logic of peerd's L7 terminator: who may
// call a service (service-intentions), where a request to it goes
// (service-router, service-splitter, service-resolver) and which instances a
// resolved target selects (subset filters written in go-bexpr, as in Consul).
//
// It does no I/O, reads no clock and holds no package-level mutable state.
// Randomness comes from the caller (the rnd argument of RouteRequest), so
// every function is deterministic given its inputs. Compiled values
// (Intentions, Filter) are immutable and safe for concurrent use; a Cache is
// safe for concurrent use and keeps the compiled regular expressions and
// filters of the discovery chain so that per-request work is evaluation only.
//
// Semantics follow Consul and the Envoy configuration Consul generates:
//
//   - Intentions: the sources of the entry for the exact destination come
//     before those of the "*" entries (Consul's precedence), exact source names
//     before "*"; the first source that matches the caller decides. A source
//     with Peer matches only callers from that peer, a source without Peer only
//     local callers. Nothing matching is a deny, for local callers too.
//   - Path, header and query matches are Envoy's: regular expressions (Go's
//     RE2 syntax) must match the whole value; a header absent from the request
//     never matches a value matcher, inverted or not.
//   - The discovery chain is evaluated at the destination: the router of the
//     requested service, then the splitter of the routed service (nested
//     splitters are flattened, as Consul's compiler does), then the resolver
//     (redirect, default subset, failover).
//
// Callers should normalize request paths (dot segments, duplicate slashes)
// before asking for a decision: matching is done on the path exactly as given
// (http.Request.URL.Path).
//
// The package imports nothing of peerd's except catalog/state and
// catalog/configentry, and nothing of the cluster (raft, memberlist, gRPC).
// Errors are returned wrapped with the entry and field at fault; Authorize and
// RouteRequest's matching never fail once the inputs are compiled.
package policy
