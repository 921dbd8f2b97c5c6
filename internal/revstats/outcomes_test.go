package revstats

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
)

// latency is a Latency slice with counts[d] requests in the bucket of d.
func latency(counts map[time.Duration]int64) []int64 {
	var o api.Outcomes
	for d, n := range counts {
		o.AddLatency(d, n)
	}
	return o.Latency
}

func TestOutcomesTake(t *testing.T) {
	tests := []struct {
		name   string
		record func(o *Outcomes)
		want   *api.Outcomes
	}{
		{
			name:   "no request ended",
			record: func(*Outcomes) {},
			want:   nil,
		},
		{
			name: "answered: status and latency",
			record: func(o *Outcomes) {
				o.Answered(200, time.Millisecond)
				o.Answered(204, time.Millisecond)
				o.Answered(500, 50*time.Millisecond)
				o.Answered(404, 0)
			},
			want: &api.Outcomes{Requests: 4, Errors5xx: 1, Latency: latency(map[time.Duration]int64{
				time.Millisecond: 2, 50 * time.Millisecond: 1, 0: 1,
			})},
		},
		{
			name: "ended: status without latency",
			record: func(o *Outcomes) {
				o.Ended(200)
				o.Ended(503)
				o.Ended(499)
			},
			want: &api.Outcomes{Requests: 3, Errors5xx: 1},
		},
		{
			name: "failed: a connection error, not a 5xx",
			record: func(o *Outcomes) {
				o.Failed()
				o.Failed()
			},
			want: &api.Outcomes{Requests: 2, ConnErrors: 2},
		},
		{
			name: "trailing empty buckets are trimmed",
			record: func(o *Outcomes) {
				o.Answered(200, 10*time.Microsecond)
			},
			want: &api.Outcomes{Requests: 1, Latency: latency(map[time.Duration]int64{10 * time.Microsecond: 1})},
		},
		{
			name: "a duration past the last bucket lands in it",
			record: func(o *Outcomes) {
				o.Answered(200, 24*time.Hour)
			},
			want: &api.Outcomes{Requests: 1, Latency: latency(map[time.Duration]int64{time.Hour: 1})},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var o Outcomes
			tc.record(&o)
			got := o.take()
			assert.Equal(t, tc.want, got)
			if got != nil {
				assert.Len(t, got.Latency, len(tc.want.Latency))
			}
			assert.Nil(t, o.take(), "take swaps the counts to zero")
		})
	}
}

func TestNilOutcomesCountNothing(t *testing.T) {
	var o *Outcomes
	o.Answered(500, time.Second)
	o.Ended(500)
	o.Failed()
	assert.Nil(t, o.take())
	assert.Nil(t, NewCounter("hello-00001").Outcomes(), "only NewOutcomeCounter counts outcomes")
}

// TestOutcomesConcurrent records from many goroutines while takes run, and
// checks that the takes add up to every request, none lost or doubled.
func TestOutcomesConcurrent(t *testing.T) {
	const workers, each = 8, 2000
	var o Outcomes
	var (
		wg    sync.WaitGroup
		sum   api.Outcomes
		stop  = make(chan struct{})
		taken = make(chan struct{})
	)
	go func() {
		defer close(taken)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if got := o.take(); got != nil {
				sum.Add(*got)
			}
		}
	}()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				switch i % 4 {
				case 0:
					o.Answered(200, time.Duration(w+1)*time.Millisecond)
				case 1:
					o.Answered(502, time.Duration(w+1)*time.Millisecond)
				case 2:
					o.Ended(500)
				case 3:
					o.Failed()
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-taken
	if got := o.take(); got != nil {
		sum.Add(*got)
	}
	assert.Equal(t, int64(workers*each), sum.Requests)
	assert.Equal(t, int64(workers*each/2), sum.Errors5xx)
	assert.Equal(t, int64(workers*each/4), sum.ConnErrors)
	want := map[time.Duration]int64{}
	for w := range workers {
		want[time.Duration(w+1)*time.Millisecond] += each / 2
	}
	assert.Equal(t, latency(want), sum.Latency)
}

func TestCollectOutcomes(t *testing.T) {
	r, err := NewRecorder(Config{Reporter: "router/a"})
	require.NoError(t, err)
	now := time.Unix(100, 0)
	routed := NewOutcomeCounter("hello-00001")
	plain := NewCounter("hello-00002")
	r.Track(routed)
	r.Track(plain)

	// Interval 1: one request answered directly, one handed off.
	routed.Start()
	routed.End()
	routed.Outcomes().Answered(200, 3*time.Millisecond)
	routed.Outcomes().Ended(503)
	plain.Start()
	plain.End()
	stats := byRevision(r.Collect(now))
	require.Len(t, stats, 2)
	assert.Equal(t, &api.Outcomes{Requests: 2, Errors5xx: 1, Latency: latency(map[time.Duration]int64{3 * time.Millisecond: 1})},
		stats["hello-00001"].Outcomes)
	assert.Nil(t, stats["hello-00002"].Outcomes, "a counter made by NewCounter counts no outcomes")

	// Interval 2: the quiet report carries no outcomes.
	stats = byRevision(r.Collect(now.Add(time.Second)))
	require.Contains(t, stats, "hello-00001")
	assert.Nil(t, stats["hello-00001"].Outcomes)
	assert.Empty(t, r.Collect(now.Add(2*time.Second)))

	// Interval 3: a request handed off never enters the router's in-flight
	// count, yet its outcome alone makes the revision report.
	routed.Outcomes().Ended(200)
	stats = byRevision(r.Collect(now.Add(3 * time.Second)))
	require.Contains(t, stats, "hello-00001")
	assert.Equal(t, &api.Outcomes{Requests: 1}, stats["hello-00001"].Outcomes)
	assert.Zero(t, stats["hello-00001"].Requests, "arrivals are the activator's to count")
}

func byRevision(stats []api.RevisionStat) map[string]api.RevisionStat {
	m := make(map[string]api.RevisionStat, len(stats))
	for _, s := range stats {
		m[s.Revision] = s
	}
	return m
}

func BenchmarkOutcomesAnswered(b *testing.B) {
	var o Outcomes
	b.ReportAllocs()
	b.Run("sequential", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			o.Answered(200+i&511, time.Duration(i&0xfffff)*time.Microsecond)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for i := 0; pb.Next(); i++ {
				o.Answered(200+i&511, time.Duration(i&0xfffff)*time.Microsecond)
			}
		})
	})
}
