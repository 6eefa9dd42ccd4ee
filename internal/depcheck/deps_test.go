package depcheck

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// rules is peerd's import policy (DESIGN.md "Layout", STYLE.md "Layout and
// wiring"). Patterns naming our packages are relative to the module root
// ("catalog/..."); patterns whose first element has a dot are full import
// paths of other modules ("github.com/cilium/ebpf/..."). "x/..." matches x
// and everything below it, "..." matches every package of ours. Packages that
// do not exist yet match nothing.
var rules = []rule{
	{
		why:       "only cmd/... may import the agent (its wiring, settings and node parts under agent/)",
		pkgs:      []string{"..."},
		except:    []string{"cmd/...", "agent/..."},
		forbidden: []string{"agent/..."},
	},
	{
		why:       "only cmd/... and the wiring (agent) import the agent's settings (agent/config)",
		pkgs:      []string{"..."},
		except:    []string{"cmd/...", "agent", "agent/config/..."},
		forbidden: []string{"agent/config/..."},
	},
	{
		why: "agent/config (the agent's settings) sits at the wiring floor: it names the parts it configures, " +
			"never the wiring (agent), the HTTP API or the CLI",
		pkgs: []string{"agent/config/..."},
		onlyOurs: []string{"agent/config/...", "catalog/...", "internal/decode", "agent/dns/...",
			"agent/local/...", "agent/checks/...", "l7proxy/...", "peering/...", "agent/admission/...", "internal/jointoken",
			// The allowed origins and hosts of the HTTP API are checked
			// with the parser the API's edge uses.
			"internal/weborigin",
			// The acl block's token secrets are checked by the ACL package's rule.
			"internal/acl",
			// How the agent opens its listening sockets (anew, or taken
			// over from the old process of a reload).
			"internal/sockets"},
	},
	{
		why:  "catalog imports nothing of ours except catalog/..., internal/decode and the node TLS identity (internal/nodetls, internal/identity)",
		pkgs: []string{"catalog/..."},
		// The floors below the cluster have stricter rules of their own.
		except:   []string{"catalog/state/...", "catalog/configentry/..."},
		onlyOurs: []string{"catalog/...", "internal/decode", "internal/nodetls", "internal/identity", "internal/seal"},
	},
	{
		why: "catalog/state (tables, queries, conventions) sits below the cluster: it imports nothing of ours " +
			"but catalog/configentry and leaves, and nothing of raft, memberlist, bbolt or gRPC",
		pkgs:      []string{"catalog/state/..."},
		onlyOurs:  []string{"catalog/state/...", "catalog/configentry/...", "internal/decode", "internal/identity", "internal/acl"},
		forbidden: clusterDeps,
	},
	{
		why:       "catalog/configentry sits below catalog/state: it imports nothing of ours but internal/decode",
		pkgs:      []string{"catalog/configentry/..."},
		onlyOurs:  []string{"catalog/configentry/...", "internal/decode"},
		forbidden: clusterDeps,
	},
	{
		why: "l7proxy/policy decides on state alone (no I/O): it imports nothing of ours but catalog/state, " +
			"catalog/configentry and leaves, and nothing of the cluster",
		pkgs:      []string{"l7proxy/policy/..."},
		onlyOurs:  []string{"l7proxy/policy/...", "catalog/state/...", "catalog/configentry/...", "internal/decode", "internal/identity"},
		forbidden: clusterDeps,
	},
	{
		why:      "internal/decode imports nothing of ours",
		pkgs:     []string{"internal/decode/..."},
		onlyOurs: []string{"internal/decode/..."},
	},
	{
		why:      "internal/identity (SPIFFE naming, PEM, verification and the X.509 mechanics of issuing) is a leaf: it imports nothing of ours",
		pkgs:     []string{"internal/identity/..."},
		onlyOurs: []string{"internal/identity/..."},
	},
	{
		why:      "internal/acl (Consul's rules language and authorizers) is a leaf: it imports nothing of ours but internal/decode",
		pkgs:     []string{"internal/acl/..."},
		onlyOurs: []string{"internal/acl/...", "internal/decode"},
	},
	{
		why:      "internal/seal (encryption at rest) is a leaf: it imports nothing of ours",
		pkgs:     []string{"internal/seal/..."},
		onlyOurs: []string{"internal/seal/..."},
	},
	{
		why:      "internal/sockets (listening sockets, handed over on a reload) is a leaf: it imports nothing of ours",
		pkgs:     []string{"internal/sockets/..."},
		onlyOurs: []string{"internal/sockets/..."},
	},
	{
		why:      "internal/sdnotify (systemd's notify protocol) is a leaf: it imports nothing of ours",
		pkgs:     []string{"internal/sdnotify/..."},
		onlyOurs: []string{"internal/sdnotify/..."},
	},
	{
		why:      "internal/netns (namespace handles, sockets made inside them) is a leaf: it imports nothing of ours but internal/netutil (the namespace cookie)",
		pkgs:     []string{"internal/netns/..."},
		onlyOurs: []string{"internal/netns/...", "internal/netutil"},
	},
	{
		why:      "internal/jointoken (the join credential) is a leaf: it imports nothing of ours",
		pkgs:     []string{"internal/jointoken/..."},
		onlyOurs: []string{"internal/jointoken/..."},
	},
	{
		why:      "internal/nodetls (a node's TLS identity on internal channels) is a leaf beside identity: it imports nothing of ours but internal/identity",
		pkgs:     []string{"internal/nodetls/..."},
		onlyOurs: []string{"internal/nodetls/...", "internal/identity"},
	},
	{
		why:       "internal/ca (the cluster CA) is a leaf beside identity: it knows identity and at most the catalog's state, never the cluster (raft), peering or the terminator",
		pkgs:      []string{"internal/ca/..."},
		onlyOurs:  []string{"internal/ca/...", "internal/identity", "catalog/state/..."},
		forbidden: []string{"github.com/hashicorp/raft/...", "github.com/hashicorp/memberlist/...", "google.golang.org/grpc/..."},
	},
	{
		why:      "peering sits on catalog, identity and the CA; it never reaches up into the API, the CLI or the agent",
		pkgs:     []string{"peering/..."},
		onlyOurs: []string{"peering/...", "catalog/...", "internal/identity", "internal/ca", "internal/nodetls", "internal/decode"},
	},
	{
		why:      "agent/checks and agent/local import nothing of ours except catalog/..., internal/decode and agent/checks",
		pkgs:     []string{"agent/checks/...", "agent/local/..."},
		onlyOurs: []string{"catalog/...", "internal/decode", "agent/checks/...", "agent/local/..."},
	},
	{
		why:       "dataplane and l7proxy never import each other; they meet in the wiring",
		pkgs:      []string{"dataplane/..."},
		forbidden: []string{"l7proxy/..."},
	},
	{
		why:       "dataplane and l7proxy never import each other; they meet in the wiring",
		pkgs:      []string{"l7proxy/..."},
		forbidden: []string{"dataplane/..."},
	},
	{
		why:       "only dataplane/... and bpf/... may import cilium/ebpf",
		pkgs:      []string{"..."},
		except:    []string{"dataplane/...", "bpf/..."},
		forbidden: []string{"github.com/cilium/ebpf/..."},
	},
	{
		why:       "peering, l7proxy and dataplane sit below the HTTP API, the wiring and the CLI",
		pkgs:      []string{"peering/...", "l7proxy/...", "dataplane/..."},
		forbidden: []string{"agent/...", "cmd/peerctl/cli/..."},
	},
	{
		why: "agent/aclresolve compiles tokens from the state: it imports nothing of ours but catalog/state " +
			"(the ACL tables, a server's or a client's mirror) and internal/acl, so the HTTP API and DNS can share it without the cluster",
		pkgs:     []string{"agent/aclresolve/..."},
		onlyOurs: []string{"agent/aclresolve/...", "catalog/state/...", "catalog/configentry/...", "internal/acl", "internal/decode", "internal/identity"},
	},
	{
		why:       "agent/httpapi sits below the wiring and beside the CLI",
		pkgs:      []string{"agent/httpapi/..."},
		forbidden: []string{"agent", "agent/config/...", "cmd/peerctl/cli/..."},
	},
	{
		why:      "cmd/peerctl/cli talks HTTP: it imports nothing of ours except internal/decode",
		pkgs:     []string{"cmd/peerctl/cli/..."},
		onlyOurs: []string{"cmd/peerctl/cli/...", "internal/decode"},
	},
	{
		why:       "the Consul API client is for tests only",
		pkgs:      []string{"..."},
		except:    []string{"internal/testutil/..."},
		forbidden: []string{"github.com/hashicorp/consul/api/..."},
	},
	{
		why:       "internal/testutil is for tests only: production code never imports it",
		pkgs:      []string{"..."},
		except:    []string{"internal/testutil/..."},
		forbidden: []string{"internal/testutil/..."},
	},
	{
		why:      "internal/testutil is a leaf: it imports nothing of ours but internal/netutil (for ErrNotSupported)",
		pkgs:     []string{"internal/testutil/..."},
		onlyOurs: []string{"internal/testutil/...", "internal/netutil"},
	},
	{
		why:      "internal/weborigin (Origin and Host parsing, shared by the API's edge and the settings) is a leaf: it imports nothing of ours",
		pkgs:     []string{"internal/weborigin/..."},
		onlyOurs: []string{"internal/weborigin/..."},
	},
	{
		why:      "internal/cgroupfs (cgroup ids, paths and pod UIDs) is a leaf: it imports nothing of ours but internal/netutil (for ErrNotSupported)",
		pkgs:     []string{"internal/cgroupfs/..."},
		onlyOurs: []string{"internal/cgroupfs/...", "internal/netutil"},
	},
	{
		why:      "internal/netutil (socket options, ErrNotSupported) is a leaf: it imports nothing of ours",
		pkgs:     []string{"internal/netutil/..."},
		onlyOurs: []string{"internal/netutil/..."},
	},
	{
		why:       "only dataplane/..., bpf/..., vmtests/... (the QEMU guest's init), internal/netutil/..., internal/netns/..., internal/sockets/... (fd duplication), internal/sdnotify/... (CLOCK_MONOTONIC) and internal/testutil/... may import golang.org/x/sys/unix",
		pkgs:      []string{"..."},
		except:    []string{"dataplane/...", "bpf/...", "vmtests/...", "internal/netutil/...", "internal/netns/...", "internal/sockets/...", "internal/sdnotify/...", "internal/testutil/..."},
		forbidden: []string{"golang.org/x/sys/unix"},
	},
}

