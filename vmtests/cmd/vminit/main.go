//go:build linux

// Command vminit is the guest's PID 1 in the vmtests initramfs. It mounts
// proc, sysfs, devtmpfs, a tmpfs on /tmp, bpffs and cgroup2, loads the
// modules in /modules, brings loopback up, runs the command from
// /vm/config.json with the console as its stdio, prints VMEXIT=<code> and
// powers the machine off. With "switch_root" in the config it instead
// mounts that block device (ext4) as the new root and executes the
// command there as PID 1 (systemd): the guest then reports its own exit
// code. Build it with CGO_ENABLED=0.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// Markers the host harness parses; keep them in step with vmtests.
	markerStart = "VMINIT-START"
	markerExit  = "VMEXIT="
	// Exit codes the init reports for its own failures.
	exitSetup   = 125
	exitTimeout = 124
)

type config struct {
	Args       []string `json:"args"`
	Env        []string `json:"env"`
	Dir        string   `json:"dir"`
	TimeoutSec int      `json:"timeout_sec"`
	SwitchRoot string   `json:"switch_root"`
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stdout, "vminit: "+format+"\n", args...)
}

func main() {
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "vminit is a guest init: it only runs as PID 1")
		os.Exit(2)
	}
	code := run()
	finish(code)
}

func finish(code int) {
	fmt.Fprintf(os.Stdout, "%s%d\n", markerExit, code)
	unix.Sync()
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	// QEMU runs with -no-reboot: a restart ends it as well.
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	select {}
}

// initUptime is the guest's uptime when init started: the kernel log
// dump shows only what came after it.
var initUptime float64

func run() int {
	var uptime string
	if err := mountAll(); err != nil {
		logf("setup: %v", err)
		return exitSetup
	}
	if b, err := os.ReadFile("/proc/uptime"); err == nil {
		uptime = strings.Fields(string(b))[0]
		initUptime, _ = strconv.ParseFloat(uptime, 64)
	}
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	fmt.Fprintf(os.Stdout, "%s kernel=%s uptime=%s\n", markerStart, unix.ByteSliceToString(uts.Release[:]), uptime)
	if err := loadModules("/modules"); err != nil {
		logf("setup: %v", err)
		return exitSetup
	}
	if err := loopbackUp(); err != nil {
		logf("setup: loopback: %v", err)
		return exitSetup
	}
	b, err := os.ReadFile("/vm/config.json")
	if err != nil {
		logf("setup: %v", err)
		return exitSetup
	}
	var cfg config
	if err := json.Unmarshal(b, &cfg); err != nil || len(cfg.Args) == 0 {
		logf("setup: bad /vm/config.json (%v): %s", err, b)
		return exitSetup
	}
	if cfg.SwitchRoot != "" {
		err := switchRoot(cfg)
		logf("switch root to %s: %v", cfg.SwitchRoot, err)
		return exitSetup
	}
	return runCommand(cfg)
}

func mountAll() error {
	for _, m := range []struct {
		src, dst, fstype string
		flags            uintptr
		data             string
		optional         bool
	}{
		{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "", false},
		{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "", false},
		{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755", false},
		{"tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777", false},
		{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755", false},
		{"bpf", "/sys/fs/bpf", "bpf", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "mode=0700", false},
		// The dataplane tests find cgroup2 through /proc/self/mountinfo;
		// mount it where a unified host has it.
		{"cgroup2", "/sys/fs/cgroup", "cgroup2", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "", false},
		{"debugfs", "/sys/kernel/debug", "debugfs", 0, "", true},
		{"tracefs", "/sys/kernel/tracing", "tracefs", 0, "", true},
	} {
		if err := os.MkdirAll(m.dst, 0o755); err != nil && !m.optional {
			return err
		}
		if err := unix.Mount(m.src, m.dst, m.fstype, m.flags, m.data); err != nil && !m.optional {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.dst, err)
		}
	}
	_ = os.Symlink("/proc/self/fd", "/dev/fd")
	_ = os.WriteFile("/proc/sys/kernel/panic_on_oops", []byte("1"), 0)
	return nil
}

// switchRoot mounts cfg.SwitchRoot on /newroot, moves /dev, /proc and
// /sys there, unmounts the rest of what mountAll mounted (the new init
// mounts its own), makes /newroot the root and executes cfg.Args as PID 1.
// It returns only on failure.
func switchRoot(cfg config) error {
	const newRoot = "/newroot"
	if err := os.MkdirAll(newRoot, 0o755); err != nil {
		return err
	}
	// The device node appears once the virtio driver has probed it.
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if err = unix.Mount(cfg.SwitchRoot, newRoot, "ext4", 0, ""); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("mount ext4: %w", err)
		}
	}
	for _, m := range []string{"/sys/kernel/tracing", "/sys/kernel/debug", "/sys/fs/cgroup", "/sys/fs/bpf", "/run", "/tmp"} {
		_ = unix.Unmount(m, unix.MNT_DETACH)
	}
	for _, m := range []string{"/dev", "/proc", "/sys"} {
		if err := unix.Mount(m, newRoot+m, "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("move %s: %w", m, err)
		}
	}
	if err := unix.Chdir(newRoot); err != nil {
		return err
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move the new root to /: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return err
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	env := append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, cfg.Env...)
	return unix.Exec(cfg.Args[0], cfg.Args, env)
}

