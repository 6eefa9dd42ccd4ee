// Package agent wires a peerd node together: cluster membership and state
// (catalog), the agent's local services and checks, the HTTP API, the gRPC
// server and metrics. Only cmd/peerd imports it (a test checks this); it holds
// no logic of its own beyond start-up order and shutdown. The node's parts it
// wires sit beside it, under agent/: config (the settings), httpapi, local,
// checks and dns; internal/ keeps only leaf packages.
//
// # Lifecycle
//
// An Agent follows the house shape: New(cfg) validates the configuration and
// opens nothing; Start opens the listeners and starts the parts; Close(ctx)
// stops them, waits for their goroutines within ctx, and is idempotent.
// Leave(ctx), before Close, is the graceful leave. Run is the daemon's whole
// life: New, Start, wait for ctx, then Leave (if LeaveOnTerminate) and Close.
//
// # Shutdown order
//
// Leave runs steps 1-7, Close steps 1-5 (unless Leave ran them) and 8-13,
// from one table in the code (shutdownSteps) that a test checks this list
// against:
//
//  1. The workload namespaces are released (agent/workloads): the
//     listeners peerd opened inside them close and the dataplane stops
//     capturing their connects (up to 5 s).
//  2. The terminator (l7proxy) closes its listeners and drains open
//     requests, up to 10 s, while the node still serves its state.
//  3. The DNS server stops (within 5 s, shared with step 4).
//  4. The HTTP API stops; in-flight requests drain.
//  5. The server watch and the local state (anti-entropy and the health
//     checks) stop and are waited for, so nothing re-registers the node
//     after a leave.
//  6. (Leave) The node deregisters itself from the catalog (up to 2 s; on
//     failure the leader does it when it sees the leave).
//  7. (Leave) The cluster member leaves: a leader hands leadership over,
//     the leave intent is gossiped, the gossip pool is left.
//  8. The peering controller ends its leader work (the dialer's streams,
//     CA bootstrap, deletions; the acceptor's streams with them).
//  9. The cluster member closes: gossip, raft and their stores stop.
//  10. The agent's run context ends: the dataplane's sync stops.
//  11. The gRPC servers stop, the peering (TLS) one first, gracefully for up
//     to 5 s, then forced.
//  12. Close waits, within ctx, for the servers' and the sync's goroutines.
//  13. The eBPF dataplane is released: closed with its pins kept, so a
//     restarted agent keeps traffic flowing, or in dev mode cleaned up
//     (nothing stays attached).
//
// # Reload
//
// RunReloadable (reload.go) is the daemon's Run with SIGHUP: a new process
// of the same executable takes the listening sockets over (Config.Sockets,
// internal/sockets), waits in BeforeState until the old process has
// released the data dir, serves once caught up (CatchUpBeforeServing), and
// the old one runs HandOver: steps 1-4 together under one deadline
// (ReloadDrainTimeout), then 5 and 8-13, without the leave, and keeping
// the dataplane's pins in dev mode too. systemd is told through
// internal/sdnotify.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/peerd/peerd/agent/aclresolve"
	"github.com/peerd/peerd/agent/admission"
	"github.com/peerd/peerd/agent/config"
	"github.com/peerd/peerd/agent/dns"
	"github.com/peerd/peerd/agent/httpapi"
	"github.com/peerd/peerd/agent/local"
	"github.com/peerd/peerd/agent/workloads"
	"github.com/peerd/peerd/catalog"
	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/dataplane"
	"github.com/peerd/peerd/internal/cgroupfs"
	"github.com/peerd/peerd/internal/sockets"
	"github.com/peerd/peerd/l7proxy"
	"github.com/peerd/peerd/peering"
)

// Agent is a running peerd node.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	cluster *catalog.Cluster
	local   *local.State
	// http serves the API in plaintext on httpLn, https over TLS on
	// httpsLn; either listener may be off (nil).
	http    *http.Server
	httpLn  net.Listener
	https   *http.Server
	httpsLn net.Listener
	// httpDrains serve, on a stop, the connections each server accepted
	// before it (httpdrain.go), keyed by server.
	httpDrains map[*http.Server]*httpDrain
	grpc       *grpc.Server
	grpcLn     net.Listener
	health     *health.Server
	// grpcTLS serves the peering stream to other clusters (servers only).
	grpcTLS   *grpc.Server
	grpcTLSLn net.Listener
	peering   *peering.Server
	// proxy is the terminator; gatewayLn its inbound listener.
	proxy     *l7proxy.Proxy
	gatewayLn net.Listener
	// dataplane is the eBPF layer (nil when not configured);
	// transparentLns the terminator's listeners for captured connections.
	dataplane      *dataplane.Dataplane
	transparentLns []net.Listener
	// dns answers the catalog's names and forwards the rest (nil: off).
	dns *dns.Server
	// workloads serves the workload network namespaces (nil: off);
	// stopWorkloads ends its Run, workloadsDone closes when it returned.
	workloads     *workloads.Manager
	stopWorkloads context.CancelFunc
	workloadsDone chan struct{}
	// aclTokens are the agent's ACL tokens; metrics/metricsLn the metrics
	// listener outside the API's ACLs (nil: none).
	aclTokens *httpapi.Tokens
	// api is the HTTP API, told the agent's phase for /v1/agent/health.
	api       *httpapi.Server
	metrics   *http.Server
	metricsLn net.Listener
	// trust is the node's certificate (nil without -internal-tls);
	// admission admits new nodes (servers with trust only).
	trust     *trust
	admission *admission.Server

	// runCtx lives from New to Close (cancel); Start's listeners, config
	// registrations and the dataplane's sync run under it.
	runCtx context.Context
	cancel context.CancelFunc
	// stopLocal ends the server watch (localWG), before a leave; the local
	// state's anti-entropy stops with its Close.
	stopLocal context.CancelFunc
	localWG   sync.WaitGroup
	wg        sync.WaitGroup
	// started is set once Start has succeeded: Leave and Close have
	// nothing to stop before.
	started bool
	// drainOnce runs steps 1-5 of the shutdown (Leave, Close or HandOver,
	// whichever comes first), closeOnce the rest (Close).
	drainOnce, closeOnce sync.Once
	// handover is set by HandOver: the drain runs under its one deadline
	// and the dataplane's pins stay even in dev mode (the next process
	// uses them).
	handover bool
}

