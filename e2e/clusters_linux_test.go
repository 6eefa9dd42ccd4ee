//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/peerd/peerd/internal/testutil"
)

// cluster is one of the fault suite's two clusters: three servers and a
// client, each a peerd process on its own host of the cluster's LAN, with
// cluster trust (a CA made by the first server, join tokens for the rest)
// and ACLs on (default deny, a management token for the suite).
type cluster struct {
	name     string // "a": hosts are a-s1 .. a-c1
	peerName string // what the other cluster calls this one: "cluster-a"
	lan      *lan
	servers  []*node
	client   *node
	token    string // the management token

	writes  *history
	service string // the service the writer registers instances of, exported to the other cluster
}

// suiteBinaries are the two builds of cmd/peerd the suite runs: every
// node starts on the first; a reload with a new binary installs the
// second (its version says which one serves).
type suiteBinaries struct{ v1, v2 string }

const (
	versionV1 = "e2e-v1"
	versionV2 = "e2e-v2"
)

func buildSuiteBinaries(t *testing.T) suiteBinaries {
	t.Helper()
	dir := t.TempDir()
	b := suiteBinaries{v1: filepath.Join(dir, "peerd-v1"), v2: filepath.Join(dir, "peerd-v2")}
	testutil.GoBuild(t, b.v1, "-ldflags=-X main.version="+versionV1, "./cmd/peerd")
	testutil.GoBuild(t, b.v2, "-ldflags=-X main.version="+versionV2, "./cmd/peerd")
	return b
}

