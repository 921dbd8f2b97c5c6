package bpfsync

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ebbrun/ebb/bpf"
)

type metrics struct {
	wakes        prometheus.Counter
	wakesUnknown prometheus.Counter
	activations  *prometheus.CounterVec
	vips         prometheus.Gauge
	ports        prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		wakes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ebb_ebpf_wake_events_total",
			Help: "Wake events read: connects to the VIP of a function with no ready replica.",
		}),
		wakesUnknown: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ebb_ebpf_wake_events_unrouted_total",
			Help: "Wake events for a function this node no longer knows or that routes no traffic.",
		}),
		activations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ebb_ebpf_wake_activations_total",
			Help: "Activations asked for by wake events, by result (ok, error, skipped without an activator).",
		}, []string{"result"}),
		vips: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ebb_ebpf_vips",
			Help: "Function VIPs programmed into the eBPF maps.",
		}),
		ports: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ebb_ebpf_allowed_ports",
			Help: "Ports allow-listed for socket redirection: the router's and this node's replicas'.",
		}),
	}
	for _, c := range []prometheus.Collector{m.wakes, m.wakesUnknown, m.activations, m.vips, m.ports} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// StatsReader reads the eBPF programs' counters; *bpf.Loader is one.
type StatsReader interface {
	Stats() (bpf.Stats, error)
}

// StatsCollector exports the eBPF programs' own counters (sockets
// redirected, VIP connects, wake events emitted and dropped) at scrape time.
type StatsCollector struct {
	r     StatsReader
	descs []statDesc
}

type statDesc struct {
	desc *prometheus.Desc
	get  func(bpf.Stats) uint64
}

// NewStatsCollector returns a collector reading r on every scrape.
func NewStatsCollector(r StatsReader) *StatsCollector {
	d := func(name, help string, get func(bpf.Stats) uint64) statDesc {
		return statDesc{desc: prometheus.NewDesc("ebb_ebpf_"+name, help, nil, nil), get: get}
	}
	connects := func(target string, get func(bpf.Stats) uint64) statDesc {
		return statDesc{
			desc: prometheus.NewDesc("ebb_ebpf_vip_connects_total", "connect() calls to the VIP range, by where they went.",
				nil, prometheus.Labels{"target": target}),
			get: get,
		}
	}
	return &StatsCollector{r: r, descs: []statDesc{
		d("sockets_inserted_total", "Sockets put into the socket map for redirection.", func(s bpf.Stats) uint64 { return s.SocketsInserted }),
		d("socket_insert_failures_total", "Sockets that could not enter the socket map (full).", func(s bpf.Stats) uint64 { return s.SocketInsertFailures }),
		d("messages_redirected_total", "Sends that went straight into the peer socket.", func(s bpf.Stats) uint64 { return s.MessagesRedirected }),
		d("redirected_bytes_total", "Bytes that went straight into the peer socket.", func(s bpf.Stats) uint64 { return s.BytesRedirected }),
		d("messages_passed_total", "Sends on mapped sockets that used plain TCP.", func(s bpf.Stats) uint64 { return s.MessagesPassed }),
		d("sockets_latched_plain_total", "Mapped sockets whose peer was not mapped at their first send.", func(s bpf.Stats) uint64 { return s.SocketsLatchedPlain }),
		connects("backend", func(s bpf.Stats) uint64 { return s.ConnectsToBackend }),
		connects("fallback", func(s bpf.Stats) uint64 { return s.ConnectsToFallback }),
		connects("replica_fallback", func(s bpf.Stats) uint64 { return s.ConnectsFromReplicas }),
		connects("no_fallback", func(s bpf.Stats) uint64 { return s.ConnectsNoFallback }),
		connects("unknown_vip", func(s bpf.Stats) uint64 { return s.ConnectsUnknownVIP }),
		d("wakes_emitted_total", "Wake events the connect program emitted.", func(s bpf.Stats) uint64 { return s.WakesEmitted }),
		d("wakes_dropped_total", "Wake events lost because the ring buffer was full.", func(s bpf.Stats) uint64 { return s.WakesDropped }),
		d("peernames_rewritten_total", "getpeername() calls shown the VIP.", func(s bpf.Stats) uint64 { return s.PeernamesRewritten }),
	}}
}

// Describe implements prometheus.Collector.
func (c *StatsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d.desc
	}
}

// Collect implements prometheus.Collector. It reports nothing when the
// counters cannot be read (the loader is closed).
func (c *StatsCollector) Collect(ch chan<- prometheus.Metric) {
	s, err := c.r.Stats()
	if err != nil {
		return
	}
	for _, d := range c.descs {
		ch <- prometheus.MustNewConstMetric(d.desc, prometheus.CounterValue, float64(d.get(s)))
	}
}
