package harness

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ebbrun/ebb/api"
)

// Target is one way to reach the warm replica.
type Target struct {
	Name   string `json:"name"`
	Method string `json:"method"`
	URL    string `json:"url"`
	Host   string `json:"host"`
	Script string `json:"-"`
}

// TargetResult is a target's runs and their spread.
type TargetResult struct {
	Target
	Runs []WrkResult `json:"runs"`
	RPS  Spread      `json:"rps"`
	P50  Spread      `json:"p50Ms"`
	P99  Spread      `json:"p99Ms"`
	Errs int64       `json:"errors"`
}

// DataPlaneResult is section 2 of BENCHMARKS.md.
type DataPlaneResult struct {
	Backend        string          `json:"backend"`
	Wrk            string          `json:"wrk"`
	Rounds         int             `json:"rounds"`
	EbbdGOMAXPROCS int             `json:"ebbdGOMAXPROCS"`
	Targets        []*TargetResult `json:"targets"`
	EbbVsHAProxy   Spread          `json:"ebbRPSOverHAProxy"`
	EbbVsNginx     Spread          `json:"ebbRPSOverNginx"`
	EbbVsDirect    Spread          `json:"ebbRPSOverDirect"`
	EbbP99OverHA   Spread          `json:"ebbP99OverHAProxyP99"`
	// SaturatedP50DiffUs is ebb's p50 minus direct's under the -c32 load:
	// mostly queueing behind the slower path, so it tracks throughput.
	SaturatedP50DiffUs Spread `json:"ebbP50MinusDirectAtC32Micros"`
	// Latency holds the unloaded runs (one connection, one request at a
	// time), where a hop's p50 is its own cost and nothing queues.
	Latency      []*TargetResult `json:"latency"`
	LatencyWrk   string          `json:"latencyWrk"`
	AddedP50us   Spread          `json:"ebbAddedP50OverDirectMicros"`
	HAAddedP50us Spread          `json:"haproxyAddedP50OverDirectMicros"`
	Plot         string          `json:"plot"`
}

// wrkDuration is -d of every wrk run: 10 s as BENCHMARKS.md says, 3 s in
// quick mode.
func (h *Harness) wrkDuration() time.Duration {
	if h.cfg.Quick {
		return 3 * time.Second
	}
	return 10 * time.Second
}

// warmFunction deploys fn with exactly one replica and returns the address
// the router sends its requests to: with isolation on, the replica's own
// address in its network namespace on the ebbd's bridge; with it off, a
// loopback port. Direct runs and the peers (HAProxy, nginx) dial the same
// address, so every path ends at the same socket.
func (h *Harness) warmFunction(ctx context.Context, e *Ebbd, fn string) (string, error) {
	ref, err := e.PushHello(ctx)
	if err != nil {
		return "", err
	}
	one := 1
	spec := api.FunctionSpec{Image: ref, Scale: api.Scale{Min: 1, Max: 1, Initial: &one}}
	if _, err := e.Deploy(ctx, fn, spec, 2*time.Minute); err != nil {
		return "", err
	}
	f, err := e.WaitRevision(ctx, fn, 30*time.Second, func(r api.RevisionStatus) bool { return len(r.Replicas) == 1 })
	if err != nil {
		return "", err
	}
	r, _ := latest(f)
	t, body := getBody(ctx, h.hc, e.HTTPAddr, fn+".localhost", "/env")
	if t.Err != nil || t.Status != 200 {
		return "", fmt.Errorf("read %s's environment through the router: status %d: %v", fn, t.Status, t.Err)
	}
	return replicaBackend(r.Replicas, body)
}

// replicaBackend picks the one ready replica's address from its revision's
// status, and checks it against the PORT in the environment the replica
// reported through the router: the address is the router's endpoint for
// that very replica.
func replicaBackend(replicas []api.ReplicaStatus, env string) (string, error) {
	if len(replicas) != 1 {
		return "", fmt.Errorf("want exactly one ready replica, the status lists %d", len(replicas))
	}
	addr := replicas[0].Addr
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return "", fmt.Errorf("replica %s: address %q: %w", replicas[0].Name, addr, err)
	}
	for _, line := range strings.Split(env, "\n") {
		if port, ok := strings.CutPrefix(line, "PORT="); ok {
			if strings.TrimSpace(port) != strconv.Itoa(int(ap.Port())) {
				return "", fmt.Errorf("replica %s serves at %s but its environment says PORT=%s", replicas[0].Name, addr, strings.TrimSpace(port))
			}
			return addr, nil
		}
	}
	return "", fmt.Errorf("replica %s's environment has no PORT", replicas[0].Name)
}

