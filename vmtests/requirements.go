package vmtests

import (
	"fmt"
	"strconv"
	"strings"
)

// Requirement is one row of the README's kernel requirements table: what
// a dataplane layer (or one of its attach modes) needs, the first kernel
// that has all of it, and what peerd does on an older kernel. The README
// table is checked against these rows, the rows against Matrix, and the
// guest checks (vmtests/guest) against the kernel each VM boots.
type Requirement struct {
	// Layer is the dataplane layer ("capture", "tc") or one of its
	// modes ("tc/tcx").
	Layer string
	// Min is the first kernel with every feature the layer uses.
	Min string
}

// Requirements: the minimum kernel per layer (see the README for what
// each needs and what happens below it).
var Requirements = []Requirement{
	{Layer: "capture", Min: "5.8"},
	{Layer: "capture/netns", Min: "5.15"},
	{Layer: "fastpath", Min: "5.7"},
	{Layer: "fastpath/netns", Min: "5.15"},
	{Layer: "tc", Min: "4.6"},
	{Layer: "tc/tcx", Min: "6.6"},
	{Layer: "inbound", Min: "5.9"},
}

// MinKernel returns the minimum kernel of layer.
func MinKernel(layer string) (string, error) {
	for _, r := range Requirements {
		if r.Layer == layer {
			return r.Min, nil
		}
	}
	return "", fmt.Errorf("no kernel requirement for layer %q", layer)
}

// KernelAtLeast reports whether release (uname -r, "5.10.0-46-amd64", or
// a matrix name, "6.12") is version min ("6.6") or later.
func KernelAtLeast(release, min string) (bool, error) {
	have, err := majorMinor(release)
	if err != nil {
		return false, err
	}
	want, err := majorMinor(min)
	if err != nil {
		return false, err
	}
	return have[0] > want[0] || have[0] == want[0] && have[1] >= want[1], nil
}

func majorMinor(v string) ([2]int, error) {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return [2]int{}, fmt.Errorf("kernel version %q: want major.minor", v)
	}
	var out [2]int
	for i := range out {
		digits := parts[i]
		if j := strings.IndexFunc(digits, func(r rune) bool { return r < '0' || r > '9' }); j >= 0 {
			digits = digits[:j]
		}
		n, err := strconv.Atoi(digits)
		if err != nil {
			return [2]int{}, fmt.Errorf("kernel version %q: %w", v, err)
		}
		out[i] = n
	}
	return out, nil
}
