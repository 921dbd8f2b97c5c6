package harness

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gonum.org/v1/plot/plotter"

	"github.com/ebbrun/ebb/api"
)

// ScaleSample is one observation of the function during the step test.
type ScaleSample struct {
	T       float64 `json:"t"` // seconds since the sampler started
	Desired int     `json:"desired"`
	Ready   int     `json:"ready"`
	Load    int     `json:"load"` // concurrent clients
}

// AutoscaleResult is section 4 of BENCHMARKS.md.
type AutoscaleResult struct {
	Spec            string        `json:"spec"`
	Concurrency     int           `json:"concurrency"`
	Request         string        `json:"request"`
	HoldSeconds     float64       `json:"holdSeconds"`
	Expected        int           `json:"expectedReplicas"`
	TimeToExpected  float64       `json:"timeToExpectedSeconds"` // -1: never
	MaxReady        int           `json:"maxReady"`
	MaxDesired      int           `json:"maxDesired"`
	OvershootReady  int           `json:"overshootReady"`
	OvershootDesire int           `json:"overshootDesired"`
	TimeToZero      float64       `json:"timeBackToZeroSeconds"` // -1: not within the wait
	GraceSeconds    float64       `json:"scaleToZeroGraceSeconds"`
	WindowSeconds   float64       `json:"stableWindowSeconds"`
	Requests        int64         `json:"requests"`
	Failed          int64         `json:"failed"`
	FailedWhy       []string      `json:"failedWhy,omitempty"`
	Hey             HeyResult     `json:"hey"`
	Samples         []ScaleSample `json:"samples"`
	Plot            string        `json:"plot"`
}

