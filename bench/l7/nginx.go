//go:build linux

package l7

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// NoInstallEnv, when set to a non-empty value, stops FindNginx from
// installing nginx.
const NoInstallEnv = "PEERD_BENCH_NO_INSTALL"

// nginxPackage is the Debian package with the nginx binary: in bookworm,
// "nginx" itself (nginx-light, -core, -full and -extras depend on it and add
// modules); in older releases a metapackage that pulls one of them in.
const nginxPackage = "nginx"

// policyRCD is Debian's hook that invoke-rc.d asks before starting a
// service; exit status 101 means "not allowed".
const policyRCD = "/usr/sbin/policy-rc.d"

// FindNginx returns the path of an nginx binary. If there is none and this
// process runs as root on a system with apt-get, it installs Debian's nginx
// package first, with a temporary policy-rc.d that forbids starting
// services, then disables the system service and stops it should it have
// started anyway. It returns "" and the reason when there is no nginx to
// use.
func FindNginx(logf func(string, ...any)) (path, skipReason string) {
	if p := lookNginx(); p != "" {
		return p, ""
	}
	switch {
	case os.Getenv(NoInstallEnv) != "":
		return "", fmt.Sprintf("nginx is not installed and %s is set", NoInstallEnv)
	case os.Geteuid() != 0:
		return "", "nginx is not installed and installing it needs root (apt-get install nginx)"
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return "", "nginx is not installed and there is no apt-get to install it with"
	}
	if err := installNginx(logf); err != nil {
		return "", "nginx could not be installed: " + err.Error()
	}
	if p := lookNginx(); p != "" {
		return p, ""
	}
	return "", "apt-get installed " + nginxPackage + " but no nginx binary was found"
}

