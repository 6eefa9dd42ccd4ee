package vmtests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// readmeTable returns the cells of the README table that starts with
// header (a Markdown table row), one slice per row.
func readmeTable(t *testing.T, header string) [][]string {
	t.Helper()
	wd, _ := os.Getwd()
	root, err := ModuleRoot(wd)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	columns := strings.Count(header, "|") - 1
	_, table, ok := strings.Cut(string(b), header+"\n|"+strings.Repeat("---|", columns)+"\n")
	if !ok {
		t.Fatalf("README has no table %q", header)
	}
	var rows [][]string
	for _, line := range strings.Split(table, "\n") {
		if !strings.HasPrefix(line, "|") {
			break
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) != columns {
			t.Fatalf("README row %q: %d cells, want %d", line, len(cells), columns)
		}
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		rows = append(rows, cells)
	}
	return rows
}

// TestREADMERequirements: the README's table says what Requirements says,
// and the matrix can see every row: a minimum is either met by every
// kernel of the matrix (so each VM checks that the layer loads) or has a
// matrix kernel on each side (so both the layer and its fallback run).
func TestREADMERequirements(t *testing.T) {
	rows := map[string]string{}
	for _, cells := range readmeTable(t, "| layer | needs | minimum kernel | below it |") {
		rows[cells[0]] = cells[2]
	}
	if len(rows) != len(Requirements) {
		t.Errorf("README table has %d rows (%v), Requirements %d", len(rows), rows, len(Requirements))
	}
	for _, r := range Requirements {
		if got, ok := rows[r.Layer]; !ok || got != r.Min {
			t.Errorf("README: layer %s minimum kernel %q, want %q", r.Layer, got, r.Min)
		}
		var below, atLeast []string
		for _, k := range Matrix {
			ok, err := KernelAtLeast(k.Name, r.Min)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				atLeast = append(atLeast, k.Name)
			} else {
				below = append(below, k.Name)
			}
		}
		if len(atLeast) == 0 {
			t.Errorf("layer %s (from %s): no matrix kernel runs it (below: %v)", r.Layer, r.Min, below)
		}
		if len(below) > 0 && !strings.Contains(r.Layer, "/") {
			t.Errorf("layer %s (from %s): matrix kernels %v are older; only a mode (layer/mode) may fall back inside the matrix", r.Layer, r.Min, below)
		}
		if strings.Contains(r.Layer, "/") && len(below) == 0 {
			t.Errorf("mode %s (from %s): no matrix kernel runs its fallback", r.Layer, r.Min)
		}
	}
}

// TestREADMEMatrix: the README's kernel matrix table lists Matrix, and
// its TC column says TCX exactly where the requirements say so.
func TestREADMEMatrix(t *testing.T) {
	rows := readmeTable(t, "| kernel | Debian package | TC | why it is there |")
	if len(rows) != len(Matrix) {
		t.Fatalf("README matrix has %d kernels, Matrix %d", len(rows), len(Matrix))
	}
	tcx, err := MinKernel("tc/tcx")
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range Matrix {
		if rows[i][0] != k.Name {
			t.Errorf("README matrix row %d: kernel %s, want %s", i, rows[i][0], k.Name)
		}
		has, err := KernelAtLeast(k.Name, tcx)
		if err != nil {
			t.Fatal(err)
		}
		if got := rows[i][2] == "TCX"; got != has {
			t.Errorf("README matrix: kernel %s TC %q, but TCX is from %s", k.Name, rows[i][2], tcx)
		}
	}
}

func TestKernelAtLeast(t *testing.T) {
	for _, tt := range []struct {
		release, min string
		want         bool
	}{
		{"5.10.0-46-amd64", "5.9", true},
		{"5.10.0-46-amd64", "6.6", false},
		{"6.1.0-57-amd64", "6.6", false},
		{"6.12.117+deb12-amd64", "6.6", true},
		{"6.6", "6.6", true},
		{"6.18.0", "6.6", true},
		{"4.19.0", "5.7", false},
	} {
		got, err := KernelAtLeast(tt.release, tt.min)
		if err != nil || got != tt.want {
			t.Errorf("KernelAtLeast(%q, %q) = %v, %v; want %v", tt.release, tt.min, got, err, tt.want)
		}
	}
	if _, err := KernelAtLeast("six", "6.6"); err == nil {
		t.Error("KernelAtLeast accepted a release without a version")
	}
}