func loadModules(dir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	for _, n := range names {
		f, err := os.Open(filepath.Join(dir, n))
		if err != nil {
			return err
		}
		err = unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("load module %s: %w", n, err)
		}
	}
	return nil
}

func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

func runCommand(cfg config) int {
	cmd := exec.Command(cfg.Args[0], cfg.Args[1:]...)
	cmd.Env = append([]string{"PATH=/bin:/usr/bin:/sbin:/usr/sbin", "HOME=/tmp", "TMPDIR=/tmp", "PEERD_VMTEST_GUEST=1"}, cfg.Env...)
	cmd.Dir = cfg.Dir
	if cmd.Dir == "" {
		cmd.Dir = "/"
	}
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf("start %s: %v", cfg.Args[0], err)
		return exitSetup
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var timeout <-chan time.Time
	if cfg.TimeoutSec > 0 {
		timeout = time.After(time.Duration(cfg.TimeoutSec) * time.Second)
	}
	select {
	case err := <-done:
		code := exitCode(cmd, err)
		if code != 0 {
			logf("%s exited with %d", filepath.Base(cfg.Args[0]), code)
			dumpKernelLog(40)
		}
		return code
	case <-timeout:
		logf("timeout: %s still running after %ds: killing it", filepath.Base(cfg.Args[0]), cfg.TimeoutSec)
		// SIGQUIT first: a Go test binary prints every goroutine.
		_ = unix.Kill(-cmd.Process.Pid, unix.SIGQUIT)
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			_ = unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
		}
		dumpKernelLog(40)
		return exitTimeout
	}
}

func exitCode(cmd *exec.Cmd, err error) int {
	if err == nil {
		return 0
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	if cmd.ProcessState != nil {
		return cmd.ProcessState.ExitCode()
	}
	return exitSetup
}

// dumpKernelLog prints the last n lines of the kernel log, so a failure
// in the guest shows what the kernel said about it.
func dumpKernelLog(n int) {
	size, err := unix.Klogctl(unix.SYSLOG_ACTION_SIZE_BUFFER, nil)
	if err != nil || size <= 0 {
		size = 1 << 20
	}
	buf := make([]byte, size)
	m, err := unix.Klogctl(unix.SYSLOG_ACTION_READ_ALL, buf)
	if err != nil {
		logf("kernel log: %v", err)
		return
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(string(buf[:m]), "\n"), "\n") {
		// "<6>[    2.786846] message": keep what came after init started.
		if i, j := strings.IndexByte(l, '['), strings.IndexByte(l, ']'); i >= 0 && j > i {
			if ts, err := strconv.ParseFloat(strings.TrimSpace(l[i+1:j]), 64); err == nil && ts < initUptime {
				continue
			}
		}
		lines = append(lines, l)
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	fmt.Fprintf(os.Stdout, "vminit: --- kernel log since init started (last %d lines) ---\n", len(lines))
	for _, l := range lines {
		fmt.Fprintf(os.Stdout, "vminit: | %s\n", l)
	}
}
