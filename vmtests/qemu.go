package vmtests

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Markers printed by the guest init (vmtests/cmd/vminit).
const (
	markerStart = "VMINIT-START"
	markerExit  = "VMEXIT="
)

// Exit codes of Run's callers for failures of the harness or the VM, as
// opposed to the guest command's own code.
const (
	ExitNoMarker = 125 // the guest never reported an exit code (panic, crash)
	ExitTimeout  = 124 // the guest command or the whole VM timed out
)

// VM describes one run: which kernel, what to run inside, how long.
type VM struct {
	Image *Image
	// Init is the static guest init binary (vmtests/cmd/vminit).
	Init string
	// Modules are loaded in the guest with their dependencies
	// (DefaultModules when nil).
	Modules []string
	// Files are extra files of the initramfs (the test binary...).
	Files []File
	Guest GuestConfig
	// Drives are virtio block devices, /dev/vda, /dev/vdb... in order.
	Drives []Drive
	// KernelArgs are appended to the kernel command line (systemd.unit=).
	KernelArgs []string
	// Timeout bounds the whole VM, boot included; the guest init's own
	// timeout (Guest.TimeoutSec) should be shorter so that it can print
	// the kernel log before the host kills QEMU.
	Timeout time.Duration
	// QEMU is the emulator binary (qemu-system-x86_64 when empty); Accel
	// is "tcg" when empty: the stock kernels cannot run on this host's
	// KVM. MemoryMB and CPUs default to 1024 and 1: with two vCPUs under
	// TCG the 6.12 guest sometimes oopsed on an int3 in sched_clock_cpu
	// while patching kernel text across CPUs, killing the run.
	QEMU     string
	Accel    string
	MemoryMB int
	CPUs     int
	// Output receives the guest command's output (the console from the
	// init's start marker to its exit marker, without \r), line by line.
	Output io.Writer
	// Log receives the harness's own messages (and the init's).
	Log io.Writer
}

// Drive is a raw disk image attached as a virtio block device.
type Drive struct {
	Path string
	// Snapshot: the guest's writes go to a temporary file QEMU drops at
	// exit, so a cached image is never changed.
	Snapshot bool
}

// Result is how a run ended.
type Result struct {
	// ExitCode is the guest command's exit code, or ExitNoMarker /
	// ExitTimeout when the guest did not report one.
	ExitCode int
	// Boot is the time from starting QEMU to the init's first line.
	Boot time.Duration
	// GuestUptime is the guest kernel's uptime when init started.
	GuestUptime string
	// Total is the wall time of the whole VM.
	Total time.Duration
	// Reported: the init printed the command's exit code.
	Reported bool
	TimedOut bool
	Panicked bool
	// Console is the whole serial console, for post-mortems.
	Console []byte
}

var panicRe = regexp.MustCompile(`Kernel panic - not syncing|BUG: kernel NULL pointer|Oops: |general protection fault`)

