package harness

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ebbrun/ebb/api"
)

// ColdStartResult is section 1 of BENCHMARKS.md.
type ColdStartResult struct {
	N         int `json:"n"`
	Functions int `json:"functions"`
	// Floors, each measured once per iteration, alternating with the cold
	// start through the router.
	Exec  Dist `json:"execFloor"`
	Start Dist `json:"taskStartFloor"`
	// StartReleased is the floor of a pre-created task started the way the
	// node agent starts one: released (runcstart.Release), containerd
	// told afterwards.
	StartReleased Dist `json:"releasedStartFloor"`
	Create        Dist `json:"createFloor"`
	// Router is the time to first byte of a first request to a function at
	// zero, through ebbd's router; RouterHit and RouterMiss split it by
	// whether the node agent had a pre-created task.
	Router     Dist `json:"router"`
	RouterHit  Dist `json:"routerPoolHit"`
	RouterMiss Dist `json:"routerPoolMiss"`
	// AgentStart is the node agent's own start time for pool hits, from its
	// decision to start to the endpoint written (issue 3's figure).
	AgentStart Dist `json:"agentStartPoolHit"`
	// Ratios of p50s per block of consecutive iterations.
	RatioExec          Spread `json:"ratioToExecFloor"`
	RatioStart         Spread `json:"ratioToTaskStartFloor"`
	RatioStartReleased Spread `json:"ratioToReleasedStartFloor"`
	RatioCreate        Spread `json:"ratioToCreateFloor"`
	// AgentRatio compares the agent's start with the floor that starts the
	// same way (released), so it is what the agent adds.
	AgentRatio Spread      `json:"agentStartRatioToReleasedStartFloor"`
	Blocks     int         `json:"blocks"`
	Phases     []PhaseStat `json:"phases"`
	PoolHits   int         `json:"poolHits"`
	PoolMisses int         `json:"poolMisses"`
	NotCold    int         `json:"notCold"`
	Failed     int         `json:"failed"`
	FailedWhy  []string    `json:"failedWhy,omitempty"`
	EbbdError  string      `json:"ebbdError,omitempty"`
	Spec       string      `json:"spec"`
	Plot       string      `json:"plot"`

	Raw struct {
		Exec, Start, StartReleased, Create, Router, AgentStart []float64
	} `json:"rawMs"`
}

// PhaseStat is one phase of the cold start breakdown.
type PhaseStat struct {
	Name   string  `json:"name"`
	Method string  `json:"method"`
	P50    float64 `json:"p50Ms"`
	P90    float64 `json:"p90Ms"`
	Mean   float64 `json:"meanMs"`
	N      int     `json:"n"`
}

// coldSample is one cold start with its phases in milliseconds.
type coldSample struct {
	ttfb   time.Duration
	phases map[string]float64
	hit    bool
}

var coldPhases = []struct{ name, method string }{
	{"routing", "client dial + request + router parse and lookup + response bytes back: TTFB − router's cold-start histogram"},
	{"queue wait", "whole time buffered in the activator (ebb_activator_cold_start_seconds), the sum of the next five rows"},
	{"· scale decision", "activation poke → desired scale in the store (ebb_autoscaler_activation_seconds)"},
	{"· store watch", "desired in store → agent sees it, plus endpoint written → activator sees it: queue wait − decision − agent start"},
	{"· container start", "release of the pre-created task (plus create and runc create on a pool miss; task.Start where the runtime cannot release): ebb_nodeagent_start_phase_seconds"},
	{"· readiness", "start returned → HTTP probe passed (ebb_nodeagent_start_phase_seconds{phase=ready})"},
	{"· agent bookkeeping", "agent start (decision → endpoint written, ebb_nodeagent_start_seconds) − container start − readiness"},
	{"proxy", "activator release → response header at the router: router cold-start − activator cold-start"},
}