func (h *Harness) autoscale(ctx context.Context) (Result, error) {
	const clients, target = 100, 10
	hold := 30 * time.Second
	if !h.cfg.Quick {
		hold = 60 * time.Second
	}
	window, grace := 10*time.Second, 10*time.Second
	res := &AutoscaleResult{Concurrency: clients, HoldSeconds: hold.Seconds(), Request: "GET /sleep?d=100ms",
		GraceSeconds: grace.Seconds(), WindowSeconds: window.Seconds(), TimeToExpected: -1, TimeToZero: -1}
	e, err := h.StartEbbd(ctx, EbbdOptions{Name: "autoscale"})
	if err != nil {
		return nil, err
	}
	defer e.Stop()
	ref, err := e.PushHello(ctx)
	if err != nil {
		return nil, err
	}
	zero := 0
	spec := api.FunctionSpec{
		Image:       ref,
		Concurrency: api.Concurrency{Target: target},
		Scale:       api.Scale{Initial: &zero, StableWindow: api.D(window), ScaleToZeroGrace: api.D(grace)},
		Resources:   api.Resources{CPU: 0.5, Memory: "64Mi"},
	}
	fn, err := e.Deploy(ctx, "step", spec, 2*time.Minute)
	if err != nil {
		return nil, err
	}
	util := fn.Spec.Concurrency.TargetUtilization
	res.Expected = int(math.Ceil(float64(clients) / (float64(target) * util)))
	res.Spec = fmt.Sprintf("hello, concurrency target %d × utilization %.1f, initial 0, stable window %s, scale-to-zero grace %s, CPU 0.5, 64Mi", target, util, window, grace)

	var load atomic.Int32
	samplerCtx, stopSampler := context.WithCancel(ctx)
	began := time.Now()
	var samples []ScaleSample
	var smu sync.Mutex
	samplerDone := make(chan struct{})
	go func() {
		defer close(samplerDone)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			if fn, err := e.Client.GetFunction(samplerCtx, "step"); err == nil {
				if r, ok := latest(fn); ok {
					smu.Lock()
					samples = append(samples, ScaleSample{T: time.Since(began).Seconds(), Desired: r.Desired, Ready: r.Ready, Load: int(load.Load())})
					smu.Unlock()
				}
			}
			select {
			case <-samplerCtx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	defer func() { stopSampler(); <-samplerDone }()

	sleepCtx(ctx, 3*time.Second)
	loadStart := time.Since(began).Seconds()
	load.Store(clients)
	hey, raw, herr := RunHey(ctx, HeyOptions{URL: "http://" + e.HTTPAddr + "/sleep?d=100ms", Host: "step.localhost", Workers: clients, Duration: hold, Timeout: time.Minute})
	load.Store(0)
	loadStop := time.Since(began).Seconds()
	if herr != nil {
		return nil, fmt.Errorf("step load: %w (%s)", herr, oneLine(raw, 300))
	}
	res.Hey = hey
	res.Requests, res.Failed = hey.Requests(), hey.Failed()
	for code, n := range hey.Statuses {
		if code != 200 {
			res.FailedWhy = append(res.FailedWhy, fmt.Sprintf("%d × status %d", n, code))
		}
	}
	for msg, n := range hey.Errors {
		res.FailedWhy = append(res.FailedWhy, fmt.Sprintf("%d × %s", n, msg))
	}
	_, zerr := e.WaitRevision(ctx, "step", window+grace+2*time.Minute, func(r api.RevisionStatus) bool { return r.Desired == 0 && r.Ready == 0 })
	sleepCtx(ctx, time.Second)
	stopSampler()
	<-samplerDone

	smu.Lock()
	res.Samples = samples
	smu.Unlock()
	for _, s := range res.Samples {
		if s.T >= loadStart && s.T <= loadStop {
			res.MaxReady = max(res.MaxReady, s.Ready)
			res.MaxDesired = max(res.MaxDesired, s.Desired)
			if res.TimeToExpected < 0 && s.Ready >= res.Expected {
				res.TimeToExpected = s.T - loadStart
			}
		}
	}
	res.OvershootReady = max(0, res.MaxReady-res.Expected)
	res.OvershootDesire = max(0, res.MaxDesired-res.Expected)
	if zerr == nil {
		for _, s := range res.Samples {
			if s.T > loadStop && s.Desired == 0 && s.Ready == 0 {
				res.TimeToZero = s.T - loadStop
				break
			}
		}
	}
	res.Plot = "autoscale.png"
	var desired, ready, loadLine plotter.XYs
	for _, s := range res.Samples {
		desired = append(desired, plotter.XY{X: s.T, Y: float64(s.Desired)})
		ready = append(ready, plotter.XY{X: s.T, Y: float64(s.Ready)})
		loadLine = append(loadLine, plotter.XY{X: s.T, Y: float64(s.Load) / (float64(target) * util)})
	}
	expected := plotter.XYs{{X: loadStart, Y: float64(res.Expected)}, {X: loadStop, Y: float64(res.Expected)}}
	if err := PlotLines(filepath.Join(h.cfg.OutDir, res.Plot),
		fmt.Sprintf("Step load 0 → %d → 0 clients, concurrency target %d", clients, target), "seconds", "replicas",
		[]Line{{Name: "ready replicas", XYs: ready, Step: true}, {Name: "desired replicas", XYs: desired, Step: true},
			{Name: "load / (target × utilization)", XYs: loadLine, Step: true}, {Name: "expected replicas", XYs: expected}}); err != nil {
		return res, fmt.Errorf("plot: %w", err)
	}
	if zerr != nil {
		return res, fmt.Errorf("function did not return to zero: %w", zerr)
	}
	return res, nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func secs(v float64) string {
	if v < 0 {
		return "never"
	}
	return fmt.Sprintf("%.1f s", v)
}

// Rows implements Result.
func (r *AutoscaleResult) Rows() []Row {
	load := fmt.Sprintf("hey -z %.0fs -c %d %s, target %d; replicas read from the API every 250 ms", r.HoldSeconds, r.Concurrency, r.Request, r.Expected)
	return []Row{
		{Figure: fmt.Sprintf("step 0→%d→0 clients: time to %d ready replicas", r.Concurrency, r.Expected), Value: secs(r.TimeToExpected), Method: load + "; from the load's start"},
		{Figure: "step: overshoot (ready / desired above expected)", Value: fmt.Sprintf("%d / %d (max ready %d, max desired %d)", r.OvershootReady, r.OvershootDesire, r.MaxReady, r.MaxDesired), Method: "peak above the expected count while the load runs"},
		{Figure: "step: time back to zero after load stops", Value: secs(r.TimeToZero), Baseline: fmt.Sprintf("window %.0f s + grace %.0f s", r.WindowSeconds, r.GraceSeconds), Method: "load's end → desired = ready = 0"},
		{Figure: "step: failed requests", Value: fmt.Sprintf("%d of %d", r.Failed, r.Requests), Method: "hey's status and error distributions"},
	}
}

// Goals implements Result.
func (r *AutoscaleResult) Goals() []Goal {
	return []Goal{
		{Source: "BENCHMARKS", Goal: "no failed requests in the step test", Value: fmt.Sprintf("%d of %d", r.Failed, r.Requests), Status: goalIf(r.Failed == 0 && r.Requests > 0)},
		{Source: "issue 5", Goal: "load drives the function from 0 to ≥ 5 replicas", Value: fmt.Sprintf("max ready %d", r.MaxReady), Status: goalIf(r.MaxReady >= 5)},
		{Source: "issue 5", Goal: "back to 0 within grace + 15 s after the load stops", Value: fmt.Sprintf("%s (grace %.0f s, stable window %.0f s)", secs(r.TimeToZero), r.GraceSeconds, r.WindowSeconds),
			Status: goalIf(r.TimeToZero >= 0 && r.TimeToZero <= r.GraceSeconds+15)},
		{Source: "BENCHMARKS", Goal: fmt.Sprintf("reaches the right count (%d) under the step", r.Expected), Value: secs(r.TimeToExpected), Status: goalIf(r.TimeToExpected >= 0)},
	}
}

// Markdown implements Result.
func (r *AutoscaleResult) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Method: `hey -z %.0fs -c %d` (closed-loop workers, keep-alive) sends `%s` through the router to a function at zero (%s), then stops; "+
		"the function's desired and ready replicas are read from the API every 250 ms. Expected replicas = ceil(%d / (target × utilization)) = %d. "+
		"Time to the right count is from the first request to the first sample with that many ready; overshoot is the peak above it while the load runs; time back to zero is from the load's end to desired = ready = 0.\n\n",
		r.HoldSeconds, r.Concurrency, r.Request, r.Spec, r.Concurrency, r.Expected)
	b.WriteString("| figure | value |\n|---|---|\n")
	fmt.Fprintf(&b, "| time to %d ready replicas | %s |\n", r.Expected, secs(r.TimeToExpected))
	fmt.Fprintf(&b, "| max ready / max desired during load | %d / %d |\n", r.MaxReady, r.MaxDesired)
	fmt.Fprintf(&b, "| overshoot ready / desired | %d / %d |\n", r.OvershootReady, r.OvershootDesire)
	fmt.Fprintf(&b, "| time back to zero after the load | %s |\n", secs(r.TimeToZero))
	fmt.Fprintf(&b, "| requests / failed | %d / %d |\n", r.Requests, r.Failed)
	fmt.Fprintf(&b, "| request latency (includes the 100 ms sleep) | p50 %.1f ms, p90 %.1f, p99 %.1f, slowest %.1f |\n", r.Hey.P50, r.Hey.P90, r.Hey.P99, r.Hey.Slowest)
	for _, w := range r.FailedWhy {
		fmt.Fprintf(&b, "\n- failure: %s", oneLine(w, 200))
	}
	fmt.Fprintf(&b, "\n![replicas over time](results/%s)\n", r.Plot)
	return b.String()
}
