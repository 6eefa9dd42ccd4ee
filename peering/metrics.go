package peering

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/peerd/peerd/catalog/state"
)

// metrics are the peering metrics of one Server. The counters and the
// histogram are updated by the streams; the gauges are read from the store
// and the tracker when scraped (gaugeCollector), on the leader only, as
// Consul reports them.
type metrics struct {
	reconnects *prometheus.CounterVec
	// resets counts the streams this end tore down as stale, by reason.
	resets        *prometheus.CounterVec
	nacks         *prometheus.CounterVec
	bytes         *prometheus.CounterVec
	unknownNonces *prometheus.CounterVec
	// quotaRefusals and importRefusals count the peer's messages refused
	// for a quota, or as invalid (by reason).
	quotaRefusals  *prometheus.CounterVec
	importRefusals *prometheus.CounterVec
	lag            *prometheus.HistogramVec
	refusals       *prometheus.CounterVec
	rotations      *prometheus.CounterVec
	gauges         *gaugeCollector
}

func newMetrics(s *Server) *metrics {
	return &metrics{
		reconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "peerd_peering_stream_reconnects_total",
			Help: "Replication streams opened for a peering after its first one.",
		}, []string{"peer"}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "peerd_peering_nacks_total",
			Help: "Responses refused (NACKed): sent = by this cluster, received = by the peer.",
		}, []string{"peer", "direction"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "peerd_peering_message_bytes_total",
			Help: "Bytes of replication messages (protobuf size) sent to and received from the peer.",
		}, []string{"peer", "direction"}),
		unknownNonces: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "peerd_peering_unknown_nonces_total",
			Help: "ACKs and NACKs from the peer quoting a nonce this stream did not send or already settled; they are ignored.",
		}, []string{"peer"}),
		quotaRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "peerd_peering_quota_refusals_total",
			Help: "Responses from the peer refused (NACKed) for reaching a quota: services, instances, in_flight_bytes, messages_per_second.",
		}, []string{"peer", "quota"}),
		importRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "peerd_peering_import_refusals_total",
			Help: "Imports from the peer refused (NACKed) as invalid, by reason (trust_domain, no_trust_bundle, sni, gateway_address, spiffe_id, meta); reserved_meta counts meta keys stripped.",
		}, []string{"peer", "reason"}),
		lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "peerd_peering_replication_lag_seconds",
			Help:    "Delay from a response's arrival from the peer (its first chunk) to its commit in the local catalog.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"peer"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "peerd_peering_secret_refusals_total",
			Help: "Secret exchanges (call=exchange) and stream opens (call=stream) refused, by reason: invalid_secret, expired, rate_limited, identity, unknown_peering.",
		}, []string{"call", "reason"}),
		resets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "peerd_peering_stream_resets_total",
			Help: "Open streams this end reset as stale, by reason: stale = nothing (no heartbeat, no data) received for the stale-stream timeout, send_stalled = one send blocked that long (the peer not reading). The dialer then resubscribes; the acceptor's close makes the dialer reconnect.",
		}, []string{"peer", "reason"}),
		rotations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "peerd_peering_stream_secret_rotations_total",
			Help: "Stream secret rotations, by step: started = a new pending secret (acceptor), promoted = the dialer took it and the old one stopped working (acceptor), stored = took one from the acceptor (dialer).",
		}, []string{"peer", "step"}),
		gauges: newGaugeCollector(s),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.reconnects, m.resets, m.nacks, m.bytes, m.unknownNonces, m.quotaRefusals, m.importRefusals, m.lag, m.refusals, m.rotations, m.gauges}
}

// register registers every metric on reg, or none.
func (m *metrics) register(reg prometheus.Registerer) error {
	var done []prometheus.Collector
	for _, c := range m.collectors() {
		if err := reg.Register(c); err != nil {
			for _, d := range done {
				reg.Unregister(d)
			}
			return err
		}
		done = append(done, c)
	}
	return nil
}

// forget drops a deleted peering's series.
func (m *metrics) forget(peer string) {
	m.reconnects.DeleteLabelValues(peer)
	m.unknownNonces.DeleteLabelValues(peer)
	m.lag.DeleteLabelValues(peer)
	m.quotaRefusals.DeletePartialMatch(prometheus.Labels{"peer": peer})
	m.importRefusals.DeletePartialMatch(prometheus.Labels{"peer": peer})
	for _, step := range []string{"started", "promoted", "stored"} {
		m.rotations.DeleteLabelValues(peer, step)
	}
	for _, dir := range []string{"sent", "received"} {
		m.nacks.DeleteLabelValues(peer, dir)
		m.bytes.DeleteLabelValues(peer, dir)
	}
}

// gaugeCollector reports, per peering, whether its stream is healthy and
// how many services it exports to and imports from the peer.
type gaugeCollector struct {
	s                           *Server
	healthy, exported, imported *prometheus.Desc
}

func newGaugeCollector(s *Server) *gaugeCollector {
	return &gaugeCollector{
		s:        s,
		healthy:  prometheus.NewDesc("peerd_peering_healthy", "1 if the peering's stream is up and heard from within the heartbeat timeout, else 0; PENDING peerings (token not used yet) are left out.", []string{"peer"}, nil),
		exported: prometheus.NewDesc("peerd_peering_exported_services", "Services exported to the peer.", []string{"peer"}, nil),
		imported: prometheus.NewDesc("peerd_peering_imported_services", "Services imported from the peer.", []string{"peer"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (g *gaugeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- g.healthy
	ch <- g.exported
	ch <- g.imported
}

// Collect implements prometheus.Collector. Only the leader reports.
func (g *gaugeCollector) Collect(ch chan<- prometheus.Metric) {
	s := g.s
	st := s.cfg.Cluster.Store()
	if st == nil || !s.cfg.Cluster.IsLeader() {
		return
	}
	_, peerings, err := st.Peerings(nil)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(g.healthy, err)
		return
	}
	_, exports, err := st.ExportedServices(nil)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(g.exported, err)
		exports = nil
	}
	now := s.cfg.Now()
	for _, p := range peerings {
		// A PENDING peering (a token not used yet) has no stream to be
		// healthy or not: it is left out, so an alert on 0 does not fire
		// for it.
		if p.State != state.PeeringPending {
			healthy := 0.0
			if s.tracker.get(p.ID).Healthy(now, s.cfg.HeartbeatTimeout) {
				healthy = 1
			}
			ch <- prometheus.MustNewConstMetric(g.healthy, prometheus.GaugeValue, healthy, p.Name)
		}
		ch <- prometheus.MustNewConstMetric(g.exported, prometheus.GaugeValue, float64(len(exportsOf(exports, p))), p.Name)
		_, imported, err := st.Services(nil, p.Name)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(g.imported, err)
			continue
		}
		ch <- prometheus.MustNewConstMetric(g.imported, prometheus.GaugeValue, float64(len(imported)), p.Name)
	}
}
