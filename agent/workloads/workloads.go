package workloads

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-memdb"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/peerd/peerd/internal/cgroupfs"
	"github.com/peerd/peerd/internal/netns"
	"github.com/peerd/peerd/l7proxy"
)

// NetnsEvent is the dataplane's report of a virtual IP connect it refused
// because the caller's network namespace was not marked ready.
type NetnsEvent struct {
	NetnsCookie uint64
	PID         uint32
	CgroupID    uint64
}

// Dataplane is the eBPF side: which foreign namespaces may have their
// virtual IP connects rewritten to the in-namespace listener.
type Dataplane interface {
	SetWorkloadNetns(cookie uint64) error
	DeleteWorkloadNetns(cookie uint64) error
	// ReadNetnsEvent blocks for the next refusal; it returns an error when
	// ctx ends or the dataplane closes.
	ReadNetnsEvent(ctx context.Context) (NetnsEvent, error)
}

// Proxy is the terminator (*l7proxy.Proxy).
type Proxy interface {
	ServeTransparent(ln net.Listener) error
	ServeUpstream(up l7proxy.Upstream, ln net.Listener) error
	ServiceUpstreams(ws memdb.WatchSet, service string) ([]l7proxy.Upstream, error)
	ServiceOfCgroup(cgroupID uint64) (string, bool)
}

// DNS is the agent's DNS server (*dns.Server).
type DNS interface {
	Serve(pc net.PacketConn, ln net.Listener) error
}

// DefaultRescan is how often the cgroup tree is rescanned without a
// trigger.
const DefaultRescan = time.Second

// Config configures a Manager.
type Config struct {
	// CgroupPath is the captured cgroup v2 directory; its whole tree is
	// scanned. Required.
	CgroupPath string
	// TransparentAddrs are the transparent listener addresses (host:port,
	// peerd's own, e.g. 127.0.0.1:15001 and [::1]:15001). At least one.
	TransparentAddrs []string
	// DNSAddrs are host:port addresses for DNS (UDP and TCP) inside each
	// namespace; none (or DNS nil) opens no DNS listener.
	DNSAddrs  []string
	Dataplane Dataplane
	Proxy     Proxy
	DNS       DNS
	// Control is set on every listener (peerd's SO_MARK: the Marker's
	// Control); nil sets nothing.
	Control func(network, address string, c syscall.RawConn) error
	// CgroupID gives the id of a cgroup directory; nil: its inode number,
	// which is what cgroup v2 ids are.
	CgroupID func(path string) (uint64, error)
	// Rescan is the period of the full rescan; zero: DefaultRescan.
	Rescan time.Duration
	// Registerer receives the metrics; nil registers nothing.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Failure reasons (the reason label of peerd_workload_failures_total).
const (
	reasonOpenNetns   = "open_netns"
	reasonTransparent = "listen_transparent"
	reasonDNS         = "listen_dns"
	reasonUpstream    = "listen_upstream"
	reasonNoIPv6      = "no_ipv6"
	reasonSetNetns    = "set_netns"
	reasonDeleteNetns = "delete_netns"
	reasonServe       = "serve"
	reasonRefused     = "refused_not_ready"
	reasonUpstreams   = "read_upstreams"
)

// Manager keeps listeners open inside every workload namespace.
type Manager struct {
	cfg Config
	log *slog.Logger
	m   metrics

	ownInode, ownCookie uint64

	mu  sync.Mutex
	nss map[uint64]*workload // by namespace inode
}

type metrics struct {
	namespaces prometheus.Gauge
	listeners  *prometheus.GaugeVec
	failures   *prometheus.CounterVec
}

// workload is one namespace and what is open in it.
type workload struct {
	h             *netns.Handle
	inode, cookie uint64
	pid           int
	cgroup        string
	cgroupID      uint64
	owner         string
	ready         bool
	// noIPv6: the last IPv6 listen found no ::1; loggedNoIPv6: said so.
	noIPv6, loggedNoIPv6 bool
	// open are the listeners, by key (kind, network, address).
	open map[string]*listener
	// failing are the keys whose last open failed, with the error.
	failing map[string]string
}

type listener struct {
	kind string // transparent, dns, upstream
	c    io.Closer
	up   l7proxy.Upstream
}

// New checks cfg and returns a Manager; Run starts it.
func New(cfg Config) (*Manager, error) {
	switch {
	case cfg.CgroupPath == "":
		return nil, errors.New("workloads: a captured cgroup path is required")
	case len(cfg.TransparentAddrs) == 0:
		return nil, errors.New("workloads: at least one transparent listener address is required")
	case cfg.Dataplane == nil || cfg.Proxy == nil:
		return nil, errors.New("workloads: the dataplane and the terminator are required")
	}
	for _, a := range append(slices.Clone(cfg.TransparentAddrs), cfg.DNSAddrs...) {
		if err := CheckAddr(a); err != nil {
			return nil, fmt.Errorf("workloads: %w", err)
		}
	}
	if cfg.Rescan <= 0 {
		cfg.Rescan = DefaultRescan
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.CgroupID == nil {
		cfg.CgroupID = cgroupfs.ID
	}
	m := &Manager{cfg: cfg, log: cfg.Logger.With("component", "workloads"), nss: map[uint64]*workload{}}
	m.m = metrics{
		namespaces: prometheus.NewGauge(prometheus.GaugeOpts{Name: "peerd_workload_namespaces",
			Help: "Workload network namespaces peerd has listeners in."}),
		listeners: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "peerd_workload_listeners",
			Help: "Listeners open inside workload network namespaces, by kind (transparent, dns, upstream)."}, []string{"kind"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "peerd_workload_failures_total",
			Help: "Workload namespace failures and refusals, by reason (listen_transparent, listen_dns, listen_upstream, no_ipv6, open_netns, set_netns, delete_netns, serve, read_upstreams, refused_not_ready)."}, []string{"reason"}),
	}
	for _, k := range []string{"transparent", "dns", "upstream"} {
		m.m.listeners.WithLabelValues(k)
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{m.m.namespaces, m.m.listeners, m.m.failures} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("workloads: register metrics: %w", err)
			}
		}
	}
	return m, nil
}

