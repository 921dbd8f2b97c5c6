package autoscaler

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/ebbrun/ebb/api"
)

func stat(reporter string, end float64, interval time.Duration, conc, requests float64, buffered int) api.RevisionStat {
	return api.RevisionStat{
		Revision: "fn-00001", Reporter: reporter, Time: at(end),
		AvgConcurrency: conc, MaxConcurrency: conc, Requests: requests,
		Buffered: buffered, Interval: api.D(interval),
	}
}

// every returns one stat per interval from reporter covering (from, to].
func every(reporter string, from, to float64, interval time.Duration, conc, rps float64) []api.RevisionStat {
	var out []api.RevisionStat
	for end := from + interval.Seconds(); end <= to+1e-9; end += interval.Seconds() {
		out = append(out, stat(reporter, end, interval, conc, rps*interval.Seconds(), 0))
	}
	return out
}

func TestMetricsWindows(t *testing.T) {
	const stable, panicW = 60 * time.Second, 6 * time.Second
	cases := []struct {
		name              string
		stats             []api.RevisionStat
		now               float64
		wantStable        float64
		wantPanic         float64
		wantStableRPS     float64
		wantPanicRPS      float64
		wantBuffered      int
		wantLastDemandSec float64 // 0 means zero time
		onlyBuffered      bool    // check buffered and last demand only
	}{
		{
			name:       "no data",
			now:        100,
			wantStable: 0, wantPanic: 0,
		},
		{
			name:       "one reporter, one-second stats, steady concurrency",
			stats:      every("r1", 0, 120, time.Second, 10, 5),
			now:        120.5,
			wantStable: 10, wantPanic: 10, wantStableRPS: 5, wantPanicRPS: 5,
			wantLastDemandSec: 120,
		},
		{
			name:       "two reporters add up",
			stats:      append(every("r1", 0, 120, time.Second, 10, 5), every("r2", 0, 120, time.Second, 4, 1)...),
			now:        120.5,
			wantStable: 14, wantPanic: 14, wantStableRPS: 6, wantPanicRPS: 6,
			wantLastDemandSec: 120,
		},
		{
			name: "intervals of any length and phase spread over the seconds they cover",
			stats: append(every("r1", 0.5, 120.5, 2*time.Second, 10, 5),
				every("r2", 0.25, 120.25, 500*time.Millisecond, 2, 2)...),
			now:        121.9, // r1 covers up to 120.5, r2 up to 120.25: second 120 is partial
			wantStable: 12, wantPanic: 12, wantStableRPS: 7, wantPanicRPS: 7,
			wantLastDemandSec: 120.5,
		},
		{
			name:       "the current, still-reported second is left out",
			stats:      append(every("r1", 0, 100, time.Second, 10, 0), stat("r1", 100.5, 500*time.Millisecond, 1000, 0, 0)),
			now:        100.7,
			wantStable: 10, wantPanic: 10,
			wantLastDemandSec: 100.5,
		},
		{
			name:       "after a quiet spell longer than the window, average over the new data only",
			stats:      append(every("r1", 0, 10, time.Second, 50, 0), every("r1", 200, 203, time.Second, 21, 0)...),
			now:        203.2,
			wantStable: 21, wantPanic: 21,
			wantLastDemandSec: 203,
		},
		{
			name:       "a quiet spell within the window counts as zeros",
			stats:      append(every("r1", 0, 60, time.Second, 30, 0), every("r1", 90, 120, time.Second, 30, 0)...),
			now:        120.1,
			wantStable: 15, wantPanic: 30,
			wantLastDemandSec: 120,
		},
		{
			name:       "a burst shows in the panic window first",
			stats:      append(every("r1", 0, 114, time.Second, 6, 0), every("r1", 114, 120, time.Second, 606, 0)...),
			now:        120.5,
			wantStable: 6 + 600*6.0/60, wantPanic: 606,
			wantLastDemandSec: 120,
		},
		{
			name:       "data older than the window reads zero",
			stats:      every("r1", 0, 30, time.Second, 10, 10),
			now:        200,
			wantStable: 0, wantPanic: 0,
			wantLastDemandSec: 30,
		},
		{
			name: "buffered: the latest per reporter, summed",
			stats: []api.RevisionStat{
				stat("a1", 10, time.Second, 3, 3, 3),
				stat("a1", 11, time.Second, 5, 2, 5),
				stat("a2", 11, time.Second, 2, 2, 2),
				stat("a1", 10.5, 500*time.Millisecond, 1, 0, 99), // late and out of order: ignored for buffered
			},
			now:               12,
			wantBuffered:      7,
			wantLastDemandSec: 11,
			onlyBuffered:      true,
		},
		{
			name:              "buffered counts go stale when a reporter goes quiet",
			stats:             []api.RevisionStat{stat("a1", 10, time.Second, 0, 0, 4)},
			now:               13.5,
			wantBuffered:      0,
			wantLastDemandSec: 10,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := NewMetrics(stable)
			for _, st := range c.stats {
				m.Record(st)
			}
			now := at(c.now)
			if !c.onlyBuffered {
				assert.InDelta(t, c.wantStable, m.Concurrency(now, stable), 1e-9, "stable concurrency")
				assert.InDelta(t, c.wantPanic, m.Concurrency(now, panicW), 1e-9, "panic concurrency")
				assert.InDelta(t, c.wantStableRPS, m.RPS(now, stable), 1e-9, "stable rps")
				assert.InDelta(t, c.wantPanicRPS, m.RPS(now, panicW), 1e-9, "panic rps")
			}
			assert.Equal(t, c.wantBuffered, m.Buffered(now))
			if c.wantLastDemandSec == 0 {
				assert.True(t, m.LastDemand().IsZero())
			} else {
				assert.Equal(t, at(c.wantLastDemandSec), m.LastDemand())
			}
		})
	}
}

