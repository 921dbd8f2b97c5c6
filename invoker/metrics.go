package invoker

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ebbrun/ebb/api"
)

// Delivery outcomes as the metrics label them: the status an attempt
// left the invocation in, or why it left none.
const (
	outcomeRetry     = "retry"
	outcomeClaimLost = "claim_lost"
	outcomeError     = "finish_error"
)

type metrics struct {
	deliveries *prometheus.CounterVec
	callbacks  *prometheus.CounterVec
	inFlight   prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ebb_invoker_deliveries_total",
			Help: "Asynchronous invocation attempts by function and outcome (Succeeded, Failed, DeadLetter, retry, claim_lost, finish_error).",
		}, []string{"namespace", "function", "outcome"}),
		callbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ebb_invoker_callbacks_total",
			Help: "Result callbacks by outcome (delivered; failed: given up after the retries; refused: the callback policy refused its address).",
		}, []string{"outcome"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ebb_invoker_deliveries_in_flight",
			Help: "Asynchronous deliveries under way in this worker.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.deliveries, m.callbacks, m.inFlight} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register invoker metrics: %w", err)
			}
		}
	}
	return m, nil
}

func (m *metrics) delivered(function, outcome string) {
	ns, _ := api.SplitQualifiedName(function)
	m.deliveries.WithLabelValues(ns, function, outcome).Inc()
}
