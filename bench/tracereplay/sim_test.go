package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/autoscaler"
)

func sec(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func fixedCfg(keepAlive time.Duration, hardLimit int) simConfig {
	c := baseConfig(time.Hour, hardLimit)
	c.Policy = autoscaler.FixedKeepAlive{KeepAlive: keepAlive}
	return c
}

func TestSimulate(t *testing.T) {
	hybrid, err := autoscaler.NewHybridHistogram(autoscaler.HybridConfig{})
	require.NoError(t, err)
	withPool := baseConfig(time.Hour, 0)
	withPool.Policy, withPool.PreCreatedTasks = hybrid, true
	withoutPool := withPool
	withoutPool.PreCreatedTasks = false

	cases := []struct {
		name  string
		cfg   simConfig
		reqs  []request
		check func(t *testing.T, c counts)
	}{
		{
			name: "one request: cold, then idle for the keep-alive",
			cfg:  fixedCfg(10*time.Minute, 0),
			reqs: []request{{at: sec(60), dur: sec(1)}},
			check: func(t *testing.T, c counts) {
				assert.Equal(t, int64(1), c.Cold)
				assert.Equal(t, int64(1), c.ColdReplicaStarts)
				// Ready at 60.059, busy until 61.059; the stat for second
				// (61, 62] shows the tail of it, so idle since 62 and zero at
				// the 662 s tick.
				assert.InDelta(t, 662-61.059, c.IdleReplicaSeconds, 1e-6)
				assert.InDelta(t, 662-60, c.ReplicaSeconds, 1e-6)
			},
		},
		{
			name: "a second request within the keep-alive is warm",
			cfg:  fixedCfg(10*time.Minute, 0),
			reqs: []request{{at: sec(60), dur: sec(1)}, {at: sec(360), dur: sec(1)}},
			check: func(t *testing.T, c counts) {
				assert.Equal(t, int64(1), c.Cold)
				assert.Equal(t, int64(1), c.Warm)
				assert.InDelta(t, (360-61.059)+(962-361), c.IdleReplicaSeconds, 1e-6)
			},
		},
		{
			name: "Knative's 60 s + 30 s: warm at 80 s, cold at 100 s",
			cfg:  fixedCfg(90*time.Second, 0),
			reqs: []request{{at: sec(60), dur: sec(1)}, {at: sec(140), dur: sec(1)}, {at: sec(240), dur: sec(1)}},
			check: func(t *testing.T, c counts) {
				assert.Equal(t, int64(2), c.Cold)
				assert.Equal(t, int64(1), c.Warm)
			},
		},
		{
			name: "no history: the fallback holds a pre-created task after the grace period",
			cfg:  withPool,
			reqs: []request{{at: sec(60), dur: sec(1)}, {at: sec(60 + 300), dur: sec(1)}},
			check: func(t *testing.T, c counts) {
				assert.Equal(t, int64(1), c.Cold)
				assert.Equal(t, int64(1), c.PreCreated)
				assert.Equal(t, int64(1), c.PreCreatedReplicaStarts)
				// Kept for the 30 s grace after the last demand (62 s), then
				// the task is held from the 92 s tick (created in 40 ms) until
				// it is used at 360 s; after the second request the same
				// again, from 392 s until the fallback ends it 10 min after 362 s.
				assert.InDelta(t, (360-92.04)+(962-392.04), c.PreCreatedTaskSeconds, 1e-6)
				assert.Equal(t, int64(c.Decisions), c.PlanModes[autoscaler.ModeFewSamples])
			},
		},
		{
			name: "without a pool the same request is a full cold start",
			cfg:  withoutPool,
			reqs: []request{{at: sec(60), dur: sec(1)}, {at: sec(60 + 300), dur: sec(1)}},
			check: func(t *testing.T, c counts) {
				assert.Equal(t, int64(2), c.Cold)
				assert.Zero(t, c.PreCreated)
				assert.Zero(t, c.PreCreatedTaskSeconds)
			},
		},
		{
			name: "hard limit 1: a burst of three waits for three starts",
			cfg:  fixedCfg(10*time.Minute, 1),
			reqs: []request{{at: sec(10), dur: sec(10)}, {at: sec(10.001), dur: sec(10)}, {at: sec(10.002), dur: sec(10)}},
			check: func(t *testing.T, c counts) {
				assert.Equal(t, int64(3), c.Cold)
				assert.Zero(t, c.Warm+c.Queued)
				// The KPA sizes three in flight at 70% of a limit of one:
				// ceil(3 / 0.7) = 5 replicas.
				assert.Equal(t, int64(5), c.ColdReplicaStarts)
			},
		},
		{
			name: "hard limit 1 and max scale 1: a request waits for a slot",
			cfg: func() simConfig {
				c := fixedCfg(10*time.Minute, 1)
				c.Spec.Scale.Max = 1
				return c
			}(),
			reqs: []request{{at: sec(10), dur: sec(0.5)}, {at: sec(10.1), dur: sec(0.1)}},
			check: func(t *testing.T, c counts) {
				assert.Equal(t, int64(1), c.Cold)
				assert.Equal(t, int64(1), c.Queued)
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := simulate(c.cfg, c.reqs)
			require.NoError(t, err)
			assert.Equal(t, int64(len(c.reqs)), got.Requests)
			assert.Equal(t, got.Requests, got.Warm+got.Cold+got.PreCreated+got.Queued, "every request is classified once")
			assert.LessOrEqual(t, got.IdleReplicaSeconds, got.ReplicaSeconds)
			c.check(t, got)
		})
	}
}

func TestSimulateRejectsBadConfig(t *testing.T) {
	_, err := simulate(simConfig{}, nil)
	assert.Error(t, err)
}

func TestRuntimeDistSample(t *testing.T) {
	d := runtimeDist{q: []float64{0, 0.01, 0.25, 0.5, 0.75, 0.99, 1}, ms: []float64{100, 110, 300, 500, 700, 890, 900}}
	r := rand.New(rand.NewPCG(1, 2))
	var below int
	for range 10000 {
		v := d.sample(r)
		require.GreaterOrEqual(t, v, 100*time.Millisecond)
		require.LessOrEqual(t, v, 900*time.Millisecond)
		if v < 500*time.Millisecond {
			below++
		}
	}
	assert.InDelta(t, 5000, below, 300, "half the samples fall below the median")
}

func TestLoadTrace(t *testing.T) {
	fns, err := loadTrace("testdata/tiny_inv.csv", "testdata/tiny_run.csv")
	require.NoError(t, err)
	require.Len(t, fns, 3)
	assert.Equal(t, "periodic", fns[0].Hash)
	assert.Len(t, fns[0].PerMin, 30)
	assert.Equal(t, 3, fns[0].PerMin[0])
	assert.IsNonDecreasing(t, fns[1].runtime.ms, "percentiles are sorted")

	reqs := fns[0].requests(1)
	assert.Len(t, reqs, 18)
	assert.Equal(t, reqs, fns[0].requests(1), "the same seed gives the same requests")
	assert.NotEqual(t, reqs, fns[0].requests(2))
	for i, q := range reqs {
		minute := time.Duration(i/3) * 5 * time.Minute
		assert.True(t, q.at >= minute && q.at < minute+time.Minute, "request %d at %s", i, q.at)
	}

	dir := t.TempDir()
	bad := filepath.Join(dir, "bad_run.csv")
	require.NoError(t, os.WriteFile(bad, []byte("HashFunction,percentile_Average_0\nx,1\n"), 0o644))
	_, err = loadTrace("testdata/tiny_inv.csv", bad)
	assert.Error(t, err)
	_, err = loadTrace("testdata/missing_inv.csv", "testdata/tiny_run.csv")
	assert.Error(t, err)
}

// The default -trace is the subset shipped in bench/traces (relative to
// bench/, where the command runs; this test runs in bench/tracereplay).
func TestDefaultTraceIsShipped(t *testing.T) {
	o, err := parseFlags(nil)
	require.NoError(t, err)
	fns, err := loadTrace(filepath.Join("..", o.trace), filepath.Join("..", o.runtimes))
	require.NoError(t, err)
	assert.Len(t, fns, 100)
	for _, fn := range fns {
		assert.Len(t, fn.PerMin, 1440, fn.Hash)
	}
}

func TestRunWritesTableAndJSON(t *testing.T) {
	out := t.TempDir()
	var stdout bytes.Buffer
	err := run(context.Background(), []string{"-trace", "testdata/tiny_inv.csv", "-out", out, "-seeds", "2"}, &stdout)
	require.NoError(t, err)
	assert.Contains(t, stdout.String(), "| "+polHybrid+" |")
	assert.Contains(t, stdout.String(), "| "+polFixed10+" | ")
	files, err := filepath.Glob(filepath.Join(out, "tracereplay-*.json"))
	require.NoError(t, err)
	require.Len(t, files, 1)
	b, err := os.ReadFile(files[0])
	require.NoError(t, err)
	var rep report
	require.NoError(t, json.Unmarshal(b, &rep))
	assert.Equal(t, 3, rep.Functions)
	require.Len(t, rep.Summary, 4)
	require.Len(t, rep.Runs, 8)
	for _, r := range rep.Runs {
		assert.Equal(t, int64(3*6+20*30+1), r.Requests)
	}
	for _, s := range rep.Summary {
		if s.Policy == polFixed10 {
			assert.InDelta(t, 1.0, s.IdleVsFixed10.Median, 1e-9)
		}
	}
}