func (h *Harness) coldStart(ctx context.Context) (Result, error) {
	n, k := 50, 10
	if !h.cfg.Quick {
		n, k = 100, 10
	}
	res := &ColdStartResult{N: n, Functions: k}
	floors, err := NewFloors(ctx, filepath.Join(h.work, "floors"), filepath.Join(h.cfg.BinDir, "hello"), filepath.Join(h.cfg.BinDir, "ebb-runc"), h.log)
	if err != nil {
		return nil, err
	}
	defer floors.Close()
	// Warm up once each: the first container start pays for page cache and
	// containerd's first-use paths.
	for _, f := range []func(context.Context) (time.Duration, error){floors.Exec, floors.Create, floors.Start, floors.StartReleased} {
		if _, err := f(ctx); err != nil {
			return nil, err
		}
	}

	var samples []coldSample
	e, fns, err := h.coldSetup(ctx, k, res)
	if err != nil {
		res.EbbdError = err.Error()
		h.log.Error("cold start through ebbd not measured", "err", err)
	} else {
		defer e.Stop()
	}
	var execS, startS, releasedS, createS []time.Duration
	floorFns := []struct {
		f   func(context.Context) (time.Duration, error)
		out *[]time.Duration
	}{{floors.Exec, &execS}, {floors.Start, &startS}, {floors.StartReleased, &releasedS}, {floors.Create, &createS}}
	for i := 0; i < n; i++ {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if e != nil {
			s, err := h.coldOne(ctx, e, fns[i%len(fns)])
			switch {
			case err != nil:
				res.Failed++
				if len(res.FailedWhy) < 5 {
					res.FailedWhy = append(res.FailedWhy, err.Error())
				}
			case s == nil:
				res.NotCold++
			default:
				samples = append(samples, *s)
			}
		}
		// The floors, in an order that rotates with i.
		for j := range floorFns {
			ff := floorFns[(i+j)%len(floorFns)]
			d, err := ff.f(ctx)
			if err != nil {
				return nil, err
			}
			*ff.out = append(*ff.out, d)
		}
		if (i+1)%10 == 0 {
			h.log.Info("cold start progress", "done", i+1, "of", n, "cold", len(samples))
		}
	}
	res.Exec, res.Start, res.StartReleased, res.Create = Summarize(execS), Summarize(startS), Summarize(releasedS), Summarize(createS)
	res.Raw.Exec, res.Raw.Start, res.Raw.StartReleased, res.Raw.Create = toMs(execS), toMs(startS), toMs(releasedS), toMs(createS)
	var ttfb, hits, misses, agent []time.Duration
	for _, s := range samples {
		ttfb = append(ttfb, s.ttfb)
		if s.hit {
			res.PoolHits++
			hits = append(hits, s.ttfb)
			agent = append(agent, time.Duration(s.phases["agent start"]*float64(time.Millisecond)))
		} else {
			res.PoolMisses++
			misses = append(misses, s.ttfb)
		}
	}
	res.Router, res.RouterHit, res.RouterMiss, res.AgentStart = Summarize(ttfb), Summarize(hits), Summarize(misses), Summarize(agent)
	res.Raw.Router, res.Raw.AgentStart = toMs(ttfb), toMs(agent)
	res.Phases = phaseStats(samples)
	// Ratios per block of ten consecutive iterations: each block's figures
	// were taken under the same machine conditions.
	blocks := max(1, n/10)
	res.Blocks = blocks
	// The goal is for starts from a pre-created task; misses (the agent had
	// none ready) are reported apart.
	res.RatioExec = SpreadOf(blockRatios(hits, execS, blocks))
	res.RatioStart = SpreadOf(blockRatios(hits, startS, blocks))
	res.RatioStartReleased = SpreadOf(blockRatios(hits, releasedS, blocks))
	res.RatioCreate = SpreadOf(blockRatios(hits, createS, blocks))
	res.AgentRatio = SpreadOf(blockRatios(agent, releasedS, blocks))

	res.Plot = "coldstart-cdf.png"
	series := []Series{
		{Name: "ebb cold start via router (TTFB), pre-created task", Values: toMs(hits)},
		{Name: "ebb cold start via router (TTFB), no pre-created task", Values: toMs(misses)},
		{Name: "floor: process exec → HTTP ready", Values: res.Raw.Exec},
		{Name: "floor: task.Start → HTTP ready", Values: res.Raw.Start},
		{Name: "floor: released start → HTTP ready", Values: res.Raw.StartReleased},
		{Name: "floor: NewContainer+NewTask+Start → ready", Values: res.Raw.Create},
	}
	if err := PlotCDF(filepath.Join(h.cfg.OutDir, res.Plot), "Cold start vs floors (same run, alternating)", series); err != nil {
		return res, fmt.Errorf("plot: %w", err)
	}
	if res.EbbdError != "" {
		return res, fmt.Errorf("cold start through ebbd: %s", res.EbbdError)
	}
	return res, nil
}

