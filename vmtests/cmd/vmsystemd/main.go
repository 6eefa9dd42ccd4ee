//go:build linux

// Command vmsystemd is the guest side of the systemd install test
// (vmtests TestSystemdInstall): systemd runs it as peerd-vmtest.service in
// a Debian guest, from the payload drive mounted on /vmtest, which also
// holds the tree's bin/ and deploy/systemd/ and the README's install steps
// (install.sh, start.sh, extracted by the host). It installs peerd as the
// README says, edits the configuration for a one-node cluster with the
// dataplane in the unit's own cgroup, starts the unit with systemctl and
// checks the process's user and capabilities, the dataplane, a reload
// under load, the exposure score, and what stop and cleanup leave. It
// prints "vmsystemd: " lines, FIGURE lines for the host, then VMEXIT=<code>,
// and powers the guest off. Build it with CGO_ENABLED=0.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// config is /vmtest/config.json, written by the host.
type config struct {
	// MaxExposure: systemd-analyze security's overall exposure of
	// peerd.service may not be above it.
	MaxExposure float64 `json:"max_exposure"`
	// Caps are the capabilities the unit grants, by number.
	Caps []int `json:"caps"`
}

const (
	unit      = "peerd.service"
	cgroup    = "/sys/fs/cgroup/system.slice/peerd.service"
	pinDir    = "/sys/fs/bpf/peerd"
	httpAddr  = "127.0.0.1:8500"
	configDir = "/etc/peerd.d"
)

var failures int

func logf(format string, args ...any) {
	fmt.Printf("vmsystemd: "+format+"\n", args...)
}

func failf(format string, args ...any) {
	failures++
	fmt.Printf("vmsystemd: FAIL: "+format+"\n", args...)
}

func figure(name, format string, args ...any) {
	fmt.Printf("FIGURE %s=%s\n", name, fmt.Sprintf(format, args...))
}

func main() {
	code := 0
	func() {
		defer func() {
			if r := recover(); r != nil {
				failf("panic: %v", r)
			}
		}()
		if err := run(); err != nil {
			failf("%v", err)
		}
	}()
	if failures > 0 {
		code = 1
		dumpJournal()
	}
	fmt.Printf("VMEXIT=%d\n", code)
	syscall.Sync()
	_ = exec.Command("systemctl", "poweroff", "-ff").Run()
	select {}
}

func dumpJournal() {
	out, _ := exec.Command("journalctl", "--no-pager", "-o", "short-monotonic", "-n", "120", "-u", unit).CombinedOutput()
	logf("--- journalctl -u %s (last 120 lines) ---", unit)
	for _, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		logf("| %s", l)
	}
	out, _ = exec.Command("dmesg").CombinedOutput()
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	logf("--- dmesg (last 30 lines) ---")
	for _, l := range lines {
		logf("| %s", l)
	}
}

// sh runs a command line, its output on the console; the error carries
// the exit status.
func sh(timeout time.Duration, dir string, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s %s: still running after %s", name, strings.Join(args, " "), timeout)
		}
		return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return nil
}

