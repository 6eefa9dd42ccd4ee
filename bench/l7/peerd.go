//go:build linux

package l7

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Timeouts of the peerd set-up.
const (
	agentStartTimeout = 20 * time.Second // banner and leader
	agentStopTimeout  = 15 * time.Second // SIGTERM to exit
	replicateTimeout  = 30 * time.Second // A imports billing
	upstreamTimeout   = 30 * time.Second // the upstream answers from the echo server
	peerctlTimeout    = 30 * time.Second
)

// StartEcho starts the echo server binary on a free loopback port and
// returns it with its address.
func StartEcho(env Env, path string, size int) (*Proc, string, error) {
	p, err := Start(env, "echo", 10*time.Second, path, "-addr", "127.0.0.1:0", "-size", strconv.Itoa(size))
	if err != nil {
		return nil, "", err
	}
	addr, err := p.WaitForLine(regexp.MustCompile(`^listening on (\S+)`), 10*time.Second)
	if err != nil {
		return nil, "", err
	}
	return p, addr, nil
}

// HasGatewayFlag reports whether `peerd agent -h` lists -gateway-addr, the
// flag of the inbound mTLS gateway that mode (b) needs.
func HasGatewayFlag(peerd string) bool {
	out, _ := exec.Command(peerd, "agent", "-h").CombinedOutput()
	return strings.Contains(string(out), "-gateway-addr")
}

// Agent is one running `peerd agent -dev`.
type Agent struct {
	*Proc
	HTTPAddr    string
	GatewayAddr string // as given with -gateway-addr
	Banner      string // the gateway's banner line, if it prints one
}

// PeerdPair is mode (b): agent A (cluster dc-a, service web with an
// upstream to billing in peer cluster-b) and agent B (cluster dc-b,
// billing = the echo server, exported to cluster-a, HTTP, intentions
// allowing web from cluster-a).
type PeerdPair struct {
	A, B *Agent
	// Upstream is A's outbound listener for billing,
	// 127.0.0.1:<local_bind_port>.
	Upstream string
}

// Tails returns the last lines of both agents' output.
func (p *PeerdPair) Tails(n int) string {
	var b strings.Builder
	for _, a := range []*Agent{p.A, p.B} {
		if a != nil {
			b.WriteString(a.Tail(n))
		}
	}
	return b.String()
}

// StartPeerdPair starts two dev agents and peers them as scripts/demo.sh
// does (B generates a token for cluster-a, A establishes cluster-b with
// it), then: in B, registers billing at echoAddr and writes its
// service-defaults (protocol http), the exported-services entry (billing to
// cluster-a) and its service-intentions (allow web from cluster-a); in A,
// once A has imported billing, registers web with an explicit upstream to
// billing in cluster-b; and waits until GET / on that upstream is answered
// by the echo server. On error the agents' log tails are in the error; the
// agents are stopped by env's cleanups either way.
func StartPeerdPair(env Env, peerd, peerctl, echoAddr string, bodySize int) (*PeerdPair, error) {
	return StartPeerdPairWith(env, peerd, peerctl, echoAddr, bodySize, PairOptions{})
}

// PairOptions adjust StartPeerdPair: extra flags for agent A (e.g. the
// eBPF dataplane's) and the service meta of web (e.g. the cgroup it runs
// in).
type PairOptions struct {
	AArgs   []string
	WebMeta map[string]string
	// ACgroup, when set, is the cgroup v2 directory agent A runs in.
	ACgroup string
}

