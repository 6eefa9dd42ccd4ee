package vmtests

import (
	"context"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// InitPackage is the guest init's import path.
const InitPackage = "github.com/peerd/peerd/vmtests/cmd/vminit"

// BuildStatic builds a Go package as a static binary (CGO_ENABLED=0), as
// the guest has no C library. dir is where go build runs (inside the
// module).
func BuildStatic(ctx context.Context, dir, pkg, out string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v: %s", pkg, err, strings.TrimSpace(string(b)))
	}
	return nil
}

// ModuleRoot returns the directory of the go.mod enclosing dir.
func ModuleRoot(dir string) (string, error) {
	d, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("no go.mod above %s", dir)
		}
		d = parent
	}
}

// DefaultCache is the kernel cache of the module around dir: .vmcache at
// its root (named in .gitignore), or $PEERD_VMCACHE.
func DefaultCache(dir string) string {
	if c := os.Getenv("PEERD_VMCACHE"); c != "" {
		return c
	}
	if root, err := ModuleRoot(dir); err == nil {
		return filepath.Join(root, ".vmcache")
	}
	return filepath.Join(os.TempDir(), "peerd-vmcache")
}

// libDirs are where the host's dynamic linker finds libraries.
var libDirs = []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"}

// SharedLibs returns the dynamic loader and the shared libraries a binary
// needs (transitively), at their host paths, so that a test binary built
// with cgo (go test's default) runs in the guest. A static binary needs
// none.
func SharedLibs(binary string) ([]File, error) {
	var files []File
	seen := map[string]bool{}
	var add func(path string, isBinary bool) error
	add = func(path string, isBinary bool) error {
		f, err := elf.Open(path)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		defer f.Close()
		if isBinary {
			for _, p := range f.Progs {
				if p.Type != elf.PT_INTERP {
					continue
				}
				b, err := io.ReadAll(p.Open())
				if err != nil {
					return err
				}
				interp := strings.TrimRight(string(b), "\x00")
				if err := addFile(&files, seen, interp); err != nil {
					return err
				}
			}
		}
		libs, err := f.ImportedLibraries()
		if err != nil {
			return nil // no dynamic section: static
		}
		for _, lib := range libs {
			found := ""
			for _, d := range libDirs {
				if _, err := os.Stat(filepath.Join(d, lib)); err == nil {
					found = filepath.Join(d, lib)
					break
				}
			}
			if found == "" {
				return fmt.Errorf("%s needs %s, which is not in %s", path, lib, strings.Join(libDirs, ", "))
			}
			if seen[found] {
				continue
			}
			if err := addFile(&files, seen, found); err != nil {
				return err
			}
			if err := add(found, false); err != nil {
				return err
			}
		}
		return nil
	}
	return files, add(binary, true)
}

func addFile(files *[]File, seen map[string]bool, path string) error {
	if seen[path] {
		return nil
	}
	seen[path] = true
	b, err := os.ReadFile(path) // follows symlinks
	if err != nil {
		return err
	}
	*files = append(*files, File{Path: strings.TrimPrefix(path, "/"), Mode: 0o755, Data: b})
	return nil
}