// Run boots the VM and returns how the guest command ended. The error is
// non-nil when the VM could not run the command to the end (no QEMU, a
// kernel that does not boot, a panic, a timeout); its message is meant for
// people, and says what to look at.
func Run(ctx context.Context, vm VM) (*Result, error) {
	qemu := vm.QEMU
	if qemu == "" {
		qemu = "qemu-system-x86_64"
	}
	qemuPath, err := exec.LookPath(qemu)
	if err != nil {
		return nil, fmt.Errorf("QEMU not found (%s): install it with apt-get install --no-install-recommends qemu-system-x86", qemu)
	}
	if vm.Output == nil {
		vm.Output = io.Discard
	}
	if vm.Log == nil {
		vm.Log = io.Discard
	}
	if vm.Timeout <= 0 {
		vm.Timeout = 10 * time.Minute
	}
	tmp, err := os.MkdirTemp("", "vmtests-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	initrd := filepath.Join(tmp, "initramfs.cpio.gz")
	if err := buildInitramfs(ctx, vm, initrd); err != nil {
		return nil, err
	}

	accel := vm.Accel
	if accel == "" {
		accel = "tcg"
	}
	mem, cpus := vm.MemoryMB, vm.CPUs
	if mem == 0 {
		mem = 1024
	}
	if cpus == 0 {
		cpus = 1
	}
	cpu := "max"
	if accel == "kvm" {
		cpu = "host"
	}
	args := []string{
		"-M", "pc", "-accel", accel, "-cpu", cpu, "-m", strconv.Itoa(mem), "-smp", strconv.Itoa(cpus),
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-chardev", "stdio,id=con,signal=off", "-serial", "chardev:con",
		"-kernel", vm.Image.BootKernel(), "-initrd", initrd,
		// loglevel=2: only critical kernel messages (panics, oopses)
		// interleave with the test's output; the init prints the log's
		// tail when the command fails.
		"-append", strings.Join(append([]string{"console=ttyS0 panic=-1 oops=panic quiet loglevel=2 rdinit=/init"}, vm.KernelArgs...), " "),
	}
	for _, d := range vm.Drives {
		opt := "file=" + d.Path + ",format=raw,if=virtio"
		if d.Snapshot {
			opt += ",snapshot=on"
		}
		args = append(args, "-drive", opt)
	}
	ctx, cancel := context.WithTimeout(ctx, vm.Timeout)
	defer cancel()
	cmd := exec.Command(qemuPath, args...)
	cmd.SysProcAttr = qemuProcAttr()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start QEMU: %w", err)
	}
	res := &Result{ExitCode: ExitNoMarker}
	var console bytes.Buffer
	var mu sync.Mutex
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		started, exited := false, false
		r := bufio.NewReaderSize(stdout, 64<<10)
		for {
			line, err := r.ReadString('\n')
			if line != "" {
				mu.Lock()
				console.WriteString(line)
				mu.Unlock()
				clean := strings.TrimRight(stripEscapes(line), "\r\n")
				switch {
				case panicRe.MatchString(clean):
					res.Panicked = true
				case strings.HasPrefix(clean, markerStart):
					if !started {
						started = true
						res.Boot = time.Since(start)
						res.GuestUptime = fieldValue(clean, "uptime")
					}
					continue
				case started && !exited && strings.Contains(clean, markerExit):
					// The marker may follow output that did not end
					// with a newline.
					i := strings.LastIndex(clean, markerExit)
					if code, err := strconv.Atoi(clean[i+len(markerExit):]); err == nil {
						res.ExitCode, res.Reported, exited = code, true, true
						if i > 0 {
							fmt.Fprintln(vm.Output, clean[:i])
						}
						continue
					}
				}
				if started && !exited {
					if strings.HasPrefix(clean, "vminit: ") {
						fmt.Fprintln(vm.Log, clean)
					} else {
						fmt.Fprintln(vm.Output, clean)
					}
				}
			}
			if err != nil {
				return
			}
		}
	}()
	waitDone := make(chan error, 1)
	go func() {
		<-readDone
		waitDone <- cmd.Wait()
	}()
	var waitErr error
	select {
	case waitErr = <-waitDone:
	case <-ctx.Done():
		res.TimedOut = true
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		select {
		case waitErr = <-waitDone:
		case <-time.After(10 * time.Second):
			waitErr = errors.New("QEMU did not exit after SIGKILL")
		}
	}
	res.Total = time.Since(start)
	mu.Lock()
	res.Console = console.Bytes()
	mu.Unlock()

	name := fmt.Sprintf("kernel %s (%s)", vm.Image.Kernel.Name, vm.Image.Package)
	switch {
	case res.TimedOut && errors.Is(ctx.Err(), context.Canceled):
		res.ExitCode = ExitTimeout
		return res, fmt.Errorf("%s: interrupted; QEMU killed", name)
	case res.TimedOut:
		res.ExitCode = ExitTimeout
		phase := "the guest command"
		if res.Boot == 0 {
			phase = "boot (the init never started)"
		}
		return res, fmt.Errorf("%s: VM stopped after its %s timeout during %s; last console lines:\n%s",
			name, vm.Timeout, phase, tail(res.Console, 30))
	case res.Panicked && !res.Reported:
		return res, fmt.Errorf("%s: the guest kernel panicked; last console lines:\n%s", name, tail(res.Console, 40))
	case res.Boot == 0:
		msg := strings.TrimSpace(stderr.String())
		return res, fmt.Errorf("%s did not boot (QEMU %v%s); last console lines:\n%s",
			name, waitErr, prefixed(": ", msg), tail(res.Console, 30))
	case !res.Reported:
		return res, fmt.Errorf("%s: the guest stopped without reporting an exit code (QEMU %v); last console lines:\n%s",
			name, waitErr, tail(res.Console, 40))
	}
	return res, nil
}

func prefixed(p, s string) string {
	if s == "" {
		return ""
	}
	return p + s
}

func fieldValue(line, key string) string {
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v
		}
	}
	return ""
}

var escRe = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-Za-z]|\x1bc`)

func stripEscapes(s string) string {
	return escRe.ReplaceAllString(s, "")
}

// tail returns the last n lines of the console, cleaned and indented.
func tail(console []byte, n int) string {
	lines := strings.Split(strings.TrimRight(stripEscapes(strings.ReplaceAll(string(console), "\r", "")), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	if len(lines) == 1 && lines[0] == "" {
		return "  (the console is empty)"
	}
	return "  | " + strings.Join(lines, "\n  | ")
}

func buildInitramfs(ctx context.Context, vm VM, out string) error {
	initBin, err := os.ReadFile(vm.Init)
	if err != nil {
		return fmt.Errorf("guest init: %w (build vmtests/cmd/vminit with CGO_ENABLED=0)", err)
	}
	mods := vm.Modules
	if mods == nil {
		mods = DefaultModules
	}
	modFiles, err := ModuleFiles(ctx, vm.Image, mods)
	if err != nil {
		return err
	}
	cfg, err := json.Marshal(vm.Guest)
	if err != nil {
		return err
	}
	files := []File{{Path: "init", Mode: 0o755, Data: initBin}, {Path: "vm/config.json", Mode: 0o644, Data: cfg}}
	files = append(files, modFiles...)
	files = append(files, vm.Files...)
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if err := WriteInitramfs(f, []string{"dev", "proc", "sys", "tmp", "run", "bin", "root", "pkg"}, sortedFiles(files)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