// coldSetup starts ebbd and deploys k cold functions on it.
func (h *Harness) coldSetup(ctx context.Context, k int, res *ColdStartResult) (*Ebbd, []string, error) {
	e, err := h.StartEbbd(ctx, EbbdOptions{Name: "coldstart"})
	if err != nil {
		return nil, nil, err
	}
	res.Spec = "hello, initial 0, stable window 6s, scale-to-zero grace 1s, other settings default (CPU 1, 256Mi)"
	fns, err := h.deployCold(ctx, e, "cold", k)
	if err != nil {
		e.Stop()
		return nil, nil, err
	}
	return e, fns, nil
}

// deployCold deploys k functions that scale to zero quickly (6 s stable
// window, 1 s grace), then calls each once, untimed: a revision that has
// served a request gets a pre-created task from the keep-alive policy once
// it is back at zero, which is the state the figures start from.
func (h *Harness) deployCold(ctx context.Context, e *Ebbd, prefix string, k int) ([]string, error) {
	ref, err := e.PushHello(ctx)
	if err != nil {
		return nil, err
	}
	spec := coldSpec(ref)
	fns := make([]string, k)
	for i := range fns {
		fns[i] = fmt.Sprintf("%s%02d", prefix, i)
		if _, err := e.Deploy(ctx, fns[i], spec, 2*time.Minute); err != nil {
			return nil, err
		}
	}
	for _, fn := range fns {
		if t := FirstRequest(ctx, e.HTTPAddr, fn+".localhost", "/", time.Minute); t.Err != nil || t.Status != 200 {
			return nil, fmt.Errorf("first call of %s: status %d: %v %s", fn, t.Status, t.Err, strings.TrimSpace(t.Body))
		}
	}
	return fns, nil
}

func coldSpec(ref string) api.FunctionSpec {
	zero := 0
	return api.FunctionSpec{
		Image: ref,
		Scale: api.Scale{
			Initial:          &zero,
			StableWindow:     api.D(6 * time.Second),
			ScaleToZeroGrace: api.D(time.Second),
		},
	}
}

