package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/peerd/peerd/internal/testutil"
)

// TestReloadHandsOverListeners reloads a real peerd process with SIGHUP,
// in a private network namespace, while a request loop runs against its
// HTTP API, its DNS (UDP and TCP) and connects to its gRPC and gateway
// ports, and a blocking query is open:
//
//   - a new binary put at the same path serves after the reload, in a
//     new process; the old one exits within the drain deadline, the
//     blocking query completes, and not one request fails;
//   - a new process with a bad configuration leaves the old one serving;
//   - a new process that fails after the old one released its state (a
//     DNS port taken) leaves the old one serving again.
//
// It runs in dev mode (the new process starts beside the old one) and as
// a single server with a data dir (the old one drains and releases the
// raft store first).
func TestReloadHandsOverListeners(t *testing.T) {
	testutil.RequireRoot(t, "the reload test runs peerd in a private network namespace")
	if testing.Short() {
		t.Skip("builds peerd and reloads it several times: skipped with -short")
	}
	if !testutil.InNewNetns(t) {
		return
	}
	bin := t.TempDir()
	testutil.GoBuild(t, filepath.Join(bin, "v1"), "./cmd/peerd")
	testutil.GoBuild(t, filepath.Join(bin, "v2"), "-ldflags=-X main.version=reload-v2", "./cmd/peerd")
	for _, mode := range []string{"dev", "server"} {
		t.Run(mode, func(t *testing.T) { testReload(t, bin, mode) })
	}
}