// CheckAddr checks a listener address: an IP literal and a port 1-65535.
func CheckAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: want ip:port, e.g. 127.0.0.1:53 or [::1]:53: %w", addr, err)
	}
	if net.ParseIP(host) == nil {
		return fmt.Errorf("address %q: %q is not an IP address (names are not resolved here)", addr, host)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("address %q: port %q is not 1-65535", addr, port)
	}
	return nil
}

// Run manages the namespaces until ctx ends, then releases them all. It
// fails at once only when its own namespace cannot be read or the cgroup
// tree does not exist.
func (m *Manager) Run(ctx context.Context) error {
	own, err := netns.Current()
	if err != nil {
		return fmt.Errorf("workloads: our own network namespace: %w", err)
	}
	m.ownInode = own.Inode()
	if c, err := own.Cookie(); err == nil {
		m.ownCookie = c
	}
	own.Close()
	if fi, err := os.Stat(m.cfg.CgroupPath); err != nil || !fi.IsDir() {
		return fmt.Errorf("workloads: captured cgroup %s: not a directory (%v); set -cgroup-path to a cgroup v2 directory", m.cfg.CgroupPath, err)
	}
	trigger := make(chan struct{}, 1)
	poke := func() {
		select {
		case trigger <- struct{}{}:
		default:
		}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := newWatcher(m.cfg.CgroupPath, poke)
	if err != nil {
		m.log.Warn("no inotify on the cgroup tree; new workloads are found by the periodic rescan", "cgroup", m.cfg.CgroupPath, "every", m.cfg.Rescan, "err", err)
	} else {
		wg.Add(1)
		go func() { defer wg.Done(); w.run(ctx) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); m.readEvents(ctx, poke) }()
	t := time.NewTicker(m.cfg.Rescan)
	defer t.Stop()
	defer m.releaseAll()
	for {
		m.scan(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-trigger:
		}
	}
}

// readEvents turns the dataplane's refusals into immediate rescans.
func (m *Manager) readEvents(ctx context.Context, poke func()) {
	for {
		ev, err := m.cfg.Dataplane.ReadNetnsEvent(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			m.log.Warn("read the dataplane's namespace events; new namespaces are found by the rescan only", "err", err)
			return
		}
		m.m.failures.WithLabelValues(reasonRefused).Inc()
		m.log.Debug("the dataplane refused a virtual IP connect from a namespace not ready; rescanning", "netns_cookie", ev.NetnsCookie, "pid", ev.PID, "cgroup_id", ev.CgroupID)
		poke()
	}
}

// found is a namespace seen in a scan: a process in it and its cgroup.
type found struct {
	pid    int
	cgroup string
}

// discover walks the cgroup tree and returns a process of each network
// namespace found there, by namespace inode (peerd's own excluded).
func (m *Manager) discover() map[uint64]found {
	out := map[uint64]found{}
	self := os.Getpid()
	_ = filepath.WalkDir(m.cfg.CgroupPath, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil // a cgroup removed during the walk
		}
		data, err := os.ReadFile(filepath.Join(path, "cgroup.procs"))
		if err != nil {
			return nil
		}
		for _, f := range strings.Fields(string(data)) {
			pid, err := strconv.Atoi(f)
			if err != nil || pid <= 0 || pid == self {
				// peerd itself: its main thread may be serving a Do
				// in a workload namespace right now.
				continue
			}
			ino, err := nsInode(pid)
			if err != nil || ino == m.ownInode {
				continue // gone, or in our own namespace
			}
			if _, ok := out[ino]; !ok {
				out[ino] = found{pid: pid, cgroup: path}
			}
		}
		return nil
	})
	return out
}