// output runs a command and returns its stdout.
func output(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

func uptime() float64 {
	b, _ := os.ReadFile("/proc/uptime")
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

func run() error {
	figure("guest_uptime_at_test_start", "%.1fs", uptime())
	b, err := os.ReadFile("config.json")
	if err != nil {
		return err
	}
	var cfg config
	if err := json.Unmarshal(b, &cfg); err != nil {
		return fmt.Errorf("config.json: %w", err)
	}
	if out, err := output("systemctl", "is-system-running", "--wait"); err != nil {
		logf("systemctl is-system-running: %s (%v)", strings.TrimSpace(out), err)
	}
	if out, err := output("systemd-analyze", "time"); err == nil {
		logf("%s", strings.TrimSpace(out))
		if m := regexp.MustCompile(`= ([0-9.]+m?s)`).FindStringSubmatch(out); m != nil {
			figure("systemd_boot", "%s", m[1])
		}
	}

	// 1. The README's install steps, word for word.
	logf("== install: the README's host steps (install.sh)")
	if err := sh(2*time.Minute, "/vmtest", "sh", "install.sh"); err != nil {
		return fmt.Errorf("the README's install steps: %w", err)
	}

	// 2. What the README says to edit, for a one-node cluster on
	// loopback with the dataplane in the unit's own cgroup.
	logf("== configure: /etc/peerd.d as the README says, for one server on 127.0.0.1")
	token, err := configure()
	if err != nil {
		return fmt.Errorf("configure: %w", err)
	}

	// 3. The README's start steps.
	logf("== start: the README's start steps (start.sh)")
	t0 := time.Now()
	err = sh(3*time.Minute, "/vmtest", "sh", "start.sh")
	figure("start", "%.1fs", time.Since(t0).Seconds())
	if err != nil {
		return fmt.Errorf("the README's start steps: %w", err)
	}
	pid, err := checkStarted(token)
	if err != nil {
		return err
	}
	checkCredentials(pid, cfg.Caps)
	progs := checkDataplane(token)
	checkSecurity(cfg.MaxExposure)
	newPID, err := checkReload(pid, token)
	// More reloads: the old process exits as soon as the new one says it
	// is ready, so each is a chance for systemd to see its main process
	// go before it learns the new one.
	for i := 2; err == nil && i <= 3; i++ {
		var next int
		if next, err = reloadOnce(newPID, token); err == nil {
			logf("ok: reload %d: MAINPID %d -> %d, the unit active, the API answering", i, newPID, next)
			newPID = next
		}
	}
	if err != nil {
		failf("reload: %v", err)
	} else {
		checkCredentials(newPID, cfg.Caps)
		if p := checkDataplaneAfterReload(token); p != nil {
			progs = p
		}
	}
	checkStop(progs)
	return nil
}

// configure makes the edits the README asks for: this node's address and
// a gossip key in peerd.hcl, the first server's bootstrap_expect without
// a join token, UUIDs for the ACL tokens; and a dataplane file for the
// test. It returns the management token.
func configure() (string, error) {
	key, err := output("/usr/local/bin/peerd", "keygen")
	if err != nil {
		return "", err
	}
	if err := edit(filepath.Join(configDir, "peerd.hcl"), []edit1{
		{regexp.MustCompile(`(?m)^bind_addr = .*$`), `bind_addr = "127.0.0.1"`},
		{regexp.MustCompile(`(?m)^encrypt = .*$`), `encrypt = "` + strings.TrimSpace(key) + `"`},
		{regexp.MustCompile(`(?m)^join_token_file = .*$`), `# $0`},
		{regexp.MustCompile(`(?m)^# bootstrap_expect = 1 .*$`), `bootstrap_expect = 1`},
	}); err != nil {
		return "", err
	}
	var uuids [3]string
	var edits []edit1
	for i := range uuids {
		b, err := os.ReadFile("/proc/sys/kernel/random/uuid")
		if err != nil {
			return "", err
		}
		uuids[i] = strings.TrimSpace(string(b))
		edits = append(edits, edit1{regexp.MustCompile(`REPLACE-WITH-UUID-` + strconv.Itoa(i+1) + `\b`), uuids[i]})
	}
	if err := edit(filepath.Join(configDir, "acl-tokens.hcl"), edits); err != nil {
		return "", err
	}
	// The dataplane: capture and the fast path in the unit's own cgroup
	// (never the root), TC counters on lo.
	dp := filepath.Join(configDir, "dataplane.hcl")
	text := "dataplane {\n  cgroup_path = \"" + cgroup + "\"\n  interfaces  = [\"lo\"]\n}\n"
	if err := os.WriteFile(dp, []byte(text), 0o640); err != nil {
		return "", err
	}
	if err := sh(10*time.Second, "/", "chgrp", "peerd", dp); err != nil {
		return "", err
	}
	if err := sh(30*time.Second, "/", "runuser", "-u", "peerd", "--", "/usr/local/bin/peerd", "validate", configDir); err != nil {
		return "", fmt.Errorf("the edited configuration, read as the service user: %w", err)
	}
	return uuids[0], nil
}

type edit1 struct {
	re   *regexp.Regexp
	with string
}

// edit rewrites a file in place (keeping its mode and owner); every
// pattern must match, or the example file no longer says what the README
// tells the operator to edit.
func edit(path string, edits []edit1) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	for _, e := range edits {
		if !e.re.Match(b) {
			return fmt.Errorf("%s: nothing matches %s: the example config changed", path, e.re)
		}
		b = e.re.ReplaceAll(b, []byte(e.with))
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func show(props ...string) (map[string]string, error) {
	args := []string{"show", unit}
	for _, p := range props {
		args = append(args, "-p", p)
	}
	out, err := output("systemctl", args...)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = v
		}
	}
	return m, nil
}

// checkStarted: with Type=notify, systemctl enable --now returns once
// peerd sent READY=1, so the unit is active and the API answers at once.
func checkStarted(token string) (int, error) {
	p, err := show("ActiveState", "SubState", "MainPID", "Type", "NotifyAccess", "StatusText", "SystemCallFilter", "SystemCallErrorNumber")
	if err != nil {
		return 0, err
	}
	filter := p["SystemCallFilter"]
	delete(p, "SystemCallFilter")
	logf("unit after start: %v", p)
	// An allow list (a deny list starts with ~) that has bpf().
	if filter == "" || strings.HasPrefix(filter, "~") || !slices.Contains(strings.Fields(filter), "bpf") {
		failf("the unit's SystemCallFilter is %q: want an allow list with bpf", filter)
	}
	if p["ActiveState"] != "active" || p["SubState"] != "running" || p["Type"] != "notify" {
		return 0, fmt.Errorf("after systemctl enable --now: %v, want active/running, Type=notify", p)
	}
	pid, err := strconv.Atoi(p["MainPID"])
	if err != nil || pid == 0 {
		return 0, fmt.Errorf("MainPID %q", p["MainPID"])
	}
	// Readiness means serving: the first request after start answers.
	body, err := get(token, "/v1/status/leader")
	if err != nil {
		failf("ready, but the HTTP API does not answer: %v", err)
	} else {
		logf("ok: Type=notify: active as systemctl returned, and the API answers at once (leader %s)", strings.TrimSpace(body))
	}
	return pid, nil
}

var httpClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func get(token, path string) (string, error) {
	req, err := http.NewRequest("GET", "http://"+httpAddr+path, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("X-Consul-Token", token)
	resp, err := httpClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(b)))
	}
	return string(b), nil
}

