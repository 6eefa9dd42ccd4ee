package vmtests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Kernel is one entry of the test matrix: a Debian meta package whose
// dependency names the current ABI-versioned linux-image package.
type Kernel struct {
	// Name is what -kernel selects ("6.1", "6.12").
	Name string
	// Meta is the Debian meta package resolved with apt-cache depends.
	Meta string
	// Note says what the kernel is in the matrix for.
	Note string
	// Suite, when set, is a Debian suite the host's apt sources do not
	// list (e.g. "bullseye"). The kernel is then resolved and fetched
	// through a private apt configuration under the cache, built from the
	// host's Debian sources with the suite changed; the host's own apt
	// configuration and lists are never touched. "" = the host's apt.
	Suite string
}

// Matrix is the kernel matrix: bullseye's 5.10 (the oldest LTS we support:
// no TCX, sk_lookup since 5.9), bookworm's 6.1 (no TCX: the clsact fallback
// runs) and Debian's 6.12 from bookworm-security (TCX).
var Matrix = []Kernel{
	{Name: "5.10", Meta: "linux-image-amd64", Suite: "bullseye", Note: "bullseye, no TCX"},
	{Name: "6.1", Meta: "linux-image-amd64", Note: "bookworm, no TCX"},
	{Name: "6.12", Meta: "linux-image-6.12-amd64", Note: "bookworm-security, TCX"},
}

// KernelByName returns the matrix entry called name.
func KernelByName(name string) (Kernel, error) {
	var names []string
	for _, k := range Matrix {
		if k.Name == name {
			return k, nil
		}
		names = append(names, k.Name)
	}
	return Kernel{}, fmt.Errorf("unknown kernel %q (the matrix has %s)", name, strings.Join(names, ", "))
}

// Image is an unpacked kernel package in the cache.
type Image struct {
	Kernel  Kernel
	Package string // e.g. linux-image-6.1.0-56-amd64
	Release string // uname -r, e.g. 6.1.0-56-amd64
	Root    string // the unpacked package (boot/, lib/modules/)
	Vmlinuz string // the bzImage
	// Vmlinux is the ELF kernel extracted from Vmlinuz for PVH boot
	// (faster under TCG); empty when extraction failed.
	Vmlinux string
}

// BootKernel is the file passed to QEMU's -kernel.
func (im *Image) BootKernel() string {
	if im.Vmlinux != "" {
		return im.Vmlinux
	}
	return im.Vmlinuz
}

const (
	resolveTimeout  = 30 * time.Second
	downloadTimeout = 5 * time.Minute
)

// runTool runs a host tool with a deadline and returns its stdout; the
// error names the tool and carries its stderr.
func runTool(ctx context.Context, timeout time.Duration, dir, name string, args ...string) ([]byte, error) {
	if _, err := exec.LookPath(name); err != nil {
		return nil, fmt.Errorf("%s is not installed (apt-get install --no-install-recommends %s)", name, debianPackageOf(name))
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() == context.DeadlineExceeded {
		return nil, fmt.Errorf("%s %s: no answer within %s (no network?)", name, strings.Join(args, " "), timeout)
	}
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 2000 {
			msg = "..." + msg[len(msg)-2000:]
		}
		return stdout.Bytes(), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, msg)
	}
	return stdout.Bytes(), nil
}

func debianPackageOf(tool string) string {
	switch tool {
	case "apt-get", "apt-cache":
		return "apt"
	case "dpkg-deb":
		return "dpkg"
	case "depmod", "modprobe":
		return "kmod"
	case "xz":
		return "xz-utils"
	case "qemu-system-x86_64":
		return "qemu-system-x86"
	case "mkfs.ext4":
		return "e2fsprogs"
	}
	return tool
}