func nsInode(pid int) (uint64, error) {
	fi, err := os.Stat("/proc/" + strconv.Itoa(pid) + "/ns/net")
	if err != nil {
		return 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, errors.New("no inode")
	}
	return st.Ino, nil
}

// scan brings the namespaces in step with the cgroup tree.
func (m *Manager) scan(ctx context.Context) {
	seen := m.discover()
	m.mu.Lock()
	var gone []*workload
	for ino, w := range m.nss {
		if _, ok := seen[ino]; !ok {
			gone = append(gone, w)
			delete(m.nss, ino)
		}
	}
	known := map[uint64]*workload{}
	for ino, w := range m.nss {
		known[ino] = w
	}
	m.mu.Unlock()
	for _, w := range gone {
		m.release(w)
	}
	for ino, f := range seen {
		w := known[ino]
		if w == nil {
			var err error
			if w, err = m.open(ino, f); err != nil {
				m.m.failures.WithLabelValues(reasonOpenNetns).Inc()
				m.log.Warn("open a workload network namespace; retrying at the next scan", "pid", f.pid, "cgroup", f.cgroup, "err", err)
				continue
			}
			if w == nil {
				continue // it turned out to be ours
			}
			m.mu.Lock()
			m.nss[ino] = w
			m.mu.Unlock()
		} else if w.pid != f.pid || w.cgroup != f.cgroup {
			m.mu.Lock()
			w.pid, w.cgroup = f.pid, f.cgroup
			m.mu.Unlock()
		}
		m.ensure(ctx, w)
	}
	m.publish()
}

