package dataplane

import (
	"encoding/json"
	"slices"
	"testing"
)

// TestStatusJSONKeys checks that GET /v1/agent/dataplane's status uses the
// Go field names as keys, as the rest of the (Consul) API does, and that
// peerctl's reading of them (cmd/peerctl/cli) stays in step.
func TestStatusJSONKeys(t *testing.T) {
	st := Status{Kernel: "6.12.0", PinDir: "/sys/fs/bpf/peerd",
		Capture: LayerStatus{Enabled: true, Loaded: true, Reused: true, AttachMode: "cgroup-link", Reason: "x",
			Maps: map[string]int{"vips": 1}, Counters: map[string]uint64{"redirected": 2}, Interfaces: map[string]string{"eth0": "tcx"}}}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		t.Fatal(err)
	}
	var layer map[string]json.RawMessage
	if err := json.Unmarshal(top["Capture"], &layer); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		got  map[string]json.RawMessage
		want []string
	}{
		{"status", top, []string{"Capture", "FastPath", "Inbound", "Kernel", "PinDir", "TC"}},
		{"layer", layer, []string{"AttachMode", "Counters", "Enabled", "Interfaces", "Loaded", "Maps", "Reason", "Reused"}},
	} {
		var keys []string
		for k := range tt.got {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if !slices.Equal(keys, tt.want) {
			t.Errorf("%s keys: got %v, want %v", tt.name, keys, tt.want)
		}
	}
}
