// Package l7proxy is peerd's in-process terminator: the outbound listeners
// that carry a local workload's connections to an imported service over
// mTLS, and the node's gateway listener that terminates mTLS from peers and
// from other nodes of the cluster, authorizes callers with
// service-intentions, applies the destination's L7 configuration
// (service-router, service-splitter, service-resolver) and forwards to a
// healthy instance.
//
// It reads the cluster state from a state.Store (the raft store on servers,
// the mirrored view on client nodes) and obtains leaf certificates through a
// Signer. It never imports the peering or dataplane packages; the agent
// wires them together.
//
// Captured connections (the transparent listener) are made as the local
// service their caller's cgroup names: ServiceOfCgroup gives the rules
// (exact peerd-cgroup, nearest claimed ancestor, peerd-pod-uid) and their
// order.
//
// Lifecycle: New(cfg) validates and allocates, opening nothing (the
// listeners are the caller's, in Config); Start serves them and starts the
// catalog watches; Close(ctx) stops accepting, drains open connections and
// requests until ctx ends, closes the rest, waits for the proxy's goroutines
// and is idempotent.
//
// Listeners opened elsewhere (in workload network namespaces, by
// agent/workloads) are served with ServeTransparent and ServeUpstream until
// their owner closes them (or Close); ServiceUpstreams tells which explicit
// upstreams one service owns, so a namespace gets its owner's only.
package l7proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"github.com/peerd/peerd/internal/sockets"
	"log/slog"
	"net"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/peerd/peerd/catalog/state"
	"github.com/peerd/peerd/internal/ca"
	"github.com/peerd/peerd/internal/identity"
)

// DefaultMark is the SO_MARK the terminator's sockets carry unless
// configured otherwise, so the eBPF layer can tell its own traffic apart.
const DefaultMark = 0x70d

// LeafRequest asks for a leaf certificate for a SPIFFE ID of this cluster.
// It is the cluster CA's request, so that the CA is a Signer as it is.
type LeafRequest = ca.LeafRequest

// Signer signs leaf certificates with the cluster CA. The agent passes the
// cluster CA (*ca.CA, which signs on servers and forwards from client
// nodes).
type Signer interface {
	// SignLeaf returns the PEM chain to present: the leaf first.
	SignLeaf(ctx context.Context, req LeafRequest) (chainPEM string, err error)
}

// SignerFunc adapts a function to Signer.
type SignerFunc func(ctx context.Context, req LeafRequest) (string, error)

// SignLeaf calls f.
func (f SignerFunc) SignLeaf(ctx context.Context, req LeafRequest) (string, error) {
	return f(ctx, req)
}

var _ Signer = (*ca.CA)(nil)

