package harness

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"slices"
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
	// zero, through the router of an ebbd with isolation on (the default);
	// RouterHit and RouterMiss split it by whether the node agent had a
	// pre-created task. The misses are first requests to functions never
	// called before (MissN of them), taken every MissEvery iterations.
	Router     Dist `json:"router"`
	RouterHit  Dist `json:"routerPoolHit"`
	RouterMiss Dist `json:"routerPoolMiss"`
	// AgentStart is the node agent's own start time for pool hits, from its
	// decision to start to the endpoint written (issue 3's figure).
	AgentStart Dist `json:"agentStartPoolHit"`
	// The same figures from a second ebbd with isolation off, measured in
	// the same iterations, in alternating order (issue 17).
	RouterOff     Dist `json:"routerIsolationOff"`
	RouterHitOff  Dist `json:"routerPoolHitIsolationOff"`
	RouterMissOff Dist `json:"routerPoolMissIsolationOff"`
	AgentStartOff Dist `json:"agentStartPoolHitIsolationOff"`
	// IsolationP50Diff and IsolationP99Diff are on − off of the pool-hit
	// cold starts, in ms; IsolationBlockDiff is p50(on) − p50(off) per
	// block of 10 iterations.
	IsolationP50Diff   float64 `json:"isolationOnMinusOffP50Ms"`
	IsolationP99Diff   float64 `json:"isolationOnMinusOffP99Ms"`
	IsolationBlockDiff Spread  `json:"isolationOnMinusOffP50MsPerBlock"`
	MissN              int     `json:"poolMissSamplesAsked"`
	MissEvery          int     `json:"poolMissEvery"`
	MissNotMiss        int     `json:"poolMissSamplesThatHit"`
	// NetworkMiss is ebb_nodeagent_start_phase_seconds{phase="network"} of
	// each pool miss with isolation on (the delta around its request);
	// NetworkAll is the same histogram over the whole measurement, every
	// network setup of the ebbd (pool fills included), its p50 interpolated
	// in the buckets as Prometheus does.
	NetworkMiss Dist         `json:"networkPhasePoolMiss"`
	NetworkAll  NetworkPhase `json:"networkPhaseAll"`
	// HitNetworkSetups counts pool-hit cold starts (isolation on) during
	// whose request the node agent set up any replica network: a pool hit
	// itself does none, so this counts pool fills of other functions that
	// overlapped.
	HitNetworkSetups int `json:"poolHitsWithANetworkSetup"`
	// MissPhases breaks the pool misses down, isolation on and off.
	MissPhases []MissPhaseStat `json:"poolMissPhases"`
	// Bridge is where the isolation-on ebbd's replicas were.
	Bridge string `json:"bridge"`
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
		RouterOff, RouterMiss, RouterMissOff                   []float64
	} `json:"rawMs"`
}

// NetworkPhase is a histogram's figures over a whole measurement.
type NetworkPhase struct {
	Count  float64 `json:"count"`
	MeanMs float64 `json:"meanMs"`
	P50Ms  float64 `json:"p50Ms"`
	P90Ms  float64 `json:"p90Ms"`
}

// MissPhaseStat is one phase of the pool-miss cold starts, with isolation
// on and off.
type MissPhaseStat struct {
	Name   string  `json:"name"`
	OnP50  float64 `json:"onP50Ms"`
	OffP50 float64 `json:"offP50Ms"`
	OnN    int     `json:"onN"`
	OffN   int     `json:"offN"`
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
	// agentPhases are the node agent's start phases (network, create,
	// task, start, ready) whose histogram saw exactly one event during the
	// request, so that the value is this start's and not a pool fill's.
	agentPhases map[string]float64
	// networkSetups counts network phases observed during the request.
	networkSetups float64
}

// agentStartPhases are the phases of ebb_nodeagent_start_phase_seconds, in
// the order a pool miss goes through them.
var agentStartPhases = []string{"network", "create", "task", "start", "ready"}

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

// coldEbbd is one of the cold start section's two ebbds (isolation on and
// off) and what was measured on it.
type coldEbbd struct {
	e *Ebbd
	// fns take turns, so each is back at zero with its pre-created task
	// before its next turn; fresh were never called, so a first request to
	// each is a pool miss.
	fns, fresh          []string
	hits, misses, agent []time.Duration
	hitSamples          []coldSample
	missSamples         []coldSample
	missNotMiss         int
}