// Run starts the agent, prints its listeners to out, and runs until ctx ends;
// then it shuts down gracefully: Leave first if LeaveOnTerminate, then Close.
func Run(ctx context.Context, cfg Config, out io.Writer) error {
	a, err := New(cfg)
	if err != nil {
		return err
	}
	if err := a.Start(); err != nil {
		return err
	}
	a.PrintBanner(out)
	<-ctx.Done()
	a.log.Info("shutting down", "leave", cfg.LeaveOnTerminate)
	var errs []error
	if cfg.LeaveOnTerminate {
		errs = append(errs, a.Leave(context.Background()))
	}
	errs = append(errs, a.Close(context.Background()))
	return errors.Join(errs...)
}

// NewLogger returns the slog logger the agent's flags describe: -log-level
// as config.ParseLogLevel reads it, info when it names no level.
func NewLogger(w io.Writer, level string, asJSON bool) *slog.Logger {
	lv, _ := config.ParseLogLevel(level) // Validate has reported a bad one; info then
	opts := &slog.HandlerOptions{Level: lv}
	if asJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// New validates cfg and returns an agent that is not running yet: it opens
// no listener and starts no goroutine.
func New(cfg Config) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid agent configuration:\n%w", err)
	}
	out := cfg.LogOutput
	if out == nil {
		out = os.Stderr
	}
	a := &Agent{cfg: cfg, log: NewLogger(out, cfg.LogLevel, cfg.LogJSON)}
	a.runCtx, a.cancel = context.WithCancel(context.Background())
	return a, nil
}

// Start brings the agent up: listeners first (so free ports are known and
// advertised), then the cluster member, local state, and the servers. It
// returns once everything is listening; joining and leader election continue
// in the background. If it fails, its listeners and the cluster member are
// closed again. Start may be called once.
func (a *Agent) Start() error {
	if err := a.start(a.runCtx); err != nil {
		a.closeListeners()
		if a.local != nil {
			_ = a.local.Close(context.Background()) // its restored checks run
		}
		if a.cluster != nil {
			_ = a.cluster.Close(context.Background())
		}
		a.cancel()
		return err
	}
	a.started = true
	a.api.SetPhase(httpapi.PhaseServing)
	return nil
}