// StartPeerdPairWith is StartPeerdPair with options.
func StartPeerdPairWith(env Env, peerd, peerctl, echoAddr string, bodySize int, opt PairOptions) (*PeerdPair, error) {
	pair := &PeerdPair{}
	var err error
	if pair.B, err = startAgent(env, "", peerd, "peerd-b", "b", "dc-b"); err != nil {
		return nil, err
	}
	if pair.A, err = startAgent(env, opt.ACgroup, peerd, "peerd-a", "a", "dc-a", opt.AArgs...); err != nil {
		return nil, err
	}
	fail := func(format string, args ...any) (*PeerdPair, error) {
		return nil, fmt.Errorf("%s\n%s", fmt.Sprintf(format, args...), pair.Tails(30))
	}
	ctl := func(a *Agent, args ...string) (string, error) {
		return runPeerctl(peerctl, a.HTTPAddr, args...)
	}
	file := func(name, content string) (string, error) {
		path := filepath.Join(env.Dir, name)
		return path, os.WriteFile(path, []byte(content), 0o644)
	}

	echoHost, echoPort, ok := strings.Cut(echoAddr, ":")
	if !ok {
		return nil, fmt.Errorf("echo address %q has no port", echoAddr)
	}
	steps := []struct{ name, content string }{
		{"billing.hcl", fmt.Sprintf("service {\n  name    = \"billing\"\n  address = %q\n  port    = %s\n}\n", echoHost, echoPort)},
		{"billing-defaults.hcl", "Kind     = \"service-defaults\"\nName     = \"billing\"\nProtocol = \"http\"\n"},
		{"exported-services.hcl", "Kind = \"exported-services\"\nName = \"default\"\nServices = [\n  {\n    Name      = \"billing\"\n    Consumers = [{ Peer = \"cluster-a\" }]\n  }\n]\n"},
		{"billing-intentions.hcl", "Kind = \"service-intentions\"\nName = \"billing\"\nSources = [\n  {\n    Name   = \"web\"\n    Peer   = \"cluster-a\"\n    Action = \"allow\"\n  }\n]\n"},
	}
	for i, s := range steps {
		path, err := file(s.name, s.content)
		if err != nil {
			return nil, err
		}
		args := []string{"config", "write", path}
		if i == 0 {
			args = []string{"services", "register", path}
		}
		if out, err := ctl(pair.B, args...); err != nil {
			return fail("B: peerctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	token, err := ctl(pair.B, "peering", "generate-token", "-name", "cluster-a")
	if err != nil {
		return fail("B: peerctl peering generate-token: %v\n%s", err, token)
	}
	token = strings.TrimSpace(token)
	if out, err := ctl(pair.A, "peering", "establish", "-name", "cluster-b", "-peering-token", token); err != nil {
		return fail("A: peerctl peering establish: %v\n%s", err, out)
	}
	imported := "http://" + pair.A.HTTPAddr + "/v1/health/service/billing?peer=cluster-b&passing"
	if err := poll(replicateTimeout, func() error {
		body, err := httpGet(imported)
		if err == nil && !strings.Contains(body, `"billing"`) {
			err = fmt.Errorf("not yet: %.200s", body)
		}
		return err
	}); err != nil {
		return fail("A did not import billing from cluster-b, passing, within %s: %v", replicateTimeout, err)
	}

	if pair.Upstream, err = FreeAddr(); err != nil {
		return nil, err
	}
	_, bindPort, _ := strings.Cut(pair.Upstream, ":")
	meta := ""
	for k, v := range opt.WebMeta {
		meta += fmt.Sprintf("    %q = %q\n", k, v)
	}
	if meta != "" {
		meta = "  meta = {\n" + meta + "  }\n"
	}
	web := fmt.Sprintf(`service {
  name = "web"
  port = 9
%s  proxy {
    upstreams = [
      {
        destination_peer   = "cluster-b"
        destination_name   = "billing"
        local_bind_address = "127.0.0.1"
        local_bind_port    = %s
      }
    ]
  }
}
`, meta, bindPort)
	path, err := file("web.hcl", web)
	if err != nil {
		return nil, err
	}
	if out, err := ctl(pair.A, "services", "register", path); err != nil {
		return fail("A: peerctl services register web.hcl: %v\n%s", err, out)
	}
	if err := WaitEcho(pair.Upstream, bodySize, upstreamTimeout); err != nil {
		return fail("A's upstream for billing (%s): %v", pair.Upstream, err)
	}
	return pair, nil
}

func startAgent(env Env, cgroup, peerd, name, node, dc string, extra ...string) (*Agent, error) {
	gw, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	// Both clusters' gateways are on 127.0.0.1: -dev's default, said.
	args := append([]string{"agent", "-dev", "-node", node, "-datacenter", dc, "-log-level", "warn", "-gateway-addr", gw,
		"-peering-allow-local-gateways=true"}, extra...)
	p, err := StartInCgroup(env, cgroup, name, agentStopTimeout, peerd, args...)
	if err != nil {
		return nil, err
	}
	a := &Agent{Proc: p, GatewayAddr: gw}
	addr, err := p.WaitForLine(regexp.MustCompile(`^\s*http:\s+(?:http://)?(\S+)`), agentStartTimeout)
	if err != nil {
		return nil, err
	}
	a.HTTPAddr = addr
	if err := poll(agentStartTimeout, func() error {
		leader, err := httpGet("http://" + addr + "/v1/status/leader")
		if err == nil && (strings.TrimSpace(leader) == "" || strings.TrimSpace(leader) == `""`) {
			err = fmt.Errorf("no leader yet")
		}
		if exited, werr := p.Exited(); exited {
			return fmt.Errorf("%w: exited (%v)", errGiveUp, werr)
		}
		return err
	}); err != nil {
		return nil, fmt.Errorf("%s (%s): no leader within %s: %v\n%s", name, addr, agentStartTimeout, err, p.Tail(30))
	}
	if line, err := p.WaitForLine(regexp.MustCompile(`^\s*(gateway.*)$`), time.Second); err == nil {
		a.Banner = strings.TrimSpace(line)
	}
	return a, nil
}

var errGiveUp = errors.New("giving up")

// poll calls f until it returns nil, errGiveUp (wrapped), or timeout
// passes, and returns f's last error.
func poll(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || errors.Is(err, errGiveUp) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func httpGet(url string) (string, error) {
	client := &http.Client{Timeout: 3 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(body), fmt.Errorf("GET %s: %s: %.200s", url, resp.Status, body)
	}
	return string(body), nil
}

func runPeerctl(peerctl, httpAddr string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), peerctlTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, peerctl, append([]string{"-http-addr", httpAddr}, args...)...)
	out, err := cmd.Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out) + string(ee.Stderr), err
	}
	return string(out), err
}