// checkCredentials reads /proc/<pid>/status: the service user, only the
// unit's capabilities, no_new_privs and a seccomp filter.
func checkCredentials(pid int, caps []int) {
	before := failures
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		failf("credentials: %v", err)
		return
	}
	st := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			st[k] = strings.TrimSpace(v)
		}
	}
	u, err := output("id", "-u", "peerd")
	if err != nil {
		failf("credentials: %v", err)
		return
	}
	uid := strings.TrimSpace(u)
	var want uint64
	for _, c := range caps {
		want |= 1 << c
	}
	wantHex := fmt.Sprintf("%016x", want)
	logf("pid %d: Uid %s, Gid %s, CapEff %s, CapPrm %s, CapAmb %s, CapBnd %s, CapInh %s, NoNewPrivs %s, Seccomp %s",
		pid, st["Uid"], st["Gid"], st["CapEff"], st["CapPrm"], st["CapAmb"], st["CapBnd"], st["CapInh"], st["NoNewPrivs"], st["Seccomp"])
	if f := strings.Fields(st["Uid"]); len(f) != 4 || f[0] != uid || f[1] != uid || f[2] != uid || f[3] != uid {
		failf("pid %d runs as Uid %q, want peerd's %s (real, effective, saved, fs)", pid, st["Uid"], uid)
	}
	for _, k := range []string{"CapEff", "CapPrm", "CapAmb", "CapBnd"} {
		if st[k] != wantHex {
			failf("pid %d: %s %s, want %s (the unit's %v)", pid, k, st[k], wantHex, caps)
		}
	}
	if st["NoNewPrivs"] != "1" {
		failf("pid %d: NoNewPrivs %q, want 1", pid, st["NoNewPrivs"])
	}
	if st["Seccomp"] != "2" {
		failf("pid %d: Seccomp %q, want 2 (SystemCallFilter=)", pid, st["Seccomp"])
	}
	if failures == before {
		logf("ok: pid %d runs as peerd (uid %s) with exactly CapEff=CapPrm=CapAmb=CapBnd=%s, no_new_privs, a seccomp filter", pid, uid, wantHex)
	}
}