// start is Start's work; ctx is the run context, under which the
// goroutines it starts run.
func (a *Agent) start(ctx context.Context) error {
	cfg := &a.cfg
	var err error
	if cfg.BindAddr == "" {
		if cfg.BindAddr, err = defaultBindAddr(); err != nil {
			return err
		}
	}
	if cfg.NodeName == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("node name: %w (set -node)", err)
		}
		cfg.NodeName = strings.ToLower(h)
	}
	if cfg.NodeID == "" {
		if cfg.NodeID, err = nodeID(cfg.DataDir, cfg.Dev); err != nil {
			return err
		}
	}
	// Every refused connection or call of cluster trust is counted here
	// (peerd_security_refusals_total{listener,reason}); the cluster
	// member exports it.
	refusals := catalog.NewRefusalCounter()
	if cfg.InternalTLS {
		// Before any listener: a node that cannot be admitted stops here.
		if a.trust, err = a.setupTrust(ctx, refusals.Refused); err != nil {
			return err
		}
	}
	if err := cfg.RequireGossipKey(); err != nil {
		return err
	}
	key, err := cfg.GossipKey()
	if err != nil {
		return err
	}
	ifAddrs, err := net.InterfaceAddrs()
	if err != nil {
		return fmt.Errorf("list interface addresses to check the virtual IP ranges: %w", err)
	}
	if err := cfg.CheckVirtualIPOverlap(ifAddrs); err != nil {
		return err
	}
	// The node-to-node listeners default to the bind address: the other
	// nodes (and peers, for TLS gRPC) must reach what is advertised.
	cfg.GRPCAddr, cfg.GRPCTLSAddr = onBindAddr(cfg.GRPCAddr, cfg.BindAddr), onBindAddr(cfg.GRPCTLSAddr, cfg.BindAddr)
	// A process taking over from another (a reload) inherits these
	// sockets instead of binding them: connections queue in their
	// backlogs while it starts.
	socks := sockets.Or(cfg.Sockets)
	if cfg.HTTPAddr != "" {
		if a.httpLn, err = socks.Listen(ctx, nil, "http", "tcp", cfg.HTTPAddr); err != nil {
			return fmt.Errorf("listen for HTTP on %s: %w", cfg.HTTPAddr, err)
		}
	}
	if cfg.HTTPSAddr != "" {
		if a.httpsLn, err = socks.Listen(ctx, nil, "https", "tcp", cfg.HTTPSAddr); err != nil {
			return fmt.Errorf("listen for HTTPS on %s: %w", cfg.HTTPSAddr, err)
		}
	}
	if a.grpcLn, err = socks.Listen(ctx, nil, "grpc", "tcp", cfg.GRPCAddr); err != nil {
		return fmt.Errorf("listen for gRPC on %s: %w", cfg.GRPCAddr, err)
	}
	if cfg.GatewayAddr != "" {
		// Plain TCP, not Go's default MPTCP: the inbound capture layer
		// can hand connections only to a TCP listener.
		lc := net.ListenConfig{}
		lc.SetMultipathTCP(false)
		if a.gatewayLn, err = socks.Listen(ctx, &lc, "gateway", "tcp", cfg.GatewayAddr); err != nil {
			return fmt.Errorf("listen for the gateway on %s: %w", cfg.GatewayAddr, err)
		}
	}
	if cfg.Server {
		if a.grpcTLSLn, err = socks.Listen(ctx, nil, "grpc-tls", "tcp", cfg.GRPCTLSAddr); err != nil {
			return fmt.Errorf("listen for TLS gRPC (peering) on %s: %w", cfg.GRPCTLSAddr, err)
		}
	}

	if cfg.BeforeState != nil {
		if err := cfg.BeforeState(ctx); err != nil {
			return err
		}
	}
	cc := catalog.DefaultConfig()
	if cfg.Dev {
		cc = catalog.DevConfig()
	}
	cc.NodeName, cc.NodeID, cc.Datacenter = cfg.NodeName, cfg.NodeID, cfg.Datacenter
	cc.Server, cc.BootstrapExpect, cc.InMemory = cfg.Server, cfg.BootstrapExpect, cfg.Dev
	cc.DataDir = cfg.DataDir
	cc.BindAddr, cc.AdvertiseAddr = cfg.BindAddr, cfg.AdvertiseAddr
	cc.SerfPort, cc.ServerPort = cfg.SerfLANPort, cfg.ServerPort
	cc.GRPCAddr = advertised(a.grpcLn, cc)
	if a.httpLn != nil {
		cc.HTTPAddr = advertised(a.httpLn, cc)
	}
	if a.grpcTLSLn != nil {
		cc.GRPCTLSAddr = advertised(a.grpcTLSLn, cc)
	}
	cc.RetryJoin, cc.RetryJoinInterval = cfg.RetryJoin, cfg.RetryInterval
	cc.EncryptKey, cc.Build, cc.Logger = key, cfg.Version, a.log
	cc.VirtualIPv4Range, cc.VirtualIPv6Range, cc.VirtualIPGrace = cfg.VirtualIPv4Range(), cfg.VirtualIPv6CIDR, cfg.VirtualIPGrace
	if cfg.Timing != (catalog.Timing{}) {
		cc.Timing = cfg.Timing
	}
	if a.trust != nil {
		cc.Secrets, cc.TLS, cc.Refusals = a.trust.secrets, a.trust.source, refusals
		// With cluster trust only the server that made the CA bootstraps
		// raft, alone; the others were admitted to its cluster and join it
		// as non-voters (autopilot promotes them). A -bootstrap-expect N
		// of a StatefulSet's pods would otherwise start several clusters.
		expect := 0
		if cfg.Server && (a.trust.material.Seed != nil || a.trust.bootstrap != nil) {
			expect = 1
		}
		if cc.BootstrapExpect != expect && cfg.BootstrapExpect > 1 {
			a.log.Info("cluster trust: the first server bootstraps alone and the others join it; -bootstrap-expect is not used", "bootstrap_expect", cfg.BootstrapExpect)
		}
		cc.BootstrapExpect = expect
	}
	cc.Autopilot = catalog.AutopilotConfig{
		CleanupDeadServers: cfg.CleanupDeadServers, DeadServerReapTime: cfg.DeadServerReapTime,
		LastContactThreshold: cfg.LastContactThreshold, MaxTrailingLogs: uint64(max(cfg.MaxTrailingLogs, 0)),
		ServerStabilizationTime: cfg.ServerStabilizationTime,
	}
	cc.ACL = catalog.ACLConfig{Enabled: cfg.ACL.Enabled, InitialManagement: cfg.ACL.Tokens.InitialManagement}
	if a.cluster, err = catalog.New(cc); err != nil {
		return err
	}
	if err := a.cluster.Start(); err != nil {
		return err
	}
	if a.trust != nil && a.trust.bootstrap != nil {
		a.cluster.AddLeaderRoutine("trust-bootstrap-tokens", a.recordBootstrapTokens(a.trust.bootstrap))
	}
	if !cfg.Dev && !a.cluster.GossipEncrypted() {
		a.log.Warn("gossip is NOT encrypted (-insecure-gossip): anyone who can reach the gossip port can join this cluster, pose as a server and receive its state; generate a key with `peerd keygen` and start every agent with -encrypt KEY")
	}

	stateDir := ""
	if !cfg.Dev {
		stateDir = filepath.Join(cfg.DataDir, "local")
	}
	node := state.Node{
		ID: cfg.NodeID, Node: cfg.NodeName, Address: a.cluster.LocalMember().Addr, Datacenter: cfg.Datacenter,
		Meta: maps.Clone(cfg.NodeMeta),
	}
	if a.gatewayLn != nil {
		if node.Meta == nil {
			node.Meta = map[string]string{}
		}
		node.Meta[peering.GatewayPortMeta] = strconv.Itoa(a.gatewayLn.Addr().(*net.TCPAddr).Port)
	}
	node.TaggedAddresses = map[string]string{"lan": node.Address, "lan_ipv4": node.Address, "wan": node.Address, "wan_ipv4": node.Address}
	if a.local, err = local.New(local.Config{Node: node, SyncInterval: cfg.SyncInterval, StateDir: stateDir, Logger: a.log}, a.cluster); err != nil {
		return err
	}
	for _, def := range cfg.Services {
		if err := a.local.AddService(ctx, def, true); err != nil {
			return fmt.Errorf("service %q from config: %w", def.Name, err)
		}
	}
	for _, cd := range cfg.Checks {
		if err := a.local.AddCheck(ctx, cd, true); err != nil {
			return fmt.Errorf("check %q from config: %w", cd.CheckID, err)
		}
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		a.cluster.Collector())
	pc := peering.DefaultConfig()
	pc.Cluster, pc.Registry, pc.Logger = a.cluster, reg, a.log
	pc.LeafTTL = cfg.LeafTTL
	if a.trust != nil {
		// The internal port is mutual TLS: every SignLeaf call carries the
		// caller's node identity, and one without is refused.
		pc.CASeed, pc.RequireNodeIdentity, pc.Refused = a.trust.material.Seed, true, refusals.Refused
	}
	if cfg.PeeringHeartbeatInterval > 0 {
		pc.HeartbeatInterval = cfg.PeeringHeartbeatInterval
	}
	if cfg.PeeringHeartbeatTimeout > 0 {
		pc.HeartbeatTimeout = cfg.PeeringHeartbeatTimeout
	}
	pc.StaleStreamTimeout = cfg.PeeringStaleStreamTimeout
	pc.Quotas, pc.AllowLocalGateways = cfg.PeeringQuotas, cfg.PeeringAllowLocalGateways
	if cfg.PeeringStreamSecretRotation != 0 {
		pc.StreamSecretRotation = cfg.PeeringStreamSecretRotation
	}
	if pc.Refused == nil {
		// Secret refusals on the peering listener count there too.
		pc.Refused = refusals.Refused
	}
	if cfg.Peering != nil {
		cfg.Peering(&pc)
	}
	if a.peering, err = peering.New(pc); err != nil {
		return err
	}
	if a.trust != nil && cfg.Server {
		secretsKey := a.trust.material.SecretsKey
		ac := admission.Config{
			Cluster: a.cluster, CA: a.peering.CA(), Datacenter: cfg.Datacenter,
			GossipKey: a.cluster.GossipPrimaryKey, Logger: a.log, Refused: refusals.Refused,
			// Read once: the renewal goroutine replaces the material.
			SecretsKey: func() string { return secretsKey },
		}
		if cfg.Admission != nil {
			cfg.Admission(&ac)
		}
		if a.admission, err = admission.NewServer(ac); err != nil {
			return err
		}
	}
	var tokens httpapi.JoinTokens
	if a.admission != nil {
		tokens = a.admission
	}
	if a.aclTokens, err = aclTokens(*cfg); err != nil {
		return err
	}
	resolver, err := aclresolve.New(aclresolve.Config{Store: a.cluster.View(), Enabled: cfg.ACL.Enabled,
		DefaultPolicy: cfg.ACL.DefaultPolicy, Datacenter: cfg.Datacenter})
	if err != nil {
		return err
	}
	resetFile := ""
	if !cfg.Dev {
		resetFile = filepath.Join(cfg.DataDir, "acl-bootstrap-reset")
	}
	api, err := httpapi.New(httpapi.Config{Cluster: a.cluster, Local: a.local, Peering: a.peering, Registry: reg, Version: cfg.Version, Logger: a.log,
		JoinTokens: tokens, InsecureGossip: cfg.InsecureGossip, CapturedCgroup: cfg.CgroupPath,
		ACL: aclAdapter{resolver}, ACLBootstrapResetFile: resetFile, Tokens: a.aclTokens,
		DataplaneStatus: func() (any, bool) {
			if a.dataplane == nil {
				return nil, false
			}
			return a.dataplane.Status(), true
		},
		WorkloadNamespaces: func() any {
			if a.workloads == nil {
				return nil
			}
			return a.workloads.Status()
		}})
	if err != nil {
		return err
	}
	a.api = api
	if cfg.MetricsAddr != "" {
		if err := a.startMetricsListener(cfg.MetricsAddr, api.MetricsHandler()); err != nil {
			return err
		}
	}
	// The browser protections stand in front of both listeners.
	edge, err := httpapi.NewEdge(httpapi.EdgeConfig{NodeName: cfg.NodeName, AllowedOrigins: cfg.HTTPAllowedOrigins,
		AllowedHosts: cfg.HTTPAllowedHosts, Registry: reg, Logger: a.log}, api.Handler())
	if err != nil {
		return err
	}
	newServer := func() *http.Server {
		srv := &http.Server{
			Handler:           edge,
			ReadHeaderTimeout: 10 * time.Second,
			MaxHeaderBytes:    1 << 20,
			ErrorLog:          serverErrorLog(a.log),
		}
		a.watchHTTP(srv)
		return srv
	}
	a.http = newServer()
	if a.httpsLn != nil {
		cert := &apiCert{}
		a.https = newServer()
		if a.https.TLSConfig, err = a.httpsConfig(cert, edge); err != nil {
			return err
		}
		if cfg.HTTPSCertFile == "" {
			seed := a.trust.material.Seed // read before renewTrust runs
			a.wg.Add(1)
			go func() { defer a.wg.Done(); a.renewAPICert(ctx, cert, seed) }()
		} else {
			a.wg.Add(1)
			go func() { defer a.wg.Done(); a.watchCertFiles(ctx, cert) }()
		}
	}
	// With cluster trust the internal port is mutual TLS between admitted
	// nodes; the options carry the credentials and the interceptors that
	// give every call its caller's node identity.
	a.grpc = grpc.NewServer(append([]grpc.ServerOption{grpc.MaxRecvMsgSize(8 << 20)}, a.cluster.GRPCServerOptions()...)...)
	a.health = health.NewServer()
	healthpb.RegisterHealthServer(a.grpc, a.health)
	a.cluster.RegisterGRPC(a.grpc)
	a.peering.RegisterManagement(a.grpc)
	api.RegisterRelay(a.grpc)
	if a.admission != nil {
		a.admission.Register(a.grpc)
	}
	if a.grpcTLSLn != nil {
		a.grpcTLS = grpc.NewServer(a.peering.StreamServerOptions()...)
		a.peering.RegisterStream(a.grpcTLS)
		if a.admission != nil {
			// Joining nodes hold no certificate yet: they are admitted on
			// the TLS port, beside the peering stream.
			a.admission.Register(a.grpcTLS)
		}
		healthpb.RegisterHealthServer(a.grpcTLS, a.health)
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			if err := a.grpcTLS.Serve(a.grpcTLSLn); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				a.log.Error("TLS gRPC server stopped", "err", err)
			}
		}()
	}
	if a.trust != nil {
		a.wg.Add(1)
		go func() { defer a.wg.Done(); a.renewTrust(ctx, a.trust) }()
	}
	a.setHealth(true) // until watchServers knows better
	if err := a.peering.Start(); err != nil {
		return err
	}
	if err := a.startDataplane(ctx); err != nil {
		return err
	}
	minTLS, _ := cfg.TLSMinVersion()
	proxyCfg := l7proxy.Config{
		NodeName: cfg.NodeName, Datacenter: cfg.Datacenter, View: a.cluster.View,
		Signer:          a.peering.CA(),
		GatewayListener: a.gatewayLn, Logger: a.log, Registry: reg,
		Mark: cfg.ProxyMark, MinTLSVersion: minTLS, LeafTTL: cfg.LeafTTL,
		Sockets: cfg.Sockets,
	}
	if a.trust != nil {
		proxyCfg.NodeCertificate, proxyCfg.NodeRevoked = a.trust.source.Certificate, a.cluster.NodeRevoked
	}
	if a.dataplane != nil && len(a.transparentLns) > 0 {
		proxyCfg.TransparentListeners, proxyCfg.Capture, proxyCfg.CgroupID = a.transparentLns, a.dataplane, cgroupfs.ID
		// Callers in sub-cgroups of the captured one (containers, pods)
		// are found by walking it: their pod's or unit's claim, or their
		// pod UID, names their service.
		cgroups, err := cgroupfs.NewResolver(cgroupfs.ResolverConfig{Root: cfg.CgroupPath})
		if err != nil {
			_ = a.dataplane.Cleanup(ctx)
			return fmt.Errorf("resolve the captured cgroup's callers: %w", err)
		}
		proxyCfg.CgroupPath, proxyCfg.CgroupRoot = cgroups.Path, cgroups.Root()
	}
	if cfg.Proxy != nil {
		cfg.Proxy(&proxyCfg)
	}
	if a.proxy, err = l7proxy.New(proxyCfg); err != nil {
		if a.dataplane != nil {
			_ = a.dataplane.Cleanup(ctx) // nothing half-attached is left behind
		}
		return err
	}
	if cfg.CatchUpBeforeServing > 0 {
		wctx, cancel := context.WithTimeout(ctx, cfg.CatchUpBeforeServing)
		err := a.cluster.WaitCaughtUp(wctx)
		cancel()
		if err != nil {
			a.log.Warn("no leader or state caught up yet; serving anyway", "waited", cfg.CatchUpBeforeServing, "err", err)
		}
	}
	if err := a.proxy.Start(); err != nil {
		return err
	}
	if cfg.DNSAddr != "" {
		a.dns, err = dns.New(dns.Config{Addr: cfg.DNSAddr, Sockets: cfg.Sockets, Domain: cfg.DNSDomain(), Recursors: cfg.Recursors,
			View: a.cluster.View, Registerer: reg, Logger: a.log, Authorizer: dnsAuthorizer(resolver, a.aclTokens)})
		if err != nil {
			return err
		}
		if err := a.dns.Start(); err != nil {
			a.dns = nil
			return err
		}
	}
	if err := a.startWorkloads(reg); err != nil {
		return err
	}

	if a.httpLn != nil {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			if err := serveError(a.http.Serve(a.httpLn)); err != nil {
				a.log.Error("HTTP server stopped", "err", err)
			}
		}()
	}
	if a.httpsLn != nil {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			// The certificate comes from TLSConfig.GetCertificate.
			if err := serveError(a.https.ServeTLS(a.httpsLn, "", "")); err != nil {
				a.log.Error("HTTPS server stopped", "err", err)
			}
		}()
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := a.grpc.Serve(a.grpcLn); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			a.log.Error("gRPC server stopped", "err", err)
		}
	}()
	localCtx, stopLocal := context.WithCancel(ctx)
	a.stopLocal = stopLocal
	if a.dataplane != nil {
		dpSync := newDataplaneSync(a)
		reg.MustRegister(a.dataplane.Collector(), peerCounters{a}, dpSync.errors)
		a.wg.Add(1)
		go func() { defer a.wg.Done(); dpSync.run(ctx) }()
	}
	if err := a.local.Start(); err != nil {
		return err
	}
	a.localWG.Add(1)
	go func() { defer a.localWG.Done(); a.watchServers(localCtx) }()
	return nil
}