// Resolve asks apt which linux-image package the kernel's meta package
// currently depends on. It needs apt's package lists (apt-get update),
// not the network.
func Resolve(ctx context.Context, k Kernel, apt []string) (string, error) {
	out, err := runTool(ctx, resolveTimeout, "", "apt-cache", append(slices.Clone(apt), "depends", k.Meta)...)
	if err != nil {
		return "", fmt.Errorf("resolve kernel %s: %w", k.Name, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		dep, ok := strings.CutPrefix(strings.TrimSpace(line), "Depends: ")
		if ok && strings.HasPrefix(dep, "linux-image-") {
			return strings.TrimSpace(dep), nil
		}
	}
	return "", fmt.Errorf("resolve kernel %s: apt-cache depends %s names no linux-image package (is the suite in apt's sources, and has apt-get update run?)", k.Name, k.Meta)
}

// currentFile records the package last resolved for a kernel, so that a
// machine without apt lists (or with a broken apt) keeps using its cache.
func currentFile(cache string, k Kernel) string {
	return filepath.Join(cache, "kernel-"+k.Name+".current")
}

// Ensure returns the kernel's unpacked image, downloading and unpacking
// it into cache when it is not there yet. Every step is bounded in time.
func Ensure(ctx context.Context, k Kernel, cache string, logf func(string, ...any)) (*Image, error) {
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, err
	}
	apt, rerr := aptOptions(ctx, k, cache, logf)
	var pkg string
	if rerr == nil {
		pkg, rerr = Resolve(ctx, k, apt)
	}
	if rerr != nil {
		b, err := os.ReadFile(currentFile(cache, k))
		if err != nil {
			return nil, rerr
		}
		pkg = strings.TrimSpace(string(b))
		logf("%v; using the cached %s", rerr, pkg)
	}
	dir := filepath.Join(cache, pkg)
	if im, err := openImage(k, pkg, dir); err == nil {
		_ = os.WriteFile(currentFile(cache, k), []byte(pkg+"\n"), 0o644)
		return im, nil
	}
	logf("fetching %s (kernel %s) into %s", pkg, k.Name, cache)
	start := time.Now()
	dl := filepath.Join(cache, "download")
	_ = os.RemoveAll(dl)
	if err := os.MkdirAll(dl, 0o755); err != nil {
		return nil, err
	}
	defer os.RemoveAll(dl)
	args := append(slices.Clone(apt), "-q", "download", pkg)
	if _, err := runTool(ctx, downloadTimeout, dl, "apt-get", args...); err != nil {
		return nil, fmt.Errorf("fetch kernel %s: %w", k.Name, err)
	}
	debs, _ := filepath.Glob(filepath.Join(dl, pkg+"_*.deb"))
	if len(debs) != 1 {
		return nil, fmt.Errorf("fetch kernel %s: apt-get download left %d packages named %s_*.deb", k.Name, len(debs), pkg)
	}
	tmp := dir + ".tmp"
	_ = os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, err
	}
	if _, err := runTool(ctx, 2*time.Minute, "", "dpkg-deb", "-x", debs[0], filepath.Join(tmp, "root")); err != nil {
		return nil, fmt.Errorf("unpack kernel %s: %w", k.Name, err)
	}
	release, err := onlyDir(filepath.Join(tmp, "root", "lib", "modules"))
	if err != nil {
		return nil, fmt.Errorf("unpack kernel %s: %w", k.Name, err)
	}
	if _, err := runTool(ctx, 2*time.Minute, "", "depmod", "-b", filepath.Join(tmp, "root"), release); err != nil {
		return nil, fmt.Errorf("unpack kernel %s: %w", k.Name, err)
	}
	vmlinuz := filepath.Join(tmp, "root", "boot", "vmlinuz-"+release)
	if err := extractVmlinux(ctx, vmlinuz, filepath.Join(tmp, "vmlinux")); err != nil {
		logf("kernel %s: no vmlinux for PVH boot, using the bzImage: %v", k.Name, err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "release"), []byte(release+"\n"), 0o644); err != nil {
		return nil, err
	}
	_ = os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil {
		return nil, err
	}
	logf("fetched %s in %.1fs", pkg, time.Since(start).Seconds())
	im, err := openImage(k, pkg, dir)
	if err != nil {
		return nil, err
	}
	_ = os.WriteFile(currentFile(cache, k), []byte(pkg+"\n"), 0o644)
	return im, nil
}

// Cached returns the kernel's image if the cache already holds it,
// without asking apt or the network.
func Cached(k Kernel, cache string) (*Image, error) {
	b, err := os.ReadFile(currentFile(cache, k))
	if err != nil {
		return nil, fmt.Errorf("kernel %s is not in %s (make vmtest fetches it)", k.Name, cache)
	}
	pkg := strings.TrimSpace(string(b))
	return openImage(k, pkg, filepath.Join(cache, pkg))
}

func openImage(k Kernel, pkg, dir string) (*Image, error) {
	b, err := os.ReadFile(filepath.Join(dir, "release"))
	if err != nil {
		return nil, err
	}
	release := strings.TrimSpace(string(b))
	im := &Image{Kernel: k, Package: pkg, Release: release, Root: filepath.Join(dir, "root")}
	im.Vmlinuz = filepath.Join(im.Root, "boot", "vmlinuz-"+release)
	if _, err := os.Stat(im.Vmlinuz); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, "vmlinux")); err == nil {
		im.Vmlinux = filepath.Join(dir, "vmlinux")
	}
	return im, nil
}

func onlyDir(dir string) (string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	var names []string
	for _, e := range ents {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	if len(names) != 1 {
		return "", fmt.Errorf("%s holds %d module trees, want 1", dir, len(names))
	}
	return names[0], nil
}

// extractVmlinux finds the compressed ELF kernel inside a bzImage (xz on
// Debian's 6.1, zstd on 6.12, gzip elsewhere), like the kernel tree's
// scripts/extract-vmlinux, and writes it to out.
func extractVmlinux(ctx context.Context, vmlinuz, out string) error {
	data, err := os.ReadFile(vmlinuz)
	if err != nil {
		return err
	}
	formats := []struct {
		magic []byte
		tool  string
		args  []string
	}{
		{[]byte{0xfd, '7', 'z', 'X', 'Z', 0}, "xz", []string{"-dc", "--single-stream"}},
		{[]byte{0x28, 0xb5, 0x2f, 0xfd}, "zstd", []string{"-dcq"}},
		{[]byte{0x1f, 0x8b, 0x08}, "gzip", []string{"-dc"}},
	}
	var errs []error
	for _, f := range formats {
		for off := 0; ; {
			i := bytes.Index(data[off:], f.magic)
			if i < 0 {
				break
			}
			off += i
			elf, err := decompress(ctx, f.tool, f.args, data[off:])
			if len(elf) > 4 && string(elf[:4]) == "\x7fELF" {
				return os.WriteFile(out, elf, 0o644)
			}
			if err != nil {
				errs = append(errs, err)
			}
			off++
		}
	}
	return fmt.Errorf("no compressed ELF kernel found in %s: %w", vmlinuz, errors.Join(errs...))
}

func decompress(ctx context.Context, tool string, args []string, in []byte) ([]byte, error) {
	if _, err := exec.LookPath(tool); err != nil {
		return nil, fmt.Errorf("%s is not installed", tool)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, tool, args...)
	cmd.Stdin = bytes.NewReader(in)
	var out bytes.Buffer
	cmd.Stdout = &out
	// Trailing data after the stream makes the tools complain; what
	// matters is whether a complete ELF came out.
	err := cmd.Run()
	return out.Bytes(), err
}
