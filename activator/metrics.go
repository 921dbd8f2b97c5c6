package activator

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ebbrun/ebb/api"
)

type metrics struct {
	queueWait   *prometheus.HistogramVec
	coldStart   *prometheus.HistogramVec
	activations *prometheus.CounterVec
	rejected    *prometheus.CounterVec
	retries     prometheus.Counter
	// outOfDescriptors counts tries that found ebbd out of file
	// descriptors and were made again.
	outOfDescriptors prometheus.Counter
	// unreachable counts tries on which every replica taken refused the
	// request, which then waited a moment and was made again.
	unreachable prometheus.Counter
}

// namespaceOf is the namespace label of a function's metrics. The
// function label stays the qualified name ({fn}.{ns} outside default),
// which the dashboards and alerts group by, so the two never disagree.
func namespaceOf(function string) string {
	ns, _ := api.SplitQualifiedName(function)
	return ns
}

var waitBuckets = []float64{.0005, .001, .0025, .005, .01, .015, .025, .04, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}

func newMetrics(reg prometheus.Registerer, a *Activator) (*metrics, error) {
	m := &metrics{
		queueWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ebb_activator_queue_wait_seconds",
			Help:    "Time buffered requests waited for a replica (or for their answer, when they waited in vain).",
			Buckets: waitBuckets,
		}, []string{"namespace", "function"}),
		coldStart: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ebb_activator_cold_start_seconds",
			Help:    "Time buffered, from queueing to release, of requests that found their revision at zero.",
			Buckets: waitBuckets,
		}, []string{"namespace", "function"}),
		activations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ebb_activator_activations_total",
			Help: "Scale-up pokes sent to the autoscaler, by result.",
		}, []string{"namespace", "function", "revision", "result"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ebb_activator_rejected_total",
			Help: "Requests the activator answered itself, by reason: queue_full, deadline, failed, client_gone, shutdown, upstream, out_of_descriptors, unreachable.",
		}, []string{"reason"}),
	}
	m.retries = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ebb_activator_retries_total",
		Help: "Released requests retried on another replica because the one they were sent to took no byte of them.",
	})
	m.outOfDescriptors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ebb_activator_out_of_descriptors_total",
		Help: "Tries to reach a replica that found ebbd out of file descriptors; the request waits a moment and tries again.",
	})
	m.unreachable = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ebb_activator_unreachable_total",
		Help: "Tries on which every replica taken refused the request before any byte of it (a replica that just crashed); the request waits a moment and tries again within its deadline.",
	})
	for _, c := range []prometheus.Collector{m.queueWait, m.coldStart, m.activations, m.rejected, m.retries, m.outOfDescriptors, m.unreachable, liveCollector{a}} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) forget(rs *revState) {
	m.activations.DeletePartialMatch(prometheus.Labels{"revision": rs.name})
}

var (
	requestsDesc = prometheus.NewDesc("ebb_activator_requests_total",
		"Requests the activator handled, by function, revision and status code (499: the client left).",
		[]string{"namespace", "function", "revision", "code"}, nil)
	bufferedDesc = prometheus.NewDesc("ebb_activator_buffered",
		"Requests waiting for a replica, by function and revision.",
		[]string{"namespace", "function", "revision"}, nil)
	concurrencyDesc = prometheus.NewDesc("ebb_activator_concurrency",
		"Requests in the activator, waiting or being proxied, by function and revision.",
		[]string{"namespace", "function", "revision"}, nil)
)

type liveCollector struct{ a *Activator }

func (c liveCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- requestsDesc
	ch <- bufferedDesc
	ch <- concurrencyDesc
}

func (c liveCollector) Collect(ch chan<- prometheus.Metric) {
	c.a.states.Range(func(_, v any) bool {
		rs := v.(*revState)
		ch <- prometheus.MustNewConstMetric(bufferedDesc, prometheus.GaugeValue, float64(rs.stats.Buffered()), namespaceOf(rs.function), rs.function, rs.name)
		ch <- prometheus.MustNewConstMetric(concurrencyDesc, prometheus.GaugeValue, float64(rs.stats.InFlight()), namespaceOf(rs.function), rs.function, rs.name)
		rs.codes.Each(func(code int, n uint64) {
			label := "other"
			if code != 0 {
				label = strconv.Itoa(code)
			}
			ch <- prometheus.MustNewConstMetric(requestsDesc, prometheus.CounterValue, float64(n), namespaceOf(rs.function), rs.function, rs.name, label)
		})
		return true
	})
}