// watchServers kicks an anti-entropy sync whenever the set of live servers
// (or, on a server, the leader) changes, so registrations are restored
// quickly after servers come back. It wakes on the cluster's member events.
func (a *Agent) watchServers(ctx context.Context) {
	events := a.cluster.MemberEvents(ctx)
	prev := ""
	for {
		var names []string
		for _, m := range a.cluster.Servers() {
			names = append(names, m.Name)
		}
		cur := strings.Join(names, ",")
		if a.cluster.IsServer() {
			cur += "|" + a.cluster.Leader()
		}
		if cur != prev {
			prev = cur
			a.local.Kick()
			a.setHealth(len(names) > 0)
		}
		select {
		case <-ctx.Done():
			return
		case _, ok := <-events:
			if !ok {
				return // the cluster member shut down
			}
		}
	}
}

// setHealth sets the gRPC health status of the whole server ("") and of
// every service the gRPC servers serve, by its full name, so a probe that
// names a service (Kubernetes' grpc.service) gets an answer, not NotFound.
func (a *Agent) setHealth(ok bool) {
	status := healthpb.HealthCheckResponse_NOT_SERVING
	if ok {
		status = healthpb.HealthCheckResponse_SERVING
	}
	a.health.SetServingStatus("", status)
	for _, srv := range []*grpc.Server{a.grpc, a.grpcTLS} {
		if srv == nil {
			continue
		}
		for name := range srv.GetServiceInfo() {
			a.health.SetServingStatus(name, status)
		}
	}
}