func (h *Harness) dataPlane(ctx context.Context) (Result, error) {
	res := &DataPlaneResult{Rounds: 3, EbbdGOMAXPROCS: h.cfg.EbbdGOMAXPROCS}
	e, err := h.StartEbbd(ctx, EbbdOptions{Name: "dataplane"})
	if err != nil {
		return nil, err
	}
	defer e.Stop()
	backend, err := h.warmFunction(ctx, e, "dp")
	if err != nil {
		return nil, err
	}
	res.Backend = "one warm replica of examples/hello (net/http, in containerd, CPU limit 1, " + e.isolationNote() + ") at " + backend
	ha, err := h.StartHAProxy(ctx, backend)
	if err != nil {
		return nil, err
	}
	defer ha.Stop()
	ng, err := h.StartNginx(ctx, backend)
	if err != nil {
		return nil, err
	}
	defer ng.Stop()
	host := "dp.localhost"
	targets := []Target{
		{Name: "direct", Method: "wrk → replica", URL: "http://" + backend + "/", Host: host},
		{Name: "ebb", Method: fmt.Sprintf("wrk → ebbd router (GOMAXPROCS=%d) → replica", h.cfg.EbbdGOMAXPROCS), URL: "http://" + e.HTTPAddr + "/", Host: host},
		{Name: "haproxy", Method: "wrk → HAProxy 2.6 (nbthread 1, keep-alive, http-reuse always) → replica", URL: "http://" + ha.Addr + "/", Host: host},
		{Name: "nginx", Method: "wrk → nginx 1.22 (1 worker, upstream keepalive 64) → replica", URL: "http://" + ng.Addr + "/", Host: host},
	}
	d := h.wrkDuration()
	res.Wrk = fmt.Sprintf("wrk -t2 -c32 -d%s --latency", d)
	res.Targets, err = h.measureTargets(ctx, targets, res.Rounds, d, wrkLoad)
	if err != nil {
		return nil, err
	}
	res.LatencyWrk = fmt.Sprintf("wrk -t1 -c1 -d%s --latency", d)
	res.Latency, err = h.measureTargets(ctx, targets[:3], res.Rounds, d, wrkOneAtATime)
	if err != nil {
		return nil, err
	}
	by := map[string]*TargetResult{}
	for _, t := range res.Targets {
		by[t.Name] = t
	}
	rps := func(n string) []float64 { return runsOf(by[n].Runs, func(w WrkResult) float64 { return w.RPS }) }
	p50 := func(n string) []float64 { return runsOf(by[n].Runs, func(w WrkResult) float64 { return w.P50 }) }
	p99 := func(n string) []float64 { return runsOf(by[n].Runs, func(w WrkResult) float64 { return w.P99 }) }
	res.EbbVsHAProxy = SpreadOf(Ratios(rps("ebb"), rps("haproxy")))
	res.EbbVsNginx = SpreadOf(Ratios(rps("ebb"), rps("nginx")))
	res.EbbVsDirect = SpreadOf(Ratios(rps("ebb"), rps("direct")))
	res.EbbP99OverHA = SpreadOf(Ratios(p99("ebb"), p99("haproxy")))
	res.SaturatedP50DiffUs = SpreadOf(micros(Diffs(p50("ebb"), p50("direct"))))
	lat := map[string]*TargetResult{}
	for _, t := range res.Latency {
		lat[t.Name] = t
	}
	latP50 := func(n string) []float64 { return runsOf(lat[n].Runs, func(w WrkResult) float64 { return w.P50 }) }
	res.AddedP50us = SpreadOf(micros(Diffs(latP50("ebb"), latP50("direct"))))
	res.HAAddedP50us = SpreadOf(micros(Diffs(latP50("haproxy"), latP50("direct"))))
	res.Plot = "dataplane.png"
	if err := plotTargets(filepath.Join(h.cfg.OutDir, res.Plot), "", res.Targets); err != nil {
		return res, fmt.Errorf("plot: %w", err)
	}
	return res, nil
}