// clusterDeps are the cluster's machinery (replication, gossip, storage,
// transport): the catalog package's business, never its state's.
var clusterDeps = []string{
	"github.com/hashicorp/raft/...",
	"github.com/hashicorp/raft-boltdb/...",
	"github.com/hashicorp/memberlist/...",
	"go.etcd.io/bbolt/...",
	"github.com/boltdb/bolt/...",
	"google.golang.org/grpc/...",
}

// rule is one line of the import policy. It covers the packages of ours that
// match pkgs and none of except. A covered package may import nothing that
// matches forbidden and, when onlyOurs is non-nil, nothing of ours that
// matches none of onlyOurs.
type rule struct {
	why       string // the reason, printed with every violation
	pkgs      []string
	except    []string
	forbidden []string
	onlyOurs  []string
}

func (r rule) covers(pkg string) bool {
	return matchAny(r.pkgs, pkg, true) && !matchAny(r.except, pkg, true)
}

func (r rule) forbids(imp string, ours bool) bool {
	if matchAny(r.forbidden, imp, ours) {
		return true
	}
	return ours && r.onlyOurs != nil && !matchAny(r.onlyOurs, imp, true)
}

// matchAny reports whether name matches one of patterns. ours says whether
// name is one of our packages (module-relative) or another module's (full
// path); a pattern only matches names of its own kind.
func matchAny(patterns []string, name string, ours bool) bool {
	for _, p := range patterns {
		if ourPattern(p) == ours && match(p, name) {
			return true
		}
	}
	return false
}

