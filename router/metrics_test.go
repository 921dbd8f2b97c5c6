package router

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLazyObserver(t *testing.T) {
	// series counts the histogram series (one per revision) in reg.
	series := func(t *testing.T, reg *prometheus.Registry) int {
		t.Helper()
		mfs, err := reg.Gather()
		require.NoError(t, err)
		for _, mf := range mfs {
			if mf.GetName() == "d" {
				return len(mf.GetMetric())
			}
		}
		return 0
	}
	tests := []struct {
		name       string
		steps      func(l *lazyObserver)
		wantSeries int
		wantCount  uint64
	}{
		{name: "a revision never called has no series", steps: func(*lazyObserver) {}, wantSeries: 0},
		{name: "the first observation creates it", steps: func(l *lazyObserver) { l.Observe(0.1); l.Observe(0.2) }, wantSeries: 1, wantCount: 2},
		{name: "forget removes it", steps: func(l *lazyObserver) { l.Observe(0.1); l.forget() }, wantSeries: 0},
		{name: "an observation after forget does not bring it back", steps: func(l *lazyObserver) { l.forget(); l.Observe(0.1) }, wantSeries: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			vec := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "d", Buckets: latencyBuckets}, []string{"namespace", "function", "revision"})
			reg.MustRegister(vec)
			l := &lazyObserver{vec: vec, function: "fn.team-a", revision: "fn.team-a-00001"}
			tt.steps(l)
			assert.Equal(t, tt.wantSeries, series(t, reg))
			if tt.wantSeries > 0 {
				mfs, err := reg.Gather()
				require.NoError(t, err)
				assert.Equal(t, tt.wantCount, mfs[0].GetMetric()[0].GetHistogram().GetSampleCount())
				labels := map[string]string{}
				for _, lp := range mfs[0].GetMetric()[0].GetLabel() {
					labels[lp.GetName()] = lp.GetValue()
				}
				assert.Equal(t, map[string]string{"namespace": "team-a", "function": "fn.team-a", "revision": "fn.team-a-00001"}, labels,
					"function keeps the qualified name; namespace is added")
			}
		})
	}
}
