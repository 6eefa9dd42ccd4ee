package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/peerd/peerd/internal/testutil"
)

// TestDemoWithRealProcesses runs scripts/demo.sh (what `make demo` runs)
// against freshly built binaries: two real peerd processes peered, web in
// cluster A calling billing in cluster B through both terminators, the
// intention switched to deny. It is the end-to-end test with real
// processes; the in-process tests are in agent.
func TestDemoWithRealProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries and runs two agents: skipped with -short")
	}
	for _, tool := range []string{"bash", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the demo needs %s: %v", tool, err)
		}
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	testutil.GoBuild(t, bin+string(filepath.Separator), "./cmd/peerd", "./cmd/peerctl")
	testutil.GoBuild(t, filepath.Join(bin, "demo-echo"), "./scripts/echo")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	demo := exec.CommandContext(ctx, "bash", "scripts/demo.sh")
	demo.Dir = root
	demo.Env = append(os.Environ(), "PEERD_BIN="+bin, "PEERD_DEMO_DIR="+filepath.Join(t.TempDir(), "demo"))
	var out bytes.Buffer
	demo.Stdout, demo.Stderr = &out, &out
	if err := demo.Run(); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	text := out.String()
	for _, want := range []string{
		`billing (in cluster B) saw the caller: spiffe://`,
		`/ns/default/dc/dc1/svc/web`,
		"HTTP/1.1 403 Forbidden",
		`peerd_proxy_intention_denials_total{peer="cluster-a",service="billing",source="web"}`,
		"both agents and billing stopped cleanly",
	} {
		if !strings.Contains(text, want) {
			t.Fatalf("demo output lacks %q:\n%s", want, text)
		}
	}
}