// open opens the namespace of f.pid, checking it is still namespace ino
// (the pid may have been reused). nil, nil: it is our own namespace.
func (m *Manager) open(ino uint64, f found) (*workload, error) {
	h, err := netns.OpenPID(f.pid)
	if err != nil {
		return nil, err
	}
	if h.Inode() != ino {
		h.Close()
		return nil, fmt.Errorf("process %d changed namespace while being looked at", f.pid)
	}
	cookie, err := h.Cookie()
	if err != nil {
		h.Close()
		return nil, err
	}
	if m.ownCookie != 0 && cookie == m.ownCookie {
		h.Close()
		return nil, nil
	}
	m.log.Info("workload network namespace", "netns_cookie", cookie, "netns_inode", ino, "pid", f.pid, "cgroup", f.cgroup)
	return &workload{h: h, inode: ino, cookie: cookie, pid: f.pid, cgroup: f.cgroup,
		open: map[string]*listener{}, failing: map[string]string{}}, nil
}

// ensure opens what is missing in w, drops upstreams no longer its owner's
// and marks it ready once its transparent listeners are open.
func (m *Manager) ensure(ctx context.Context, w *workload) {
	lc := &net.ListenConfig{Control: m.cfg.Control}
	for _, addr := range m.cfg.TransparentAddrs {
		m.openTCP(ctx, w, lc, "transparent", addr, l7proxy.Upstream{}, func(ln net.Listener) error { return m.cfg.Proxy.ServeTransparent(ln) })
	}
	if m.cfg.DNS != nil {
		for _, addr := range m.cfg.DNSAddrs {
			m.openDNS(ctx, w, lc, addr)
		}
	}
	// The owner: the service of the cgroup the namespace's process runs in.
	owner := ""
	m.mu.Lock()
	cgroup := w.cgroup
	m.mu.Unlock()
	if id, err := m.cfg.CgroupID(cgroup); err == nil {
		m.mu.Lock()
		w.cgroupID = id
		m.mu.Unlock()
		owner, _ = m.cfg.Proxy.ServiceOfCgroup(id)
	}
	want := map[string]l7proxy.Upstream{}
	if owner != "" {
		ups, err := m.cfg.Proxy.ServiceUpstreams(nil, owner)
		if err != nil {
			m.m.failures.WithLabelValues(reasonUpstreams).Inc()
			m.log.Warn("read the upstreams of a workload's service; keeping the open ones", "service", owner, "netns_cookie", w.cookie, "err", err)
			return
		}
		for _, u := range ups {
			want[upstreamKey(u.BindAddr)] = u
		}
	}
	m.mu.Lock()
	if owner != w.owner {
		m.log.Info("workload namespace owner", "netns_cookie", w.cookie, "service", owner, "previous", w.owner, "cgroup", w.cgroup)
		w.owner = owner
	}
	var stale []*listener
	for key, l := range w.open {
		if l.kind != "upstream" {
			continue
		}
		if u, ok := want[key]; !ok || u != l.up {
			stale = append(stale, l)
			delete(w.open, key)
		}
	}
	for key := range w.failing {
		if _, ok := want[key]; strings.HasPrefix(key, "upstream ") && !ok {
			delete(w.failing, key)
		}
	}
	m.mu.Unlock()
	for _, l := range stale {
		l.c.Close()
		m.log.Info("closed a workload upstream listener", "netns_cookie", w.cookie, "addr", l.up.BindAddr, "service", l.up.Caller, "destination", l.up.DestinationName)
	}
	for _, u := range want {
		m.openTCP(ctx, w, lc, "upstream", u.BindAddr, u, func(ln net.Listener) error { return m.cfg.Proxy.ServeUpstream(u, ln) })
	}
	m.mu.Lock()
	ready, hasTransparent := w.ready, false
	for _, l := range w.open {
		hasTransparent = hasTransparent || l.kind == "transparent"
	}
	m.mu.Unlock()
	if !hasTransparent {
		return
	}
	// Marked at every scan, not only once: the mark lives in a pinned map
	// that another peerd process may have cleared — the old one of a
	// reload unmarks its namespaces as it hands over — and a refused
	// connect from here triggers a scan, so the mark comes back at once.
	if err := m.cfg.Dataplane.SetWorkloadNetns(w.cookie); err != nil {
		m.m.failures.WithLabelValues(reasonSetNetns).Inc()
		m.log.Warn("mark a workload namespace ready in the dataplane; retrying at the next scan", "netns_cookie", w.cookie, "err", err)
		return
	}
	if !ready {
		m.mu.Lock()
		w.ready = true
		m.mu.Unlock()
		m.log.Info("workload namespace ready", "netns_cookie", w.cookie, "netns_inode", w.inode, "pid", w.pid, "service", owner)
	}
}

