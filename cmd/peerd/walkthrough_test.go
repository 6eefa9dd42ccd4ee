package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/peerd/peerd/internal/testutil"
)

// Markers around the README's walkthrough: every ```sh block between them
// is part of it, in order.
const (
	walkthroughBegin = "<!-- walkthrough:begin"
	walkthroughEnd   = "<!-- walkthrough:end"
)

// readmeWalkthrough returns the sh blocks of README.md between the
// walkthrough markers, in order, exactly as they are written.
func readmeWalkthrough(readme []byte) ([]string, error) {
	var blocks []string
	var cur *strings.Builder
	inside, begun, ended := false, false, false
	sc := bufio.NewScanner(bytes.NewReader(readme))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case cur != nil && strings.TrimSpace(line) == "```":
			blocks = append(blocks, cur.String())
			cur = nil
		case cur != nil:
			cur.WriteString(line + "\n")
		case strings.HasPrefix(line, walkthroughBegin):
			if begun {
				return nil, errors.New("README.md has two walkthrough:begin markers")
			}
			inside, begun = true, true
		case strings.HasPrefix(line, walkthroughEnd):
			inside, ended = false, true
		case inside && line == "```sh":
			cur = &strings.Builder{}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	switch {
	case !begun || !ended:
		return nil, errors.New("README.md lacks the walkthrough:begin/walkthrough:end markers")
	case cur != nil:
		return nil, errors.New("README.md: a walkthrough sh block is not closed")
	}
	return blocks, nil
}

func TestReadmeWalkthroughExtraction(t *testing.T) {
	readme := []byte("intro\n```sh\nnot me\n```\n" + walkthroughBegin + " -->\n```sh\none\n```\n```hcl\nx = 1\n```\ntext\n```sh\ntwo\nthree\n```\n" +
		walkthroughEnd + " -->\n```sh\nnot me either\n```\n")
	got, err := readmeWalkthrough(readme)
	if err != nil || strings.Join(got, "|") != "one\n|two\nthree\n" {
		t.Fatalf("got %q, %v; want the two sh blocks between the markers", got, err)
	}
	if _, err := readmeWalkthrough([]byte("```sh\nx\n```\n")); err == nil {
		t.Fatal("a README without markers was accepted")
	}
}

// TestReadmeWalkthrough runs the README's walkthrough (two dev clusters
// peered, billing exported, web calling it through its upstream, the
// peering deleted) with freshly built binaries on PATH, in a scratch
// directory, with nothing added to the blocks but "set -euo pipefail".
func TestReadmeWalkthrough(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries and runs two agents: skipped with -short")
	}
	for _, tool := range []string{"bash", "curl", "awk"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the walkthrough needs %s: %v", tool, err)
		}
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := readmeWalkthrough(readme)
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks) < 5 {
		t.Fatalf("the walkthrough has %d sh blocks; want the start, B, A, the config entries, web, DNS and the end", len(blocks))
	}

	bin := t.TempDir()
	testutil.GoBuild(t, bin+string(filepath.Separator), "./cmd/peerd", "./cmd/peerctl")
	testutil.GoBuild(t, filepath.Join(bin, "demo-echo"), "./scripts/echo")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	work := t.TempDir()
	script := "set -euo pipefail\n" + strings.Join(blocks, "")
	cmd := exec.CommandContext(ctx, "bash", "-c", script)
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	// The agents and billing run in the script's process group: whatever
	// happens, the group is stopped at the end.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// A script that stops early leaves the agents holding its output:
	// Run must still return (and the group be stopped below).
	cmd.WaitDelay = 10 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	runErr := cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	}
	logs := func() string {
		var b strings.Builder
		for _, f := range []string{"a.log", "b.log", "a.banner", "b.banner"} {
			data, _ := os.ReadFile(filepath.Join(work, f))
			b.WriteString("--- " + f + " ---\n" + string(data))
		}
		return b.String()
	}
	if runErr != nil {
		t.Fatalf("walkthrough: %v\n%s\n%s", runErr, out.String(), logs())
	}
	text := out.String()
	t.Logf("walkthrough output:\n%s", text)
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`already peered: peering "cluster-b" is (ACTIVE|ESTABLISHING)`),
		regexp.MustCompile(`(?m)^cluster-b +(ACTIVE|ESTABLISHING) +1 +0`),
		regexp.MustCompile(`(?m)^billing +cluster-b`),
		regexp.MustCompile(`"caller": "spiffe://[^"]+/ns/default/dc/dc1/svc/web"`),
		regexp.MustCompile(`(?m)^cluster-a +TERMINATED +0 +0`),
	} {
		if !want.MatchString(text) {
			t.Fatalf("walkthrough output lacks %s:\n%s\n%s", want, text, logs())
		}
	}
	if _, err := exec.LookPath("dig"); err != nil {
		// agent/dns and agent test the same names without dig;
		// CI installs dig, so there the lines must have run.
		if os.Getenv("CI") != "" {
			t.Fatalf("dig is not installed, so the walkthrough's DNS lines did not run (.ci/run installs bind9-dnsutils)")
		}
		t.Logf("dig is not installed: the walkthrough's two DNS lines did not run")
		return
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^240\.0\.0\.1$`),
		regexp.MustCompile(`(?m)^1 1 [0-9]+ 7f000001\.addr\.peerd\.$`),
	} {
		if !want.MatchString(text) {
			t.Fatalf("walkthrough output lacks the DNS answer %s:\n%s\n%s", want, text, logs())
		}
	}
}