// installBinary copies src to the node-private path dst, renaming over
// whatever is there, as a package upgrade does: a running process keeps
// its old file.
func installBinary(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	tmp := dst + ".new"
	if err := os.WriteFile(tmp, data, 0o755); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// startCluster starts the cluster name on l: s1 bootstraps and makes the
// CA, s2 and s3 join as servers and c1 as a client with join tokens. It
// returns once the three servers are voters under one leader.
func startCluster(ctx context.Context, t *testing.T, bins suiteBinaries, name string, l *lan) *cluster {
	t.Helper()
	c := &cluster{name: name, peerName: "cluster-" + name, lan: l, token: uuid.NewString(),
		writes: newHistory(), service: "ledger-" + name}
	aclFile := func(server bool) string {
		path := filepath.Join(t.TempDir(), "acl.hcl")
		mgmt := ""
		if server {
			mgmt = fmt.Sprintf("initial_management = %q\n", c.token)
		}
		body := fmt.Sprintf("acl {\n  enabled = true\n  default_policy = \"deny\"\n  tokens {\n    %s    agent = %q\n  }\n}\n", mgmt, c.token)
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	start := func(host string, server bool, args ...string) *node {
		h := l.addHost(t, name+"-"+host)
		bin := filepath.Join(t.TempDir(), "peerd")
		if err := installBinary(bins.v1, bin); err != nil {
			t.Fatal(err)
		}
		args = append([]string{"-datacenter", "dc-" + name, "-acl-enabled=true", "-config-file", aclFile(server),
			"-server-stabilization-time", "2s", "-log-level", "info"}, args...)
		if server {
			args = append(args, "-server")
		}
		return startNodeWith(t, h, bin, c.token, args...)
	}
	s1 := start("s1", true, "-bootstrap-expect", "1")
	joinToken := func(role string) string {
		var out struct{ Token string }
		testutil.EventuallyEvery(t, 60*time.Second, 200*time.Millisecond, name+": a "+role+" join token from s1", func() error {
			return s1.do(ctx, "POST", "/v1/operator/join-token", strings.NewReader(`{"Role":"`+role+`","TTL":"1h"}`), &out)
		})
		return out.Token
	}
	serverToken, clientToken := joinToken("server"), joinToken("client")
	c.servers = []*node{s1, start("s2", true, "-join-token", serverToken), start("s3", true, "-join-token", serverToken)}
	c.client = start("c1", false, "-join-token", clientToken)
	testutil.EventuallyEvery(t, 90*time.Second, 300*time.Millisecond, name+": three voters and a leader", c.healthy(ctx))
	return c
}

// healthy returns a check that every server knows the same leader, the
// raft configuration has three voters and autopilot calls it healthy.
func (c *cluster) healthy(ctx context.Context) func() error {
	return func() error {
		leader := ""
		for _, s := range c.servers {
			var l string
			if err := s.getJSON(ctx, "/v1/status/leader", &l); err != nil {
				return err
			}
			if l == "" || (leader != "" && l != leader) {
				return fmt.Errorf("%s: leader %q (others: %q)", s.name, l, leader)
			}
			leader = l
		}
		var health struct {
			Healthy bool
			Voters  []string
			Servers []struct {
				Name    string
				Healthy bool
				Voter   bool
			}
		}
		if err := c.servers[0].getJSON(ctx, "/v1/operator/autopilot/health", &health); err != nil {
			return err
		}
		voters := 0
		for _, s := range health.Servers {
			if s.Voter && s.Healthy {
				voters++
			}
		}
		if !health.Healthy || voters != 3 {
			return fmt.Errorf("autopilot: healthy %v, %d healthy voters: %+v", health.Healthy, voters, health.Servers)
		}
		return nil
	}
}

// leader is the server that is the raft leader now.
func (c *cluster) leader(ctx context.Context) (*node, error) {
	var errs []error
	for _, s := range c.servers {
		var l string
		if err := s.getJSON(ctx, "/v1/status/leader", &l); err != nil {
			errs = append(errs, err)
			continue
		}
		for _, cand := range c.servers {
			if l != "" && strings.HasPrefix(l, cand.ip+":") {
				return cand, nil
			}
		}
		errs = append(errs, fmt.Errorf("%s: leader %q is no server", s.name, l))
	}
	return nil, fmt.Errorf("%s: no leader: %w", c.name, errors.Join(errs...))
}

// put sends a write with a JSON body to any node of the cluster.
func (n *node) put(ctx context.Context, path string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	return n.do(ctx, http.MethodPut, path, strings.NewReader(string(b)), nil)
}

// peerClusters peers a (dialer) with b (acceptor), and waits for both
// sides to be ACTIVE.
func peerClusters(ctx context.Context, t *testing.T, a, b *cluster) {
	t.Helper()
	var tok struct{ PeeringToken string }
	testutil.EventuallyEvery(t, 30*time.Second, 300*time.Millisecond, "a peering token from "+b.name, func() error {
		return b.servers[0].do(ctx, "POST", "/v1/peering/token", strings.NewReader(`{"PeerName":"`+a.peerName+`"}`), &tok)
	})
	body, _ := json.Marshal(map[string]string{"PeerName": b.peerName, "PeeringToken": tok.PeeringToken})
	if err := a.servers[0].do(ctx, "POST", "/v1/peering/establish", strings.NewReader(string(body)), nil); err != nil {
		t.Fatalf("establish the peering: %v", err)
	}
	testutil.EventuallyEvery(t, 60*time.Second, 300*time.Millisecond, "the peering ACTIVE on both sides", func() error {
		return peeringsActive(ctx, a, b)
	})
}

// peeringsActive checks that each side's peering with the other is ACTIVE.
func peeringsActive(ctx context.Context, a, b *cluster) error {
	for _, side := range [][2]*cluster{{a, b}, {b, a}} {
		var p struct{ State string }
		// A fault may have taken a server down: any that answers.
		if err := anyServer(side[0], func(n *node) error {
			return n.getJSON(ctx, "/v1/peering/"+side[1].peerName, &p)
		}); err != nil {
			return err
		}
		if p.State != "ACTIVE" {
			return fmt.Errorf("%s's peering with %s is %s", side[0].name, side[1].peerName, p.State)
		}
	}
	return nil
}

// The traffic workload: billing runs on b's client; a's client runs web,
// whose explicit upstream (a listener of a's terminator) reaches billing
// through mTLS and b's node gateway; every request opens a connection
// of its own, so a failure is a request's and not a pooled connection's.
const (
	billingPort  = 9090
	upstreamPort = 9191
	requestRate  = 40 // per second
	requestLimit = 5 * time.Second
)

// setUpServices registers and exports what the workload uses: billing
// (HTTP, on b's client) and each cluster's ledger service (written by
// the writers) exported to the other cluster, web's upstream on a's
// client, and the intention that lets web call billing.
func setUpServices(ctx context.Context, t *testing.T, a, b *cluster) {
	t.Helper()
	var ln net.Listener
	var err error
	b.client.ns.Run(func() { ln, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", billingPort)) })
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "billing: "+r.URL.Path+"\n")
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	must("register billing", b.client.put(ctx, "/v1/agent/service/register", map[string]any{
		"Name": "billing", "Address": "127.0.0.1", "Port": billingPort}))
	must("billing speaks HTTP", b.servers[0].put(ctx, "/v1/config", map[string]any{
		"Kind": "service-defaults", "Name": "billing", "Protocol": "http"}))
	must("allow web from "+a.peerName, b.servers[0].put(ctx, "/v1/config", map[string]any{
		"Kind": "service-intentions", "Name": "billing",
		"Sources": []map[string]any{{"Name": "web", "Peer": a.peerName, "Action": "allow"}}}))
	for _, ex := range []struct {
		from, to *cluster
		services []string
	}{{b, a, []string{"billing", b.service}}, {a, b, []string{a.service}}} {
		var svcs []map[string]any
		for _, s := range ex.services {
			svcs = append(svcs, map[string]any{"Name": s, "Consumers": []map[string]any{{"Peer": ex.to.peerName}}})
		}
		must("export from "+ex.from.name, ex.from.servers[0].put(ctx, "/v1/config", map[string]any{
			"Kind": "exported-services", "Name": "default", "Services": svcs}))
	}
	must("register web", a.client.put(ctx, "/v1/agent/service/register", map[string]any{
		"Name": "web", "Port": 8080,
		"Proxy": map[string]any{"Upstreams": []map[string]any{{
			"DestinationPeer": b.peerName, "DestinationName": "billing",
			"LocalBindAddress": "127.0.0.1", "LocalBindPort": upstreamPort}}}}))
	client := trafficClient(a)
	testutil.EventuallyEvery(t, 60*time.Second, 300*time.Millisecond, "web reaches billing across the peering", func() error {
		return callBilling(ctx, client)
	})
}

func trafficClient(a *cluster) *http.Client {
	return &http.Client{Timeout: requestLimit, Transport: &http.Transport{DialContext: dialIn(a.client.ns), DisableKeepAlives: true}}
}

func callBilling(ctx context.Context, client *http.Client) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/invoices/42", upstreamPort), nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(body), "billing: /invoices/42") {
		return fmt.Errorf("%s: %q", resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// runTraffic sends requestRate requests a second from a's client until
// ctx ends, each in its own goroutine, so a slow request delays no
// other; every request is logged.
func runTraffic(ctx context.Context, a *cluster, log *requestLog, wg *sync.WaitGroup) {
	client := trafficClient(a)
	tick := time.NewTicker(time.Second / requestRate)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &request{Start: time.Now()}
			// Not ctx: the suite's end must not fail the last requests.
			r.Err = callBilling(context.Background(), client)
			r.End = time.Now()
			log.add(r)
		}()
	}
}

// loadNode is the catalog node the writer registers its instances on:
// an external node (no agent runs on it, so no anti-entropy removes
// them), at an address of the cluster's LAN that no host has.
func (c *cluster) loadNode() (name, addr string) { return "load-" + c.name, c.lan.prefix + "200" }

// runWriter makes acknowledged writes in c until ctx ends, one at a time
// to its servers in turn: registrations of new instance IDs, health flips
// of live ones, and deregistrations of the oldest once more than
// liveWindow are live. Every write and its outcome go into c.writes.
func runWriter(ctx context.Context, c *cluster, every time.Duration) {
	const liveWindow = 40
	node, addr := c.loadNode()
	var live []string // registered, acknowledged, not tainted
	status := map[string]string{}
	seq := 0
	// External nodes are registered through servers: a client node's
	// certificate lets it write its own node only (catalog/authz.go).
	nodes := c.servers
	tick := time.NewTicker(every)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		n := nodes[i%len(nodes)]
		var (
			id   string
			want instanceState
			path string
			body any
		)
		switch {
		case len(live) > liveWindow:
			id, live = live[0], live[1:]
			want, path = instanceState{}, "/v1/catalog/deregister"
			body = map[string]any{"Node": node, "ServiceID": id}
		case i%3 == 2 && len(live) > 0:
			id = live[(i/3)%len(live)]
			next := "warning"
			if status[id] == "warning" {
				next = "passing"
			}
			want, path = instanceState{Present: true, Status: next}, "/v1/catalog/register"
		default:
			seq++
			id = fmt.Sprintf("%s-%06d", c.service, seq)
			want, path = instanceState{Present: true, Status: "passing"}, "/v1/catalog/register"
		}
		if path == "/v1/catalog/register" {
			body = map[string]any{"Node": node, "Address": addr,
				"Service": map[string]any{"ID": id, "Service": c.service, "Port": 9000},
				"Check":   map[string]any{"CheckID": "service:" + id, "Name": "flip", "Status": want.Status, "ServiceID": id}}
		}
		op := c.writes.begin(id, want, time.Now())
		wctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err := n.put(wctx, path, body)
		cancel()
		c.writes.finish(op, err == nil, time.Now())
		switch {
		case err != nil:
			live = slices.DeleteFunc(live, func(s string) bool { return s == id }) // tainted: left alone
		case want.Present:
			if status[id] == "" {
				live = append(live, id)
			}
			status[id] = want.Status
		}
	}
}

// instanceView reads the instances of service from n as n holds them
// (?stale: n's own state, not the leader's), or, with peer, n's
// imported copy of the peer's service.
func instanceView(ctx context.Context, n *node, service, peer string, stale bool) (map[string]instanceState, error) {
	path := "/v1/health/service/" + service
	var q []string
	if stale {
		q = append(q, "stale")
	}
	if peer != "" {
		q = append(q, "peer="+peer)
	}
	if len(q) > 0 {
		path += "?" + strings.Join(q, "&")
	}
	var entries []struct {
		Service struct{ ID string }
		Checks  []struct{ Status string }
	}
	if err := n.getJSON(ctx, path, &entries); err != nil {
		return nil, err
	}
	rank := map[string]int{"passing": 1, "warning": 2, "critical": 3, "maintenance": 4}
	view := map[string]instanceState{}
	for _, e := range entries {
		st := "passing"
		for _, c := range e.Checks {
			if rank[c.Status] > rank[st] {
				st = c.Status
			}
		}
		view[e.Service.ID] = instanceState{Present: true, Status: st}
	}
	return view, nil
}
