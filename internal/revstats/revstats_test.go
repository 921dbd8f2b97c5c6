package revstats

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCollect(t *testing.T) {
	r, err := NewRecorder(Config{Reporter: "router/a"})
	require.NoError(t, err)
	c := NewCounter("hello-00001")
	r.Track(c)
	now := time.Unix(100, 0)

	// Interval 1: two requests overlap, one is still running at the end;
	// samples see 2, 2, 1, 1.
	c.Start()
	c.Start()
	r.Sample()
	r.Sample()
	c.End()
	r.Sample()
	r.Sample()
	stats := r.Collect(now)
	require.Len(t, stats, 1)
	s := stats[0]
	assert.Equal(t, "hello-00001", s.Revision)
	assert.Equal(t, "router/a", s.Reporter)
	assert.InDelta(t, 1.5, s.AvgConcurrency, 1e-9)
	assert.Equal(t, 2.0, s.MaxConcurrency)
	assert.Equal(t, 2.0, s.Requests)
	assert.Equal(t, time.Second, s.Interval.Duration)

	// Interval 2: the long request continues; a burst of buffered ones
	// comes and goes between samples, so only the peak sees it.
	r.Sample()
	c.Buffer(3)
	for i := 0; i < 3; i++ {
		c.Start()
	}
	for i := 0; i < 3; i++ {
		c.End()
	}
	c.Buffer(-3)
	r.Sample()
	s = r.Collect(now.Add(time.Second))[0]
	assert.InDelta(t, 1.0, s.AvgConcurrency, 1e-9)
	assert.Equal(t, 4.0, s.MaxConcurrency)
	assert.Equal(t, 3.0, s.Requests)

	// Interval 3: the last request ends; one zero report follows, then
	// silence until load returns.
	c.End()
	r.Sample()
	s = r.Collect(now.Add(2 * time.Second))[0]
	assert.Equal(t, 1.0, s.MaxConcurrency, "the request was in flight when the interval began")
	r.Sample()
	s = r.Collect(now.Add(3 * time.Second))[0]
	assert.Zero(t, s.AvgConcurrency+s.MaxConcurrency+s.Requests)
	r.Sample()
	assert.Empty(t, r.Collect(now.Add(4*time.Second)))

	c.Buffer(1)
	st := r.Collect(now.Add(5 * time.Second))
	require.Len(t, st, 1)
	assert.Equal(t, 1, st[0].Buffered)

	r.Untrack(c)
	assert.Empty(t, r.Collect(now.Add(6*time.Second)))
}

func TestCodes(t *testing.T) {
	var c Codes
	var wg sync.WaitGroup
	codes := []int{200, 404, 200, 502, 200, 503, 201, 202, 203, 204, 205}
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, code := range codes {
				c.Inc(code)
			}
		}()
	}
	wg.Wait()
	got := map[int]uint64{}
	c.Each(func(code int, n uint64) { got[code] += n })
	assert.Equal(t, uint64(30), got[200])
	assert.Equal(t, uint64(10), got[404])
	var total uint64
	for _, n := range got {
		total += n
	}
	assert.Equal(t, uint64(10*len(codes)), total, "overflow codes are counted, not lost")
	assert.NotZero(t, got[0], "more distinct codes than slots spill into the overflow slot")
}

func TestNewRecorderValidates(t *testing.T) {
	_, err := NewRecorder(Config{SampleInterval: time.Second, ReportInterval: time.Millisecond})
	assert.Error(t, err)
}
