// Package l7 holds the pieces of bench's cross-peer HTTP benchmark
// (BenchmarkCrossPeerHTTP in bench/l7_test.go) that are not the benchmark
// itself, standard library plus internal/identity only:
//
//   - load.go: an HTTP/1.1 load generator on raw keep-alive connections,
//     closed-loop (N connections, each sending its next request when the
//     previous answer is read) and fixed-rate (open loop, latency measured
//     from each request's scheduled send time, so a stalled server shows up
//     as latency instead of as fewer samples: no coordinated omission);
//   - echo.go and cmd/l7echo: the echo server behind every mode;
//   - proc.go: child processes in their own process groups, stopped with
//     their whole group, and CPU time (utime+stime) from /proc/<pid>/stat;
//   - certs.go: two trust domains minted with internal/identity, and the
//     leaves of the nginx baseline;
//   - nginx.go: installing Debian's nginx when it is missing (without
//     letting apt start or enable the system service) and running two
//     nginx instances, each in its own prefix directory;
//   - peerd.go: two dev agents (bin/peerd agent -dev) peered the way
//     scripts/demo.sh does it, with billing exported from B to A and an
//     explicit upstream on A.
//
// It is Linux only (/proc, process groups, Pdeathsig, nanosleep pacing).
package l7
