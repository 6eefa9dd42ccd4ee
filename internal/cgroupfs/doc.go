// Package cgroupfs reads the cgroup v2 file system for the node's view of
// a caller: the id of a cgroup directory (the value the kernel's
// bpf_get_current_cgroup_id reports, the directory's inode), the directory
// of an id under a root (Resolver, a walk cached with invalidation and
// bounded), and the Kubernetes pod a cgroup path belongs to (PodUID, for
// both kubelet cgroup drivers).
//
// It is a leaf: it imports nothing of ours but internal/netutil, for
// ErrNotSupported, and nothing outside the standard library.
//
// # Layouts PodUID understands
//
//	systemd driver  kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid with _>.slice/cri-containerd-<id>.scope
//	                kubepods.slice/kubepods-pod<uid with _>.slice/...            (Guaranteed QoS)
//	cgroupfs driver kubepods/burstable/pod<uid>/<container id>
//	                kubepods/pod<uid>/<container id>                             (Guaranteed QoS)
//
// A kubelet -cgroup-root prefixes the slice names (kubelet-kubepods-...);
// that is understood too. The systemd driver writes the UID's dashes as
// underscores (a dash separates slice levels); PodUID gives it back with
// dashes, lower case, and only when it is a UUID.
//
// # Errors
//
// Path returns an error matching ErrNotFound for an id with no directory
// under the root; ID, Stat and Path return an error matching
// ErrNotSupported outside Linux; ParseUID returns one matching ErrNotUUID.
// Every error names the path or value it concerns.
package cgroupfs
