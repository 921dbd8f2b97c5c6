package cron

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Runner's: what it did with each due run, and how late
// it claimed the ones it fired (the schedule's jitter, before delivery).
type metrics struct {
	runs     *prometheus.CounterVec
	lateness prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ebb_cron_runs_total",
			Help: "Due cron runs this control plane handled, by outcome (fired, skipped by Forbid, missed past the starting deadline).",
		}, []string{"outcome"}),
		lateness: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ebb_cron_fire_lateness_seconds",
			Help:    "Time from a run's schedule time to its claim by this control plane, for the runs it fired.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.runs, m.lateness} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("cron: register metrics: %w", err)
		}
	}
	return m, nil
}
