package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/autoscaler"
)

// policy is one row of the comparison.
type policy struct {
	Name string `json:"name"`
	// build returns the simulation config for it; called once per function
	// so no state leaks between functions.
	build func() (simConfig, error) `json:"-"`
}

// baseConfig is the data-plane model every policy shares: ebb's default
// spec (target 100 × 0.7, no hard limit, 60 s stable window, 30 s grace), a
// 2 s tick, 1 s stats, and the measured start latencies.
func baseConfig(horizon time.Duration, hardLimit int) simConfig {
	spec := api.FunctionSpec{Image: "trace", Concurrency: api.Concurrency{HardLimit: hardLimit}}.WithDefaults()
	return simConfig{
		Spec:            spec,
		Tick:            2 * time.Second,
		Report:          time.Second,
		ColdStart:       59 * time.Millisecond,
		PreCreatedStart: 11 * time.Millisecond,
		PreCreate:       40 * time.Millisecond,
		Horizon:         horizon,
	}
}

// Names of the compared policies.
const (
	polHybrid      = "ebb: hybrid histogram + pre-created tasks"
	polHybridNoPre = "ebb: hybrid histogram, no pre-created tasks"
	polKnative     = "Knative defaults (60 s window, 30 s grace)"
	polFixed10     = "fixed 10-minute keep-alive"
)

func policies(horizon time.Duration, hardLimit int, hybridCfg autoscaler.HybridConfig) []policy {
	hybrid := func(pre bool) func() (simConfig, error) {
		return func() (simConfig, error) {
			p, err := autoscaler.NewHybridHistogram(hybridCfg)
			if err != nil {
				return simConfig{}, err
			}
			c := baseConfig(horizon, hardLimit)
			c.Policy, c.PreCreatedTasks = p, pre
			return c, nil
		}
	}
	fixed := func(d func(api.FunctionSpec) time.Duration) func() (simConfig, error) {
		return func() (simConfig, error) {
			c := baseConfig(horizon, hardLimit)
			c.Policy = autoscaler.FixedKeepAlive{KeepAlive: d(c.Spec)}
			return c, nil
		}
	}
	return []policy{
		{Name: polHybrid, build: hybrid(true)},
		{Name: polHybridNoPre, build: hybrid(false)},
		// Knative scales to zero only once the stable window has drained to
		// zero, which takes the whole window after the last request, and then
		// the grace period on top: 60 s + 30 s after the last demand. The
		// decider and windows are the same; only the keep-alive differs.
		{Name: polKnative, build: fixed(func(s api.FunctionSpec) time.Duration {
			return s.Scale.StableWindow.Duration + s.Scale.ScaleToZeroGrace.Duration
		})},
		{Name: polFixed10, build: fixed(func(api.FunctionSpec) time.Duration { return 10 * time.Minute })},
	}
}

// runResult is one policy under one seed, summed over the functions.
type runResult struct {
	Policy string `json:"policy"`
	Seed   uint64 `json:"seed"`
	counts
}

// replayAll runs every policy over every function for every seed, spread
// over workers goroutines.
func replayAll(ctx context.Context, fns []function, pols []policy, seeds []uint64, workers int) ([]runResult, error) {
	type job struct {
		pol, seed, fn int
	}
	results := make([][]counts, len(pols)*len(seeds))
	for i := range results {
		results[i] = make([]counts, len(fns))
	}
	// Requests depend only on the function and the seed: generate them once.
	reqs := make([][][]request, len(seeds))
	for s, seed := range seeds {
		reqs[s] = make([][]request, len(fns))
		for f, fn := range fns {
			reqs[s][f] = fn.requests(seed)
		}
	}
	jobs := make(chan job)
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(jobs)
		for p := range pols {
			for s := range seeds {
				for f := range fns {
					select {
					case jobs <- job{p, s, f}:
					case <-ctx.Done():
						return ctx.Err()
					}
				}
			}
		}
		return nil
	})
	var mu sync.Mutex
	for range workers {
		g.Go(func() error {
			for j := range jobs {
				cfg, err := pols[j.pol].build()
				if err != nil {
					return fmt.Errorf("%s: %w", pols[j.pol].Name, err)
				}
				c, err := simulate(cfg, reqs[j.seed][j.fn])
				if err != nil {
					return fmt.Errorf("%s, function %s: %w", pols[j.pol].Name, fns[j.fn].Hash, err)
				}
				mu.Lock()
				results[j.pol*len(seeds)+j.seed][j.fn] = c
				mu.Unlock()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var out []runResult
	for p, pol := range pols {
		for s, seed := range seeds {
			r := runResult{Policy: pol.Name, Seed: seed}
			for _, c := range results[p*len(seeds)+s] {
				r.add(c)
			}
			out = append(out, r)
		}
	}
	return out, nil
}

// stat is a figure over seeds: the median and the range.
type stat struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

func statOf(vals []float64) stat {
	v := slices.Clone(vals)
	slices.Sort(v)
	m := v[len(v)/2]
	if len(v)%2 == 0 {
		m = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return stat{Median: m, Min: v[0], Max: v[len(v)-1]}
}

// summary is one policy's figures over the seeds.
type summary struct {
	Policy               string `json:"policy"`
	ColdPct              stat   `json:"coldPct"`
	PreCreatedPct        stat   `json:"preCreatedPct"`
	ColdOrPreCreatedPct  stat   `json:"coldOrPreCreatedPct"`
	Cold                 stat   `json:"cold"`
	PreCreated           stat   `json:"preCreated"`
	IdleReplicaSeconds   stat   `json:"idleReplicaSeconds"`
	IdleVsFixed10        stat   `json:"idleVsFixed10"`
	ReplicaSeconds       stat   `json:"replicaSeconds"`
	PreCreatedTaskSecond stat   `json:"preCreatedTaskSeconds"`
}

func summarize(pols []policy, runs []runResult) []summary {
	fixedIdle := map[uint64]float64{}
	for _, r := range runs {
		if r.Policy == polFixed10 {
			fixedIdle[r.Seed] = r.IdleReplicaSeconds
		}
	}
	var out []summary
	for _, p := range pols {
		var cold, pre, both, nCold, nPre, idle, ratio, rs, ts []float64
		for _, r := range runs {
			if r.Policy != p.Name {
				continue
			}
			n := float64(max(r.Requests, 1))
			cold = append(cold, 100*float64(r.Cold)/n)
			pre = append(pre, 100*float64(r.PreCreated)/n)
			both = append(both, 100*float64(r.Cold+r.PreCreated)/n)
			nCold = append(nCold, float64(r.Cold))
			nPre = append(nPre, float64(r.PreCreated))
			idle = append(idle, r.IdleReplicaSeconds)
			if f := fixedIdle[r.Seed]; f > 0 {
				ratio = append(ratio, r.IdleReplicaSeconds/f)
			}
			rs = append(rs, r.ReplicaSeconds)
			ts = append(ts, r.PreCreatedTaskSeconds)
		}
		if len(cold) == 0 {
			continue
		}
		s := summary{
			Policy: p.Name, ColdPct: statOf(cold), PreCreatedPct: statOf(pre), ColdOrPreCreatedPct: statOf(both),
			Cold: statOf(nCold), PreCreated: statOf(nPre), IdleReplicaSeconds: statOf(idle),
			ReplicaSeconds: statOf(rs), PreCreatedTaskSecond: statOf(ts),
		}
		if len(ratio) > 0 {
			s.IdleVsFixed10 = statOf(ratio)
		}
		out = append(out, s)
	}
	return out
}
