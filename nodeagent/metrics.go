package nodeagent

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Start phases, the values of the phase label.
const (
	phaseLabelNetwork = "network" // the replica's network namespace, link and address
	phaseLabelCreate  = "create"  // container and snapshot
	phaseLabelTask    = "task"    // task created (shim, runc create)
	phaseLabelStart   = "start"   // the program let go: Task.Release, or Task.Start where it cannot
	phaseLabelReady   = "ready"   // start returned → probe passed
)

type metrics struct {
	startPhase  *prometheus.HistogramVec
	coldStart   *prometheus.HistogramVec
	poolHits    prometheus.Counter
	poolMisses  prometheus.Counter
	starts      *prometheus.CounterVec
	restarts    prometheus.Counter
	startFails  prometheus.Counter
	running     prometheus.Gauge
	pool        prometheus.Gauge
	poolMemory  prometheus.Gauge
	poolBudget  prometheus.Gauge
	storeErrors prometheus.Counter
	pulls       *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	buckets := []float64{.0005, .001, .002, .004, .008, .016, .032, .064, .128, .256, .512, 1, 2, 4, 8}
	m := &metrics{
		startPhase: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "ebb", Subsystem: "nodeagent", Name: "start_phase_seconds",
			Help:    "Time spent in each phase of starting a replica: network (its network namespace, with isolation), create (container), task (runc create), start (the program let go: task release, or task start where the runtime cannot release), ready (start to probe success).",
			Buckets: buckets,
		}, []string{"phase"}),
		coldStart: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "ebb", Subsystem: "nodeagent", Name: "start_seconds",
			Help:    "Time from deciding to start a replica to its endpoint being in the store, by whether a pre-created task was used.",
			Buckets: buckets,
		}, []string{"pool"}),
		poolHits: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "ebb", Subsystem: "nodeagent", Name: "pool_hits_total",
			Help: "Replica starts served by a pre-created task.",
		}),
		poolMisses: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "ebb", Subsystem: "nodeagent", Name: "pool_misses_total",
			Help: "Replica starts that had to create a container and task first.",
		}),
		starts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "ebb", Subsystem: "nodeagent", Name: "task_starts_total",
			Help: "Programs let run, by how: release (the exec fifo opened, the runtime told once the replica serves) or start (the runtime's own start, where it cannot release).",
		}, []string{"how"}),
		restarts: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "ebb", Subsystem: "nodeagent", Name: "restarts_total",
			Help: "Restarts of replicas whose process exited or never became ready.",
		}),
		startFails: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "ebb", Subsystem: "nodeagent", Name: "start_failures_total",
			Help: "Replicas that could not be created or started at all (such as a bad image).",
		}),
		running: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "ebb", Subsystem: "nodeagent", Name: "running_replicas",
			Help: "Replicas that are ready and published.",
		}),
		pool: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "ebb", Subsystem: "nodeagent", Name: "pool_tasks",
			Help: "Pre-created tasks waiting for a start.",
		}),
		poolMemory: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "ebb", Subsystem: "nodeagent", Name: "pool_memory_bytes",
			Help: "Memory counted against the pool budget.",
		}),
		poolBudget: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "ebb", Subsystem: "nodeagent", Name: "pool_memory_budget_bytes",
			Help: "The pool's memory budget.",
		}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "ebb", Subsystem: "nodeagent", Name: "store_errors_total",
			Help: "Store writes that failed (and were retried or left to the next resync).",
		}),
		pulls: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "ebb", Subsystem: "nodeagent", Name: "image_pull_seconds",
			Help:    "Image pulls, one per image however many replicas wait for it, by result (ok, error).",
			Buckets: []float64{.05, .1, .25, .5, 1, 2, 4, 8, 16, 32, 64, 128},
		}, []string{"result"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.startPhase, m.coldStart, m.poolHits, m.poolMisses, m.starts, m.restarts,
		m.startFails, m.running, m.pool, m.poolMemory, m.poolBudget, m.storeErrors, m.pulls} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
