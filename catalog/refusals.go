package catalog

import (
	"errors"
	"net"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/peerd/peerd/internal/nodetls"
)

// The listeners a refusal is counted under.
const (
	ListenerRaft = "raft"
	ListenerGRPC = "grpc"
)

// Refusal reasons this package adds to nodetls's (nodetls.Reason*).
const (
	// ReasonHandshake is a connection that did not complete a TLS
	// handshake for a reason other than its certificate: plaintext, a
	// garbled or abandoned handshake, a handshake past its deadline.
	ReasonHandshake = "handshake"
	// ReasonPermission is a call an admitted node may not make (a client
	// node's Apply of a server-only command, or for another node).
	ReasonPermission = "permission"
)

// RefusalCounter counts refused connections and calls in
// peerd_security_refusals_total{listener,reason}. One counter serves a
// node: create it first, pass its Refused method as the nodetls.Config
// Refused callback of the node's Source (which reports certificate
// refusals), then pass both to the Cluster (Config.TLS, Config.Refusals),
// which adds the handshake and permission refusals and exports the counter
// with its Collector. It is safe for concurrent use.
type RefusalCounter struct {
	vec *prometheus.CounterVec
}

// NewRefusalCounter returns a counter at zero.
func NewRefusalCounter() *RefusalCounter {
	return &RefusalCounter{vec: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "peerd_security_refusals_total",
		Help: "Connections and calls refused on internal listeners, by listener and reason.",
	}, []string{"listener", "reason"})}
}

// Refused counts one refusal; it has nodetls.Config.Refused's signature.
func (r *RefusalCounter) Refused(listener, reason string) {
	r.vec.WithLabelValues(listener, reason).Inc()
}

// Describe implements prometheus.Collector.
func (r *RefusalCounter) Describe(ch chan<- *prometheus.Desc) { r.vec.Describe(ch) }

// Collect implements prometheus.Collector.
func (r *RefusalCounter) Collect(ch chan<- prometheus.Metric) { r.vec.Collect(ch) }

// handshakeRefused logs a failed handshake on listener and, unless nodetls
// already counted it (a refused certificate), counts it as ReasonHandshake.
func (c *Cluster) handshakeRefused(listener string, remote net.Addr, err error) {
	if !errors.Is(err, nodetls.ErrRefused) {
		c.cfg.Refusals.Refused(listener, ReasonHandshake)
	}
	c.log.Warn("refused a connection: TLS handshake failed", "listener", listener, "remote", addrString(remote), "err", err)
}

// permissionRefused logs and counts a call an admitted peer may not make.
func (c *Cluster) permissionRefused(listener string, attrs ...any) {
	c.cfg.Refusals.Refused(listener, ReasonPermission)
	c.log.Warn("refused a call: permission denied", append([]any{"listener", listener}, attrs...)...)
}

func addrString(a net.Addr) string {
	if a == nil {
		return "unknown"
	}
	return a.String()
}