// coldOne waits until fn is at zero and sends it one first request. It
// returns nil, nil when the router did not count the request as a cold
// start (the revision was not at zero after all).
func (h *Harness) coldOne(ctx context.Context, e *Ebbd, fn string) (*coldSample, error) {
	if _, err := e.WaitRevision(ctx, fn, 60*time.Second, atZero(false)); err != nil {
		return nil, err
	}
	// A pre-created task comes back shortly after the replica is gone; give
	// it a moment, but measure anyway if the agent keeps none.
	_, _ = e.WaitRevision(ctx, fn, 15*time.Second, atZero(true))
	before, err := e.Metrics(ctx)
	if err != nil {
		return nil, err
	}
	t := FirstRequest(ctx, e.HTTPAddr, fn+".localhost", "/", 30*time.Second)
	if t.Err != nil {
		return nil, fmt.Errorf("%s: %w", fn, t.Err)
	}
	if t.Status != 200 {
		return nil, fmt.Errorf("%s: status %d: %s", fn, t.Status, strings.TrimSpace(t.Body))
	}
	// The histograms are observed when each component is done with the
	// request, which may be a moment after the client has its first byte.
	var after Metrics
	var rc HistDelta
	_ = poll(ctx, 2*time.Second, 5*time.Millisecond, func() (bool, error) {
		after, err = e.Metrics(ctx)
		if err != nil {
			return false, err
		}
		rc = after.Hist(before, "ebb_router_cold_start_seconds", "function", fn)
		return rc.Count >= 1 && after.Hist(before, "ebb_activator_cold_start_seconds", "function", fn).Count >= 1, nil
	})
	if err != nil {
		return nil, err
	}
	if rc.Count != 1 {
		return nil, nil
	}
	ac := after.Hist(before, "ebb_activator_cold_start_seconds", "function", fn)
	act := after.Hist(before, "ebb_autoscaler_activation_seconds")
	hit := after.Hist(before, "ebb_nodeagent_start_seconds", "pool", "hit")
	miss := after.Hist(before, "ebb_nodeagent_start_seconds", "pool", "miss")
	phase := func(p string) float64 {
		return after.Hist(before, "ebb_nodeagent_start_phase_seconds", "phase", p).Sum * 1e3
	}
	s := &coldSample{ttfb: t.FirstByte, phases: map[string]float64{}, hit: hit.Count >= 1 && miss.Count == 0}
	agentStart := (hit.Sum + miss.Sum) * 1e3
	start := phase("start")
	if !s.hit {
		start += phase("create") + phase("task")
	}
	ready := phase("ready")
	s.phases["routing"] = ms(t.FirstByte) - rc.Sum*1e3
	s.phases["queue wait"] = ac.Sum * 1e3
	s.phases["· scale decision"] = act.Sum * 1e3
	s.phases["· store watch"] = ac.Sum*1e3 - act.Sum*1e3 - agentStart
	s.phases["· container start"] = start
	s.phases["· readiness"] = ready
	s.phases["· agent bookkeeping"] = agentStart - start - ready
	s.phases["proxy"] = (rc.Sum - ac.Sum) * 1e3
	s.phases["agent start"] = agentStart
	return s, nil
}

func phaseStats(samples []coldSample) []PhaseStat {
	var out []PhaseStat
	for _, p := range coldPhases {
		var v []float64
		for _, s := range samples {
			v = append(v, s.phases[p.name])
		}
		sort.Float64s(v)
		st := PhaseStat{Name: p.name, Method: p.method, N: len(v)}
		if len(v) > 0 {
			st.P50, st.P90 = Percentile(v, 50), Percentile(v, 90)
			var sum float64
			for _, x := range v {
				sum += x
			}
			st.Mean = sum / float64(len(v))
		}
		out = append(out, st)
	}
	return out
}

// blockRatios splits a and b into the same number of consecutive blocks
// and returns p50(a block) / p50(b block) for each.
func blockRatios(a, b []time.Duration, blocks int) []float64 {
	if len(a) == 0 || len(b) == 0 {
		return nil
	}
	blocks = min(blocks, len(a), len(b))
	var out []float64
	for i := 0; i < blocks; i++ {
		pa := Summarize(a[i*len(a)/blocks : (i+1)*len(a)/blocks]).P50
		pb := Summarize(b[i*len(b)/blocks : (i+1)*len(b)/blocks]).P50
		if pb > 0 {
			out = append(out, pa/pb)
		}
	}
	return out
}

func toMs(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = math.Round(ms(d)*1000) / 1000
	}
	return out
}

func distCell(d Dist) string {
	if d.N == 0 {
		return "—"
	}
	return fmt.Sprintf("p50 %.1f ms, p90 %.1f, p99 %.1f", d.P50, d.P90, d.P99)
}