func lookNginx() string {
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

func installNginx(logf func(string, ...any)) (err error) {
	restore, err := denyServiceStarts()
	if err != nil {
		return err
	}
	defer func() {
		if rerr := restore(); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}()
	install := []string{"install", "-y", "-q", "--no-install-recommends", nginxPackage}
	logf("nginx not found: apt-get %s (with a temporary %s that forbids starting services)", strings.Join(install, " "), policyRCD)
	out, err := aptGet(install...)
	if err != nil {
		logf("apt-get install failed (%v: %s); apt-get update and retrying once", err, lastLines(out, 3))
		if uout, uerr := aptGet("update", "-q"); uerr != nil {
			return fmt.Errorf("apt-get update: %v\n%s", uerr, lastLines(uout, 10))
		}
		if out, err = aptGet(install...); err != nil {
			return fmt.Errorf("apt-get install: %v\n%s", err, lastLines(out, 10))
		}
	}
	disableSystemNginx(logf)
	return nil
}

func aptGet(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "apt-get", args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive", "NEEDRESTART_MODE=l")
	cmd.Stdin = nil
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// denyServiceStarts puts a policy-rc.d that exits 101 in place, moving an
// existing one aside, and returns the function that puts things back.
func denyServiceStarts() (restore func() error, err error) {
	backup := ""
	if _, err := os.Lstat(policyRCD); err == nil {
		backup = policyRCD + ".peerd-bench-" + strconv.Itoa(os.Getpid())
		if err := os.Rename(policyRCD, backup); err != nil {
			return nil, fmt.Errorf("move %s aside: %w", policyRCD, err)
		}
	}
	if err := os.WriteFile(policyRCD, []byte("#!/bin/sh\n# peerd bench: installing nginx without starting it\nexit 101\n"), 0o755); err != nil {
		if backup != "" {
			_ = os.Rename(backup, policyRCD)
		}
		return nil, fmt.Errorf("write %s: %w", policyRCD, err)
	}
	return func() error {
		if backup != "" {
			return os.Rename(backup, policyRCD)
		}
		return os.Remove(policyRCD)
	}, nil
}

// disableSystemNginx keeps the nginx the package just installed from
// starting at boot, and stops it should it be running despite policy-rc.d.
func disableSystemNginx(logf func(string, ...any)) {
	run := func(name string, args ...string) {
		if _, err := exec.LookPath(name); err != nil {
			return
		}
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			logf("%s %s: %v: %s", name, strings.Join(args, " "), err, lastLines(string(out), 3))
		}
	}
	// systemctl disable also works without a running systemd (it edits
	// the unit symlinks, and the SysV links through systemd-sysv-install).
	if fi, err := os.Stat("/run/systemd/system"); err == nil && fi.IsDir() {
		run("systemctl", "disable", "--now", "nginx.service")
	} else if _, err := exec.LookPath("systemctl"); err == nil {
		run("systemctl", "disable", "nginx.service")
	} else {
		run("update-rc.d", "nginx", "disable")
	}
	data, err := os.ReadFile("/run/nginx.pid")
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 1 {
		return
	}
	comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if strings.TrimSpace(string(comm)) != "nginx" {
		return
	}
	logf("the system nginx (pid %d) started during the install: stopping it", pid)
	_ = syscall.Kill(pid, syscall.SIGQUIT)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
			return
		}
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// NginxVersion returns `nginx -v`'s answer.
func NginxVersion(path string) string {
	out, err := exec.Command(path, "-v").CombinedOutput()
	if err != nil {
		return fmt.Sprintf("unknown (%v)", err)
	}
	return strings.TrimPrefix(strings.TrimSpace(string(out)), "nginx version: ")
}

// Nginx is one running nginx: a master and its one worker, in one process
// group.
type Nginx struct {
	*Proc
	Prefix string
	Addr   string // listen address
}

// CPU returns the CPU time of the master and its workers so far.
func (n *Nginx) CPU() (time.Duration, error) { return GroupCPU(n.Pid()) }

// NginxPair is the baseline's two hops: Outbound (nginx #1, plain HTTP in,
// mTLS to Gateway) and Gateway (nginx #2, mTLS in, plain HTTP to the echo
// server).
type NginxPair struct {
	Outbound, Gateway *Nginx
}

// StartNginxPair writes the two configurations, checks them with nginx -t,
// and starts both (nginx -p DIR -c nginx.conf -e error.log -g 'daemon off;').
// outboundAddr and gatewayAddr are the listen addresses, echoAddr the echo
// server's.
func StartNginxPair(env Env, nginx string, pki *NginxPKI, outboundAddr, gatewayAddr, echoAddr string) (*NginxPair, error) {
	gw, err := startNginx(env, nginx, "nginx-gateway", gatewayAddr, gatewayConf(pki, gatewayAddr, echoAddr))
	if err != nil {
		return nil, err
	}
	out, err := startNginx(env, nginx, "nginx-outbound", outboundAddr, outboundConf(pki, outboundAddr, gatewayAddr))
	if err != nil {
		return nil, err
	}
	return &NginxPair{Outbound: out, Gateway: gw}, nil
}

// commonConf is the part both configurations share: one worker, no access
// log, errors to the prefix directory, every temporary path inside it, and
// no limit (in practice) on requests per keep-alive connection, whose
// default of 1000 would make the load generator reconnect and nginx
// handshake again in the middle of the runs.
func commonConf(prefix string) string {
	user := ""
	if os.Geteuid() == 0 {
		// As root, nginx would switch its worker to "nobody", which may
		// not have a group of that name; the worker opens nothing itself.
		user = "user root root;\n"
	}
	return user + `worker_processes 1;
pid ` + filepath.Join(prefix, "nginx.pid") + `;
error_log ` + filepath.Join(prefix, "error.log") + ` warn;
events {
    worker_connections 1024;
}
`
}

func httpCommon(prefix string) string {
	tmp := filepath.Join(prefix, "tmp")
	return `    access_log off;
    client_body_temp_path ` + tmp + `/client_body;
    proxy_temp_path ` + tmp + `/proxy;
    fastcgi_temp_path ` + tmp + `/fastcgi;
    uwsgi_temp_path ` + tmp + `/uwsgi;
    scgi_temp_path ` + tmp + `/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
`
}

// outboundConf is nginx #1: plain HTTP in; out over TLS 1.3 to nginx #2 on
// kept-alive connections, presenting web's leaf, verifying nginx #2's chain
// against root B and its name against the peered SNI, which it also sends.
func outboundConf(pki *NginxPKI, listen, gateway string) func(prefix string) string {
	return func(prefix string) string {
		return commonConf(prefix) + `http {
` + httpCommon(prefix) + `
    upstream peer_gateway {
        server ` + gateway + `;
        keepalive 128;
        keepalive_requests 10000000;
        keepalive_timeout 300s;
    }
    server {
        listen ` + listen + `;
        location / {
            proxy_pass https://peer_gateway;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_ssl_protocols TLSv1.3;
            proxy_ssl_certificate ` + pki.ClientCert + `;
            proxy_ssl_certificate_key ` + pki.ClientKey + `;
            proxy_ssl_trusted_certificate ` + pki.RootB + `;
            proxy_ssl_verify on;
            proxy_ssl_verify_depth 2;
            proxy_ssl_server_name on;
            proxy_ssl_name ` + pki.SNI + `;
            proxy_ssl_session_reuse on;
        }
    }
}
`
	}
}

// gatewayConf is nginx #2: TLS 1.3 in, requiring a client certificate that
// chains to root A; plain HTTP out to the echo server on kept-alive
// connections.
func gatewayConf(pki *NginxPKI, listen, echo string) func(prefix string) string {
	return func(prefix string) string {
		return commonConf(prefix) + `http {
` + httpCommon(prefix) + `
    upstream echo {
        server ` + echo + `;
        keepalive 128;
        keepalive_requests 10000000;
        keepalive_timeout 300s;
    }
    server {
        listen ` + listen + ` ssl;
        ssl_protocols TLSv1.3;
        ssl_certificate ` + pki.ServerCert + `;
        ssl_certificate_key ` + pki.ServerKey + `;
        ssl_client_certificate ` + pki.RootA + `;
        ssl_verify_client on;
        ssl_verify_depth 2;
        location / {
            proxy_pass http://echo;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
`
	}
}

func startNginx(env Env, nginx, name, listen string, conf func(prefix string) string) (*Nginx, error) {
	prefix := filepath.Join(env.Dir, name)
	if err := os.MkdirAll(filepath.Join(prefix, "tmp"), 0o755); err != nil {
		return nil, err
	}
	confPath := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf(prefix)), 0o644); err != nil {
		return nil, err
	}
	args := []string{"-p", prefix + "/", "-c", confPath, "-e", filepath.Join(prefix, "error.log"), "-g", "daemon off;"}
	if out, err := exec.Command(nginx, append([]string{"-t", "-q"}, args...)...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%s: nginx -t: %v\n%s", name, err, out)
	}
	p, err := Start(env, name, 10*time.Second, nginx, args...)
	if err != nil {
		return nil, err
	}
	n := &Nginx{Proc: p, Prefix: prefix, Addr: listen}
	if err := waitListening(listen, 10*time.Second, p); err != nil {
		return nil, fmt.Errorf("%w\n--- error.log ---\n%s", err, TailFile(filepath.Join(prefix, "error.log"), 30))
	}
	return n, nil
}