type dataplaneStatus struct {
	Enabled bool
	Status  struct {
		Kernel, PinDir        string
		Capture, FastPath, TC layer
		Inbound               layer
	}
}

type layer struct {
	Enabled, Loaded, Reused bool
	AttachMode, Reason      string
}

func dataplane(token string) (*dataplaneStatus, error) {
	body, err := get(token, "/v1/agent/dataplane")
	if err != nil {
		return nil, err
	}
	var st dataplaneStatus
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		return nil, fmt.Errorf("/v1/agent/dataplane: %w: %s", err, body)
	}
	return &st, nil
}

type cgroupProg struct {
	ID         int    `json:"id"`
	AttachType string `json:"attach_type"`
	Name       string `json:"name"`
}

// attached lists the programs attached to the unit's cgroup (bpftool).
func attached() ([]cgroupProg, error) {
	out, err := output("bpftool", "-j", "cgroup", "show", cgroup)
	if err != nil {
		return nil, err
	}
	var progs []cgroupProg
	if err := json.Unmarshal([]byte(out), &progs); err != nil {
		return nil, fmt.Errorf("bpftool cgroup show: %w: %s", err, out)
	}
	return progs, nil
}

// pinnedProgs returns the ids of the programs pinned under the pin
// directory, with their pins.
func pinnedProgs() (map[int][]string, error) {
	out, err := output("bpftool", "-j", "-f", "prog", "show")
	if err != nil {
		return nil, err
	}
	var progs []struct {
		ID     int      `json:"id"`
		Pinned []string `json:"pinned"`
	}
	if err := json.Unmarshal([]byte(out), &progs); err != nil {
		return nil, fmt.Errorf("bpftool prog show: %w", err)
	}
	m := map[int][]string{}
	for _, p := range progs {
		for _, pin := range p.Pinned {
			if strings.HasPrefix(pin, pinDir+"/") {
				m[p.ID] = append(m[p.ID], pin)
			}
		}
	}
	return m, nil
}

// checkDataplane: the layers load in the unit's cgroup; it returns the ids
// of peerd's programs (attached to the cgroup or pinned).
func checkDataplane(token string) map[int]string {
	progs := map[int]string{}
	st, err := dataplane(token)
	if err != nil {
		failf("dataplane: %v", err)
		return progs
	}
	logf("dataplane: kernel %s, pins %s, capture %+v, fastpath %+v, tc %+v", st.Status.Kernel, st.Status.PinDir, st.Status.Capture, st.Status.FastPath, st.Status.TC)
	for name, l := range map[string]layer{"capture": st.Status.Capture, "fastpath": st.Status.FastPath, "tc": st.Status.TC} {
		if !l.Enabled || !l.Loaded {
			failf("dataplane layer %s: enabled %v, loaded %v (%s), want loaded under the unit", name, l.Enabled, l.Loaded, l.Reason)
		}
	}
	_ = sh(30*time.Second, "/", "sh", "-c", `PEERD_HTTP_TOKEN="$(sed -n 's/^ *initial_management = "\(.*\)"$/\1/p' /etc/peerd.d/acl-tokens.hcl)" peerctl dataplane status`)
	progs = peerdProgs()
	types := map[string]bool{}
	for _, what := range progs {
		types[strings.Fields(what)[0]] = true
	}
	for _, t := range []string{"cgroup_inet4_connect", "cgroup_inet6_connect", "cgroup_sock_ops", "pinned"} {
		if !types[t] {
			failf("no program of peerd is %s (attached to the unit's cgroup, or pinned under %s)", t, pinDir)
		}
	}
	logf("peerd's programs (attached to its cgroup or pinned): %d", len(progs))
	return progs
}

// peerdProgs returns the programs attached to the unit's cgroup (but
// systemd's own device filter) and those pinned under the pin directory,
// by id.
func peerdProgs() map[int]string {
	progs := map[int]string{}
	cg, err := attached()
	if err != nil {
		failf("dataplane: %v", err)
		return progs
	}
	for _, p := range cg {
		logf("attached to %s: prog %d %s (%s)", cgroup, p.ID, p.Name, p.AttachType)
		if p.AttachType != "cgroup_device" { // systemd's own, for PrivateDevices=
			progs[p.ID] = p.AttachType + " " + p.Name
		}
	}
	pinned, err := pinnedProgs()
	if err != nil {
		failf("dataplane: %v", err)
		return progs
	}
	for id, pins := range pinned {
		if _, ok := progs[id]; !ok {
			progs[id] = "pinned " + strings.Join(pins, " ")
		}
	}
	return progs
}