// Rows implements Result.
func (r *ColdStartResult) Rows() []Row {
	rows := []Row{
		{Figure: "floor: process exec → HTTP ready", Value: distCell(r.Exec), Method: "fork+exec of bin/hello, HTTP probe every 200 µs until it answers; one per iteration"},
		{Figure: "floor: task.Start → HTTP ready (pre-created task)", Value: distCell(r.Start), Method: "private containerd 1.6 + runc, host network; container and task made untimed, then task.Start → HTTP ready"},
		{Figure: "floor: released start → HTTP ready", Value: distCell(r.StartReleased), Method: "the same, started as the node agent starts one: the shim runs bin/ebb-runc (BinaryName), runcstart.Release opens the exec fifo → HTTP ready; containerd's task.Start follows, untimed"},
		{Figure: "floor: NewContainer+NewTask+Start → HTTP ready", Value: distCell(r.Create), Method: "NewContainer (snapshot) + NewTask (shim, runc create) + Start → HTTP ready, same containerd"},
	}
	if r.RouterHit.N > 0 {
		rows = append(rows,
			Row{Figure: fmt.Sprintf("cold start via router, TTFB, pre-created task (n=%d)", r.RouterHit.N), Value: distCell(r.RouterHit),
				Baseline: fmt.Sprintf("task.Start floor p50 %.1f ms", r.Start.P50), Ratio: r.RatioStart.Format("%.2f×"),
				Method: "Go client, fresh connection, dial → first byte, to a function at zero holding a pre-created task; alternates with the floors; ratio p50/p50 per block of 10 iterations"},
			Row{Figure: "cold start / released start floor (p50)", Baseline: fmt.Sprintf("released floor p50 %.1f ms", r.StartReleased.P50), Ratio: r.RatioStartReleased.Format("%.2f×"), Method: "p50/p50 per block of 10 iterations"},
			Row{Figure: "cold start / exec floor (p50)", Baseline: fmt.Sprintf("exec floor p50 %.1f ms", r.Exec.P50), Ratio: r.RatioExec.Format("%.2f×"), Method: "p50/p50 per block of 10 iterations"},
			Row{Figure: "cold start / create floor (p50)", Baseline: fmt.Sprintf("create floor p50 %.1f ms", r.Create.P50), Ratio: r.RatioCreate.Format("%.2f×"), Method: "p50/p50 per block of 10 iterations"},
		)
	}
	if r.RouterMiss.N > 0 {
		rows = append(rows, Row{Figure: fmt.Sprintf("cold start via router, TTFB, no pre-created task (n=%d)", r.RouterMiss.N), Value: distCell(r.RouterMiss),
			Baseline: fmt.Sprintf("create floor p50 %.1f ms", r.Create.P50), Ratio: fmt.Sprintf("%.2f× (p50s)", r.RouterMiss.P50/r.Create.P50),
			Method: "as above, for the starts where the node agent had no pre-created task"})
	}
	if r.AgentStart.N > 0 {
		rows = append(rows, Row{Figure: "node agent start from pre-created task", Value: distCell(r.AgentStart),
			Baseline: fmt.Sprintf("released start floor p50 %.1f ms", r.StartReleased.P50), Ratio: r.AgentRatio.Format("%.2f×"),
			Method: "delta of ebb_nodeagent_start_seconds{pool=hit} around each cold request: start decision → endpoint written"})
	}
	return rows
}

// Goals implements Result.
func (r *ColdStartResult) Goals() []Goal {
	if r.RouterHit.N == 0 {
		return []Goal{
			{Source: "issue 4", Goal: "cold start p50 ≤ 15 ms, p99 ≤ 40 ms (pre-created tasks)", Value: "ebbd cold start not measured: " + oneLine(r.EbbdError, 120), Status: GoalNotMeasured},
		}
	}
	gs := []Goal{
		{Source: "issue 4", Goal: "cold start TTFB p50 ≤ 15 ms (pre-created tasks)", Value: fmt.Sprintf("%.1f ms (%.2f× task.Start floor of %.1f ms)", r.RouterHit.P50, r.RatioStart.Median, r.Start.P50), Status: goalIf(r.RouterHit.P50 <= 15)},
		{Source: "issue 4", Goal: "cold start TTFB p99 ≤ 40 ms (pre-created tasks)", Value: fmt.Sprintf("%.1f ms (floor p99 %.1f ms)", r.RouterHit.P99, r.Start.P99), Status: goalIf(r.RouterHit.P99 <= 40)},
		{Source: "BENCHMARKS", Goal: "every cold request succeeds", Value: fmt.Sprintf("%d failed of %d", r.Failed, r.N), Status: goalIf(r.Failed == 0)},
	}
	if r.AgentStart.N > 0 {
		gs = append(gs, Goal{Source: "issue 3", Goal: "agent start with pre-created task p50 ≤ 1.3× task.Start floor (started the same way: released)",
			Value: fmt.Sprintf("%s (p50 %.1f vs %.1f ms)", r.AgentRatio.Format("%.2f×"), r.AgentStart.P50, r.StartReleased.P50), Status: goalIf(r.AgentRatio.Median <= 1.3)})
	}
	return gs
}