// ourPattern reports whether pattern names our packages: it is "..." or its
// first path element has no dot.
func ourPattern(pattern string) bool {
	if pattern == "..." {
		return true
	}
	first, _, _ := strings.Cut(pattern, "/")
	return !strings.Contains(first, ".")
}

func match(pattern, name string) bool {
	if pattern == "..." {
		return true
	}
	if prefix, ok := strings.CutSuffix(pattern, "/..."); ok {
		return name == prefix || strings.HasPrefix(name, prefix+"/")
	}
	return name == pattern
}

// goPackage is the part of `go list -json` the checker reads.
type goPackage struct {
	ImportPath string
	Imports    []string // of the non-test files
	Module     *struct{ Path string }
	Error      *struct{ Err string }
}

// violation is one import that breaks one rule. Pkg and Import are
// module-relative for our packages.
type violation struct {
	Pkg, Import, Why string
}

func (v violation) String() string {
	return fmt.Sprintf("%s imports %s: %s", v.Pkg, v.Import, v.Why)
}

// relative returns path relative to module and true for our packages, and
// path unchanged and false for any other.
func relative(module, path string) (string, bool) {
	if rel, ok := strings.CutPrefix(path, module+"/"); ok {
		return rel, true
	}
	if path == module {
		return ".", true
	}
	return path, false
}