// checkDataplaneAfterReload: the new process re-opened the pins and
// updated the links in place; it returns peerd's programs now.
func checkDataplaneAfterReload(token string) map[int]string {
	st, err := dataplane(token)
	if err != nil {
		failf("dataplane after reload: %v", err)
		return nil
	}
	for name, l := range map[string]layer{"capture": st.Status.Capture, "fastpath": st.Status.FastPath, "tc": st.Status.TC} {
		if !l.Loaded || !l.Reused {
			failf("dataplane after reload: %s %+v: want loaded from the pins (Reused)", name, l)
		}
	}
	progs := peerdProgs()
	logf("ok: after the reload the new process re-opened the pinned dataplane: %d programs attached to its cgroup or pinned", len(progs))
	return progs
}

var exposureRe = regexp.MustCompile(`Overall exposure level for peerd\.service: ([0-9.]+) (\S+)`)

func checkSecurity(max float64) {
	out, _ := output("systemd-analyze", "security", "--no-pager", unit)
	m := exposureRe.FindStringSubmatch(out)
	if m == nil {
		failf("systemd-analyze security %s printed no exposure level:\n%s", unit, out)
		return
	}
	figure("exposure", "%s %s", m[1], m[2])
	v, _ := strconv.ParseFloat(m[1], 64)
	// The lines that count, for the report.
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "✗") {
			logf("security: %s", strings.TrimSpace(l))
		}
	}
	if v > max {
		failf("systemd-analyze security %s: exposure %s, above %.1f", unit, m[1], max)
		return
	}
	logf("ok: systemd-analyze security %s: %s %s (at most %.1f)", unit, m[1], m[2], max)
}