// wrkShape is how many connections and threads a wrk run uses.
type wrkShape struct{ connections, threads int }

var (
	// wrkLoad is BENCHMARKS.md's -c32: enough to saturate any proxy here.
	wrkLoad = wrkShape{connections: 32, threads: 2}
	// wrkOneAtATime sends one request at a time, so latency is the path's
	// own and not queueing.
	wrkOneAtATime = wrkShape{connections: 1, threads: 1}
)

func micros(ms []float64) []float64 {
	out := make([]float64, len(ms))
	for i, v := range ms {
		out[i] = v * 1000
	}
	return out
}

// measureTargets runs wrk against every target in turn, rounds times (A B
// C D, A B C D, …), after a one-second warm-up of each.
func (h *Harness) measureTargets(ctx context.Context, targets []Target, rounds int, d time.Duration, shape wrkShape) ([]*TargetResult, error) {
	out := make([]*TargetResult, len(targets))
	for i, t := range targets {
		out[i] = &TargetResult{Target: t}
		if _, raw, err := RunWrk(ctx, WrkOptions{URL: t.URL, Host: t.Host, Connections: shape.connections, Threads: shape.threads, Duration: time.Second, Script: t.Script}); err != nil {
			return nil, fmt.Errorf("warm up %s: %w (%s)", t.Name, err, oneLine(raw, 300))
		}
	}
	for r := 0; r < rounds; r++ {
		for i, t := range targets {
			w, raw, err := RunWrk(ctx, WrkOptions{URL: t.URL, Host: t.Host, Connections: shape.connections, Threads: shape.threads, Duration: d, Script: t.Script})
			if err != nil {
				return nil, fmt.Errorf("%s round %d: %w (%s)", t.Name, r+1, err, oneLine(raw, 300))
			}
			h.log.Info("wrk", "target", t.Name, "connections", shape.connections, "round", r+1, "rps", int(w.RPS), "p50ms", w.P50, "p99ms", w.P99, "errors", w.Non2xx+w.SocketErrs)
			out[i].Runs = append(out[i].Runs, w)
		}
	}
	for _, t := range out {
		t.summarize()
	}
	return out, nil
}

func runsOf(runs []WrkResult, f func(WrkResult) float64) []float64 {
	out := make([]float64, len(runs))
	for i, r := range runs {
		out[i] = f(r)
	}
	return out
}

func plotTargets(path, suffix string, ts []*TargetResult) error {
	var rps, p99 []Bar
	for _, t := range ts {
		rps = append(rps, Bar{Name: t.Name, Median: t.RPS.Median, Min: t.RPS.Min, Max: t.RPS.Max})
		p99 = append(p99, Bar{Name: t.Name, Median: t.P99.Median, Min: t.P99.Min, Max: t.P99.Max})
	}
	return PlotBarPanels(path, []BarPanel{
		{Title: "req/s (wrk -c32), median and min–max" + suffix, Unit: "requests per second", Bars: rps},
		{Title: "p99 latency" + suffix, Unit: "ms", Bars: p99},
	})
}

// Rows implements Result.
func (r *DataPlaneResult) Rows() []Row {
	var rows []Row
	for _, t := range r.Targets {
		row := Row{Figure: "req/s and p99: " + t.Name, Value: t.RPS.Format("%.0f") + " req/s, p99 " + t.P99.Format("%.2f") + " ms",
			Method: r.Wrk + ", " + t.Method + "; " + fmt.Sprint(r.Rounds) + " rounds alternating with the other paths"}
		switch t.Name {
		case "ebb":
			row.Baseline = "HAProxy"
			row.Ratio = r.EbbVsHAProxy.Format("%.2f×") + " req/s"
		}
		rows = append(rows, row)
	}
	rows = append(rows,
		Row{Figure: "ebb req/s / direct", Ratio: r.EbbVsDirect.Format("%.2f×"), Method: "per round, ebb run / direct run"},
		Row{Figure: "ebb p99 / HAProxy p99", Ratio: r.EbbP99OverHA.Format("%.2f×"), Method: "per round, ebb run / HAProxy run"},
		Row{Figure: "ebb p50 − direct p50 at c32", Value: r.SaturatedP50DiffUs.Format("%.0f") + " µs", Method: "per round, under " + r.Wrk + ": queueing behind the slower path included"},
		Row{Figure: "ebb added p50 over direct, one request at a time", Value: r.AddedP50us.Format("%.0f") + " µs", Baseline: "HAProxy " + r.HAAddedP50us.Format("%.0f") + " µs",
			Method: "per round, " + r.LatencyWrk + ": ebb p50 − direct p50, alternating direct, ebb, HAProxy"},
	)
	return rows
}