// check returns every import of our packages in pkgs that a rule forbids,
// in the order of pkgs, their imports and rules.
func check(module string, pkgs []goPackage, rules []rule) []violation {
	var out []violation
	for _, p := range pkgs {
		rel, ours := relative(module, p.ImportPath)
		if !ours {
			continue
		}
		for _, imp := range p.Imports {
			name, impOurs := relative(module, imp)
			for _, r := range rules {
				if r.covers(rel) && r.forbids(name, impOurs) {
					out = append(out, violation{Pkg: rel, Import: name, Why: r.why})
				}
			}
		}
	}
	return out
}

// moduleRoot walks up from the working directory to the directory holding
// go.mod.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}

// goosList are the platforms whose imports are checked: linux, the daemon's,
// and darwin, where the *_other.go stubs build (make cross).
var goosList = []string{"linux", "darwin"}

// listPackages runs `go list -e -json ./...` in root for goos. -e keeps
// packages that do not build yet: their imports are listed all the same.
func listPackages(t *testing.T, root, goos string) []goPackage {
	t.Helper()
	cmd := exec.Command("go", "list", "-e", "-json=ImportPath,Imports,Module,Error", "./...")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS="+goos)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	var pkgs []goPackage
	dec := json.NewDecoder(&stdout)
	for {
		var p goPackage
		err := dec.Decode(&p)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func TestImports(t *testing.T) {
	root := moduleRoot(t)
	for _, goos := range goosList {
		t.Run(goos, func(t *testing.T) {
			pkgs := listPackages(t, root, goos)
			if len(pkgs) == 0 || pkgs[0].Module == nil || pkgs[0].Module.Path == "" {
				t.Fatal("go list found no packages of a module")
			}
			module := pkgs[0].Module.Path
			for _, p := range pkgs {
				if p.Error != nil {
					// Not this test's business: the build and the
					// package's own tests report it. The imports it has
					// are still checked.
					t.Logf("note: %s: %s", p.ImportPath, p.Error.Err)
				}
			}
			for _, v := range check(module, pkgs, rules) {
				t.Error(v)
			}
		})
	}
}

func TestRulesWellFormed(t *testing.T) {
	for i, r := range rules {
		if r.why == "" || len(r.pkgs) == 0 || (len(r.forbidden) == 0 && r.onlyOurs == nil) {
			t.Errorf("rules[%d]: want a reason, packages and forbidden or onlyOurs: %+v", i, r)
		}
		for _, p := range append(append([]string{}, r.pkgs...), r.except...) {
			if !ourPattern(p) {
				t.Errorf("rules[%d]: importer pattern %q is not one of ours", i, p)
			}
		}
		for _, p := range append(append(append([]string{}, r.pkgs...), r.except...), append(r.forbidden, r.onlyOurs...)...) {
			if p == "" || strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") ||
				(strings.Contains(p, "...") && p != "..." && !strings.HasSuffix(p, "/...")) {
				t.Errorf("rules[%d]: malformed pattern %q", i, p)
			}
		}
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"...", "catalog", true},
		{"catalog/...", "catalog", true},
		{"catalog/...", "catalog/pbcatalog", true},
		{"catalog/...", "catalogue", false},
		{"internal/decode", "internal/decode", true},
		{"internal/decode", "internal/decode/x", false},
		{"github.com/cilium/ebpf/...", "github.com/cilium/ebpf", true},
		{"github.com/cilium/ebpf/...", "github.com/cilium/ebpf/link", true},
		{"github.com/cilium/ebpf/...", "github.com/cilium/ebpfx", false},
	}
	for _, tt := range tests {
		t.Run(tt.pattern+" "+tt.name, func(t *testing.T) {
			if got := match(tt.pattern, tt.name); got != tt.want {
				t.Errorf("match(%q, %q) = %v, want %v", tt.pattern, tt.name, got, tt.want)
			}
		})
	}
}

// TestCheck feeds the checker fake packages: a tree that keeps every rule,
// and one violation of each rule.
func TestCheck(t *testing.T) {
	const mod = "example.com/peerd"
	pkg := func(path string, imports ...string) goPackage {
		full := func(p string) string {
			if ourPattern(p) {
				return mod + "/" + p
			}
			return p
		}
		p := goPackage{ImportPath: full(path)}
		for _, imp := range imports {
			p.Imports = append(p.Imports, full(imp))
		}
		return p
	}
	clean := []goPackage{
		// Standard library imports are never ours (pkg would make them so).
		{ImportPath: mod + "/catalog/configentry", Imports: []string{"context", "net/http", mod + "/internal/decode"}},
		{ImportPath: mod + "/cmd/peerctl/cli", Imports: []string{"context", "net/http"}},
		pkg("cmd/peerd", "agent", "agent/config"),
		pkg("agent/config", "catalog", "agent/checks", "internal/decode", "agent/dns", "agent/local", "l7proxy", "peering"),
		pkg("cmd/peerctl", "cmd/peerctl/cli"),
		pkg("agent", "catalog", "agent/httpapi", "dataplane", "l7proxy", "peering", "agent/local"),
		pkg("agent/wire", "agent"),
		pkg("catalog", "catalog/pbcatalog", "internal/decode", "github.com/hashicorp/raft", "google.golang.org/grpc"),
		pkg("catalog/pbcatalog", "google.golang.org/protobuf/proto"),
		pkg("catalog/state", "catalog/configentry", "internal/decode", "github.com/hashicorp/go-memdb"),
		pkg("l7proxy/policy", "catalog/state", "catalog/configentry", "github.com/hashicorp/go-bexpr"),
		pkg("agent/checks", "catalog", "internal/decode"),
		pkg("agent/local", "catalog", "agent/checks", "internal/decode"),
		pkg("cmd/peerctl/cli", "internal/decode", "github.com/spf13/cobra"),
		pkg("agent/httpapi", "catalog", "agent/local", "peering"),
		pkg("dataplane", "bpf", "catalog", "github.com/cilium/ebpf/link", "golang.org/x/sys/unix"),
		pkg("bpf", "github.com/cilium/ebpf"),
		pkg("l7proxy", "catalog", "internal/identity"),
		pkg("peering", "catalog", "internal/identity"),
		pkg("internal/netutil/origdst", "golang.org/x/sys/unix"),
		pkg("internal/testutil", "internal/netutil", "golang.org/x/sys/unix", "github.com/hashicorp/consul/api"),
		pkg("internal/netutil", "golang.org/x/sys/unix"),
		// Not ours: never checked.
		pkg("github.com/other/thing", "github.com/cilium/ebpf", "golang.org/x/sys/unix"),
	}
	tests := []struct {
		name string
		pkgs []goPackage
		want []string // "pkg imports import"
	}{
		{name: "clean", pkgs: clean},
		{
			name: "agent imported outside cmd",
			pkgs: []goPackage{pkg("l7proxy", "agent/wire")},
			want: []string{"l7proxy imports agent/wire", "l7proxy imports agent/wire"},
		},
		{
			name: "the agent's config imports the wiring and the HTTP API",
			pkgs: []goPackage{pkg("agent/config", "catalog", "agent", "agent/httpapi")},
			want: []string{"agent/config imports agent", "agent/config imports agent/httpapi"},
		},
		{
			name: "config imported outside cmd and the agent",
			pkgs: []goPackage{pkg("agent/httpapi", "agent/config")},
			want: []string{"agent/httpapi imports agent/config", "agent/httpapi imports agent/config"},
		},
		{
			name: "catalog imports peering",
			pkgs: []goPackage{pkg("catalog/configentry", "internal/decode", "peering")},
			want: []string{"catalog/configentry imports peering"},
		},
		{
			name: "state imports the cluster",
			pkgs: []goPackage{pkg("catalog/state", "catalog", "catalog/pbcatalog", "internal/identity",
				"github.com/hashicorp/raft", "github.com/hashicorp/memberlist", "google.golang.org/grpc/codes")},
			want: []string{"catalog/state imports catalog", "catalog/state imports catalog/pbcatalog",
				"catalog/state imports github.com/hashicorp/raft", "catalog/state imports github.com/hashicorp/memberlist",
				"catalog/state imports google.golang.org/grpc/codes"},
		},
		{
			name: "configentry imports state",
			pkgs: []goPackage{pkg("catalog/configentry", "catalog/state", "go.etcd.io/bbolt")},
			want: []string{"catalog/configentry imports catalog/state", "catalog/configentry imports go.etcd.io/bbolt"},
		},
		{
			name: "policy imports the cluster",
			pkgs: []goPackage{pkg("l7proxy/policy", "catalog/state", "catalog", "github.com/hashicorp/raft-boltdb/v2")},
			want: []string{"l7proxy/policy imports catalog", "l7proxy/policy imports github.com/hashicorp/raft-boltdb/v2"},
		},
		{
			name: "decode imports catalog",
			pkgs: []goPackage{pkg("internal/decode", "catalog")},
			want: []string{"internal/decode imports catalog"},
		},
		{
			name: "local imports httpapi",
			pkgs: []goPackage{pkg("agent/local", "catalog", "agent/httpapi")},
			want: []string{"agent/local imports agent/httpapi"},
		},
		{
			name: "checks imports identity",
			pkgs: []goPackage{pkg("agent/checks", "internal/identity")},
			want: []string{"agent/checks imports internal/identity"},
		},
		{
			name: "dataplane and l7proxy import each other",
			pkgs: []goPackage{pkg("dataplane", "l7proxy/outbound"), pkg("l7proxy/inbound", "dataplane")},
			want: []string{"dataplane imports l7proxy/outbound", "l7proxy/inbound imports dataplane"},
		},
		{
			name: "ebpf outside dataplane and bpf",
			pkgs: []goPackage{pkg("l7proxy", "github.com/cilium/ebpf"), pkg("agent/httpapi", "github.com/cilium/ebpf/link")},
			want: []string{"l7proxy imports github.com/cilium/ebpf", "agent/httpapi imports github.com/cilium/ebpf/link"},
		},
		{
			name: "peering imports the cli and the agent",
			pkgs: []goPackage{pkg("peering", "cmd/peerctl/cli", "agent")},
			// Each import breaks the "only catalog and identity" rule and
			// the "never the API, CLI or agent" rule; agent also
			// the "only cmd" rule.
			want: []string{"peering imports cmd/peerctl/cli", "peering imports cmd/peerctl/cli",
				"peering imports agent", "peering imports agent", "peering imports agent"},
		},
		{
			name: "httpapi imports the cli",
			pkgs: []goPackage{pkg("agent/httpapi", "cmd/peerctl/cli")},
			want: []string{"agent/httpapi imports cmd/peerctl/cli"},
		},
		{
			name: "cli imports catalog",
			pkgs: []goPackage{pkg("cmd/peerctl/cli", "internal/decode", "catalog")},
			want: []string{"cmd/peerctl/cli imports catalog"},
		},
		{
			name: "consul api in production code",
			pkgs: []goPackage{pkg("agent/httpapi", "github.com/hashicorp/consul/api")},
			want: []string{"agent/httpapi imports github.com/hashicorp/consul/api"},
		},
		{
			name: "testutil in production code, and testutil above a leaf",
			pkgs: []goPackage{pkg("l7proxy", "internal/testutil"), pkg("internal/testutil", "catalog")},
			want: []string{"l7proxy imports internal/testutil", "internal/testutil imports catalog"},
		},
		{
			name: "netutil imports the dataplane",
			pkgs: []goPackage{pkg("internal/netutil", "dataplane")},
			want: []string{"internal/netutil imports dataplane"},
		},
		{
			name: "x/sys/unix outside the allowed packages",
			pkgs: []goPackage{pkg("catalog", "golang.org/x/sys/unix"), pkg("l7proxy", "golang.org/x/sys/unix")},
			want: []string{
				"catalog imports golang.org/x/sys/unix", // onlyOurs does not cover other modules
				"l7proxy imports golang.org/x/sys/unix",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, v := range check(mod, tt.pkgs, rules) {
				got = append(got, v.Pkg+" imports "+v.Import)
				if v.Why == "" {
					t.Errorf("violation %q has no reason", v)
				}
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got violations\n\t%s\nwant\n\t%s", strings.Join(got, "\n\t"), strings.Join(tt.want, "\n\t"))
			}
		})
	}
}
