//go:build linux

package l7

import (
	"bytes"
	"errors"
	"fmt"
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

// Env is what the helpers need from the benchmark: a directory of their
// own, a way to register cleanups (testing.B's Cleanup, run even when the
// benchmark fails) and a logger.
type Env struct {
	Dir     string
	Cleanup func(func())
	Logf    func(format string, args ...any)
}

// Proc is a child process running in its own process group, with its
// standard output and error in files.
type Proc struct {
	Name           string
	Stdout, Stderr string // file paths
	cmd            *exec.Cmd
	done           chan struct{}
	err            error // from Wait, once done is closed
	stopOnce       sync.Once
	stopErr        error
}

// Start starts path with args in its own process group, standard input
// /dev/null, output and errors in <env.Dir>/<name>.out and .err, and
// registers its Stop (SIGTERM to the whole group, SIGKILL after
// stopTimeout) as a cleanup. The child gets SIGKILL if this process dies
// first (Pdeathsig), so an aborted benchmark does not leave it behind.
func Start(env Env, name string, stopTimeout time.Duration, path string, args ...string) (*Proc, error) {
	return StartInCgroup(env, "", name, stopTimeout, path, args...)
}

// StartInCgroup is Start with the process placed in the cgroup v2
// directory cgroup from its first instruction ("" = this process's).
func StartInCgroup(env Env, cgroup, name string, stopTimeout time.Duration, path string, args ...string) (*Proc, error) {
	p := &Proc{
		Name:   name,
		Stdout: filepath.Join(env.Dir, name+".out"),
		Stderr: filepath.Join(env.Dir, name+".err"),
		done:   make(chan struct{}),
	}
	stdout, err := os.Create(p.Stdout)
	if err != nil {
		return nil, err
	}
	defer stdout.Close()
	stderr, err := os.Create(p.Stderr)
	if err != nil {
		return nil, err
	}
	defer stderr.Close()
	p.cmd = exec.Command(path, args...)
	p.cmd.Dir = env.Dir
	p.cmd.Stdout, p.cmd.Stderr = stdout, stderr
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if cgroup != "" {
		fd, err := syscall.Open(cgroup, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
		if err != nil {
			return nil, fmt.Errorf("start %s in cgroup %s: %w", name, cgroup, err)
		}
		defer syscall.Close(fd)
		p.cmd.SysProcAttr.UseCgroupFD, p.cmd.SysProcAttr.CgroupFD = true, fd
	}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	env.Cleanup(func() {
		if err := p.Stop(stopTimeout); err != nil {
			env.Logf("stop %s: %v", name, err)
		}
	})
	return p, nil
}

// Pid is the process's ID, which is also its process group's.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has exited, and how.
func (p *Proc) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Stop sends SIGTERM to the process group and waits up to timeout for the
// process to exit, then sends SIGKILL to the group. Members of the group
// still alive after the leader exited get SIGKILL too. It returns an error
// if SIGKILL was needed. Later calls return the first call's result.
func (p *Proc) Stop(timeout time.Duration) error {
	p.stopOnce.Do(func() { p.stopErr = p.stop(timeout) })
	return p.stopErr
}

func (p *Proc) stop(timeout time.Duration) error {
	pgid := p.Pid()
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	var err error
	select {
	case <-p.done:
	case <-time.After(timeout):
		err = fmt.Errorf("%s (pid %d) still running %s after SIGTERM: killed", p.Name, pgid, timeout)
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
	// Anything left in the group (a worker whose master died) goes too.
	for deadline := time.Now().Add(timeout); len(groupPids(pgid)) > 0; {
		if time.Now().After(deadline) {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			if err == nil {
				err = fmt.Errorf("%s: process group %d still had members %s after its leader exited: killed", p.Name, pgid, timeout)
			}
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return err
}

// Tail returns the last n lines of the process's output and errors.
func (p *Proc) Tail(n int) string {
	var b strings.Builder
	for _, f := range []string{p.Stdout, p.Stderr} {
		fmt.Fprintf(&b, "--- %s (last %d lines) ---\n%s", filepath.Base(f), n, TailFile(f, n))
	}
	return b.String()
}

// TailFile returns the last n lines of a file, or a note saying why not.
func TailFile(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)\n", err)
	}
	lines := strings.SplitAfter(string(data), "\n")
	if len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	s := strings.Join(lines, "")
	if s != "" && !strings.HasSuffix(s, "\n") {
		s += "\n"
	}
	return s
}

// WaitForLine waits until a line of p's standard output matches re and
// returns the first submatch (the whole match if re has no group). It fails
// if p exits or timeout passes first.
func (p *Proc) WaitForLine(re *regexp.Regexp, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		data, _ := os.ReadFile(p.Stdout)
		for _, line := range strings.Split(string(data), "\n") {
			if m := re.FindStringSubmatch(line); m != nil {
				return m[len(m)-1], nil
			}
		}
		if exited, err := p.Exited(); exited {
			return "", fmt.Errorf("%s exited (%v) before printing a line matching %q\n%s", p.Name, err, re, p.Tail(30))
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("%s printed no line matching %q within %s\n%s", p.Name, re, timeout, p.Tail(30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// procStat is the part of /proc/<pid>/stat the benchmark reads.
type procStat struct {
	pgrp         int
	utime, stime uint64 // clock ticks
}

func readStat(pid int) (procStat, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	return parseStat(data)
}

// parseStat parses /proc/<pid>/stat. The command name (field 2) is in
// parentheses and may hold spaces and parentheses, so the fields are
// counted from the last ')'.
func parseStat(data []byte) (procStat, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return procStat{}, errors.New("stat: no ')'")
	}
	f := strings.Fields(string(data[i+1:]))
	// f[0] is field 3 (state): pgrp is field 5, utime 14, stime 15.
	if len(f) < 13 {
		return procStat{}, fmt.Errorf("stat: %d fields after the command name", len(f))
	}
	pgrp, err1 := strconv.Atoi(f[2])
	ut, err2 := strconv.ParseUint(f[11], 10, 64)
	st, err3 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return procStat{}, fmt.Errorf("stat: %w", err)
	}
	return procStat{pgrp: pgrp, utime: ut, stime: st}, nil
}

// clockTicks is USER_HZ, the unit of utime and stime: getconf CLK_TCK, or
// 100 (its value on every Linux architecture Go supports) if that fails.
var clockTicks = sync.OnceValue(func() float64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && n > 0 {
			return float64(n)
		}
	}
	return 100
})

func ticks(t uint64) time.Duration {
	return time.Duration(float64(t) / clockTicks() * float64(time.Second))
}

// ProcCPU returns the user plus system CPU time process pid has used so far
// (all its threads, from /proc/<pid>/stat).
func ProcCPU(pid int) (time.Duration, error) {
	s, err := readStat(pid)
	if err != nil {
		return 0, err
	}
	return ticks(s.utime + s.stime), nil
}

// GroupCPU returns the sum of ProcCPU over the live members of process
// group pgid (an nginx master and its workers).
func GroupCPU(pgid int) (time.Duration, error) {
	pids := groupPids(pgid)
	if len(pids) == 0 {
		return 0, fmt.Errorf("process group %d has no live members", pgid)
	}
	var sum uint64
	for _, pid := range pids {
		s, err := readStat(pid)
		if err != nil {
			continue // exited meanwhile
		}
		sum += s.utime + s.stime
	}
	return ticks(sum), nil
}

// groupPids lists the live (non-zombie) processes of process group pgid.
func groupPids(pgid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s, err := parseStat(data)
		if err != nil || s.pgrp != pgid {
			continue
		}
		if i := bytes.LastIndexByte(data, ')'); i >= 0 && bytes.HasPrefix(data[i+1:], []byte(" Z")) {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

// MachineCPU returns the CPU time the whole machine has been busy so far,
// summed over CPUs, from the first line of /proc/stat: user, nice, system,
// irq, softirq and steal (time the hypervisor gave this VM's CPUs to
// someone else). Compared with the CPU time of the processes a run
// measures, it shows what else ran meanwhile.
func MachineCPU() (time.Duration, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var busy uint64
	for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system irq softirq steal
		n, err := strconv.ParseUint(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %w", err)
		}
		busy += n
	}
	return ticks(busy), nil
}
