package vmtests

import (
	"bufio"
	"bytes"
	"fmt"
	"slices"
	"strings"
)

// ShBlocks returns the ```sh code blocks of the markdown section whose
// heading line is heading ("## Install"), up to the next heading of the
// same or a higher level; each block is its lines, without the fences.
func ShBlocks(md []byte, heading string) ([][]string, error) {
	level := strings.IndexFunc(heading, func(r rune) bool { return r != '#' })
	if level <= 0 {
		return nil, fmt.Errorf("heading %q: want a markdown heading (## Name)", heading)
	}
	var (
		blocks        [][]string
		in, sh, other bool
		found         bool
		current       []string
	)
	sc := bufio.NewScanner(bytes.NewReader(md))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "```") {
			switch {
			case sh:
				blocks, sh = append(blocks, current), false
			case other:
				other = false
			case strings.TrimSpace(line) == "```sh":
				sh, current = in, []string{}
				other = !in
			default:
				other = true // another language's block
			}
			continue
		}
		if sh {
			current = append(current, line)
			continue
		}
		if other {
			continue
		}
		if strings.HasPrefix(line, "#") {
			l := strings.IndexFunc(line, func(r rune) bool { return r != '#' })
			if l > 0 && l <= level && strings.HasPrefix(line[l:], " ") {
				if in {
					return blocks, nil
				}
				if strings.TrimSpace(line) == heading {
					in, found = true, true
				}
			}
		}
	}
	if !found {
		return nil, fmt.Errorf("no section %q", heading)
	}
	return blocks, nil
}

// InstallSteps are the systemd install steps of the README, as the
// systemd test runs them.
type InstallSteps struct {
	// Build runs on the build machine (make build), in the tree.
	Build []string
	// Host installs on the host: the user, the binaries, the
	// configuration and the unit, from the tree's bin/ and deploy/systemd/.
	Host []string
	// Start starts the unit once the configuration is edited.
	Start []string
}

const (
	buildMarker = "# on a build machine"
	hostMarker  = "# on the host"
	startFirst  = "systemctl daemon-reload"
)

// ParseInstallSteps reads the systemd install steps from the "## Install"
// sections of README.md and deploy/systemd/README.md, which must agree:
// the first sh block of each (its lines after a "# on a build machine"
// comment, and after a "# on the host" comment) and the block that starts
// the unit (the first whose first command is systemctl daemon-reload)
// must hold the same commands in the same order (comments may differ).
func ParseInstallSteps(readme, deployReadme []byte) (*InstallSteps, error) {
	var got [2]*InstallSteps
	for i, f := range []struct {
		name string
		md   []byte
	}{{"README.md", readme}, {"deploy/systemd/README.md", deployReadme}} {
		blocks, err := ShBlocks(f.md, "## Install")
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.name, err)
		}
		if len(blocks) == 0 {
			return nil, fmt.Errorf("%s: \"## Install\" has no sh block", f.name)
		}
		st := &InstallSteps{}
		var part *[]string
		for _, l := range blocks[0] {
			switch t := strings.TrimSpace(l); {
			case strings.HasPrefix(t, buildMarker):
				part = &st.Build
				continue
			case strings.HasPrefix(t, hostMarker):
				part = &st.Host
				continue
			}
			if part == nil {
				if strings.TrimSpace(l) == "" {
					continue
				}
				return nil, fmt.Errorf("%s: the first sh block of \"## Install\" must begin with %q, then %q: %q comes first", f.name, buildMarker, hostMarker, l)
			}
			*part = append(*part, l)
		}
		if len(commands(st.Build)) == 0 || len(commands(st.Host)) == 0 {
			return nil, fmt.Errorf("%s: the first sh block of \"## Install\" needs commands under both %q and %q", f.name, buildMarker, hostMarker)
		}
		for _, b := range blocks[1:] {
			if c := commands(b); len(c) > 0 && strings.HasPrefix(c[0], startFirst) {
				st.Start = b
				break
			}
		}
		if st.Start == nil {
			return nil, fmt.Errorf("%s: \"## Install\" has no sh block that begins with %q", f.name, startFirst)
		}
		got[i] = st
	}
	a, b := got[0], got[1]
	for _, c := range []struct {
		what string
		x, y []string
	}{{"build steps", a.Build, b.Build}, {"host steps", a.Host, b.Host}, {"start steps", a.Start, b.Start}} {
		if !slices.Equal(commands(c.x), commands(c.y)) {
			return nil, fmt.Errorf("the %s of README.md and deploy/systemd/README.md (\"## Install\") differ:\n  README.md:\n    %s\n  deploy/systemd/README.md:\n    %s",
				c.what, strings.Join(commands(c.x), "\n    "), strings.Join(commands(c.y), "\n    "))
		}
	}
	return a, nil
}

// commands drops blank and comment lines.
func commands(lines []string) []string {
	var out []string
	for _, l := range lines {
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
			out = append(out, t)
		}
	}
	return out
}

// Script is lines as a shell script that stops at the first failing
// command and echoes each one.
func Script(lines []string) []byte {
	return []byte("set -ex\n" + strings.Join(lines, "\n") + "\n")
}
