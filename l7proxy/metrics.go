package l7proxy

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Directions, the "direction" label of the per-hop metrics.
const (
	// dirOutbound is a local workload's connection through an upstream
	// listener toward a peer (or another node).
	dirOutbound = "outbound"
	// dirInbound is a connection or request arriving at the node's gateway.
	dirInbound = "inbound"
)

type metrics struct {
	requests      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	bytes         *prometheus.CounterVec
	connections   *prometheus.CounterVec
	active        *prometheus.GaugeVec
	handshakeFail *prometheus.CounterVec
	denials       *prometheus.CounterVec
	connectFail   *prometheus.CounterVec
	ejections     *prometheus.CounterVec
	leafRenewals  *prometheus.CounterVec
	leafCache     prometheus.Gauge
	listeners     prometheus.Gauge
	markEnabled   prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	hop := []string{"direction", "service", "peer"}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "peerd_proxy_requests_total",
			Help: "HTTP requests (and TCP connections, class \"tcp\") handled per hop, by response class (2xx..5xx, denied, tcp).",
		}, append(hop, "class")),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "peerd_proxy_request_duration_seconds",
			Help:    "Duration of HTTP requests (and of TCP connections, class \"tcp\") per hop.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, append(hop, "class")),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "peerd_proxy_bytes_total",
			Help: "Payload bytes carried per hop; flow \"rx\" is from the caller, \"tx\" toward it.",
		}, append(hop, "flow")),
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "peerd_proxy_connections_total",
			Help: "Connections accepted per hop.",
		}, hop),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "peerd_proxy_active_connections",
			Help: "Connections open per hop.",
		}, hop),
		handshakeFail: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "peerd_proxy_tls_handshake_failures_total",
			Help: "TLS handshakes that failed, by listener (gateway, upstream) and reason.",
		}, []string{"listener", "reason"}),
		denials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "peerd_proxy_intention_denials_total",
			Help: "Requests and connections refused by service-intentions, by destination, caller and caller's peer.",
		}, []string{"service", "source", "peer"}),
		connectFail: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "peerd_proxy_upstream_connect_failures_total",
			Help: "Failed dials toward endpoints, by destination service and peer.",
		}, []string{"service", "peer"}),
		ejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "peerd_proxy_outlier_ejections_total",
			Help: "Endpoints ejected after consecutive connect failures.",
		}, []string{"service", "peer"}),
		leafRenewals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "peerd_proxy_leaf_certificates_signed_total",
			Help: "Leaf certificates obtained from the CA, by result.",
		}, []string{"result"}),
		leafCache: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "peerd_proxy_leaf_cache_entries",
			Help: "Identities whose leaf certificate the terminator keeps (at most " + strconv.Itoa(maxLeaves) + ").",
		}),
		listeners: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "peerd_proxy_upstream_listeners",
			Help: "Upstream (outbound) listeners open.",
		}),
		markEnabled: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "peerd_proxy_socket_mark_enabled",
			Help: "1 when the terminator's sockets carry SO_MARK, 0 when marks are off or not permitted.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration, m.bytes, m.connections, m.active, m.handshakeFail,
			m.denials, m.connectFail, m.ejections, m.leafRenewals, m.leafCache, m.listeners, m.markEnabled)
	}
	return m
}

// statusClass is the "class" label of an HTTP status.
func statusClass(code int) string {
	if code < 100 || code > 599 {
		return "other"
	}
	return strconv.Itoa(code/100) + "xx"
}