func testReload(t *testing.T, bin, mode string) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "peerd")
	copyFile(t, filepath.Join(bin, "v1"), exe)
	conf := filepath.Join(dir, "conf.hcl")
	writeConf := func(s string) {
		if err := os.WriteFile(conf, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeConf("ports { dns = 18600 }\n")
	const httpAddr, dnsAddr = "127.0.0.1:18500", "127.0.0.1:18600"
	args := []string{"agent", "-config-file", conf, "-http-addr", httpAddr, "-reload-drain-timeout", "10s",
		"-grpc-addr", "127.0.0.1:18502", "-gateway-addr", "127.0.0.1:18443"}
	if mode == "dev" {
		args = append(args, "-dev")
	} else {
		args = append(args, "-server", "-bootstrap-expect", "1", "-data-dir", filepath.Join(dir, "data"),
			"-bind-addr", "127.0.0.1", "-insecure-gossip", "-acl-enabled=false", "-serf-lan-port", "18301", "-server-port", "18300",
			"-grpc-tls-addr", "127.0.0.1:18503")
	}
	logPath := filepath.Join(dir, "peerd.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	readLog := func() string { b, _ := os.ReadFile(logPath); return string(b) }
	// systemd's notification socket, to see READY=1, RELOADING=1 and the
	// new MAINPID.
	notifyPath := filepath.Join(dir, "notify")
	notifySock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notifySock.Close()
	var notifyMu sync.Mutex
	var notified []string
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := notifySock.Read(buf)
			if err != nil {
				return
			}
			notifyMu.Lock()
			notified = append(notified, string(buf[:n]))
			notifyMu.Unlock()
		}
	}()
	sawNotify := func(msg string) bool {
		notifyMu.Lock()
		defer notifyMu.Unlock()
		for _, m := range notified {
			if m == msg || strings.HasPrefix(m, msg) {
				return true
			}
		}
		return false
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+notifyPath)
	// A file, not a pipe: the new process writes to it too, and Wait must
	// not wait for it.
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	servingPID := cmd.Process.Pid
	oldExited := make(chan time.Time, 1)
	go func() { _ = cmd.Wait(); oldExited <- time.Now() }()
	defer func() {
		// Whichever process serves at the end is stopped; it is not our
		// child after a reload, so wait for it to be gone.
		_ = syscall.Kill(servingPID, syscall.SIGTERM)
		deadline := time.Now().Add(30 * time.Second)
		for syscall.Kill(servingPID, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if t.Failed() {
			t.Logf("peerd's log:\n%s", readLog())
		}
	}()
	client := &http.Client{Timeout: 20 * time.Second}
	waitFor(t, 30*time.Second, "peerd to serve", func() bool {
		resp, err := client.Get("http://" + httpAddr + "/v1/catalog/services")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if mode == "server" {
		waitFor(t, 30*time.Second, "a raft leader", func() bool {
			b, err := get(client, "http://"+httpAddr+"/v1/status/leader")
			return err == nil && strings.Contains(b, ":18300")
		})
	}

	waitFor(t, 10*time.Second, "READY=1 to systemd", func() bool { return sawNotify("READY=1") })

	// The request loop: HTTP, DNS over UDP and over TCP, one after another.
	ctx, stop := context.WithCancel(context.Background())
	var ok, failed, slowest atomic.Int64
	var failures sync.Map
	var loop sync.WaitGroup
	fail := func(what string, err error) {
		failed.Add(1)
		failures.Store(fmt.Sprintf("%s at %s", what, time.Now().Format("15:04:05.000")), err)
	}
	// Connects to the gRPC and gateway listeners: a refused one is a
	// listener that was not passed on.
	for _, addr := range []string{"127.0.0.1:18502", "127.0.0.1:18443"} {
		loop.Add(1)
		go func() {
			defer loop.Done()
			for ctx.Err() == nil {
				if c, err := net.DialTimeout("tcp", addr, 20*time.Second); err != nil {
					fail("connect "+addr, err)
				} else {
					c.Close()
					ok.Add(1)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}()
	}
	for _, kind := range []string{"http", "udp", "tcp"} {
		loop.Add(1)
		go func() {
			defer loop.Done()
			dc := &dns.Client{Net: kind, Timeout: 20 * time.Second}
			m := new(dns.Msg)
			m.SetQuestion("web.service.peerd.", dns.TypeA)
			for ctx.Err() == nil {
				began := time.Now()
				if kind == "http" {
					if _, err := get(client, "http://"+httpAddr+"/v1/catalog/services"); err != nil {
						fail("http", err)
					} else {
						ok.Add(1)
					}
				} else {
					r, _, err := dc.Exchange(m, dnsAddr)
					switch {
					case err != nil:
						fail(kind, err)
					case r.Rcode == dns.RcodeServerFailure:
						fail(kind, fmt.Errorf("SERVFAIL"))
					default:
						ok.Add(1)
					}
				}
				if d := time.Since(began); d > time.Duration(slowest.Load()) {
					slowest.Store(int64(d))
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}

	// A blocking query open across the reload: the old process drains it.
	index := currentIndex(t, client, "http://"+httpAddr+"/v1/catalog/services")
	blocking := make(chan error, 1)
	go func() {
		_, err := get(client, fmt.Sprintf("http://%s/v1/catalog/services?index=%d&wait=2s", httpAddr, index))
		blocking <- err
	}()
	time.Sleep(300 * time.Millisecond) // the query is parked in the old process

	// 1. A new binary at the same path, then SIGHUP.
	copyFile(t, filepath.Join(bin, "v2"), exe)
	hup := time.Now()
	if err := syscall.Kill(servingPID, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	var newPID int
	waitFor(t, 30*time.Second, "the new process to take over", func() bool {
		m := regexp.MustCompile(`took over from the old process" pid=(\d+)`).FindStringSubmatch(readLog())
		if m == nil {
			return false
		}
		newPID, _ = strconv.Atoi(m[1])
		return true
	})
	var exited time.Time
	select {
	case exited = <-oldExited:
	case <-time.After(15 * time.Second):
		t.Fatal("the old process did not exit within the drain deadline (10s) and a margin")
	}
	drained := exited.Sub(hup)
	if drained > 10*time.Second+2*time.Second {
		t.Errorf("the old process exited %s after SIGHUP; the drain deadline is 10s", drained)
	}
	if err := <-blocking; err != nil {
		t.Errorf("the blocking query open across the reload failed: %v", err)
	}
	if newPID == servingPID || newPID == 0 {
		t.Fatalf("new pid %d, old %d", newPID, servingPID)
	}
	servingPID = newPID
	if !sawNotify("RELOADING=1\nMONOTONIC_USEC=") {
		t.Error("the old process did not send RELOADING=1 with MONOTONIC_USEC")
	}
	// The new process sends it right after it tells the old one.
	want := fmt.Sprintf("MAINPID=%d\nREADY=1", newPID)
	waitFor(t, 10*time.Second, fmt.Sprintf("the new process to send %q", want), func() bool { return sawNotify(want) })
	if v := agentVersion(t, client, httpAddr); v != "reload-v2" {
		t.Errorf("after the reload the agent's version is %q; want reload-v2 (the new binary at the same path)", v)
	}
	t.Logf("%s: reload 1: new pid %d served, old exited %s after SIGHUP (blocking query drained)", mode, newPID, drained.Round(time.Millisecond))

	// 2. A bad configuration: the new process exits, the old one serves on.
	writeConf("ports { dns = \"not a port\" }\n")
	reloadFails(t, servingPID, readLog, 1)
	if v := agentVersion(t, client, httpAddr); v != "reload-v2" {
		t.Errorf("after a failed reload the version is %q", v)
	}

	// 3. A failure after the state was released (in server mode): the new
	// process cannot bind the DNS port of its configuration.
	taken, err := net.ListenPacket("udp", "127.0.0.1:18700")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenTCP, err := net.Listen("tcp", "127.0.0.1:18700")
	if err != nil {
		t.Fatal(err)
	}
	defer takenTCP.Close()
	writeConf("ports { dns = 18700 }\n")
	reloadFails(t, servingPID, readLog, 2)
	if mode == "server" {
		// It had released its state to the new process: it starts its
		// agent again on the same sockets.
		waitFor(t, 60*time.Second, "the old process to serve again", func() bool {
			return strings.Contains(readLog(), "serving again after the failed reload")
		})
	}
	time.Sleep(500 * time.Millisecond)
	if v := agentVersion(t, client, httpAddr); v != "reload-v2" {
		t.Errorf("after the second failed reload the version is %q", v)
	}

	stop()
	loop.Wait()
	failures.Range(func(k, v any) bool { t.Errorf("request failed: %s: %v", k, v); return true })
	t.Logf("%s: %d requests answered, %d failed, slowest %s (queued in a backlog), across 1 reload and 2 failed reloads",
		mode, ok.Load(), failed.Load(), time.Duration(slowest.Load()).Round(time.Millisecond))
	if ok.Load() == 0 {
		t.Fatal("no request was answered")
	}
}

// reloadFails sends SIGHUP to pid and waits for its n-th "reload failed"
// log line; pid must still be alive after it.
func reloadFails(t *testing.T, pid int, readLog func() string, n int) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, fmt.Sprintf("failed reload %d to be logged", n), func() bool {
		return strings.Count(readLog(), "reload failed") >= n
	})
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("the old process (pid %d) is gone after a failed reload: %v", pid, err)
	}
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func get(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s: %s", url, resp.Status, b)
	}
	return string(b), nil
}

func currentIndex(t *testing.T, c *http.Client, url string) uint64 {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	i, err := strconv.ParseUint(resp.Header.Get("X-Consul-Index"), 10, 64)
	if err != nil {
		t.Fatalf("X-Consul-Index %q: %v", resp.Header.Get("X-Consul-Index"), err)
	}
	return i
}

func agentVersion(t *testing.T, c *http.Client, addr string) string {
	t.Helper()
	b, err := get(c, "http://"+addr+"/v1/agent/self")
	if err != nil {
		t.Fatal(err)
	}
	var self struct{ Config struct{ Version string } }
	if err := json.Unmarshal([]byte(b), &self); err != nil {
		t.Fatal(err)
	}
	return self.Config.Version
}

// copyFile puts src at dst by rename, as a package upgrade does: the
// running binary keeps its old inode.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	tmp := dst + ".new"
	if err := os.WriteFile(tmp, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}
