package autoscaler

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ebbrun/ebb/api"
)

// runnerMetrics are the Runner's Prometheus metrics. With no registerer
// they are still kept (and readable in tests), just not exported.
type runnerMetrics struct {
	desired    *prometheus.GaugeVec
	ready      *prometheus.GaugeVec
	observed   *prometheus.GaugeVec
	target     *prometheus.GaugeVec
	panic      *prometheus.GaugeVec
	preCreated *prometheus.GaugeVec
	unplaced   *prometheus.GaugeVec
	queued     *prometheus.GaugeVec
	// queueErrors counts queue depths the runner could not read.
	queueErrors prometheus.Counter
	// quotaClipped counts decisions a namespace's quota cut, by namespace.
	quotaClipped *prometheus.CounterVec
	decisions    *prometheus.CounterVec
	stats        *prometheus.CounterVec
	activation   prometheus.Histogram
}

func newRunnerMetrics(reg prometheus.Registerer) (*runnerMetrics, error) {
	rev := []string{"namespace", "function", "revision"}
	m := &runnerMetrics{
		desired: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ebb_autoscaler_desired_replicas", Help: "Replicas the autoscaler decided for the revision.",
		}, rev),
		ready: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ebb_autoscaler_ready_replicas", Help: "Ready replicas the autoscaler saw at its last decision.",
		}, rev),
		observed: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ebb_autoscaler_observed", Help: "Scaling metric (concurrency or requests per second) averaged over the window.",
		}, append(rev, "window")),
		target: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ebb_autoscaler_target", Help: "Per-replica target of the scaling metric.",
		}, rev),
		panic: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ebb_autoscaler_panic", Help: "1 while the revision's decider is in panic mode.",
		}, rev),
		preCreated: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ebb_autoscaler_precreated_tasks", Help: "Pre-created tasks the keep-alive policy asks for.",
		}, rev),
		unplaced: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ebb_autoscaler_unplaced_replicas", Help: "Desired replicas no node could take.",
		}, rev),
		queued: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ebb_autoscaler_queued_invocations",
			Help: "The revision's share of its function's queued asynchronous invocations, counted as demand.",
		}, rev),
		queueErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ebb_autoscaler_queue_depth_errors_total",
			Help: "Functions whose async queue depth a tick could not read (counted as none queued).",
		}),
		quotaClipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ebb_autoscaler_quota_clipped_total",
			Help: "Scaling decisions the namespace's quota cut below what the decider wanted, by namespace.",
		}, []string{"namespace"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ebb_autoscaler_decisions_total",
			Help: "Scaling decisions by trigger (tick, activate, quota: a re-decision to make room in a capped namespace) and outcome (unchanged, written, conflict, error).",
		}, []string{"trigger", "outcome"}),
		stats: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ebb_autoscaler_stats_total", Help: "Revision stats received, by outcome (recorded, dropped).",
		}, []string{"outcome"}),
		activation: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ebb_autoscaler_activation_seconds",
			Help:    "Time from an activation poke to its decision being in the store.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.desired, m.ready, m.observed, m.target, m.panic, m.preCreated, m.unplaced, m.queued, m.queueErrors, m.quotaClipped, m.decisions, m.stats, m.activation} {
		if err := reg.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if errors.As(err, &already) {
				return nil, errors.New("autoscaler runner: metrics already registered on this registerer")
			}
			return nil, err
		}
	}
	return m, nil
}

// revisionLabels labels a revision's series. The function label stays the
// qualified name ({fn}.{ns} outside default), which the dashboards and
// alerts group by; namespace is its namespace.
func revisionLabels(function, revision string) prometheus.Labels {
	ns, _ := api.SplitQualifiedName(function)
	return prometheus.Labels{"namespace": ns, "function": function, "revision": revision}
}

func (m *runnerMetrics) observe(rs *revState, res Result, ready int, pl PlacementResult) {
	l := revisionLabels(rs.function, rs.name)
	m.desired.With(l).Set(float64(res.Decision.Desired))
	m.ready.With(l).Set(float64(ready))
	m.target.With(l).Set(res.Decision.Target)
	m.preCreated.With(l).Set(float64(res.PreCreated))
	m.unplaced.With(l).Set(float64(pl.Unplaced))
	m.queued.With(l).Set(float64(res.Observation.Queued))
	p := 0.0
	if res.Decision.Panic {
		p = 1
	}
	m.panic.With(l).Set(p)
	ns := l["namespace"]
	m.observed.WithLabelValues(ns, rs.function, rs.name, "stable").Set(res.Observation.Stable)
	m.observed.WithLabelValues(ns, rs.function, rs.name, "panic").Set(res.Observation.Panic)
}

func (m *runnerMetrics) forget(function, revision string) {
	l := revisionLabels(function, revision)
	for _, g := range []*prometheus.GaugeVec{m.desired, m.ready, m.target, m.panic, m.preCreated, m.unplaced, m.queued} {
		g.Delete(l)
	}
	m.observed.DeletePartialMatch(l)
}
