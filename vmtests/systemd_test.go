package vmtests

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var systemdFlag = flag.Bool("systemd", false, "run TestSystemdInstall: a Debian guest with systemd under QEMU (make vmtest-systemd)")

// SystemdKernel is the kernel of the systemd guest: bookworm's own.
const SystemdKernel = "6.1"

// systemdModules are what vminit loads to mount the root file system
// (virtio-blk, ext4); the guest's own modules are in the root's
// /lib/modules.
var systemdModules = []string{"virtio_pci", "virtio_blk", "ext4", "crc32c_generic"}

// maxExposure is systemd-analyze security's score of the running
// peerd.service (systemd 252) that the unit may not exceed: its score with
// the system call filter (it was 4.3 before, offline; see
// deploy/systemd/README.md).
const maxExposure = 3.0

// capsOfUnit are the unit's AmbientCapabilities= and
// CapabilityBoundingSet=: CAP_NET_ADMIN 12, CAP_SYS_RESOURCE 24,
// CAP_PERFMON 38, CAP_BPF 39.
var capsOfUnit = []int{12, 24, 38, 39}

// TestSystemdInstall boots a Debian bookworm guest with systemd as PID 1
// and runs the README's install steps in it word for word (see
// ParseInstallSteps), then vmtests/cmd/vmsystemd's checks of the running
// unit: credentials, the dataplane in the unit's cgroup, a reload under
// load, systemd-analyze security, stop and cleanup.
func TestSystemdInstall(t *testing.T) {
	if !*systemdFlag {
		t.Skip("boots a systemd guest (minutes): run with -systemd, as make vmtest-systemd does")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: mmdebstrap builds the root file system as root")
	}
	for _, tool := range []string{"qemu-system-x86_64", "mmdebstrap", "mkfs.ext4", "modprobe", "make"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed: apt-get install --no-install-recommends %s", tool, debianPackageOf(tool))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	wd, _ := os.Getwd()
	root, err := ModuleRoot(wd)
	if err != nil {
		t.Fatal(err)
	}
	cache := DefaultCache(root)
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	deployReadme, err := os.ReadFile(filepath.Join(root, "deploy", "systemd", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	steps, err := ParseInstallSteps(readme, deployReadme)
	if err != nil {
		t.Fatal(err)
	}

	// The build machine's steps run here, in the tree.
	t.Logf("build steps, in %s:\n%s", root, Script(steps.Build))
	build := exec.CommandContext(ctx, "sh", "-c", string(Script(steps.Build)))
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("the README's build steps: %v:\n%s", err, out)
	}

	k, err := KernelByName(SystemdKernel)
	if err != nil {
		t.Fatal(err)
	}
	im, err := Ensure(ctx, k, cache, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	rfs, err := EnsureRootfs(ctx, cache, im, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	if rfs.Built {
		t.Logf("FIGURE rootfs_build=%.1fs (empty cache)", rfs.BuildTime.Seconds())
	} else {
		t.Logf("FIGURE rootfs_build=cached (%s)", filepath.Base(rfs.Path))
	}

	tmp := t.TempDir()
	initBin := filepath.Join(tmp, "vminit")
	if err := BuildStatic(ctx, root, InitPackage, initBin); err != nil {
		t.Fatal(err)
	}
	payload := filepath.Join(tmp, "payload")
	if err := BuildStatic(ctx, root, "github.com/peerd/peerd/vmtests/cmd/vmsystemd", filepath.Join(payload, "run")); err != nil {
		t.Fatal(err)
	}
	// The tree as the host steps use it: bin/ and deploy/systemd/.
	for _, d := range []string{"bin", "deploy/systemd"} {
		if err := os.MkdirAll(filepath.Join(payload, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"bin/peerd", "bin/peerctl"} {
		copyFile(t, filepath.Join(root, f), filepath.Join(payload, f), 0o755)
	}
	ents, err := os.ReadDir(filepath.Join(root, "deploy", "systemd"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Type().IsRegular() {
			copyFile(t, filepath.Join(root, "deploy", "systemd", e.Name()), filepath.Join(payload, "deploy", "systemd", e.Name()), 0o644)
		}
	}
	cfg, _ := json.Marshal(map[string]any{"max_exposure": maxExposure, "caps": capsOfUnit})
	for name, data := range map[string][]byte{"install.sh": Script(steps.Host), "start.sh": Script(steps.Start), "config.json": cfg} {
		if err := os.WriteFile(filepath.Join(payload, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("host steps (install.sh):\n%s\nstart steps (start.sh):\n%s", Script(steps.Host), Script(steps.Start))
	payloadImg := filepath.Join(tmp, "payload.ext4")
	if err := MakeExt4(ctx, payload, payloadImg, 16); err != nil {
		t.Fatal(err)
	}

	lw := &lineLogger{t: t}
	defer lw.flush()
	res, err := Run(ctx, VM{
		Image: im, Init: initBin, Modules: systemdModules,
		Guest:      GuestConfig{Args: []string{"/lib/systemd/systemd"}, SwitchRoot: "/dev/vda"},
		Drives:     []Drive{{Path: rfs.Path, Snapshot: true}, {Path: payloadImg, Snapshot: true}},
		KernelArgs: []string{"systemd.show_status=false", "systemd.unit=" + RootfsTarget},
		MemoryMB:   1536, Timeout: 12 * time.Minute,
		Output: lw, Log: lw,
	})
	lw.flush()
	if res != nil {
		t.Logf("FIGURE vm_boot_to_init=%.1fs vm_total=%.1fs", res.Boot.Seconds(), res.Total.Seconds())
	}
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 0 {
		t.Fatalf("the guest checks failed (exit %d): see the vmsystemd: FAIL lines above", res.ExitCode)
	}
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, mode); err != nil {
		t.Fatal(err)
	}
}

// lineLogger passes the guest's console to t.Log, line by line.
type lineLogger struct {
	t   *testing.T
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	for {
		i := bytes.IndexByte(l.buf.Bytes(), '\n')
		if i < 0 {
			return len(p), nil
		}
		line := string(l.buf.Next(i + 1))
		l.t.Log(strings.TrimRight(line, "\n"))
	}
}

func (l *lineLogger) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buf.Len() > 0 {
		l.t.Log(l.buf.String())
		l.buf.Reset()
	}
}
