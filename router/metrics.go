package router

import (
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ebbrun/ebb/api"
)

type metrics struct {
	duration    *prometheus.HistogramVec
	coldStarts  *prometheus.CounterVec
	coldLatency *prometheus.HistogramVec
	handoffs    *prometheus.CounterVec
	retries     prometheus.Counter
	unknownHost prometheus.Counter
	// acceptShortages counts accepts that found no file descriptor (or
	// memory) free; refusedPerIP connections past MaxConnsPerIP.
	acceptShortages prometheus.Counter
	refusedPerIP    prometheus.Counter
	// tlsHandshakeErrors counts TLS handshakes that failed or timed out.
	tlsHandshakeErrors prometheus.Counter
	// The route table's rebuilds: how many, and how long each took.
	rebuilds       prometheus.Counter
	rebuildSeconds prometheus.Histogram
}

// namespaceOf is the namespace label of a function's metrics. The
// function label stays the qualified name ({fn}.{ns} outside default),
// which the dashboards and alerts group by, so the two never disagree.
func namespaceOf(function string) string {
	ns, _ := api.SplitQualifiedName(function)
	return ns
}

// latencyBuckets reach from well under a millisecond (a warm proxy hop) to
// minutes (long functions).
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}

func newMetrics(reg prometheus.Registerer, r *Router) (*metrics, error) {
	m := &metrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ebb_router_request_duration_seconds",
			Help:    "Time from a request's arrival to the end of its response, by function and revision.",
			Buckets: latencyBuckets,
		}, []string{"namespace", "function", "revision"}),
		coldStarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ebb_router_cold_starts_total",
			Help: "Requests that arrived while their revision had no ready replica.",
		}, []string{"namespace", "function", "revision"}),
		coldLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ebb_router_cold_start_seconds",
			Help:    "Time from arrival to response header for requests that found their revision at zero.",
			Buckets: latencyBuckets,
		}, []string{"namespace", "function"}),
		handoffs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ebb_router_activator_handoffs_total",
			Help: "Requests handed to the activator because no replica had free capacity.",
		}, []string{"namespace", "function", "revision"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ebb_router_retries_total",
			Help: "Retries of requests on another replica, or on a new connection to the same one, because the one tried took no byte of them.",
		}),
		acceptShortages: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ebb_router_accept_shortages_total",
			Help: "Accepts that found ebbd out of file descriptors (or memory); the router pauses and accepts again.",
		}),
		refusedPerIP: prometheus.NewCounter(prometheus.CounterOpts{
			Name:        "ebb_router_connections_refused_total",
			Help:        "Client connections answered and closed at once, by reason: max_conns (the router's cap), max_conns_per_ip (one address's).",
			ConstLabels: prometheus.Labels{"reason": "max_conns_per_ip"},
		}),
		tlsHandshakeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ebb_router_tls_handshake_errors_total",
			Help: "TLS handshakes on the router's TLS port that failed or timed out (no certificate for the name, a protocol below TLS 1.2, a client that went away).",
		}),
		unknownHost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ebb_router_unknown_host_total",
			Help: "Requests for a host no function is served at.",
		}),
		rebuilds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ebb_router_table_rebuilds_total",
			Help: "Route tables built from the store's functions and revisions; changes that come together share one.",
		}),
		rebuildSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ebb_router_table_rebuild_seconds",
			Help:    "Time to build one route table, which grows with the number of functions.",
			Buckets: latencyBuckets,
		}),
	}
	refusedAtCap := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name:        "ebb_router_connections_refused_total",
		Help:        "Client connections answered and closed at once, by reason: max_conns (the router's cap), max_conns_per_ip (one address's).",
		ConstLabels: prometheus.Labels{"reason": "max_conns"},
	}, func() float64 { return float64(r.server.GetRejectedConnectionsCount()) })
	open := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ebb_router_connections",
		Help: "Client connections open.",
	}, func() float64 { return float64(r.server.GetOpenConnectionsCount()) })
	capacity := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ebb_router_connections_max",
		Help: "The router's cap on client connections, from its configuration and the open-file limit.",
	}, func() float64 { return float64(r.cfg.MaxConns) })
	for _, c := range []prometheus.Collector{m.duration, m.coldStarts, m.coldLatency, m.handoffs, m.retries, m.unknownHost,
		m.acceptShortages, m.refusedPerIP, m.tlsHandshakeErrors, refusedAtCap, open, capacity, m.rebuilds, m.rebuildSeconds, liveCollector{r}} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) forget(st *revState) {
	st.latency.forget()
	m.coldStarts.DeleteLabelValues(namespaceOf(st.function), st.function, st.name)
	m.handoffs.DeleteLabelValues(namespaceOf(st.function), st.function, st.name)
}

// lazyObserver is a revision's latency histogram, created at its first
// observation. With thousands of functions mostly at zero, histograms made
// up front would be twenty series each that never move, and most of every
// scrape (about 20 MB at 10,000 functions).
type lazyObserver struct {
	vec                *prometheus.HistogramVec
	function, revision string
	h                  atomic.Pointer[prometheus.Observer]

	mu        sync.Mutex // orders creating the histogram against forget
	forgotten bool
}

func (l *lazyObserver) Observe(v float64) {
	if h := l.h.Load(); h != nil {
		(*h).Observe(v)
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.forgotten {
		return // the revision is gone; do not bring its series back
	}
	if l.h.Load() == nil {
		h := l.vec.WithLabelValues(namespaceOf(l.function), l.function, l.revision)
		l.h.Store(&h)
	}
	(*l.h.Load()).Observe(v)
}

// forget removes the histogram, and keeps a late observation from
// creating it again.
func (l *lazyObserver) forget() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.forgotten = true
	l.vec.DeleteLabelValues(namespaceOf(l.function), l.function, l.revision)
}

var (
	requestsDesc = prometheus.NewDesc("ebb_router_requests_total",
		"Requests answered, by function, revision and status code (\"other\" past the first few distinct codes).",
		[]string{"namespace", "function", "revision", "code"}, nil)
	inFlightDesc = prometheus.NewDesc("ebb_router_in_flight",
		"Requests the router is proxying directly to replicas, by function and revision.",
		[]string{"namespace", "function", "revision"}, nil)
	routesDesc = prometheus.NewDesc("ebb_router_routes",
		"Hosts in the route table.", nil, nil)
)

// liveCollector reads the request path's atomic counters at scrape time, so
// the request path pays for no metric bookkeeping beyond them.
type liveCollector struct{ r *Router }

func (c liveCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- requestsDesc
	ch <- inFlightDesc
	ch <- routesDesc
}

func (c liveCollector) Collect(ch chan<- prometheus.Metric) {
	t := c.r.table.Load()
	ch <- prometheus.MustNewConstMetric(routesDesc, prometheus.GaugeValue, float64(len(t.hosts)))
	for _, st := range t.revs {
		ch <- prometheus.MustNewConstMetric(inFlightDesc, prometheus.GaugeValue, float64(st.stats.InFlight()), namespaceOf(st.function), st.function, st.name)
		st.codes.Each(func(code int, n uint64) {
			label := "other"
			if code != 0 {
				label = strconv.Itoa(code)
			}
			ch <- prometheus.MustNewConstMetric(requestsDesc, prometheus.CounterValue, float64(n), namespaceOf(st.function), st.function, st.name, label)
		})
	}
}
