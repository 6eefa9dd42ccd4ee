package vmtests

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// A systemd guest: a Debian root file system built from Debian's packages
// with mmdebstrap, the kernel's modules copied in, made into an ext4 image
// (mkfs.ext4 -d, no loop mount) and cached in the kernel cache beside the
// kernels. vminit mounts it as the new root and executes systemd there
// (GuestConfig.SwitchRoot).

// RootfsSuite is the Debian suite of the systemd guest.
const RootfsSuite = "bookworm"

// RootfsPackages are installed on top of mmdebstrap's minbase variant:
// systemd as PID 1 (systemd-sysv), D-Bus for systemctl and systemd-analyze,
// bpftool to see what is attached, iproute2 for the dataplane's routes and
// kmod for the kernel modules.
var RootfsPackages = []string{"systemd", "systemd-sysv", "dbus", "bpftool", "iproute2", "kmod"}

// RootfsTarget is the systemd unit the guest boots into (systemd.unit=):
// basic.target and SystemdTestUnit, nothing else of multi-user.target.
const RootfsTarget = "peerd-vmtest.target"

// SystemdTestUnit runs the guest side of a systemd test: it mounts the
// second drive (/dev/vdb, the payload) read-only on /vmtest and runs
// /vmtest/run there, its output on the serial console.
const SystemdTestUnit = "peerd-vmtest.service"

// rootfsFiles are written into the root file system; they are part of the
// cache key, so changing one builds a new image.
var rootfsFiles = map[string]string{
	"etc/systemd/system/" + RootfsTarget: `[Unit]
Description=peerd vmtest: basic system and the test
Requires=basic.target ` + SystemdTestUnit + `
After=basic.target
AllowIsolate=yes
`,
	"etc/systemd/system/" + SystemdTestUnit: `[Unit]
Description=peerd vmtest: the guest side of a test, from /dev/vdb
After=basic.target

[Service]
Type=exec
ExecStart=/bin/sh -c 'mkdir -p /vmtest && mount -o ro /dev/vdb /vmtest && cd /vmtest && exec ./run'
StandardInput=null
StandardOutput=tty
StandardError=inherit
TTYPath=/dev/ttyS0
TTYReset=no
TTYVHangup=no
`,
	"etc/hostname": "peerd-vm\n",
	"etc/hosts":    "127.0.0.1 localhost\n127.0.1.1 peerd-vm\n::1 localhost ip6-localhost ip6-loopback\n",
	"etc/fstab":    "# the root is mounted by vminit (ext4, read-write)\n",
}

// rootfsMasked are units of the Debian base that the test never needs and
// that cost boot time under TCG.
var rootfsMasked = []string{
	"apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer", "e2scrub_reap.service",
	"fstrim.timer", "systemd-tmpfiles-clean.timer", "dpkg-db-backup.timer",
	"systemd-pstore.service", "systemd-firstboot.service", "getty.target", "serial-getty@ttyS0.service",
}

// Rootfs is a cached root file system image.
type Rootfs struct {
	// Path is the ext4 image; attach it with Drive.Snapshot so that the
	// cached image is never written.
	Path string
	// Built: this call built the image (else it came from the cache), in
	// BuildTime.
	Built     bool
	BuildTime time.Duration
}

