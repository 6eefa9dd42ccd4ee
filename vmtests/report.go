package vmtests

import (
	"fmt"
	"io"
	"path"
	"regexp"
	"sort"
	"strings"
)

// TestResult is one test (or subtest) of a go test -v run.
type TestResult struct {
	Package string // last element of the import path
	Name    string // TestX or TestX/sub
	Status  string // PASS, FAIL or SKIP
	// Modes are the attach modes the test's log mentions.
	Modes []string
	// Output is the test's own log lines (for failures).
	Output []string
}

// RunReport is what one kernel's go test -v output says.
type RunReport struct {
	Tests []TestResult
	// Packages maps a package's import path to ok, FAIL or "no result".
	Packages map[string]string
	// Boot and Total are vmexec's timings per package binary ("2.5s").
	Boot  []string
	Total []string
	// AttachModes is vmtests/guest's ATTACH-MODES line (auto mode).
	AttachModes string
	// VMErrors are vmexec's error lines (timeout, panic, no boot...).
	VMErrors []string
}

var (
	resultRe  = regexp.MustCompile(`^(\s*)--- (PASS|FAIL|SKIP): (\S+) \(`)
	runRe     = regexp.MustCompile(`^=== (RUN|CONT|PAUSE|NAME)\s+(\S+)`)
	pkgRe     = regexp.MustCompile(`^(ok|FAIL|\?)\s+(\S+)`)
	vmexecRe  = regexp.MustCompile(`^vmexec: kernel \S+ \(.*\): boot ([0-9.]+s) .*total ([0-9.]+s), exit (-?\d+)`)
	modeRes   = []*regexp.Regexp{regexp.MustCompile(`AttachMode:([a-z+-]+)`), regexp.MustCompile(`\bmode (tcx|clsact|off):`)}
	attachRe  = regexp.MustCompile(`ATTACH-MODES (.*)$`)
	vmErrorRe = regexp.MustCompile(`^vmexec: .*(did not boot|panicked|timeout|interrupted|without reporting|not installed|not found|fetch kernel|resolve kernel|unknown kernel)`)
)

// ParseGoTest reads go test -v output (one or more packages, run with
// -p 1 so that they do not interleave).
func ParseGoTest(r io.Reader) (*RunReport, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	rep := &RunReport{Packages: map[string]string{}}
	var pending []TestResult
	logs := map[string][]string{}
	current := ""
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimRight(line, "\r")
		if m := runRe.FindStringSubmatch(line); m != nil {
			current = m[2]
			continue
		}
		if m := resultRe.FindStringSubmatch(line); m != nil {
			name := m[3]
			tr := TestResult{Name: name, Status: m[2], Output: logs[name]}
			seen := map[string]bool{}
			for _, l := range logs[name] {
				for _, re := range modeRes {
					for _, mm := range re.FindAllStringSubmatch(l, -1) {
						if !seen[mm[1]] {
							seen[mm[1]] = true
							tr.Modes = append(tr.Modes, mm[1])
						}
					}
				}
			}
			pending = append(pending, tr)
			continue
		}
		if m := pkgRe.FindStringSubmatch(line); m != nil && strings.Contains(m[2], "/") {
			status := m[1]
			if status == "?" {
				status = "no test files"
			}
			rep.Packages[m[2]] = status
			for i := range pending {
				pending[i].Package = path.Base(m[2])
			}
			rep.Tests = append(rep.Tests, pending...)
			pending, logs, current = nil, map[string][]string{}, ""
			continue
		}
		if m := vmexecRe.FindStringSubmatch(line); m != nil {
			rep.Boot = append(rep.Boot, m[1])
			rep.Total = append(rep.Total, m[2])
			continue
		}
		if vmErrorRe.MatchString(line) {
			rep.VMErrors = append(rep.VMErrors, line)
		}
		if m := attachRe.FindStringSubmatch(line); m != nil {
			rep.AttachModes = strings.TrimSpace(m[1])
		}
		if current != "" && line != "PASS" && line != "FAIL" {
			// A test's log line is indented under its name; anything
			// else printed while it runs (slog lines, the init's
			// messages) goes with it too.
			logs[current] = append(logs[current], line)
		}
	}
	rep.Tests = append(rep.Tests, pending...)
	return rep, nil
}

// KernelRun is one column of the matrix table.
type KernelRun struct {
	Kernel  Kernel
	Package string // the Debian package booted
	Report  *RunReport
	Err     error // the run could not happen (fetch failed...)
}

// PrintTable writes the kernel × test table, then per kernel its boot
// time and the attach modes the dataplane chose by itself.
func PrintTable(w io.Writer, runs []KernelRun) {
	type key struct{ pkg, name string }
	var keys []key
	seen := map[key]bool{}
	cells := map[key]map[string]string{}
	for _, r := range runs {
		if r.Report == nil {
			continue
		}
		for _, tr := range r.Report.Tests {
			k := key{tr.Package, tr.Name}
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
				cells[k] = map[string]string{}
			}
			cell := strings.ToLower(tr.Status)
			if len(tr.Modes) > 0 {
				cell += " (" + strings.Join(tr.Modes, ",") + ")"
			}
			cells[k][r.Kernel.Name] = cell
		}
	}
	sort.SliceStable(keys, func(i, j int) bool { return keys[i].pkg < keys[j].pkg })
	nameW := len("test")
	for _, k := range keys {
		if n := len(k.pkg) + 1 + len(k.name); n > nameW {
			nameW = n
		}
	}
	colW := 22
	fmt.Fprintf(w, "%-*s", nameW, "test")
	for _, r := range runs {
		fmt.Fprintf(w, " | %-*s", colW, "kernel "+r.Kernel.Name)
	}
	fmt.Fprintln(w)
	fmt.Fprint(w, strings.Repeat("-", nameW))
	for range runs {
		fmt.Fprint(w, "-+-"+strings.Repeat("-", colW))
	}
	fmt.Fprintln(w)
	for _, k := range keys {
		fmt.Fprintf(w, "%-*s", nameW, k.pkg+"."+k.name)
		for _, r := range runs {
			c := cells[k][r.Kernel.Name]
			if c == "" {
				c = "-"
			}
			fmt.Fprintf(w, " | %-*s", colW, c)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
	for _, r := range runs {
		fmt.Fprintf(w, "kernel %s (%s):", r.Kernel.Name, r.Package)
		if r.Err != nil {
			fmt.Fprintf(w, " NOT RUN: %v\n", r.Err)
			continue
		}
		rep := r.Report
		fmt.Fprintf(w, " boot %s; VM total %s; auto attach modes: %s\n",
			strings.Join(rep.Boot, ", "), strings.Join(rep.Total, ", "), orDash(rep.AttachModes))
		var pkgs []string
		for p, s := range rep.Packages {
			pkgs = append(pkgs, p+" "+s)
		}
		sort.Strings(pkgs)
		fmt.Fprintf(w, "  packages: %s\n", strings.Join(pkgs, "; "))
		for _, e := range rep.VMErrors {
			fmt.Fprintf(w, "  %s\n", e)
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Failed reports whether a run failed: a failing test, a package that did
// not end in ok, or a run that did not happen.
func (r KernelRun) Failed() bool {
	if r.Err != nil || r.Report == nil {
		return true
	}
	for _, tr := range r.Report.Tests {
		if tr.Status == "FAIL" {
			return true
		}
	}
	for _, s := range r.Report.Packages {
		if s == "FAIL" {
			return true
		}
	}
	return len(r.Report.Packages) == 0
}