// onBindAddr puts a listener whose address has no host ("":8502) on the
// bind address.
func onBindAddr(addr, bind string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host != "" {
		return addr // Validate has reported a malformed one
	}
	return net.JoinHostPort(bind, port)
}

// advertised is the address other nodes use for a listener: the port it
// listens on, with the advertise address when it listens on all interfaces
// or on the bind address (so -advertise works behind NAT). A listener on
// loopback is advertised only when the node itself is advertised on
// loopback (one-host clusters): elsewhere no other node could reach it, and
// "" makes their relays fail with a reason instead of dialling themselves.
func advertised(ln net.Listener, cc catalog.Config) string {
	addr := ln.Addr().(*net.TCPAddr)
	adv := cc.AdvertiseAddr
	if adv == "" {
		adv = cc.BindAddr
	}
	host := addr.IP.String()
	switch {
	case addr.IP.IsUnspecified(), addr.IP.Equal(net.ParseIP(cc.BindAddr)):
		host = adv
	case addr.IP.IsLoopback():
		if ip := net.ParseIP(adv); ip == nil || !ip.IsLoopback() {
			return ""
		}
	}
	return net.JoinHostPort(host, strconv.Itoa(addr.Port))
}

// nodeID returns the node's UUID, kept in DataDir so it survives restarts.
func nodeID(dataDir string, dev bool) (string, error) {
	if dev || dataDir == "" {
		return uuid.NewString(), nil
	}
	path := filepath.Join(dataDir, "node-id")
	if b, err := os.ReadFile(path); err == nil {
		id := strings.TrimSpace(string(b))
		if _, err := uuid.Parse(id); err != nil {
			return "", fmt.Errorf("node ID in %s is not a UUID: %w (delete the file to get a new one)", path, err)
		}
		return id, nil
	}
	id := uuid.NewString()
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", fmt.Errorf("create data dir: %w", err)
	}
	if err := os.WriteFile(path, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write node ID: %w", err)
	}
	return id, nil
}