func upstreamKey(addr string) string { return "upstream tcp " + addr }

// has reports whether key is open in w.
func (m *Manager) has(w *workload, key string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := w.open[key]
	return ok
}

// openTCP opens one TCP listener in w unless it is open, and hands it to
// serve.
func (m *Manager) openTCP(ctx context.Context, w *workload, lc *net.ListenConfig, kind, addr string, up l7proxy.Upstream, serve func(net.Listener) error) {
	key := kind + " tcp " + addr
	if m.has(w, key) {
		return
	}
	ln, err := w.h.Listen(ctx, lc, "tcp", addr)
	if err != nil {
		m.failed(w, key, addr, kind, err)
		return
	}
	if err := serve(ln); err != nil {
		ln.Close()
		m.failed(w, key, addr, reasonServe, err)
		return
	}
	m.opened(w, key, &listener{kind: kind, c: ln, up: up})
}

// openDNS opens DNS on addr (UDP and TCP together) in w unless open.
func (m *Manager) openDNS(ctx context.Context, w *workload, lc *net.ListenConfig, addr string) {
	key := "dns udp+tcp " + addr
	if m.has(w, key) {
		return
	}
	pc, err := w.h.ListenPacket(ctx, lc, "udp", addr)
	if err != nil {
		m.failed(w, key, addr, "dns", err)
		return
	}
	ln, err := w.h.Listen(ctx, lc, "tcp", addr)
	if err != nil {
		pc.Close()
		m.failed(w, key, addr, "dns", err)
		return
	}
	if err := m.cfg.DNS.Serve(pc, ln); err != nil {
		pc.Close()
		ln.Close()
		m.failed(w, key, addr, reasonServe, err)
		return
	}
	m.opened(w, key, &listener{kind: "dns", c: closers{pc, ln}})
}

type closers []io.Closer

