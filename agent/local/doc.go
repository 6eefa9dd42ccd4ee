// Package local holds the services and checks registered with this agent, runs
// their checks, and keeps the replicated catalog in agreement with them
// (anti-entropy): every change is written through at once, and a full sync of
// the node runs periodically and whenever the set of servers changes, so
// registrations come back after the servers lose them.
//
// Lifecycle: New validates, restores what StateDir holds and starts the
// restored checks (each check runs from its registration); Start starts
// anti-entropy; Close(ctx) stops anti-entropy and the checks, waits for them
// within ctx, and is idempotent. The registrations stay in the catalog.
//
// It imports catalog and checks; nothing of ours imports it but the HTTP API
// and the agent wiring.
//
// The files, in the order a registration goes through them:
//
//	definition.go   decode and check a registration; definition <-> catalog records
//	state.go        the agent's own services and checks, and their check runners
//	antientropy.go  write-through and the periodic full sync of the node
//	persist.go      API-registered services and checks kept in StateDir
//	maintenance.go  maintenance mode: Consul's _node_maintenance and
//	                _service_maintenance:<id> critical checks, persisted too
package local