// Goals implements Result.
func (r *DataPlaneResult) Goals() []Goal {
	errs := int64(0)
	for _, t := range append(slices.Clip(r.Targets), r.Latency...) {
		errs += t.Errs
	}
	return []Goal{
		{Source: "issue 4", Goal: "router req/s ≥ 1.0× HAProxy (1 thread)", Value: r.EbbVsHAProxy.Format("%.2f×"), Status: goalIf(r.EbbVsHAProxy.Median >= 1.0)},
		{Source: "issue 4", Goal: "router p99 no worse than HAProxy's", Value: r.EbbP99OverHA.Format("%.2f×"), Status: goalIf(r.EbbP99OverHA.Median <= 1.0)},
		{Source: "issue 4", Goal: "added p50 over direct ≤ 100 µs (one request at a time)", Value: r.AddedP50us.Format("%.0f") + " µs", Status: goalIf(r.AddedP50us.Median <= 100)},
		{Source: "BENCHMARKS", Goal: "no errors in any data-plane run", Value: fmt.Sprintf("%d non-2xx or socket errors", errs), Status: goalIf(errs == 0)},
	}
}

// Markdown implements Result.
func (r *DataPlaneResult) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Method: `%s` with `Host: dp.localhost`, %d rounds alternating direct, ebb, HAProxy, nginx (A B C D × %d) after a 1 s warm-up of each; "+
		"every path ends at the same backend: %s. Each proxy gets one core's worth of settings: ebbd runs with GOMAXPROCS=%d, HAProxy with nbthread 1, nginx with 1 worker. "+
		"Ratios are per round (ebb run i / peer run i): median (min–max).\n\n", r.Wrk, r.Rounds, r.Rounds, r.Backend, r.EbbdGOMAXPROCS)
	b.WriteString(targetTable(r.Targets))
	fmt.Fprintf(&b, "\nebb / HAProxy req/s %s; ebb / nginx %s; ebb / direct %s; ebb p99 / HAProxy p99 %s; ebb p50 − direct p50 at c32 %s µs.\n",
		r.EbbVsHAProxy.Format("%.2f×"), r.EbbVsNginx.Format("%.2f×"), r.EbbVsDirect.Format("%.2f×"), r.EbbP99OverHA.Format("%.2f×"), r.SaturatedP50DiffUs.Format("%.0f"))
	fmt.Fprintf(&b, "\nLatency of the hop itself: `%s`, one request at a time (nothing queues), %d rounds alternating direct, ebb, HAProxy. "+
		"ebb adds %s µs to direct's p50; HAProxy adds %s µs.\n\n", r.LatencyWrk, r.Rounds, r.AddedP50us.Format("%.0f"), r.HAAddedP50us.Format("%.0f"))
	b.WriteString(targetTable(r.Latency))
	fmt.Fprintf(&b, "\n![data plane](results/%s)\n", r.Plot)
	return b.String()
}

func targetTable(ts []*TargetResult) string {
	var b strings.Builder
	b.WriteString("| path | req/s | p50 ms | p99 ms | errors | raw req/s per run | raw p99 ms per run |\n|---|---|---|---|---|---|---|\n")
	for _, t := range ts {
		fmt.Fprintf(&b, "| %s (%s) | %s | %s | %s | %d | %s | %s |\n", t.Name, t.Method, t.RPS.Format("%.0f"), t.P50.Format("%.3f"), t.P99.Format("%.2f"), t.Errs,
			joinFloats(t.RPS.Runs, "%.0f"), joinFloats(t.P99.Runs, "%.2f"))
	}
	return b.String()
}

func joinFloats(xs []float64, verb string) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprintf(verb, x)
	}
	return strings.Join(s, ", ")
}