func TestMetricsSpreadsConcurrencyByOverlap(t *testing.T) {
	// Interval (9.5, 11.5] with average 4: 2 concurrency-seconds in second
	// 9's last half, 4 in second 10, 2 in second 11's first half.
	m := NewMetrics(60 * time.Second)
	m.Record(stat("r", 11.5, 2*time.Second, 4, 8, 0))
	b := m.concurrency
	assert.InDelta(t, 2.0, b.vals[mod(secondOf(at(9)), int64(len(b.vals)))], 1e-9)
	assert.InDelta(t, 4.0, b.vals[mod(secondOf(at(10)), int64(len(b.vals)))], 1e-9)
	assert.InDelta(t, 2.0, b.vals[mod(secondOf(at(11)), int64(len(b.vals)))], 1e-9)
	r := m.requests
	assert.InDelta(t, 2.0, r.vals[mod(secondOf(at(9)), int64(len(r.vals)))], 1e-9)
	assert.InDelta(t, 4.0, r.vals[mod(secondOf(at(10)), int64(len(r.vals)))], 1e-9)
	// Average over the two complete seconds 9 and 10, counted from second 9.
	assert.InDelta(t, 3.0, m.Concurrency(at(11.9), 60*time.Second), 1e-9)
}

func TestMetricsDropsStatsOlderThanTheRing(t *testing.T) {
	m := NewMetrics(10 * time.Second)
	m.Record(stat("r", 100, time.Second, 5, 0, 0))
	m.Record(stat("r", 50, time.Second, 1000, 0, 0)) // far behind: dropped
	assert.InDelta(t, 5.0, m.Concurrency(at(100.5), 10*time.Second), 1e-9)
	// A huge interval is clamped to the ring instead of looping over it.
	// It covers the whole window: one more in each of the ten seconds.
	m.Record(stat("r", 101, 1000*time.Hour, 1, 0, 0))
	assert.InDelta(t, 1.5, m.Concurrency(at(101.5), 10*time.Second), 1e-9)
}

func TestMetricsObserve(t *testing.T) {
	m := NewMetrics(60 * time.Second)
	for _, st := range every("r1", 0, 120, time.Second, 35, 280) {
		m.Record(st)
	}
	m.Record(stat("act", 120, time.Second, 0, 0, 2))
	conc := m.Observe(at(120.5), testSpec(nil), 3)
	assert.Equal(t, Observation{Stable: 35, Panic: 35, Ready: 3, Buffered: 2, LastDemand: at(120)}, conc)
	rps := m.Observe(at(120.5), testSpec(func(s *api.FunctionSpec) { s.Concurrency.Metric = api.MetricRPS }), 3)
	assert.InDelta(t, 280, rps.Stable, 1e-9)
	assert.InDelta(t, 280, rps.Panic, 1e-9)
}