// sample adds one cold start; fresh says it was a never-called function's.
func (c *coldEbbd) sample(s coldSample, fresh bool) {
	switch {
	case fresh && s.hit:
		// Not what was asked (the agent had a task after all): left out.
		c.missNotMiss++
	case s.hit:
		c.hits = append(c.hits, s.ttfb)
		c.hitSamples = append(c.hitSamples, s)
		c.agent = append(c.agent, time.Duration(s.phases["agent start"]*float64(time.Millisecond)))
	default:
		c.misses = append(c.misses, s.ttfb)
		c.missSamples = append(c.missSamples, s)
	}
}

func (h *Harness) coldStart(ctx context.Context) (Result, error) {
	n, k, missEvery := 50, 10, 5
	if !h.cfg.Quick {
		n, k = 100, 10
	}
	res := &ColdStartResult{N: n, Functions: k, MissEvery: missEvery, MissN: n / missEvery}
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

	on, off, err := h.coldSetup(ctx, k, res.MissN, res)
	if err != nil {
		res.EbbdError = err.Error()
		h.log.Error("cold start through ebbd not measured", "err", err)
	} else {
		defer on.e.Stop()
		defer off.e.Stop()
		res.Bridge = on.e.slot.bridge() + " " + on.e.slot.cidr()
	}
	var netBefore Metrics
	if on != nil {
		if netBefore, err = on.e.Metrics(ctx); err != nil {
			return nil, err
		}
	}
	var execS, startS, releasedS, createS []time.Duration
	floorFns := []struct {
		f   func(context.Context) (time.Duration, error)
		out *[]time.Duration
	}{{floors.Exec, &execS}, {floors.Start, &startS}, {floors.StartReleased, &releasedS}, {floors.Create, &createS}}
	coldOne := func(c *coldEbbd, fn string, fresh bool) {
		s, err := h.coldOne(ctx, c.e, fn, fresh)
		switch {
		case err != nil:
			res.Failed++
			if len(res.FailedWhy) < 5 {
				res.FailedWhy = append(res.FailedWhy, fmt.Sprintf("isolation %s: %v", c.e.Isolation, err))
			}
		case s == nil:
			res.NotCold++
		default:
			c.sample(*s, fresh)
		}
	}
	for i := 0; i < n; i++ {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if on != nil {
			// Both ebbds in turn, in an order that alternates, so machine
			// noise hits both alike.
			for _, c := range alternate(i, on, off) {
				coldOne(c, c.fns[i%len(c.fns)], false)
			}
			if (i+1)%missEvery == 0 {
				for _, c := range alternate(i/missEvery, on, off) {
					coldOne(c, c.fresh[i/missEvery], true)
				}
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
		if (i+1)%10 == 0 && on != nil {
			h.log.Info("cold start progress", "done", i+1, "of", n, "hits on", len(on.hits), "hits off", len(off.hits), "misses on", len(on.misses), "misses off", len(off.misses))
		}
	}
	res.Exec, res.Start, res.StartReleased, res.Create = Summarize(execS), Summarize(startS), Summarize(releasedS), Summarize(createS)
	res.Raw.Exec, res.Raw.Start, res.Raw.StartReleased, res.Raw.Create = toMs(execS), toMs(startS), toMs(releasedS), toMs(createS)
	if on == nil {
		on, off = &coldEbbd{}, &coldEbbd{}
	} else {
		netAfter, err := on.e.Metrics(ctx)
		if err != nil {
			return nil, err
		}
		res.NetworkAll = networkPhase(netAfter, netBefore)
	}
	res.PoolHits, res.PoolMisses, res.MissNotMiss = len(on.hits), len(on.misses), on.missNotMiss+off.missNotMiss
	all := append(append([]time.Duration{}, on.hits...), on.misses...)
	res.Router, res.RouterHit, res.RouterMiss, res.AgentStart = Summarize(all), Summarize(on.hits), Summarize(on.misses), Summarize(on.agent)
	allOff := append(append([]time.Duration{}, off.hits...), off.misses...)
	res.RouterOff, res.RouterHitOff, res.RouterMissOff, res.AgentStartOff = Summarize(allOff), Summarize(off.hits), Summarize(off.misses), Summarize(off.agent)
	res.Raw.Router, res.Raw.AgentStart, res.Raw.RouterOff = toMs(on.hits), toMs(on.agent), toMs(off.hits)
	res.Raw.RouterMiss, res.Raw.RouterMissOff = toMs(on.misses), toMs(off.misses)
	res.Phases = phaseStats(on.hitSamples)
	res.MissPhases = missPhaseStats(on.missSamples, off.missSamples)
	var netMiss []time.Duration
	for _, s := range on.missSamples {
		if v, ok := s.agentPhases["network"]; ok {
			netMiss = append(netMiss, time.Duration(v*float64(time.Millisecond)))
		}
	}
	res.NetworkMiss = Summarize(netMiss)
	for _, s := range on.hitSamples {
		if s.networkSetups > 0 {
			res.HitNetworkSetups++
		}
	}
	// Ratios per block of ten consecutive iterations: each block's figures
	// were taken under the same machine conditions.
	blocks := max(1, n/10)
	res.Blocks = blocks
	// The goal is for starts from a pre-created task; misses (the agent had
	// none ready) are reported apart.
	hits := on.hits
	res.RatioExec = SpreadOf(blockRatios(hits, execS, blocks))
	res.RatioStart = SpreadOf(blockRatios(hits, startS, blocks))
	res.RatioStartReleased = SpreadOf(blockRatios(hits, releasedS, blocks))
	res.RatioCreate = SpreadOf(blockRatios(hits, createS, blocks))
	res.AgentRatio = SpreadOf(blockRatios(on.agent, releasedS, blocks))
	if res.RouterHit.N > 0 && res.RouterHitOff.N > 0 {
		res.IsolationP50Diff = res.RouterHit.P50 - res.RouterHitOff.P50
		res.IsolationP99Diff = res.RouterHit.P99 - res.RouterHitOff.P99
		res.IsolationBlockDiff = SpreadOf(Diffs(blockP50s(on.hits, blocks), blockP50s(off.hits, blocks)))
	}

	res.Plot = "coldstart-cdf.png"
	series := []Series{
		{Name: "ebb cold start via router (TTFB), pre-created task, isolation on", Values: toMs(on.hits)},
		{Name: "ebb cold start via router (TTFB), pre-created task, isolation off", Values: toMs(off.hits)},
		{Name: "ebb cold start via router (TTFB), no pre-created task, isolation on", Values: toMs(on.misses)},
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

// alternate returns a and b in an order that swaps with i.
func alternate[T any](i int, a, b T) []T {
	if i%2 == 0 {
		return []T{a, b}
	}
	return []T{b, a}
}

// coldSetup starts an ebbd with isolation on and one with it off, and
// deploys on each k cold functions that take turns and fresh never-called
// ones for the pool misses.
func (h *Harness) coldSetup(ctx context.Context, k, fresh int, res *ColdStartResult) (on, off *coldEbbd, err error) {
	res.Spec = "hello, initial 0, stable window 6s, scale-to-zero grace 1s, other settings default (CPU 1, 256Mi)"
	var started []*Ebbd
	defer func() {
		if err != nil {
			for _, e := range started {
				e.Stop()
			}
		}
	}()
	var out []*coldEbbd
	for _, iso := range []string{IsolationOn, IsolationOff} {
		e, err := h.StartEbbd(ctx, EbbdOptions{Name: "coldstart-isolation-" + iso, Isolation: iso})
		if err != nil {
			return nil, nil, err
		}
		started = append(started, e)
		c := &coldEbbd{e: e}
		var ref string
		if c.fns, ref, err = h.deployColdRef(ctx, e, "cold", k); err != nil {
			return nil, nil, fmt.Errorf("isolation %s: %w", iso, err)
		}
		spec := coldSpec(ref)
		for i := 0; i < fresh; i++ {
			name := fmt.Sprintf("miss%02d", i)
			if _, err := e.Deploy(ctx, name, spec, 2*time.Minute); err != nil {
				return nil, nil, fmt.Errorf("isolation %s: %w", iso, err)
			}
			c.fresh = append(c.fresh, name)
		}
		out = append(out, c)
	}
	return out[0], out[1], nil
}

// deployCold deploys k functions that scale to zero quickly (6 s stable
// window, 1 s grace), then calls each once, untimed: a revision that has
// served a request gets a pre-created task from the keep-alive policy once
// it is back at zero, which is the state the figures start from.
func (h *Harness) deployCold(ctx context.Context, e *Ebbd, prefix string, k int) ([]string, error) {
	fns, _, err := h.deployColdRef(ctx, e, prefix, k)
	return fns, err
}

// deployColdRef is deployCold that also returns the image reference.
func (h *Harness) deployColdRef(ctx context.Context, e *Ebbd, prefix string, k int) ([]string, string, error) {
	ref, err := e.PushHello(ctx)
	if err != nil {
		return nil, "", err
	}
	spec := coldSpec(ref)
	fns := make([]string, k)
	for i := range fns {
		fns[i] = fmt.Sprintf("%s%02d", prefix, i)
		if _, err := e.Deploy(ctx, fns[i], spec, 2*time.Minute); err != nil {
			return nil, "", err
		}
	}
	for _, fn := range fns {
		if t := FirstRequest(ctx, e.HTTPAddr, fn+".localhost", "/", time.Minute); t.Err != nil || t.Status != 200 {
			return nil, "", fmt.Errorf("first call of %s: status %d: %v %s", fn, t.Status, t.Err, strings.TrimSpace(t.Body))
		}
	}
	return fns, ref, nil
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
// start (the revision was not at zero after all). A fresh function was
// never called, so the node agent keeps no pre-created task for it.
func (h *Harness) coldOne(ctx context.Context, e *Ebbd, fn string, fresh bool) (*coldSample, error) {
	if _, err := e.WaitRevision(ctx, fn, 60*time.Second, atZero(false)); err != nil {
		return nil, err
	}
	if !fresh {
		// A pre-created task comes back shortly after the replica is gone;
		// give it a moment, but measure anyway if the agent keeps none.
		_, _ = e.WaitRevision(ctx, fn, 15*time.Second, atZero(true))
	}
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
	s := &coldSample{ttfb: t.FirstByte, phases: map[string]float64{}, agentPhases: map[string]float64{}, hit: hit.Count >= 1 && miss.Count == 0}
	for _, p := range agentStartPhases {
		if d := after.Hist(before, "ebb_nodeagent_start_phase_seconds", "phase", p); d.Count == 1 {
			s.agentPhases[p] = d.Sum * 1e3
		}
	}
	s.networkSetups = after.Hist(before, "ebb_nodeagent_start_phase_seconds", "phase", "network").Count
	if agent := (hit.Sum + miss.Sum) * 1e3; hit.Count+miss.Count == 1 {
		s.agentPhases["agent start"] = agent
	}
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

// missPhaseStats is the p50 of each node agent start phase of the pool
// misses with isolation on and off.
func missPhaseStats(on, off []coldSample) []MissPhaseStat {
	p50 := func(samples []coldSample, phase string) (float64, int) {
		var v []float64
		for _, s := range samples {
			if x, ok := s.agentPhases[phase]; ok {
				v = append(v, x)
			}
		}
		sort.Float64s(v)
		return Percentile(v, 50), len(v)
	}
	var out []MissPhaseStat
	for _, p := range append(slices.Clone(agentStartPhases), "agent start") {
		st := MissPhaseStat{Name: p}
		st.OnP50, st.OnN = p50(on, p)
		st.OffP50, st.OffN = p50(off, p)
		out = append(out, st)
	}
	return out
}

// networkPhase is the network phase histogram between two scrapes.
func networkPhase(after, before Metrics) NetworkPhase {
	const name = "ebb_nodeagent_start_phase_seconds"
	d := after.Hist(before, name, "phase", "network")
	np := NetworkPhase{Count: d.Count, MeanMs: d.Mean() * 1e3}
	if q, ok := after.HistQuantile(before, 0.5, name, "phase", "network"); ok {
		np.P50Ms = q * 1e3
	}
	if q, ok := after.HistQuantile(before, 0.9, name, "phase", "network"); ok {
		np.P90Ms = q * 1e3
	}
	return np
}

// blockP50s splits a into blocks consecutive blocks and returns each one's
// p50 in ms.
func blockP50s(a []time.Duration, blocks int) []float64 {
	blocks = min(blocks, len(a))
	var out []float64
	for i := 0; i < blocks; i++ {
		out = append(out, Summarize(a[i*len(a)/blocks:(i+1)*len(a)/blocks]).P50)
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
			Row{Figure: fmt.Sprintf("cold start via router, TTFB, pre-created task, isolation on (n=%d)", r.RouterHit.N), Value: distCell(r.RouterHit),
				Baseline: fmt.Sprintf("task.Start floor p50 %.1f ms", r.Start.P50), Ratio: r.RatioStart.Format("%.2f×"),
				Method: "Go client, fresh connection, dial → first byte, to a function at zero holding a pre-created task, on an ebbd with --isolation on (replica in its own network and user namespace); alternates with the isolation-off ebbd and the floors; ratio p50/p50 per block of 10 iterations"},
			Row{Figure: "cold start / released start floor (p50)", Baseline: fmt.Sprintf("released floor p50 %.1f ms", r.StartReleased.P50), Ratio: r.RatioStartReleased.Format("%.2f×"), Method: "p50/p50 per block of 10 iterations"},
			Row{Figure: "cold start / exec floor (p50)", Baseline: fmt.Sprintf("exec floor p50 %.1f ms", r.Exec.P50), Ratio: r.RatioExec.Format("%.2f×"), Method: "p50/p50 per block of 10 iterations"},
			Row{Figure: "cold start / create floor (p50)", Baseline: fmt.Sprintf("create floor p50 %.1f ms", r.Create.P50), Ratio: r.RatioCreate.Format("%.2f×"), Method: "p50/p50 per block of 10 iterations"},
		)
	}
	if r.RouterHitOff.N > 0 {
		rows = append(rows, Row{Figure: fmt.Sprintf("cold start via router, TTFB, pre-created task, isolation off (n=%d)", r.RouterHitOff.N), Value: distCell(r.RouterHitOff),
			Baseline: "isolation on " + distCell(r.RouterHit), Ratio: fmt.Sprintf("on − off: p50 %+.2f ms, p99 %+.2f ms; per block %s ms", r.IsolationP50Diff, r.IsolationP99Diff, r.IsolationBlockDiff.Format("%+.2f")),
			Method: "the same, on a second ebbd with --isolation off (host network), in the same iterations, the order of the two ebbds alternating"})
	}
	if r.RouterMiss.N > 0 {
		rows = append(rows, Row{Figure: fmt.Sprintf("cold start via router, TTFB, no pre-created task, isolation on (n=%d)", r.RouterMiss.N), Value: distCell(r.RouterMiss),
			Baseline: fmt.Sprintf("isolation off p50 %.1f ms; create floor p50 %.1f ms", r.RouterMissOff.P50, r.Create.P50), Ratio: fmt.Sprintf("%.2f× create floor (p50s)", r.RouterMiss.P50/r.Create.P50),
			Method: fmt.Sprintf("first request to a function never called before (so the node agent keeps no pre-created task for it), one per ebbd every %d iterations", r.MissEvery)})
	}
	if r.NetworkMiss.N > 0 || r.NetworkAll.Count > 0 {
		rows = append(rows, Row{Figure: "replica network setup (isolation on), pool miss", Value: distCell(r.NetworkMiss),
			Baseline: fmt.Sprintf("all %.0f setups of the run: p50 %.2f ms (buckets), mean %.2f ms", r.NetworkAll.Count, r.NetworkAll.P50Ms, r.NetworkAll.MeanMs),
			Method:   "ebb_nodeagent_start_phase_seconds{phase=\"network\"}: netns, veth on the bridge, address; delta around each pool miss, and the histogram over the whole measurement (pool fills included)"})
	}
	if r.AgentStart.N > 0 {
		rows = append(rows, Row{Figure: "node agent start from pre-created task", Value: distCell(r.AgentStart),
			Baseline: fmt.Sprintf("released start floor p50 %.1f ms", r.StartReleased.P50), Ratio: r.AgentRatio.Format("%.2f×"),
			Method: "delta of ebb_nodeagent_start_seconds{pool=hit} around each cold request: start decision → endpoint written"})
	}
	return rows
}

// requests is how many cold requests the section sent: one per iteration
// to each of the two ebbds, and a pool miss to each every MissEvery.
func (r *ColdStartResult) requests() int { return 2 * (r.N + r.MissN) }

// Goals implements Result.
func (r *ColdStartResult) Goals() []Goal {
	if r.RouterHit.N == 0 {
		return []Goal{
			{Source: "issue 4", Goal: "cold start p50 ≤ 15 ms, p99 ≤ 40 ms (pre-created tasks)", Value: "ebbd cold start not measured: " + oneLine(r.EbbdError, 120), Status: GoalNotMeasured},
		}
	}
	gs := []Goal{
		{Source: "issues 4, 17", Goal: "cold start TTFB p50 ≤ 15 ms (pre-created tasks, isolation on)", Value: fmt.Sprintf("%.1f ms (%.2f× task.Start floor of %.1f ms)", r.RouterHit.P50, r.RatioStart.Median, r.Start.P50), Status: goalIf(r.RouterHit.P50 <= 15)},
		{Source: "issue 4", Goal: "cold start TTFB p99 ≤ 40 ms (pre-created tasks, isolation on)", Value: fmt.Sprintf("%.1f ms (floor p99 %.1f ms)", r.RouterHit.P99, r.Start.P99), Status: goalIf(r.RouterHit.P99 <= 40)},
	}
	if r.RouterHitOff.N > 0 {
		gs = append(gs, Goal{Source: "issue 17", Goal: "isolation costs cold start ≤ 1 ms: p50(on) − p50(off) (pre-created tasks, same run)",
			Value:  fmt.Sprintf("%+.2f ms (%.2f vs %.2f ms; per block of 10 %s ms)", r.IsolationP50Diff, r.RouterHit.P50, r.RouterHitOff.P50, r.IsolationBlockDiff.Format("%+.2f")),
			Status: goalIf(r.IsolationP50Diff <= 1)})
	} else {
		gs = append(gs, Goal{Source: "issue 17", Goal: "isolation costs cold start ≤ 1 ms: p50(on) − p50(off) (pre-created tasks, same run)", Value: "isolation off not measured", Status: GoalNotMeasured})
	}
	gs = append(gs, Goal{Source: "BENCHMARKS", Goal: "every cold request succeeds", Value: fmt.Sprintf("%d failed of %d", r.Failed, r.requests()), Status: goalIf(r.Failed == 0)})
	if r.AgentStart.N > 0 {
		gs = append(gs, Goal{Source: "issue 3", Goal: "agent start with pre-created task p50 ≤ 1.3× task.Start floor (started the same way: released)",
			Value: fmt.Sprintf("%s (p50 %.1f vs %.1f ms)", r.AgentRatio.Format("%.2f×"), r.AgentStart.P50, r.StartReleased.P50), Status: goalIf(r.AgentRatio.Median <= 1.3)})
	}
	return gs
}

// Markdown implements Result.
func (r *ColdStartResult) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Method: %d iterations; each sends one first request to a function at zero through the router of each of two ebbds that run side by side, "+
		"one with `--isolation on` (the default: every replica in its own network namespace on the ebbd's bridge, %s, and its own user namespace) and one with `--isolation off` (host network), "+
		"the order of the two alternating every iteration, then takes one sample of each floor, in an order that rotates every iteration (A B C D, B C D A, …). "+
		"On each ebbd %d functions (%s) take turns, so each is back at zero, with its pre-created task, before its next turn. "+
		"Every %d iterations each ebbd also gets a first request to a function deployed at the start and never called, which the node agent keeps no pre-created task for: a pool miss, which pays for the network setup with isolation on. "+
		"TTFB is measured by the harness's Go client from just before the TCP dial to the first response byte. "+
		"Floors: bin/hello as a process, and in a private containerd 1.6 + runc with host network, probed over HTTP every 200 µs; "+
		"the released floor starts the same pre-created task the way the node agent does: the program is let go by opening its exec fifo (runcstart.Release), and containerd's task.Start, through bin/ebb-runc, follows untimed (see docs/architecture.md). "+
		"Ratios are p50 / p50 per block of 10 consecutive iterations (%d blocks): median (min–max).\n\n", r.N, r.Bridge, r.Functions, r.Spec, r.MissEvery, r.Blocks)
	b.WriteString("| | n | p50 ms | p90 ms | p99 ms | min–max ms | cold (pre-created, isolation on) p50 / this p50 |\n|---|---|---|---|---|---|---|\n")
	row := func(name string, d Dist, ratio string) {
		if d.N == 0 {
			return
		}
		fmt.Fprintf(&b, "| %s | %d | %.2f | %.2f | %.2f | %.2f–%.2f | %s |\n", name, d.N, d.P50, d.P90, d.P99, d.Min, d.Max, ratio)
	}
	row("**cold start via router (TTFB), pre-created task, isolation on**", r.RouterHit, "")
	row("**cold start via router (TTFB), pre-created task, isolation off**", r.RouterHitOff, "")
	row("cold start via router (TTFB), no pre-created task, isolation on", r.RouterMiss, "")
	row("cold start via router (TTFB), no pre-created task, isolation off", r.RouterMissOff, "")
	row("floor: process exec → HTTP ready", r.Exec, r.RatioExec.Format("%.2f×"))
	row("floor: task.Start → HTTP ready", r.Start, r.RatioStart.Format("%.2f×"))
	row("floor: released start → HTTP ready", r.StartReleased, r.RatioStartReleased.Format("%.2f×"))
	row("floor: NewContainer + NewTask + Start → HTTP ready", r.Create, r.RatioCreate.Format("%.2f×"))
	row("node agent start, pool hit, isolation on (decision → endpoint written)", r.AgentStart, "")
	row("node agent start, pool hit, isolation off", r.AgentStartOff, "")
	row("replica network setup, pool miss, isolation on (phase network)", r.NetworkMiss, "")
	if r.RouterHitOff.N > 0 {
		fmt.Fprintf(&b, "\nIsolation on − off, pre-created tasks (issue 17): p50 %+.2f ms, p99 %+.2f ms; p50 per block of 10 iterations %s ms.\n",
			r.IsolationP50Diff, r.IsolationP99Diff, r.IsolationBlockDiff.Format("%+.2f"))
	}
	fmt.Fprintf(&b, "\nNode agent start / released start floor (issue 3): %s. Isolation on: pool hits %d, misses %d; pool hits during which the node agent set up any replica network (another function's pool fill overlapping; a hit sets up none) %d. "+
		"Never-called functions that found a pre-created task after all (left out) %d; requests that found a replica still up (not cold, left out) %d; failed %d of %d.\n",
		r.AgentRatio.Format("%.2f×"), r.PoolHits, r.PoolMisses, r.HitNetworkSetups, r.MissNotMiss, r.NotCold, r.Failed, r.requests())
	if r.NetworkAll.Count > 0 {
		fmt.Fprintf(&b, "\nReplica network setup with isolation on, every one during the measurement (pool fills and misses), from `ebb_nodeagent_start_phase_seconds{phase=\"network\"}`: "+
			"%.0f setups, mean %.2f ms, p50 %.2f ms and p90 %.2f ms interpolated in the histogram's buckets.\n", r.NetworkAll.Count, r.NetworkAll.MeanMs, r.NetworkAll.P50Ms, r.NetworkAll.P90Ms)
	}
	for _, w := range r.FailedWhy {
		fmt.Fprintf(&b, "- failure: %s\n", oneLine(w, 300))
	}
	if r.EbbdError != "" {
		fmt.Fprintf(&b, "\nThrough ebbd: not measured: %s\n", oneLine(r.EbbdError, 500))
	}
	b.WriteString("\nPhase breakdown of the cold starts from pre-created tasks with isolation on, per request, from the deltas of ebbd's Prometheus histograms around each request (one event each):\n\n")
	b.WriteString("| phase | p50 ms | p90 ms | mean ms | method |\n|---|---|---|---|---|\n")
	for _, p := range r.Phases {
		fmt.Fprintf(&b, "| %s | %.2f | %.2f | %.2f | %s |\n", p.Name, p.P50, p.P90, p.Mean, p.Method)
	}
	if len(r.MissPhases) > 0 && (r.RouterMiss.N > 0 || r.RouterMissOff.N > 0) {
		b.WriteString("\nPool misses, node agent start phases (`ebb_nodeagent_start_phase_seconds` and `ebb_nodeagent_start_seconds{pool=\"miss\"}` around each request; a value is kept only when its histogram counted exactly one event):\n\n")
		b.WriteString("| phase | isolation on p50 ms (n) | isolation off p50 ms (n) |\n|---|---|---|\n")
		for _, p := range r.MissPhases {
			fmt.Fprintf(&b, "| %s | %.2f (%d) | %.2f (%d) |\n", p.Name, p.OnP50, p.OnN, p.OffP50, p.OffN)
		}
	}
	fmt.Fprintf(&b, "\n![cold start CDF](results/%s)\n", r.Plot)
	return b.String()
}
