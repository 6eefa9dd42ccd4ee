// Package config is the agent's configuration: every setting of `peerd
// agent`, with its flag, its config-file key, its default and its doc in one
// table (settings.go), and the one validation the agent runs at start-up.
//
// # Precedence
//
// A configuration is built in this order, each step overriding the one
// before: the defaults (DefaultConfig; CommandLineConfig adds the DNS server
// for the command line), then -dev's values (ApplyDev), then the config files
// (-config-file, -config-dir: every *.hcl and *.json, all in name order;
// services and checks accumulate), then the flags given on the command line
// (Parse). Validate comes last; agent.Start calls it, and `peerd validate`
// runs it over the files (Check).
//
// A flag and the file key of a setting write the same Config field, and each
// value remembers where it came from, so Validate's messages name what to
// fix: "a.hcl: datacenter: ..." or "-datacenter: ...". A Config built in code
// names the flag.
//
// # Errors
//
// LoadFiles, Validate and Check report every problem at once
// (errors.Join), each naming the file and key or the flag; LoadFiles applies
// the keys that are fine even when others are not. What depends on the host
// (the bind address found on the interfaces, virtual IP ranges overlapping
// them, ports already taken) is checked by the agent when it starts.
//
// Only cmd/ and agent import this package; it imports nothing of
// the wiring (agent, the HTTP API, the CLI).
package config