// Markdown implements Result.
func (r *ColdStartResult) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Method: %d iterations; each sends one first request to a function at zero through the router and takes one sample of each floor, "+
		"in an order that rotates every iteration (A B C D, B C D A, …). %d functions (%s) take turns, so each is back at zero, with its pre-created task, before its next turn. "+
		"TTFB is measured by the harness's Go client from just before the TCP dial to the first response byte. "+
		"Floors: bin/hello as a process, and in a private containerd 1.6 + runc with host network, probed over HTTP every 200 µs; "+
		"the released floor starts the same pre-created task the way the node agent does: the program is let go by opening its exec fifo (runcstart.Release), and containerd's task.Start, through bin/ebb-runc, follows untimed (see docs/architecture.md). "+
		"Ratios are p50 / p50 per block of 10 consecutive iterations (%d blocks): median (min–max).\n\n", r.N, r.Functions, r.Spec, r.Blocks)
	b.WriteString("| | n | p50 ms | p90 ms | p99 ms | min–max ms | cold (pre-created) p50 / this p50 |\n|---|---|---|---|---|---|---|\n")
	row := func(name string, d Dist, ratio string) {
		if d.N == 0 {
			return
		}
		fmt.Fprintf(&b, "| %s | %d | %.2f | %.2f | %.2f | %.2f–%.2f | %s |\n", name, d.N, d.P50, d.P90, d.P99, d.Min, d.Max, ratio)
	}
	row("**cold start via router (TTFB), pre-created task**", r.RouterHit, "")
	row("cold start via router (TTFB), no pre-created task", r.RouterMiss, "")
	row("cold start via router (TTFB), all", r.Router, "")
	row("floor: process exec → HTTP ready", r.Exec, r.RatioExec.Format("%.2f×"))
	row("floor: task.Start → HTTP ready", r.Start, r.RatioStart.Format("%.2f×"))
	row("floor: released start → HTTP ready", r.StartReleased, r.RatioStartReleased.Format("%.2f×"))
	row("floor: NewContainer + NewTask + Start → HTTP ready", r.Create, r.RatioCreate.Format("%.2f×"))
	row("node agent start, pool hit (decision → endpoint written)", r.AgentStart, "")
	fmt.Fprintf(&b, "\nNode agent start / released start floor (issue 3): %s. Pool hits %d, misses %d; requests that found a replica still up (not cold, left out) %d; failed %d.\n",
		r.AgentRatio.Format("%.2f×"), r.PoolHits, r.PoolMisses, r.NotCold, r.Failed)
	for _, w := range r.FailedWhy {
		fmt.Fprintf(&b, "- failure: %s\n", oneLine(w, 300))
	}
	if r.EbbdError != "" {
		fmt.Fprintf(&b, "\nThrough ebbd: not measured: %s\n", oneLine(r.EbbdError, 500))
	}
	b.WriteString("\nPhase breakdown of the cold starts, per request, from the deltas of ebbd's Prometheus histograms around each request (one event each):\n\n")
	b.WriteString("| phase | p50 ms | p90 ms | mean ms | method |\n|---|---|---|---|---|\n")
	for _, p := range r.Phases {
		fmt.Fprintf(&b, "| %s | %.2f | %.2f | %.2f | %s |\n", p.Name, p.P50, p.P90, p.Mean, p.Method)
	}
	fmt.Fprintf(&b, "\n![cold start CDF](results/%s)\n", r.Plot)
	return b.String()
}
