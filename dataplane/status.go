package dataplane

// Layer names, as used in Status and logs.
const (
	LayerCapture  = "capture"
	LayerFastPath = "fastpath"
	LayerTC       = "tc"
	LayerInbound  = "inbound"
)

// Status is a snapshot of the dataplane. It encodes to JSON with its Go
// field names, as the rest of the HTTP API (Consul's) does.
type Status struct {
	Kernel   string
	PinDir   string
	Capture  LayerStatus
	FastPath LayerStatus
	TC       LayerStatus
	Inbound  LayerStatus
}

// LayerStatus describes one layer.
type LayerStatus struct {
	// Enabled: requested by the configuration.
	Enabled bool
	// Loaded: programs loaded and attached.
	Loaded bool
	// Reused: this Start re-opened pinned maps and updated pinned links.
	Reused bool `json:",omitempty"`
	// AttachMode: "cgroup-link", "tcx", "clsact", "tcx+clsact" or
	// "netns-link".
	AttachMode string `json:",omitempty"`
	// Reason why an enabled layer is not loaded, or why reading its maps
	// or counters failed: Err's text.
	Reason string `json:",omitempty"`
	// Err is the error behind Reason (nil when Reason is empty), for
	// errors.Is: ErrNotSupported when the kernel or the platform lacks a
	// feature the layer needs (ebpf.ErrNotSupported matches as well).
	// Not in JSON: Reason carries it.
	Err error `json:"-"`
	// Maps: entries per map (hash, LRU and LPM maps; occupied slots of a
	// SOCKMAP).
	Maps map[string]int `json:",omitempty"`
	// Counters: the layer's statistics, summed over CPUs.
	Counters map[string]uint64 `json:",omitempty"`
	// Interfaces: TC attach mode per interface.
	Interfaces map[string]string `json:",omitempty"`
	// WorkloadNetns (capture, fast path): the layer's keys carry the
	// network namespace cookie and, for capture, workload namespaces
	// are checked (SetWorkloadNetns); false on kernels before 5.15,
	// where every connect is treated as the dataplane namespace's.
	WorkloadNetns bool `json:",omitempty"`
	// Routes: the capture layer's unreachable routes for the virtual IP
	// ranges (Config.UnreachablePrefixes), as "unreachable <prefix>".
	Routes []string `json:",omitempty"`
}

// fail records err as the layer's Err and Reason.
func (s *LayerStatus) fail(err error) {
	s.Err, s.Reason = err, err.Error()
}
