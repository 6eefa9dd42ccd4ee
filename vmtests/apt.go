package vmtests

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Where the host's apt configuration is read from; the private one for a
// Kernel.Suite is derived from it.
const (
	hostOSRelease   = "/etc/os-release"
	hostSourceList  = "/etc/apt/sources.list"
	hostSourceParts = "/etc/apt/sources.list.d"
	// aptListsMaxAge is how old a private suite's package lists may be
	// before make vmtest refreshes them (a kernel update is then found).
	aptListsMaxAge = 12 * time.Hour
	updateTimeout  = 3 * time.Minute
)

// aptOptions returns the apt-get/apt-cache options that make apt use k's
// suite: none but the sandbox's for the host's own apt, else a private
// configuration under cache/apt-<suite>/ (sources, lists, package cache
// and an empty dpkg status), whose lists it refreshes when missing or
// older than aptListsMaxAge.
func aptOptions(ctx context.Context, k Kernel, cache string, logf func(string, ...any)) ([]string, error) {
	var sandbox []string
	if os.Geteuid() == 0 {
		// As root apt drops to _apt, which cannot write to a private
		// directory (the suite's, or the download's); run as root
		// instead of warning about it.
		sandbox = []string{"-o", "APT::Sandbox::User=root"}
	}
	if k.Suite == "" {
		return sandbox, nil
	}
	dir, err := filepath.Abs(filepath.Join(cache, "apt-"+k.Suite))
	if err != nil {
		return nil, err
	}
	sources, err := suiteSources(k.Suite)
	if err != nil {
		return nil, fmt.Errorf("kernel %s: apt sources for %s: %w", k.Name, k.Suite, err)
	}
	for _, d := range []string{"parts", "state/lists/partial", "cache/archives/partial"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	srcFile := filepath.Join(dir, "parts", k.Suite+".list")
	old, _ := os.ReadFile(srcFile)
	changed := !bytes.Equal(old, sources)
	if changed {
		if err := os.WriteFile(srcFile, sources, 0o644); err != nil {
			return nil, err
		}
	}
	status := filepath.Join(dir, "status")
	if _, err := os.Stat(status); err != nil {
		if err := os.WriteFile(status, nil, 0o644); err != nil {
			return nil, err
		}
	}
	opts := []string{
		"-o", "Dir::Etc::SourceList=/dev/null",
		"-o", "Dir::Etc::SourceParts=" + filepath.Join(dir, "parts"),
		"-o", "Dir::State=" + filepath.Join(dir, "state"),
		"-o", "Dir::State::status=" + status,
		"-o", "Dir::Cache=" + filepath.Join(dir, "cache"),
		"-o", "Acquire::Languages=none",
		"-o", "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false",
		"-o", "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false",
	}
	opts = append(opts, sandbox...)
	stamp := filepath.Join(dir, "updated")
	if st, err := os.Stat(stamp); changed || err != nil || time.Since(st.ModTime()) > aptListsMaxAge {
		logf("kernel %s: apt-get update of %s's lists into %s", k.Name, k.Suite, dir)
		if _, err := runTool(ctx, updateTimeout, "", "apt-get", append(opts, "-q", "update")...); err != nil {
			return nil, fmt.Errorf("kernel %s: update the %s package lists: %w", k.Name, k.Suite, err)
		}
		if err := os.WriteFile(stamp, nil, 0o644); err != nil {
			return nil, err
		}
	}
	return opts, nil
}

// suiteSources reads the host's Debian apt sources (one-line and deb822)
// and returns them in one-line form for suite: the host's codename is
// replaced in every suite name ("bookworm-security" -> "bullseye-security").
func suiteSources(suite string) ([]byte, error) {
	codename, err := hostCodename()
	if err != nil {
		return nil, err
	}
	var entries []sourceEntry
	if b, err := os.ReadFile(hostSourceList); err == nil {
		entries = append(entries, parseOneLine(string(b))...)
	}
	parts, _ := filepath.Glob(filepath.Join(hostSourceParts, "*.sources"))
	lists, _ := filepath.Glob(filepath.Join(hostSourceParts, "*.list"))
	for _, p := range parts {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		entries = append(entries, parseDeb822(string(b))...)
	}
	for _, p := range lists {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		entries = append(entries, parseOneLine(string(b))...)
	}
	var out bytes.Buffer
	for _, e := range entries {
		if e.typ != "deb" || !strings.Contains(e.uri, "debian") {
			continue
		}
		s, ok := renameSuite(e.suite, codename, suite)
		if !ok {
			continue
		}
		opt := ""
		if e.signedBy != "" {
			opt = "[signed-by=" + e.signedBy + "] "
		}
		fmt.Fprintf(&out, "deb %s%s %s %s\n", opt, e.uri, s, strings.Join(e.components, " "))
	}
	if out.Len() == 0 {
		return nil, fmt.Errorf("no Debian %q sources in %s or %s to derive %s from", codename, hostSourceList, hostSourceParts, suite)
	}
	return out.Bytes(), nil
}

// renameSuite maps the host's suite names to suite's: "bookworm" ->
// "bullseye", "bookworm-updates" -> "bullseye-updates"; other suites (a
// third-party "stable") are not Debian's releases and are dropped.
func renameSuite(s, codename, suite string) (string, bool) {
	if s == codename {
		return suite, true
	}
	if rest, ok := strings.CutPrefix(s, codename+"-"); ok {
		return suite + "-" + rest, true
	}
	return "", false
}

type sourceEntry struct {
	typ, uri, suite, signedBy string
	components                []string
}

// parseOneLine reads "deb [opts] uri suite component..." lines.
func parseOneLine(text string) []sourceEntry {
	var out []sourceEntry
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		var signedBy string
		if i := strings.IndexByte(line, '['); i >= 0 {
			j := strings.IndexByte(line, ']')
			if j < i {
				continue
			}
			for _, o := range strings.Fields(line[i+1 : j]) {
				if v, ok := strings.CutPrefix(o, "signed-by="); ok {
					signedBy = v
				}
			}
			line = line[:i] + line[j+1:]
		}
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		out = append(out, sourceEntry{typ: f[0], uri: f[1], suite: f[2], components: f[3:], signedBy: signedBy})
	}
	return out
}

// parseDeb822 reads deb822 stanzas (Types, URIs, Suites, Components,
// Signed-By), one entry per type × URI × suite.
func parseDeb822(text string) []sourceEntry {
	var out []sourceEntry
	for _, stanza := range strings.Split(text, "\n\n") {
		fields := map[string]string{}
		for _, line := range strings.Split(stanza, "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "#") {
				continue
			}
			k, v, ok := strings.Cut(line, ":")
			if !ok || strings.HasPrefix(line, " ") {
				continue
			}
			fields[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
		}
		if strings.EqualFold(fields["enabled"], "no") {
			continue
		}
		for _, typ := range strings.Fields(fields["types"]) {
			for _, uri := range strings.Fields(fields["uris"]) {
				for _, suite := range strings.Fields(fields["suites"]) {
					out = append(out, sourceEntry{typ: typ, uri: uri, suite: suite,
						components: strings.Fields(fields["components"]), signedBy: fields["signed-by"]})
				}
			}
		}
	}
	return out
}

// hostCodename is VERSION_CODENAME from /etc/os-release ("bookworm").
func hostCodename() (string, error) {
	b, err := os.ReadFile(hostOSRelease)
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VERSION_CODENAME="); ok {
			if v = strings.Trim(strings.TrimSpace(v), `"`); v != "" {
				return v, nil
			}
		}
	}
	return "", errors.New(hostOSRelease + " names no VERSION_CODENAME: not a Debian host?")
}
