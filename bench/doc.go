// Package bench holds peerd's benchmarks of whole nodes and clusters: each
// starts real agents in one process on 127.0.0.1 and reports, next to its
// figures, the same figures for a baseline measured in the same run (a single
// in-memory dev server, the bare memdb store, or the bytes Consul's protocol
// would send), as a ratio, so a change shows up as a ratio that moved rather
// than as an absolute number that depends on the machine.
//
// bench_test.go times the catalog of one cluster (issue 2): registrations
// and blocking-query wake-ups, against a dev server and the bare store.
// peering_test.go times cluster peering (issue 3): two clusters in one
// process, one exporting 10,000 services of 10 instances to the other; its
// baseline, Consul's full per-service snapshot on every change, is computed
// from the exporter's catalog with the stream's own protobuf types, since
// the exporter only sends deltas. l7_test.go times HTTP through a peering's
// L7 path (peerd A's outbound listener, mTLS, peerd B's gateway) against
// the echo server reached directly and through two nginx doing the same
// mTLS hop; unlike the others it runs real processes (peerd and peerctl
// built from the working tree, nginx, an echo server), with its helpers in
// bench/l7, and prints its table on standard output.
//
// Run them with `make bench` (`go test -run '^$' -bench . -benchtime 1x
// ./bench/...`); each benchmark does its whole workload once per iteration
// and stays under two minutes on two cores. Each reports its figures with
// b.ReportMetric and logs them against the targets of the issue that asked
// for it.
//
// The package has no code outside its tests (bench/l7 holds the cross-peer
// benchmark's load generator, echo server and process helpers). Its tests may import
// agent (the import policy in internal/depcheck checks the imports
// of non-test files only); nothing may import this package.
package bench
