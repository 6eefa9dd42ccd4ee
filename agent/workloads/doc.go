// Package workloads gives workloads that run in network namespaces of
// their own (containers, pods) what a workload on the node's own network
// gets: peerd's transparent listener, its DNS and its service's explicit
// upstreams, on the same 127.0.0.1 / [::1] addresses, opened by peerd
// inside each workload namespace. This is Istio ambient's ztunnel
// "in-pod" model: it works with every CNI, assumes no routing and uses no
// host address; the workload's identity comes from the cgroup of its
// processes (pod IPs are not unique across namespaces), and the namespace
// is named to the eBPF layer by its cookie.
//
// The Manager (Run(ctx), its own goroutine) finds workload namespaces: the
// processes listed in cgroup.procs anywhere under the captured cgroup
// (-cgroup-path), and their /proc/<pid>/ns/net. It rescans on a period
// (1 s), at once when inotify reports a new or removed sub-cgroup or a
// cgroup.events change (a cgroup got or lost its processes), and at once
// when the dataplane reports a connect it refused from a namespace not yet
// ready (ReadNetnsEvent), so the application's retry succeeds.
//
// For each namespace other than peerd's own it opens, inside it:
//   - the transparent listeners (the addresses peerd's own use, e.g.
//     127.0.0.1:15001 and [::1]:15001), served by l7proxy's
//     ServeTransparent;
//   - the DNS listeners (-workload-dns-addrs, UDP and TCP), served by the
//     agent's DNS server;
//   - the explicit upstream listeners of the namespace's owner only: the
//     service ServiceOfCgroup names for the cgroup its processes run in.
//     Other services' upstreams are never opened there: a workload could
//     otherwise call with their identity.
//
// Once its transparent listeners are open, it tells the dataplane the
// namespace is ready (SetWorkloadNetns(cookie)); until then the eBPF
// connect hook refuses virtual IP connects from it. A namespace without
// ::1 gets IPv4 listeners only (logged once). When the namespace's
// processes are all gone, its listeners are closed, DeleteWorkloadNetns is
// called and the namespace handle dropped (holding it would keep the
// namespace alive). A listener that cannot be opened is logged, counted
// (peerd_workload_failures_total{reason}) and retried at the next scan;
// nothing here is fatal to the node. When Run ends (shutdown) every
// namespace is released the same way.
//
// Status lists the namespaces for operators (peerctl dataplane status).
package workloads