// checkReload: systemctl reload hands over to a new process (MAINPID
// changes) while requests run: a blocking query open across the reload
// completes, and a loop of requests on new connections loses none.
func checkReload(oldPID int, token string) (int, error) {
	logf("== reload")
	// A blocking query: its connection stays open across the reload.
	req, _ := http.NewRequest("GET", "http://"+httpAddr+"/v1/catalog/services", nil)
	req.Header.Set("X-Consul-Token", token)
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	index := resp.Header.Get("X-Consul-Index")
	if index == "" {
		return 0, errors.New("/v1/catalog/services: no X-Consul-Index")
	}
	type result struct {
		status string
		err    error
		took   time.Duration
		conn   string
	}
	blocking := make(chan result, 1)
	go func() {
		start := time.Now()
		c, err := net.Dial("tcp", httpAddr)
		if err != nil {
			blocking <- result{err: err}
			return
		}
		defer c.Close()
		local := c.LocalAddr().String()
		fmt.Fprintf(c, "GET /v1/catalog/services?index=%s&wait=3s HTTP/1.1\r\nHost: %s\r\nX-Consul-Token: %s\r\n\r\n", index, httpAddr, token)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			blocking <- result{err: err, took: time.Since(start), conn: local}
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		blocking <- result{status: resp.Status, took: time.Since(start), conn: local}
	}()
	time.Sleep(300 * time.Millisecond) // the query is in the old process

	// A keep-alive connection that carried a request before the reload.
	ka, err := net.Dial("tcp", httpAddr)
	if err != nil {
		return 0, err
	}
	defer ka.Close()
	kaR := bufio.NewReader(ka)
	kaGet := func() (string, error) {
		_ = ka.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := fmt.Fprintf(ka, "GET /v1/status/leader HTTP/1.1\r\nHost: %s\r\nX-Consul-Token: %s\r\n\r\n", httpAddr, token); err != nil {
			return "", err
		}
		resp, err := http.ReadResponse(kaR, nil)
		if err != nil {
			return "", err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.Status + " Connection: " + resp.Header.Get("Connection"), nil
	}
	if s, err := kaGet(); err != nil {
		return 0, fmt.Errorf("keep-alive connection, before the reload: %w", err)
	} else {
		logf("keep-alive connection %s, before the reload: %s", ka.LocalAddr(), s)
	}

	// Requests on new connections, all through the reload.
	var ok, failed atomic.Int64
	var maxLatency atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			t := time.Now()
			_, err := get(token, "/v1/status/leader")
			if d := time.Since(t); int64(d) > maxLatency.Load() {
				maxLatency.Store(int64(d))
			}
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
			} else {
				ok.Add(1)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()

	t0 := time.Now()
	if err := sh(3*time.Minute, "/", "systemctl", "reload", unit); err != nil {
		close(stop)
		wg.Wait()
		return 0, err
	}
	figure("systemctl_reload_returned", "%.1fs", time.Since(t0).Seconds())
	var newPID int
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		p, err := show("MainPID", "ActiveState", "SubState")
		if err == nil {
			if n, _ := strconv.Atoi(p["MainPID"]); n != 0 && n != oldPID && p["SubState"] == "running" {
				newPID = n
				break
			}
		}
		if time.Now().After(deadline) {
			close(stop)
			wg.Wait()
			return 0, fmt.Errorf("MainPID still %d (%v) 3 min after systemctl reload", oldPID, p)
		}
	}
	figure("reload_mainpid_changed", "%.1fs", time.Since(t0).Seconds())
	logf("MAINPID %d -> %d after %.1fs", oldPID, newPID, time.Since(t0).Seconds())
	// The old process drains and exits.
	for deadline := time.Now().Add(45 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if err := syscall.Kill(oldPID, 0); errors.Is(err, syscall.ESRCH) {
			break
		}
		if time.Now().After(deadline) {
			failf("the old process %d still runs 45 s after the new one took over", oldPID)
			break
		}
	}
	figure("reload_old_process_gone", "%.1fs", time.Since(t0).Seconds())
	time.Sleep(time.Second)
	// The old process's exit is not the service's end.
	if p, err := show("MainPID", "ActiveState", "SubState"); err != nil || p["ActiveState"] != "active" || p["MainPID"] != strconv.Itoa(newPID) {
		failf("after the old process exited: %v (%v), want active with MainPID %d", p, err, newPID)
	}
	close(stop)
	wg.Wait()

	r := <-blocking
	switch {
	case r.err != nil:
		failf("the blocking query open across the reload (%s) failed after %.1fs: %v", r.conn, r.took.Seconds(), r.err)
	case !strings.HasPrefix(r.status, "200"):
		failf("the blocking query open across the reload: %s", r.status)
	default:
		logf("ok: the blocking query open across the reload (connection %s) answered %s after %.1fs", r.conn, r.status, r.took.Seconds())
	}
	figure("reload_requests", "%d ok, %d failed, slowest %.2fs", ok.Load(), failed.Load(), time.Duration(maxLatency.Load()).Seconds())
	if failed.Load() > 0 || ok.Load() == 0 {
		failf("requests through the reload: %d ok, %d failed (first: %v)", ok.Load(), failed.Load(), firstErr.Load())
	} else {
		logf("ok: %d requests through the reload, none failed (slowest %.2fs)", ok.Load(), time.Duration(maxLatency.Load()).Seconds())
	}
	// The keep-alive connection sat idle in the old process. The README:
	// open connections are drained, not passed. So it either still
	// carries a request or was closed cleanly (FIN, no request lost),
	// never reset.
	_ = ka.SetReadDeadline(time.Now().Add(time.Second))
	var one [1]byte
	_, rerr := ka.Read(one[:])
	var ne net.Error
	switch {
	case errors.Is(rerr, io.EOF):
		logf("ok: the idle keep-alive connection %s was closed cleanly by the old process's drain (FIN; a client re-dials), as the README says", ka.LocalAddr())
	case errors.As(rerr, &ne) && ne.Timeout():
		if s, err := kaGet(); err != nil {
			failf("the keep-alive connection %s, still open after the reload, failed a request: %v", ka.LocalAddr(), err)
		} else {
			logf("ok: the keep-alive connection %s carried a request after the reload: %s", ka.LocalAddr(), s)
		}
	default:
		failf("the idle keep-alive connection %s after the reload: %v, want a clean close or an answer", ka.LocalAddr(), rerr)
	}
	return newPID, nil
}

