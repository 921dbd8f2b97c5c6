package autoscaler

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/store"
)

// TestKeepAliveRecordRoundTrip: what a record stores of a function's
// tracker restores the same histogram, and a record written with other
// bins lands in the bins holding its lower edges.
func TestKeepAliveRecordRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		idle []time.Duration
	}{
		{name: "empty"},
		{name: "one bin", idle: repeat(10, 10*time.Minute)},
		{name: "spread, with idle times beyond the range", idle: append(repeat(3, 5*time.Second, 45*time.Second, 20*time.Minute), 5*time.Hour, 6*time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tracker := NewIdleTracker(DefaultHistogramRange)
			for _, d := range tt.idle {
				tracker.Histogram.Add(d)
			}
			tracker.LastEnd = at(100)
			spec := testSpec(nil)
			rs := &revState{name: "fn-00001", function: "fn", tracker: tracker,
				scaler: NewScaler(spec, tracker, FixedKeepAlive{}, Start{At: t0})}
			rec := keepAliveRecord(rs, at(200))
			assert.Equal(t, at(100), rec.FunctionLastDemand)
			assert.Equal(t, t0, rec.DeployedWarm, "deployed with its default initial scale of 1")
			assert.LessOrEqual(t, len(rec.IdleTimes), len(tt.idle), "empty bins are left out")

			got := restoredTracker(DefaultHistogramRange, rec)
			assert.Equal(t, tracker.LastEnd, got.LastEnd)
			assert.Equal(t, tracker.Histogram.Bins, got.Histogram.Bins)
			assert.Equal(t, tracker.Histogram.OutOfRange, got.Histogram.OutOfRange)
			assert.Equal(t, tracker.Histogram.Range, got.Histogram.Range)
		})
	}

	// Edges from other bins, and nonsense, land where their lengths say.
	got := restoredTracker(time.Hour, store.KeepAlive{IdleTimes: []store.IdleCount{
		{From: api.D(17 * time.Second), Count: 2},
		{From: api.D(2 * time.Hour), Count: 3},
		{From: api.D(-time.Second), Count: 9},
	}})
	require.Equal(t, uint32(2), got.Histogram.Bins[binOf(16*time.Second)])
	assert.Equal(t, uint32(3), got.Histogram.OutOfRange)
	assert.Equal(t, uint32(5), got.Histogram.total(), "a negative length is dropped")
}