// HTTPAddr returns the address the HTTP API listens on ("" when plaintext
// HTTP is off).
func (a *Agent) HTTPAddr() string {
	if a.httpLn == nil {
		return ""
	}
	return a.httpLn.Addr().String()
}

// HTTPSAddr returns the address the HTTPS API listens on ("" when it has
// none).
func (a *Agent) HTTPSAddr() string {
	if a.httpsLn == nil {
		return ""
	}
	return a.httpsLn.Addr().String()
}

// GRPCAddr returns the address the gRPC server listens on.
func (a *Agent) GRPCAddr() string { return a.grpcLn.Addr().String() }

// watchHTTP makes srv's stop serve the connections it accepted before
// (httpdrain.go); srv must not serve yet. Every HTTP server of the agent
// is watched: the drain step stops each through its httpDrain.
func (a *Agent) watchHTTP(srv *http.Server) {
	if a.httpDrains == nil {
		a.httpDrains = map[*http.Server]*httpDrain{}
	}
	a.httpDrains[srv] = watchFreshConns(srv)
}

// GRPCTLSAddr returns the address of the TLS gRPC listener peers dial for
// the peering stream ("" on a node without one).
func (a *Agent) GRPCTLSAddr() string {
	if a.grpcTLSLn == nil {
		return ""
	}
	return a.grpcTLSLn.Addr().String()
}

// GatewayAddr returns the address the node's gateway listens on ("" when
// it has none).
func (a *Agent) GatewayAddr() string {
	if a.gatewayLn == nil {
		return ""
	}
	return a.gatewayLn.Addr().String()
}

// DNSAddr returns the address the DNS server listens on, UDP and TCP (""
// when it has none).
func (a *Agent) DNSAddr() string {
	if a.dns == nil {
		return ""
	}
	return a.dns.Addr()
}

// Cluster returns the node's cluster member (for tests and the banner).
func (a *Agent) Cluster() *catalog.Cluster { return a.cluster }