// reloadOnce reloads and waits for the new process to be the unit's main
// one, the old one gone and the unit still active, serving.
func reloadOnce(oldPID int, token string) (int, error) {
	if err := sh(3*time.Minute, "/", "systemctl", "reload", unit); err != nil {
		return 0, err
	}
	deadline := time.Now().Add(3 * time.Minute)
	for ; ; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("the old process %d still runs 3 min after systemctl reload", oldPID)
		}
		if err := syscall.Kill(oldPID, 0); errors.Is(err, syscall.ESRCH) {
			break
		}
	}
	time.Sleep(time.Second)
	p, err := show("MainPID", "ActiveState", "SubState")
	if err != nil {
		return 0, err
	}
	pid, _ := strconv.Atoi(p["MainPID"])
	if p["ActiveState"] != "active" || pid == 0 || pid == oldPID {
		return 0, fmt.Errorf("after a reload and the old process's exit: %v, want active with a new MainPID", p)
	}
	if _, err := get(token, "/v1/status/leader"); err != nil {
		return 0, fmt.Errorf("after a reload: %w", err)
	}
	return pid, nil
}

// checkStop: systemctl stop ends the unit cleanly. peerd's pins stay (the
// README's promise: a restart keeps traffic flowing), and the README's
// peerd dataplane cleanup then leaves nothing pinned or attached.
func checkStop(progs map[int]string) {
	logf("== stop")
	t0 := time.Now()
	if err := sh(time.Minute, "/", "systemctl", "stop", unit); err != nil {
		failf("stop: %v", err)
		return
	}
	figure("stop", "%.1fs", time.Since(t0).Seconds())
	p, err := show("ActiveState", "Result", "ExecMainStatus")
	if err != nil {
		failf("stop: %v", err)
		return
	}
	if p["ActiveState"] != "inactive" || p["Result"] != "success" {
		failf("after systemctl stop: %v, want inactive, success", p)
	} else {
		logf("ok: stopped: %v", p)
	}
	pins, _ := pinned()
	alive := loaded(progs)
	logf("after stop: %d entries pinned under %s, %d of peerd's %d programs still loaded", len(pins), pinDir, len(alive), len(progs))
	if len(pins) == 0 || len(alive) == 0 {
		failf("after stop: the README promises the pins stay (traffic keeps flowing while peerd is down); found %d pins, %d programs", len(pins), len(alive))
	}

	logf("== peerd dataplane cleanup")
	if err := sh(time.Minute, "/", "/usr/local/bin/peerd", "dataplane", "cleanup"); err != nil {
		failf("cleanup: %v", err)
		return
	}
	pins, _ = pinned()
	alive = loaded(progs)
	if len(pins) > 0 {
		failf("after cleanup still pinned: %v", pins)
	}
	if len(alive) > 0 {
		failf("after cleanup still loaded (attached somewhere): %v", alive)
	}
	if out, _ := output("bpftool", "cgroup", "tree"); out != "" {
		logf("bpftool cgroup tree after cleanup:\n%s", out)
		for id := range progs {
			if regexp.MustCompile(`(?m)^\s*` + strconv.Itoa(id) + `\s`).MatchString(out) {
				failf("after cleanup prog %d is still attached to a cgroup", id)
			}
		}
	}
	if out, _ := output("ip", "route", "show", "table", "all", "proto", "0x70"); strings.TrimSpace(out) != "" {
		failf("after cleanup peerd's unreachable routes are left: %s", out)
	}
	if len(pins) == 0 && len(alive) == 0 {
		logf("ok: after peerd dataplane cleanup nothing is pinned under %s and none of peerd's %d programs is loaded or attached", pinDir, len(progs))
	}
}

func pinned() ([]string, error) {
	var out []string
	err := filepath.Walk(pinDir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return out, err
}

// loaded returns the programs of progs the kernel still has.
func loaded(progs map[int]string) []string {
	var out []string
	for id, what := range progs {
		if err := exec.Command("bpftool", "prog", "show", "id", strconv.Itoa(id)).Run(); err == nil {
			out = append(out, fmt.Sprintf("%d (%s)", id, what))
		}
	}
	return out
}
