package api

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLatencyBucketsRoundTrip(t *testing.T) {
	for i := 1; i < LatencyBuckets; i++ {
		low := LatencyBucketLow(i)
		require.Equal(t, i, LatencyBucket(low), "bucket %d starts at %s", i, low)
		require.Equal(t, i-1, LatencyBucket(low-1), "just below bucket %d", i)
		if i > 1 {
			growth := float64(LatencyBucketLow(i)) / float64(LatencyBucketLow(i-1))
			require.LessOrEqual(t, growth, 1.26, "bucket %d grows by %g", i, growth)
		}
	}
	for _, tc := range []struct {
		d    time.Duration
		want int
	}{
		{-time.Second, 0},
		{0, 0},
		{time.Microsecond, 0},
		{8192 * time.Nanosecond, 1},
		{time.Hour, LatencyBuckets - 1},
		{time.Duration(1<<63 - 1), LatencyBuckets - 1},
	} {
		assert.Equal(t, tc.want, LatencyBucket(tc.d), "%s", tc.d)
	}
	assert.Equal(t, 7*time.Duration(1)<<36, LatencyBucketLow(LatencyBuckets-1), "the last bucket starts at about 8 minutes")
}

func TestOutcomesAddLatency(t *testing.T) {
	var o Outcomes
	o.AddLatency(time.Millisecond, 2)
	require.Len(t, o.Latency, LatencyBucket(time.Millisecond)+1, "grown to the bucket, no further")
	o.AddLatency(10*time.Microsecond, 1)
	o.AddLatency(time.Millisecond, 1)
	require.Len(t, o.Latency, LatencyBucket(time.Millisecond)+1, "a shorter duration does not grow it")
	assert.Equal(t, int64(3), o.Latency[LatencyBucket(time.Millisecond)])
	assert.Equal(t, int64(1), o.Latency[LatencyBucket(10*time.Microsecond)])
	assert.Zero(t, o.Requests, "requests are counted apart")
	var sum int64
	for _, n := range o.Latency {
		sum += n
	}
	assert.Equal(t, int64(4), sum)
}

func TestOutcomesQuantile(t *testing.T) {
	var o Outcomes
	add := func(d time.Duration, n int64) {
		one := Outcomes{Requests: n, Latency: make([]int64, LatencyBucket(d)+1)}
		one.Latency[LatencyBucket(d)] = n
		o.Add(one)
	}
	add(time.Millisecond, 98)
	add(50*time.Millisecond, 2)
	p50, p99 := o.Quantile(0.5), o.Quantile(0.99)
	assert.InEpsilon(t, float64(time.Millisecond), float64(p50), 0.2, "p50 %s", p50)
	assert.InEpsilon(t, float64(50*time.Millisecond), float64(p99), 0.2, "p99 %s", p99)
	assert.Equal(t, int64(100), o.Requests)
	assert.Zero(t, Outcomes{}.Quantile(0.99), "no counts, no latency")

	// Since is the window between two readings of a running sum.
	before := o
	before.Latency = append([]int64(nil), o.Latency...)
	add(50*time.Millisecond, 100)
	w := o.Since(before)
	assert.Equal(t, int64(100), w.Requests)
	assert.InEpsilon(t, float64(50*time.Millisecond), float64(w.Quantile(0.5)), 0.2)
	// A reset sum (a router restarted) never gives negative counts.
	assert.Equal(t, Outcomes{Latency: []int64{}}, Outcomes{}.Since(o))
}