// PrintBanner writes the agent's identity and listeners, one per line, in a
// stable format scripts can parse ("    http: 127.0.0.1:8500").
func (a *Agent) PrintBanner(w io.Writer) {
	mode := "client"
	if a.cfg.Server {
		mode = fmt.Sprintf("server (bootstrap-expect %d)", a.cfg.BootstrapExpect)
	}
	if a.cfg.Dev {
		mode = "dev (in-memory server)"
	}
	lm := a.cluster.LocalMember()
	fmt.Fprintf(w, "==> peerd agent running\n")
	fmt.Fprintf(w, "      node: %s (%s)\n", a.cfg.NodeName, a.cfg.NodeID)
	fmt.Fprintf(w, "        dc: %s\n", a.cfg.Datacenter)
	fmt.Fprintf(w, "      mode: %s\n", mode)
	if a.httpLn != nil {
		fmt.Fprintf(w, "      http: %s\n", a.HTTPAddr())
	}
	if a.httpsLn != nil {
		fmt.Fprintf(w, "     https: %s\n", a.HTTPSAddr())
	}
	fmt.Fprintf(w, "      grpc: %s\n", a.GRPCAddr())
	if a.grpcTLSLn != nil {
		fmt.Fprintf(w, "  grpc-tls: %s\n", a.grpcTLSLn.Addr())
	}
	if a.gatewayLn != nil {
		fmt.Fprintf(w, "   gateway: %s\n", a.gatewayLn.Addr())
	}
	if a.dns != nil {
		fmt.Fprintf(w, "       dns: %s\n", a.dns.Addr())
	}
	if a.metricsLn != nil {
		fmt.Fprintf(w, "   metrics: %s\n", a.metricsLn.Addr())
	}
	fmt.Fprintf(w, "    gossip: %s\n", net.JoinHostPort(lm.Addr, strconv.Itoa(lm.Port)))
	if lm.Meta.RaftAddr != "" {
		fmt.Fprintf(w, "      raft: %s\n", lm.Meta.RaftAddr)
	}
	fmt.Fprintf(w, "   encrypt: %t\n", a.cluster.GossipEncrypted())
	if a.dataplane == nil {
		fmt.Fprintf(w, " dataplane: off (no -cgroup-path, -dataplane-interface or -gateway-vip)\n")
		return
	}
	fmt.Fprintf(w, " dataplane: %s\n", dataplaneSummary(a.dataplane.Status(), a.transparentLns, a.cfg.Dev))
}

// dataplaneSummary is the banner's dataplane line: each enabled layer,
// loaded or off (with the reason), the transparent listeners' port, and
// the pin directory (removed on exit in dev mode).
func dataplaneSummary(st dataplane.Status, transparent []net.Listener, dev bool) string {
	var layers []string
	for _, l := range []struct {
		name string
		st   dataplane.LayerStatus
	}{{"capture", st.Capture}, {"fastpath", st.FastPath}, {"tc", st.TC}, {"inbound", st.Inbound}} {
		switch {
		case !l.st.Enabled:
		case l.st.Loaded && l.st.Reused:
			layers = append(layers, l.name+" loaded (reused pins)")
		case l.st.Loaded:
			layers = append(layers, l.name+" loaded")
		default:
			layers = append(layers, l.name+" OFF: "+l.st.Reason)
		}
	}
	out := strings.Join(layers, ", ")
	if len(layers) == 0 {
		out = "no layer enabled"
	}
	if len(transparent) > 0 {
		out += "; transparent port " + strconv.Itoa(transparent[0].Addr().(*net.TCPAddr).Port)
	}
	out += "; pins " + st.PinDir
	if dev {
		out += " (removed on exit)"
	}
	return out
}

var errNotStarted = errors.New("the agent is not running (Start has not succeeded)")

// Leave takes this node out of the cluster gracefully, so its services are
// removed rather than left critical: it drains what could re-register the
// node (steps 1-5 of the package doc's shutdown order), deregisters the node
// and leaves the gossip pool (6-7). The agent stops serving; call Close next
// to release the rest.
func (a *Agent) Leave(ctx context.Context) error {
	if !a.started {
		return errNotStarted
	}
	steps := a.shutdownSteps()
	return errors.Join(a.drain(ctx, steps), runSteps(ctx, steps, leavePhase))
}

// Close stops the agent without leaving (the other nodes see it fail unless
// Leave came first), in the package doc's shutdown order, and waits for its
// goroutines within ctx. It is idempotent: later calls return nil.
func (a *Agent) Close(ctx context.Context) error {
	if !a.started {
		a.cancel()
		return nil
	}
	var err error
	a.closeOnce.Do(func() {
		steps := a.shutdownSteps()
		err = errors.Join(a.drain(ctx, steps), runSteps(ctx, steps, closePhase))
	})
	return err
}

// drain runs the drain phase once, for Leave or Close, whichever comes
// first; later calls return nil.
func (a *Agent) drain(ctx context.Context, steps []shutdownStep) error {
	var err error
	a.drainOnce.Do(func() {
		// Readiness fails from here on (/v1/agent/health), while the
		// terminator drains and before the API stops answering.
		a.api.SetPhase(httpapi.PhaseShuttingDown)
		err = runSteps(ctx, steps, drainPhase)
	})
	return err
}

// The phases of the shutdown: drainPhase runs first (Leave or Close),
// leavePhase only in Leave, closePhase only in Close.
const (
	drainPhase = iota
	leavePhase
	closePhase
)