func (cs closers) Close() error {
	var errs []error
	for _, c := range cs {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

func (m *Manager) opened(w *workload, key string, l *listener) {
	m.mu.Lock()
	v6 := strings.Contains(key, " [")
	wasNoIPv6 := v6 && w.noIPv6
	if v6 {
		w.noIPv6 = false
	}
	w.open[key] = l
	_, wasFailing := w.failing[key]
	delete(w.failing, key)
	m.mu.Unlock()
	if wasNoIPv6 {
		m.log.Info("workload namespace has IPv6 loopback (::1) now; IPv6 listeners open", "netns_cookie", w.cookie, "listener", key)
	}
	if wasFailing {
		m.log.Info("workload listener open after failures", "netns_cookie", w.cookie, "listener", key)
	} else {
		m.log.Debug("workload listener open", "netns_cookie", w.cookie, "listener", key)
	}
}

// failed records a failed open: logged and counted when it starts failing
// (or fails differently), retried silently at every scan. An IPv6 address
// that cannot be assigned means the namespace has no ::1 (IPv6 off, or
// its loopback not up yet): logged and counted once per namespace, and
// the namespace is served over IPv4 until ::1 appears.
func (m *Manager) failed(w *workload, key, addr, kind string, err error) {
	reason := map[string]string{"transparent": reasonTransparent, "dns": reasonDNS, "upstream": reasonUpstream}[kind]
	if kind == reasonServe {
		reason = reasonServe
	}
	if strings.HasPrefix(addr, "[") && errors.Is(err, syscall.EADDRNOTAVAIL) {
		m.mu.Lock()
		first := !w.noIPv6 && !w.loggedNoIPv6
		w.noIPv6, w.loggedNoIPv6 = true, true
		m.mu.Unlock()
		if first {
			m.m.failures.WithLabelValues(reasonNoIPv6).Inc()
			m.log.Info("workload namespace has no IPv6 loopback (::1); IPv4 listeners only", "netns_cookie", w.cookie, "pid", w.pid)
		}
		return
	}
	msg := err.Error()
	m.mu.Lock()
	prev, was := w.failing[key]
	w.failing[key] = msg
	m.mu.Unlock()
	if !was || prev != msg {
		m.m.failures.WithLabelValues(reason).Inc()
		m.log.Warn("open a listener in a workload namespace; retrying at every scan", "netns_cookie", w.cookie, "pid", w.pid, "listener", key, "err", err)
	}
}

// release closes what is open in w, unmarks it and drops its handle.
func (m *Manager) release(w *workload) {
	m.mu.Lock()
	open := w.open
	w.open = map[string]*listener{}
	ready := w.ready
	w.ready = false
	m.mu.Unlock()
	for _, l := range open {
		l.c.Close()
	}
	if ready {
		if err := m.cfg.Dataplane.DeleteWorkloadNetns(w.cookie); err != nil {
			m.m.failures.WithLabelValues(reasonDeleteNetns).Inc()
			m.log.Warn("unmark a workload namespace in the dataplane", "netns_cookie", w.cookie, "err", err)
		}
	}
	w.h.Close()
	m.log.Info("workload network namespace released", "netns_cookie", w.cookie, "netns_inode", w.inode, "listeners", len(open))
}

func (m *Manager) releaseAll() {
	m.mu.Lock()
	all := make([]*workload, 0, len(m.nss))
	for ino, w := range m.nss {
		all = append(all, w)
		delete(m.nss, ino)
	}
	m.mu.Unlock()
	for _, w := range all {
		m.release(w)
	}
	m.publish()
}

// publish updates the gauges.
func (m *Manager) publish() {
	m.mu.Lock()
	defer m.mu.Unlock()
	count := map[string]int{"transparent": 0, "dns": 0, "upstream": 0}
	for _, w := range m.nss {
		for _, l := range w.open {
			count[l.kind]++
		}
	}
	m.m.namespaces.Set(float64(len(m.nss)))
	for k, n := range count {
		m.m.listeners.WithLabelValues(k).Set(float64(n))
	}
}

// NamespaceStatus is one workload namespace, for operators.
type NamespaceStatus struct {
	Cookie   uint64
	Inode    uint64
	PID      int
	Cgroup   string
	CgroupID uint64
	// Owner is the service of the namespace's cgroup ("" = none: no
	// upstream listeners, captured connections refused as unknown_caller).
	Owner string `json:",omitempty"`
	// Ready: marked in the dataplane (virtual IP connects are captured).
	Ready bool
	IPv6  bool
	// Listeners are the open listeners ("transparent tcp 127.0.0.1:15001").
	Listeners []string
	// Failing are the listeners that could not be opened, with the error.
	Failing map[string]string `json:",omitempty"`
}

// Status lists the namespaces, by cookie.
func (m *Manager) Status() []NamespaceStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]NamespaceStatus, 0, len(m.nss))
	for _, w := range m.nss {
		s := NamespaceStatus{Cookie: w.cookie, Inode: w.inode, PID: w.pid, Cgroup: w.cgroup, CgroupID: w.cgroupID,
			Owner: w.owner, Ready: w.ready, IPv6: !w.noIPv6, Listeners: []string{}}
		for key := range w.open {
			s.Listeners = append(s.Listeners, key)
		}
		slices.Sort(s.Listeners)
		if len(w.failing) > 0 {
			s.Failing = map[string]string{}
			for k, v := range w.failing {
				s.Failing[k] = v
			}
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b NamespaceStatus) int { return cmp.Compare(a.Cookie, b.Cookie) })
	return out
}