func rootfsKey(im *Image) string {
	h := sha256.New()
	fmt.Fprintf(h, "v1 %s %s %s\n", RootfsSuite, strings.Join(RootfsPackages, ","), im.Release)
	for _, name := range slices.Sorted(maps.Keys(rootfsFiles)) {
		fmt.Fprintf(h, "%s\n%s\n", name, rootfsFiles[name])
	}
	fmt.Fprintln(h, strings.Join(rootfsMasked, ","))
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// EnsureRootfs returns the systemd guest's root file system for the
// kernel im, building it into cache when it is not there: mmdebstrap
// (root: the files must belong to root in the image), the kernel's
// modules, the files above, mkfs.ext4 -d.
func EnsureRootfs(ctx context.Context, cache string, im *Image, logf func(string, ...any)) (*Rootfs, error) {
	out := filepath.Join(cache, fmt.Sprintf("rootfs-%s-%s-%s.ext4", RootfsSuite, im.Release, rootfsKey(im)))
	if _, err := os.Stat(out); err == nil {
		return &Rootfs{Path: out}, nil
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("building the %s root file system needs root (mmdebstrap, files owned by root)", RootfsSuite)
	}
	start := time.Now()
	logf("building the %s root file system for kernel %s into %s", RootfsSuite, im.Release, out)
	tmp, err := os.MkdirTemp(cache, "rootfs-build-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	dir := filepath.Join(tmp, "root")
	args := []string{
		"--variant=minbase", "--include=" + strings.Join(RootfsPackages, ","),
		"--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-exclude=/usr/share/man/*",
		"--dpkgopt=path-exclude=/usr/share/locale/*", "--dpkgopt=path-exclude=/usr/share/info/*",
		RootfsSuite, dir,
	}
	if _, err := runTool(ctx, 10*time.Minute, "", "mmdebstrap", args...); err != nil {
		return nil, fmt.Errorf("root file system: %w", err)
	}
	// bookworm merges /usr: lib is a relative link to usr/lib.
	modules := filepath.Join(dir, "usr", "lib", "modules")
	if fi, err := os.Lstat(filepath.Join(dir, "lib")); err == nil && fi.Mode()&os.ModeSymlink == 0 {
		modules = filepath.Join(dir, "lib", "modules")
	}
	if err := os.MkdirAll(modules, 0o755); err != nil {
		return nil, err
	}
	if _, err := runTool(ctx, 5*time.Minute, "", "cp", "-a", filepath.Join(im.Root, "lib", "modules", im.Release), modules+"/"); err != nil {
		return nil, fmt.Errorf("root file system: kernel modules: %w", err)
	}
	for name, text := range rootfsFiles {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			return nil, err
		}
	}
	for _, u := range rootfsMasked {
		p := filepath.Join(dir, "etc", "systemd", "system", u)
		_ = os.Remove(p)
		if err := os.Symlink("/dev/null", p); err != nil {
			return nil, err
		}
	}
	def := filepath.Join(dir, "etc", "systemd", "system", "default.target")
	_ = os.Remove(def)
	if err := os.Symlink(RootfsTarget, def); err != nil {
		return nil, err
	}
	if err := MakeExt4(ctx, dir, out+".tmp", 512); err != nil {
		return nil, fmt.Errorf("root file system: %w", err)
	}
	if err := os.Rename(out+".tmp", out); err != nil {
		return nil, err
	}
	took := time.Since(start)
	logf("built the root file system in %.1fs", took.Seconds())
	return &Rootfs{Path: out, Built: true, BuildTime: took}, nil
}

// MakeExt4 makes an ext4 image of dir's contents at out (mkfs.ext4 -d),
// with spareMB free beyond what dir holds.
func MakeExt4(ctx context.Context, dir, out string, spareMB int) error {
	du, err := runTool(ctx, 2*time.Minute, "", "du", "-sm", dir)
	if err != nil {
		return err
	}
	f := strings.Fields(string(du))
	if len(f) == 0 {
		return fmt.Errorf("du -sm %s: no size", dir)
	}
	used, err := strconv.Atoi(f[0])
	if err != nil {
		return fmt.Errorf("du -sm %s: %w", dir, err)
	}
	_ = os.Remove(out)
	size := strconv.Itoa(used*5/4+spareMB) + "M"
	if _, err := runTool(ctx, 5*time.Minute, "", "mkfs.ext4", "-q", "-F", "-E", "root_owner=0:0", "-d", dir, out, size); err != nil {
		return err
	}
	return nil
}
