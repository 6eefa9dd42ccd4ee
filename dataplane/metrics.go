package dataplane

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Collector exports Status on every scrape: whether each layer is loaded,
// its map occupancy and its counters.
func (d *Dataplane) Collector() prometheus.Collector { return collector{d} }

type collector struct{ d *Dataplane }

var (
	descLoaded = prometheus.NewDesc("peerd_dataplane_layer_loaded",
		"1 when an eBPF layer (capture, fastpath, tc, inbound) is loaded and attached, 0 when it is enabled but off (see peerctl dataplane status for the reason).",
		[]string{"layer"}, nil)
	descMap = prometheus.NewDesc("peerd_dataplane_map_entries",
		"Entries in each eBPF map.", []string{"layer", "map"}, nil)
	descCounter = prometheus.NewDesc("peerd_dataplane_events_total",
		"The eBPF programs' own counters (redirects, inserts, bytes, packets, skips), summed over CPUs.", []string{"layer", "counter"}, nil)
)

func (collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descLoaded
	ch <- descMap
	ch <- descCounter
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.d.Status()
	for name, l := range map[string]LayerStatus{LayerCapture: s.Capture, LayerFastPath: s.FastPath, LayerTC: s.TC, LayerInbound: s.Inbound} {
		if !l.Enabled {
			continue
		}
		v := 0.0
		if l.Loaded {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(descLoaded, prometheus.GaugeValue, v, name)
		for m, n := range l.Maps {
			ch <- prometheus.MustNewConstMetric(descMap, prometheus.GaugeValue, float64(n), name, m)
		}
		for k, n := range l.Counters {
			ch <- prometheus.MustNewConstMetric(descCounter, prometheus.CounterValue, float64(n), name, k)
		}
	}
}
