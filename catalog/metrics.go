package catalog

import (
	"strconv"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// clusterMetrics exposes raft, gossip and catalog sizes. Gauges are read on
// scrape from raft's and memberlist's own counters, so nothing global is
// installed.
type clusterMetrics struct {
	c     *Cluster
	apply *prometheus.HistogramVec
	// vipAssigned counts virtual IPs handed out; vipUnassigned is the
	// number of imported services the last pass found no free address for.
	vipAssigned   prometheus.Counter
	vipUnassigned prometheus.Gauge
	// autopilot* are the leader's server management: refusals by reason,
	// promotions to voter, dead servers removed, and its last verdict.
	autopilotRefusals         *prometheus.CounterVec
	autopilotPromotions       prometheus.Counter
	autopilotRemovals         prometheus.Counter
	autopilotHealthy          prometheus.Gauge
	autopilotFailureTolerance prometheus.Gauge

	raftState, raftTerm, raftCommit, raftApplied, raftLastLog, raftPeers, raftLastContact *prometheus.Desc
	members, health, tableRows                                                            *prometheus.Desc
}

func newClusterMetrics(c *Cluster) *clusterMetrics {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &clusterMetrics{
		c: c,
		apply: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "peerd_catalog_apply_duration_seconds",
			Help:    "Time to commit one replicated write from this node, by command and result.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"command", "result"}),
		vipAssigned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "peerd_virtual_ips_assigned_total",
			Help: "Virtual IPs this server assigned to imported services while leader.",
		}),
		vipUnassigned: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "peerd_virtual_ips_unassigned",
			Help: "Imported services without a virtual IP because the range is full (0 unless the range is too small).",
		}),
		autopilotRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "peerd_autopilot_refusals_total",
			Help: "Server removals autopilot or an operator asked for and this leader refused, by reason (quorum, remove_leader, unknown_peer).",
		}, []string{"reason"}),
		autopilotPromotions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "peerd_autopilot_promotions_total",
			Help: "Non-voting servers this leader promoted to voters after they were stable.",
		}),
		autopilotRemovals: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "peerd_autopilot_dead_servers_removed_total",
			Help: "Failed servers this leader removed from the raft configuration.",
		}),
		autopilotHealthy: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "peerd_autopilot_healthy",
			Help: "1 if the leader's last autopilot pass found every server healthy and a healthy quorum (leader only).",
		}),
		autopilotFailureTolerance: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "peerd_autopilot_failure_tolerance",
			Help: "Voters that can fail without losing quorum, by the leader's last autopilot pass.",
		}),
		raftState:       d("peerd_raft_state", "1 for the raft state this server is in.", "state"),
		raftTerm:        d("peerd_raft_term", "Current raft term."),
		raftCommit:      d("peerd_raft_commit_index", "Highest raft index known committed."),
		raftApplied:     d("peerd_raft_applied_index", "Highest raft index applied to the state store."),
		raftLastLog:     d("peerd_raft_last_log_index", "Highest raft index in the local log."),
		raftPeers:       d("peerd_raft_peers", "Voters in the raft configuration."),
		raftLastContact: d("peerd_raft_last_contact_seconds", "Seconds since this follower last heard from the leader (0 on the leader)."),
		members:         d("peerd_memberlist_members", "Gossip members by status.", "status"),
		health:          d("peerd_memberlist_health_score", "memberlist's local health awareness score (0 = healthy)."),
		tableRows:       d("peerd_catalog_rows", "Rows in the state store by table.", "table"),
	}
}

func (m *clusterMetrics) observeApply(cmd string, start time.Time, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.apply.WithLabelValues(cmd, result).Observe(time.Since(start).Seconds())
}

// Collector returns the cluster's Prometheus collector.
func (c *Cluster) Collector() prometheus.Collector { return c.metrics }

func (m *clusterMetrics) Describe(ch chan<- *prometheus.Desc) {
	m.apply.Describe(ch)
	m.c.cfg.Refusals.Describe(ch)
	m.vipAssigned.Describe(ch)
	m.vipUnassigned.Describe(ch)
	m.autopilotRefusals.Describe(ch)
	m.autopilotPromotions.Describe(ch)
	m.autopilotRemovals.Describe(ch)
	m.autopilotHealthy.Describe(ch)
	m.autopilotFailureTolerance.Describe(ch)
	for _, d := range []*prometheus.Desc{m.raftState, m.raftTerm, m.raftCommit, m.raftApplied, m.raftLastLog,
		m.raftPeers, m.raftLastContact, m.members, m.health, m.tableRows} {
		ch <- d
	}
}

func (m *clusterMetrics) Collect(ch chan<- prometheus.Metric) {
	m.apply.Collect(ch)
	m.c.cfg.Refusals.Collect(ch)
	m.vipAssigned.Collect(ch)
	m.vipUnassigned.Collect(ch)
	m.autopilotRefusals.Collect(ch)
	m.autopilotPromotions.Collect(ch)
	m.autopilotRemovals.Collect(ch)
	m.autopilotHealthy.Collect(ch)
	m.autopilotFailureTolerance.Collect(ch)
	c := m.c
	counts := map[MemberStatus]int{}
	for _, mem := range c.Members() {
		counts[mem.Status]++
	}
	for _, st := range []MemberStatus{StatusAlive, StatusLeaving, StatusLeft, StatusFailed} {
		ch <- prometheus.MustNewConstMetric(m.members, prometheus.GaugeValue, float64(counts[st]), st.String())
	}
	ch <- prometheus.MustNewConstMetric(m.health, prometheus.GaugeValue, float64(c.ml.GetHealthScore()))
	if c.raft == nil {
		return
	}
	state := c.raft.State()
	for _, s := range []raft.RaftState{raft.Follower, raft.Candidate, raft.Leader, raft.Shutdown} {
		v := 0.0
		if s == state {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(m.raftState, prometheus.GaugeValue, v, s.String())
	}
	stats := c.raft.Stats()
	num := func(k string) float64 {
		v, _ := strconv.ParseFloat(stats[k], 64)
		return v
	}
	ch <- prometheus.MustNewConstMetric(m.raftTerm, prometheus.GaugeValue, num("term"))
	ch <- prometheus.MustNewConstMetric(m.raftCommit, prometheus.GaugeValue, num("commit_index"))
	ch <- prometheus.MustNewConstMetric(m.raftApplied, prometheus.GaugeValue, num("applied_index"))
	ch <- prometheus.MustNewConstMetric(m.raftLastLog, prometheus.GaugeValue, num("last_log_index"))
	ch <- prometheus.MustNewConstMetric(m.raftPeers, prometheus.GaugeValue, num("num_peers")+1)
	contact := 0.0
	if state != raft.Leader {
		contact = time.Since(c.raft.LastContact()).Seconds()
	}
	ch <- prometheus.MustNewConstMetric(m.raftLastContact, prometheus.GaugeValue, contact)
	for table, n := range c.store.RowCounts() {
		ch <- prometheus.MustNewConstMetric(m.tableRows, prometheus.GaugeValue, float64(n), table)
	}
}