// shutdownStep is one step of the agent's shutdown.
type shutdownStep struct {
	// name is a phrase of the step's item in the package doc's numbered
	// list, which TestShutdownOrderDocumented checks item by item.
	name  string
	phase int
	run   func(ctx context.Context) error
}

func runSteps(ctx context.Context, steps []shutdownStep, phase int) error {
	var errs []error
	for _, s := range steps {
		if s.phase == phase {
			errs = append(errs, s.run(ctx))
		}
	}
	return errors.Join(errs...)
}

// shutdownSteps is the agent's shutdown in the order it runs, the order
// the package doc lists.
func (a *Agent) shutdownSteps() []shutdownStep {
	// DNS and HTTP share one budget for their in-flight requests; the
	// first of them to run starts it, local state ends it.
	var serveOnce sync.Once
	var serveCtx context.Context
	serveCancel := context.CancelFunc(func() {})
	serveBudget := func(ctx context.Context) context.Context {
		serveOnce.Do(func() { serveCtx, serveCancel = a.budget(ctx, 5*time.Second) })
		return serveCtx
	}
	return []shutdownStep{
		{"workload namespaces", drainPhase, func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			return a.closeWorkloads(ctx)
		}},
		{"terminator", drainPhase, func(ctx context.Context) error {
			// Open requests finish while the node still serves its state.
			if a.proxy == nil {
				return nil
			}
			ctx, cancel := a.budget(ctx, 10*time.Second)
			defer cancel()
			if err := a.proxy.Close(ctx); err != nil {
				return fmt.Errorf("stop the terminator: %w", err)
			}
			return nil
		}},
		{"DNS server", drainPhase, func(ctx context.Context) error {
			serveCtx := serveBudget(ctx)
			if a.dns == nil {
				return nil
			}
			return a.dns.Close(serveCtx)
		}},
		{"HTTP API", drainPhase, func(ctx context.Context) error {
			serveCtx := serveBudget(ctx)
			var errs []error
			// Together: each waits for connections it accepted before.
			type stop struct {
				what string
				srv  *http.Server
				ln   net.Listener
			}
			stops := []stop{{"HTTP server", a.http, a.httpLn}}
			if a.metrics != nil {
				stops = append(stops, stop{"the metrics listener", a.metrics, a.metricsLn})
			}
			if a.https != nil {
				stops = append(stops, stop{"HTTPS server", a.https, a.httpsLn})
			}
			errc := make(chan error, len(stops))
			for _, st := range stops {
				go func() {
					if err := a.httpDrains[st.srv].shutdown(serveCtx, st.srv, st.ln); err != nil {
						errc <- fmt.Errorf("stop %s: %w", st.what, err)
						return
					}
					errc <- nil
				}()
			}
			for range stops {
				errs = append(errs, <-errc)
			}
			return errors.Join(errs...)
		}},
		{"local state", drainPhase, func(ctx context.Context) error {
			serveCancel()
			a.stopLocal()
			err := a.local.Close(ctx)
			a.localWG.Wait()
			return err
		}},
		{"deregisters", leavePhase, func(ctx context.Context) error {
			// Take this node out of the catalog ourselves rather than rely
			// on the leader seeing the leave in gossip: under load the
			// leave intent can arrive after the node is already suspected,
			// and its services would then linger as critical.
			ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			_, err := a.cluster.Apply(ctx, &catalog.Command{Type: catalog.CmdDeregister,
				Deregister: &state.DeregisterRequest{Node: a.cfg.NodeName}})
			if err != nil {
				a.log.Warn("deregister this node before leaving; the leader will do it", "err", err)
			}
			return nil
		}},
		{"leaves", leavePhase, func(ctx context.Context) error {
			if err := a.cluster.Leave(ctx); err != nil {
				return fmt.Errorf("leave the cluster: %w", err)
			}
			return nil
		}},
		{"peering controller", closePhase, a.peering.Close},
		{"cluster member closes", closePhase, a.cluster.Close},
		{"run context", closePhase, func(context.Context) error { a.cancel(); return nil }},
		{"gRPC servers", closePhase, func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			for _, g := range []*grpc.Server{a.grpcTLS, a.grpc} {
				if g == nil {
					continue
				}
				stopped := make(chan struct{})
				go func() { g.GracefulStop(); close(stopped) }()
				select {
				case <-stopped:
				case <-ctx.Done():
					g.Stop()
				}
			}
			return nil
		}},
		{"waits", closePhase, func(ctx context.Context) error {
			done := make(chan struct{})
			go func() { a.wg.Wait(); close(done) }()
			select {
			case <-done:
				return nil
			case <-ctx.Done():
				return fmt.Errorf("wait for the agent's servers: %w", ctx.Err())
			}
		}},
		{"dataplane", closePhase, func(ctx context.Context) error {
			if a.dataplane == nil {
				return nil
			}
			// A dev agent leaves nothing attached: its programs would go on
			// redirecting connects to listeners that are gone. Otherwise the
			// pins stay, so a restarted agent keeps traffic flowing.
			release := a.dataplane.Close
			if a.cfg.Dev && !a.handover {
				release = a.dataplane.Cleanup
			}
			if err := release(ctx); err != nil {
				return fmt.Errorf("release the eBPF dataplane: %w", err)
			}
			return nil
		}},
	}
}

func (a *Agent) closeListeners() {
	for _, ln := range append([]net.Listener{a.httpLn, a.httpsLn, a.grpcLn, a.grpcTLSLn, a.gatewayLn}, a.transparentLns...) {
		if ln != nil {
			_ = ln.Close()
		}
	}
}