// Config configures a Proxy.
type Config struct {
	// NodeName and Datacenter name this node; instances of NodeName are
	// reached over plaintext loopback, others through their node's gateway.
	NodeName, Datacenter string
	// View returns the cluster state to read. It is called often; it must
	// be cheap.
	View func() *state.Store
	// Signer signs the leaves of local services and of the gateway.
	Signer Signer
	// NodeCertificate, when set (cluster trust), is this node's certificate
	// (spiffe://<td>/agent/<role>/dc/<dc>/node/<name>). The node-to-node
	// hop then presents it instead of the shared gateway identity, and the
	// gateway accepts a hop only from a node certificate of this cluster,
	// which no workload can obtain: the caller's identity the first node
	// vouched for (XFCC) is then trusted from admitted nodes alone.
	NodeCertificate func() *tls.Certificate
	// NodeRevoked, with NodeCertificate, reports a revoked node
	// certificate: a hop presenting one is refused.
	NodeRevoked func(identity.Agent, *x509.Certificate) bool
	// GatewayListener, when set, is the listener of the node's gateway
	// (inbound mTLS); the proxy serves it and closes it on Close.
	GatewayListener net.Listener
	// TransparentListeners, with Capture, are the outbound listeners (IPv4
	// and IPv6) the eBPF capture layer redirects workloads' connections to
	// virtual IPs to.
	TransparentListeners []net.Listener
	Capture              Capture
	// CgroupID returns the id of a cgroup v2 directory (to match services'
	// declared cgroups against captured connections); nil = match by
	// source address only.
	CgroupID func(path string) (uint64, error)
	// CgroupPath returns the directory, under CgroupRoot, of the cgroup
	// with a captured caller's id (cgroupfs.Resolver.Path). With it a
	// caller also matches a registration claiming an ancestor of its
	// cgroup, or its pod's UID (see ServiceOfCgroup); nil = exact cgroup
	// matches only. It may walk the file system on a miss.
	CgroupPath func(id uint64) (string, error)
	// CgroupRoot is the captured cgroup (-cgroup-path), required with
	// CgroupPath: ancestors are matched strictly below it, so a service
	// claiming the captured cgroup itself is not given every caller in
	// it.
	CgroupRoot string
	Logger     *slog.Logger
	// Registry receives the proxy's metrics; nil = not registered.
	Registry prometheus.Registerer

	// Mark is the SO_MARK set on every socket the proxy opens or accepts;
	// 0 = none. Setting a mark needs CAP_NET_ADMIN: without it the proxy
	// logs once and runs unmarked.
	Mark int
	// Sockets opens the upstream listeners (internal/sockets); nil opens
	// them directly. A reloading agent passes one that hands them to the
	// next process, which inherits them when its configuration still has
	// the same upstream address.
	Sockets sockets.Opener
	// MinTLSVersion is the lowest TLS version accepted or offered.
	// 0 = TLS 1.3.
	MinTLSVersion uint16
	// LeafTTL is the lifetime of the leaves requested; they are renewed at
	// half their life. 0 = 72 hours.
	LeafTTL time.Duration
	// ConnectTimeout bounds a dial including its TLS handshake, per
	// attempt. 0 = 5 s (Consul's default for peered upstreams).
	ConnectTimeout time.Duration
	// ConnectAttempts is how many endpoints a connection tries before it
	// fails. 0 = 3.
	ConnectAttempts int
	// HandshakeTimeout bounds an inbound TLS handshake. 0 = 10 s.
	HandshakeTimeout time.Duration
	// ReadHeaderTimeout bounds reading a request's headers (slow-loris
	// protection). 0 = 10 s.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes HTTP keep-alive connections and TCP streams idle
	// this long. 0 = 5 minutes for HTTP, 1 hour for TCP.
	IdleTimeout time.Duration
	// MaxHeaderBytes limits a request's header size. 0 = 64 KiB.
	MaxHeaderBytes int
	// MaxConcurrentStreams limits HTTP/2 streams per connection. 0 = 1024.
	MaxConcurrentStreams int
	// MaxIdleConnsPerEndpoint bounds each keep-alive pool. 0 = 256.
	MaxIdleConnsPerEndpoint int
	// OutlierFailures is the number of consecutive connect failures that
	// eject an endpoint. 0 = 3.
	OutlierFailures int
	// OutlierEjection is the first ejection time; it doubles with each
	// ejection in a row, up to 10 times. 0 = 10 s.
	OutlierEjection time.Duration
	// Now returns the current time. nil = time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MinTLSVersion == 0 {
		c.MinTLSVersion = tls.VersionTLS13
	}
	if c.LeafTTL == 0 {
		c.LeafTTL = 72 * time.Hour
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = 5 * time.Second
	}
	if c.ConnectAttempts == 0 {
		c.ConnectAttempts = 3
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.ReadHeaderTimeout == 0 {
		c.ReadHeaderTimeout = 10 * time.Second
	}
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = 64 << 10
	}
	if c.MaxConcurrentStreams == 0 {
		c.MaxConcurrentStreams = 1024
	}
	if c.MaxIdleConnsPerEndpoint == 0 {
		c.MaxIdleConnsPerEndpoint = 256
	}
	if c.OutlierFailures == 0 {
		c.OutlierFailures = 3
	}
	if c.OutlierEjection == 0 {
		c.OutlierEjection = 10 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

func (c *Config) validate() error {
	var errs []error
	if c.NodeName == "" {
		errs = append(errs, errors.New("the node name (NodeName) is required"))
	}
	if c.Datacenter == "" {
		errs = append(errs, errors.New("the datacenter (Datacenter) is required"))
	}
	if c.View == nil {
		errs = append(errs, errors.New("the cluster state view (View) is required"))
	}
	if c.Signer == nil {
		errs = append(errs, errors.New("a leaf signer (Signer) is required"))
	}
	if (len(c.TransparentListeners) == 0) != (c.Capture == nil) {
		errs = append(errs, errors.New("the transparent listener and the capture layer come together: set both or neither"))
	}
	if c.MinTLSVersion != tls.VersionTLS12 && c.MinTLSVersion != tls.VersionTLS13 {
		errs = append(errs, fmt.Errorf("minimum TLS version %#x: use TLS 1.2 or 1.3", c.MinTLSVersion))
	}
	for name, d := range map[string]time.Duration{
		"LeafTTL": c.LeafTTL, "ConnectTimeout": c.ConnectTimeout, "HandshakeTimeout": c.HandshakeTimeout,
		"ReadHeaderTimeout": c.ReadHeaderTimeout, "IdleTimeout": c.IdleTimeout, "OutlierEjection": c.OutlierEjection,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("duration %s = %v is negative", name, d))
		}
	}
	if c.LeafTTL > 0 && c.LeafTTL < 2*time.Second {
		errs = append(errs, fmt.Errorf("leaf TTL %v is too short: use at least 2s", c.LeafTTL))
	}
	if c.CgroupPath != nil && (c.CgroupID == nil || !filepath.IsAbs(c.CgroupRoot)) {
		errs = append(errs, fmt.Errorf("cgroup resolver (CgroupPath) needs CgroupID and an absolute CgroupRoot (got %q)", c.CgroupRoot))
	}
	if c.Mark < 0 {
		errs = append(errs, fmt.Errorf("socket mark %d is negative", c.Mark))
	}
	if len(errs) > 0 {
		return fmt.Errorf("terminator configuration: %w", errors.Join(errs...))
	}
	return nil
}
