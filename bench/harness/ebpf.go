package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// EBPFResult is section 7 of BENCHMARKS.md: ebbd with its eBPF programs on
// and off, in the same run.
type EBPFResult struct {
	Built      bool   `json:"built"`
	Reason     string `json:"reason,omitempty"`
	NodeReport string `json:"nodeReport"`
	Rounds     int    `json:"rounds"`
	Wrk        string `json:"wrk"`
	// The router with eBPF off and on, per body size.
	Small     []*TargetResult `json:"small"`
	Large     []*TargetResult `json:"large"`
	SmallGain Spread          `json:"smallRPSOnOverOff"`
	LargeGain Spread          `json:"largeRPSOnOverOff"`
	SmallP99  Spread          `json:"smallP99OnOverOff"`
	LargeP99  Spread          `json:"largeP99OnOverOff"`
	// HAProxy in front of the same replica, 10 B, in the same rounds (eBPF
	// off, on): on an ebb node with eBPF on, the replica's port is
	// redirected for every local client, HAProxy's hop to it included, so
	// these pairs compare the two proxies as a user would run them there.
	HAProxy      []*TargetResult `json:"haproxy"`
	OffOverHA    Spread          `json:"routerOffRPSOverHAProxyOff"`
	OnOverHA     Spread          `json:"routerOnRPSOverHAProxyOn"`
	OnOverHAP99  Spread          `json:"routerOnP99OverHAProxyOnP99"`
	OffOverHAP99 Spread          `json:"routerOffP99OverHAProxyOffP99"`
	// One caller on the node, one connection: via the router and via the
	// function's VIP, with eBPF on.
	Call      []*TargetResult `json:"call"`
	CallRatio Spread          `json:"callP50VIPOverRouter"`
	VIP       string          `json:"vip"`
	// Cold starts with eBPF on: first request to the VIP (wake-on-connect)
	// against first request through the router, alternating.
	ColdVIP      Dist     `json:"coldViaVIP"`
	ColdRouter   Dist     `json:"coldViaRouter"`
	ColdRatio    float64  `json:"coldP50VIPOverRouter"`
	ColdFailed   int      `json:"coldFailed"`
	ColdFailures []string `json:"coldFailures,omitempty"`
}

// echoScript makes wrk POST a 64 KiB body to /echo, which sends it back.
const echoScript = `wrk.method = "POST"
wrk.path = "/echo"
wrk.body = string.rep("x", 65536)
wrk.headers["Content-Type"] = "application/octet-stream"
`

func (h *Harness) ebpf(ctx context.Context) (Result, error) {
	// On/off pairs swing by ±30% from one fresh pair of ebbds to the next on
	// this shared 2-core machine (where each replica lands relative to the
	// router matters), so a full run takes five pairs for its median.
	res := &EBPFResult{Rounds: 5}
	if h.cfg.Quick {
		res.Rounds = 3
	}
	// Is it built? ebbd --ebpf on must start and its node must say "on".
	e, err := h.StartEbbd(ctx, EbbdOptions{Name: "ebpf-probe", EBPF: "on"})
	if err != nil {
		res.Reason = "ebbd --ebpf on did not start: " + oneLine(err.Error(), 300)
		return res, nil
	}
	state, err := e.nodeEBPF(ctx)
	e.Stop()
	if err != nil {
		return nil, err
	}
	res.NodeReport = state
	if !strings.HasPrefix(state, "on") {
		res.Reason = fmt.Sprintf("ebbd --ebpf on runs, but its node record reports ebpf=%q", state)
		return res, nil
	}
	res.Built = true
	script := filepath.Join(h.work, "echo64k.lua")
	if err := os.WriteFile(script, []byte(echoScript), 0o644); err != nil {
		return nil, err
	}
	d := h.wrkDuration()
	res.Wrk = fmt.Sprintf("wrk -t2 -c32 -d%s --latency", d)
	off := []*TargetResult{{Target: Target{Name: "router, eBPF off, 10 B"}}, {Target: Target{Name: "router, eBPF off, 64 KiB"}}, {Target: Target{Name: "HAProxy, eBPF off, 10 B"}}}
	on := []*TargetResult{{Target: Target{Name: "router, eBPF on, 10 B"}}, {Target: Target{Name: "router, eBPF on, 64 KiB"}}, {Target: Target{Name: "HAProxy, eBPF on, 10 B"}}}
	call := []*TargetResult{{Target: Target{Name: "call via router"}}, {Target: Target{Name: "call via VIP"}}}
	for r := 0; r < res.Rounds; r++ {
		for _, mode := range []string{"off", "on"} {
			dst := off
			if mode == "on" {
				dst = on
			}
			if err := h.ebpfRound(ctx, mode, script, d, dst, call, res); err != nil {
				return nil, err
			}
		}
	}
	for _, t := range append(append(append([]*TargetResult{}, off...), on...), call...) {
		t.summarize()
	}
	res.Small, res.Large = []*TargetResult{off[0], on[0]}, []*TargetResult{off[1], on[1]}
	res.Call = call
	res.HAProxy = []*TargetResult{off[2], on[2]}
	res.OffOverHA = SpreadOf(Ratios(off[0].RPS.Runs, off[2].RPS.Runs))
	res.OnOverHA = SpreadOf(Ratios(on[0].RPS.Runs, on[2].RPS.Runs))
	res.OffOverHAP99 = SpreadOf(Ratios(off[0].P99.Runs, off[2].P99.Runs))
	res.OnOverHAP99 = SpreadOf(Ratios(on[0].P99.Runs, on[2].P99.Runs))
	res.SmallGain = SpreadOf(Ratios(on[0].RPS.Runs, off[0].RPS.Runs))
	res.LargeGain = SpreadOf(Ratios(on[1].RPS.Runs, off[1].RPS.Runs))
	res.SmallP99 = SpreadOf(Ratios(on[0].P99.Runs, off[0].P99.Runs))
	res.LargeP99 = SpreadOf(Ratios(on[1].P99.Runs, off[1].P99.Runs))
	res.CallRatio = SpreadOf(Ratios(call[1].P50.Runs, call[0].P50.Runs))
	if err := h.ebpfCold(ctx, res); err != nil {
		return res, err
	}
	return res, nil
}

// ebpfRound starts an ebbd with eBPF mode, warms one replica and takes one
// run of each body size through the router and one through HAProxy in
// front of the same replica; with eBPF on it also measures one caller's
// request latency via the router and via the VIP.
func (h *Harness) ebpfRound(ctx context.Context, mode, script string, d time.Duration, dst, call []*TargetResult, res *EBPFResult) error {
	e, err := h.StartEbbd(ctx, EbbdOptions{Name: "ebpf-" + mode, EBPF: mode})
	if err != nil {
		return err
	}
	defer e.Stop()
	backend, err := h.warmFunction(ctx, e, "dp")
	if err != nil {
		return err
	}
	ha, err := h.StartHAProxy(ctx, backend)
	if err != nil {
		return err
	}
	defer ha.Stop()
	router := "http://" + e.HTTPAddr + "/"
	targets := []Target{
		{Name: dst[0].Name, Method: "wrk → router → replica, GET / (about 80 B)", URL: router, Host: "dp.localhost"},
		{Name: dst[1].Name, Method: "wrk → router → replica, POST /echo 64 KiB", URL: router, Host: "dp.localhost", Script: script},
		{Name: dst[2].Name, Method: "wrk → HAProxy 2.6 (nbthread 1) → the same replica, GET /", URL: "http://" + ha.Addr + "/", Host: "dp.localhost"},
	}
	got, err := h.measureTargets(ctx, targets, 1, d, wrkLoad)
	if err != nil {
		return err
	}
	for i := range dst {
		dst[i].Method = got[i].Method
		dst[i].Runs = append(dst[i].Runs, got[i].Runs...)
	}
	if mode != "on" {
		return nil
	}
	fn, err := e.Client.GetFunction(ctx, "dp")
	if err != nil {
		return err
	}
	if fn.VIP == "" {
		return fmt.Errorf("eBPF is on but function dp has no VIP in its status")
	}
	res.VIP = fn.VIP
	callTargets := []Target{
		{Name: call[0].Name, Method: "wrk -t1 -c1 → router → replica", URL: router, Host: "dp.localhost"},
		{Name: call[1].Name, Method: "wrk -t1 -c1 → VIP (connect4 to the replica) → replica", URL: "http://" + fn.VIP + "/", Host: "dp.localhost"},
	}
	for i, t := range callTargets {
		w, raw, err := RunWrk(ctx, WrkOptions{URL: t.URL, Host: t.Host, Connections: 1, Threads: 1, Duration: d})
		if err != nil {
			return fmt.Errorf("%s: %w (%s)", t.Name, err, oneLine(raw, 300))
		}
		h.log.Info("wrk", "target", t.Name, "rps", int(w.RPS), "p50ms", w.P50, "p99ms", w.P99)
		call[i].Method = t.Method
		call[i].Runs = append(call[i].Runs, w)
	}
	return nil
}

// ebpfCold alternates first requests to functions at zero through their
// VIP (the connect wakes the function and lands on the fallback listener)
// and through the router.
func (h *Harness) ebpfCold(ctx context.Context, res *EBPFResult) error {
	n := 10
	if !h.cfg.Quick {
		n = 25
	}
	e, err := h.StartEbbd(ctx, EbbdOptions{Name: "ebpf-cold", EBPF: "on"})
	if err != nil {
		return err
	}
	defer e.Stop()
	// An odd number of functions, so each takes both paths in turn.
	fns, err := h.deployCold(ctx, e, "vipcold", 5)
	if err != nil {
		return err
	}
	var viaVIP, viaRouter []time.Duration
	for i := 0; i < 2*n; i++ {
		name := fns[i%len(fns)]
		if _, err := e.WaitRevision(ctx, name, 60*time.Second, atZero(false)); err != nil {
			return err
		}
		_, _ = e.WaitRevision(ctx, name, 15*time.Second, atZero(true))
		addr := e.HTTPAddr
		if i%2 == 0 {
			fn, err := e.Client.GetFunction(ctx, name)
			if err != nil {
				return err
			}
			if fn.VIP == "" {
				return fmt.Errorf("function %s has no VIP", name)
			}
			addr = fn.VIP
		}
		t := FirstRequest(ctx, addr, name+".localhost", "/", 30*time.Second)
		if t.Err != nil || t.Status != 200 {
			res.ColdFailed++
			if len(res.ColdFailures) < 5 {
				res.ColdFailures = append(res.ColdFailures, fmt.Sprintf("%s via %s: status %d: %v %s", name, addr, t.Status, t.Err, strings.TrimSpace(t.Body)))
			}
			continue
		}
		if i%2 == 0 {
			viaVIP = append(viaVIP, t.FirstByte)
		} else {
			viaRouter = append(viaRouter, t.FirstByte)
		}
	}
	res.ColdVIP, res.ColdRouter = Summarize(viaVIP), Summarize(viaRouter)
	if res.ColdRouter.P50 > 0 {
		res.ColdRatio = res.ColdVIP.P50 / res.ColdRouter.P50
	}
	return nil
}

// summarize fills the spreads from the runs.
func (t *TargetResult) summarize() {
	t.RPS = SpreadOf(runsOf(t.Runs, func(w WrkResult) float64 { return w.RPS }))
	t.P50 = SpreadOf(runsOf(t.Runs, func(w WrkResult) float64 { return w.P50 }))
	t.P99 = SpreadOf(runsOf(t.Runs, func(w WrkResult) float64 { return w.P99 }))
	t.Errs = 0
	for _, w := range t.Runs {
		t.Errs += w.Non2xx + w.SocketErrs
	}
}

// nodeEBPF returns what the node record says about eBPF.
func (e *Ebbd) nodeEBPF(ctx context.Context) (string, error) {
	nodes, err := e.Client.ListNodes(ctx)
	if err != nil {
		return "", err
	}
	if len(nodes) == 0 {
		return "", fmt.Errorf("no node reported")
	}
	return nodes[0].EBPF, nil
}

// Rows implements Result.
func (r *EBPFResult) Rows() []Row {
	if !r.Built {
		return []Row{{Figure: "eBPF on vs off (data plane, function-to-function, wake-on-connect)", Value: "not built: " + oneLine(r.Reason, 160),
			Method: "ebbd --ebpf on, then the node record's ebpf field"}}
	}
	onOff := fmt.Sprintf("%s through the router, %d rounds alternating a fresh ebbd --ebpf off and --ebpf on; ratio per round", r.Wrk, r.Rounds)
	return []Row{
		{Figure: "router req/s, 10 B, eBPF on", Value: r.Small[1].RPS.Format("%.0f"), Baseline: "eBPF off " + r.Small[0].RPS.Format("%.0f"), Ratio: r.SmallGain.Format("%.2f×"), Method: onOff + "; GET /"},
		{Figure: "router req/s, 64 KiB, eBPF on", Value: r.Large[1].RPS.Format("%.0f"), Baseline: "eBPF off " + r.Large[0].RPS.Format("%.0f"), Ratio: r.LargeGain.Format("%.2f×"), Method: onOff + "; POST /echo 64 KiB"},
		{Figure: "router req/s / HAProxy's, 10 B, both eBPF on", Value: r.Small[1].RPS.Format("%.0f"), Baseline: "HAProxy " + r.HAProxy[1].RPS.Format("%.0f"), Ratio: r.OnOverHA.Format("%.2f×") + "; p99 " + r.OnOverHAP99.Format("%.2f×"),
			Method: onOff + "; HAProxy (nbthread 1) in front of the same replica in each ebbd's round, GET /"},
		{Figure: "router req/s / HAProxy's, 10 B, both eBPF off", Value: r.Small[0].RPS.Format("%.0f"), Baseline: "HAProxy " + r.HAProxy[0].RPS.Format("%.0f"), Ratio: r.OffOverHA.Format("%.2f×") + "; p99 " + r.OffOverHAP99.Format("%.2f×"),
			Method: onOff + "; HAProxy (nbthread 1) in front of the same replica in each ebbd's round, GET /"},
		{Figure: "one caller's p50 via VIP (eBPF on)", Value: r.Call[1].P50.Format("%.3f") + " ms", Baseline: "via router " + r.Call[0].P50.Format("%.3f") + " ms", Ratio: r.CallRatio.Format("%.2f×"),
			Method: "wrk -t1 -c1 to the function's VIP and to the router, same ebbd, per round"},
		{Figure: fmt.Sprintf("cold start via VIP wake-on-connect (n=%d)", r.ColdVIP.N), Value: distCell(r.ColdVIP), Baseline: "via router " + distCell(r.ColdRouter), Ratio: fmt.Sprintf("%.2f× (p50s)", r.ColdRatio),
			Method: "Go client TTFB, first requests alternating VIP and router, functions at zero with pre-created tasks"},
	}
}

// Goals implements Result.
func (r *EBPFResult) Goals() []Goal {
	if !r.Built {
		return []Goal{
			{Source: "issue 7", Goal: "eBPF: ≥ +15% router req/s at 10 B bodies", Value: "not built", Status: GoalNotBuilt},
			{Source: "issue 7", Goal: "eBPF: no regression at 64 KiB", Value: "not built", Status: GoalNotBuilt},
			{Source: "issue 7", Goal: "function-to-function via VIP p50 ≤ ½ via router", Value: "not built", Status: GoalNotBuilt},
		}
	}
	return []Goal{
		{Source: "issue 7", Goal: "eBPF: ≥ +15% router req/s at 10 B bodies", Value: r.SmallGain.Format("%.2f×"), Status: goalIf(r.SmallGain.Median >= 1.15)},
		{Source: "issue 7", Goal: "eBPF: no regression at 64 KiB", Value: r.LargeGain.Format("%.2f×"), Status: goalIf(r.LargeGain.Median >= 1.0)},
		{Source: "issue 7", Goal: "function-to-function via VIP p50 ≤ ½ via router", Value: r.CallRatio.Format("%.2f×"), Status: goalIf(r.CallRatio.Median > 0 && r.CallRatio.Median <= 0.5)},
		{Source: "issue 7", Goal: "cold starts via VIP all succeed", Value: fmt.Sprintf("%d failed", r.ColdFailed), Status: goalIf(r.ColdFailed == 0 && r.ColdVIP.N > 0)},
		{Source: "issue 4", Goal: "router req/s ≥ 1.0× HAProxy, as shipped (both in front of the replica, eBPF on)", Value: r.OnOverHA.Format("%.2f×"), Status: goalIf(r.OnOverHA.Median >= 1.0)},
		{Source: "issue 4", Goal: "router p99 no worse than HAProxy's, as shipped (eBPF on)", Value: r.OnOverHAP99.Format("%.2f×"), Status: goalIf(r.OnOverHAP99.Median > 0 && r.OnOverHAP99.Median <= 1.0)},
	}
}

// Markdown implements Result.
func (r *EBPFResult) Markdown() string {
	if !r.Built {
		return "Not built: " + r.Reason + ". The harness starts `ebbd --ebpf on` and reads `ebpf` from `GET /v1/nodes`; when it says \"on\" this section " +
			"alternates ebbd with `--ebpf off` and `--ebpf on` and measures the router, the VIP and wake-on-connect. " +
			"The loader-level figures are in the hand-written \"eBPF\" section below."
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Method: %d rounds, each a fresh ebbd with `--ebpf off` then one with `--ebpf on` (node reports %q), VIPs in %s, each with one warm replica of hello, "+
		"every ebbd with `--isolation on` (the default: the replica in its own network namespace on the ebbd's bridge, dialled at its own address; HAProxy dials the same address). "+
		"Data plane: `%s` through the router; 10 B is GET / (about 80 B of body), 64 KiB is POST /echo with a 64 KiB body echoed back; ratios per round, on / off. "+
		"Function-to-function: with eBPF on, `wrk -t1 -c1` (one caller, one keep-alive connection, as a function calling another) to the router and to the function's VIP %s; ratio per round, VIP p50 / router p50. "+
		"Cold start: with eBPF on, 5 functions at zero with pre-created tasks, first requests alternating between the VIP (connect4 wakes the function and sends the connection to the fallback listener) and the router; TTFB by the harness's Go client.\n\n",
		r.Rounds, r.NodeReport, harnessVIPPrefix, r.Wrk, r.VIP)
	b.WriteString(targetTable(append(append(append(append([]*TargetResult{}, r.Small...), r.HAProxy...), r.Large...), r.Call...)))
	fmt.Fprintf(&b, "\nreq/s on/off: 10 B %s, 64 KiB %s; p99 on/off: 10 B %s, 64 KiB %s; one caller's p50 VIP/router %s.\n",
		r.SmallGain.Format("%.2f×"), r.LargeGain.Format("%.2f×"), r.SmallP99.Format("%.2f×"), r.LargeP99.Format("%.2f×"), r.CallRatio.Format("%.2f×"))
	fmt.Fprintf(&b, "\nRouter / HAProxy in front of the same replica, 10 B, per round: eBPF on req/s %s, p99 %s; eBPF off req/s %s, p99 %s. "+
		"With eBPF on, the programs redirect every local connection to an allow-listed port: wrk → router and router → replica for ebb, "+
		"HAProxy → replica for HAProxy (its own listener is not ebb's to list). That is how the two compare on an ebb node as shipped (`--ebpf auto`); "+
		"the eBPF-off pair, and the data-plane section, compare the proxies alone.\n",
		r.OnOverHA.Format("%.2f×"), r.OnOverHAP99.Format("%.2f×"), r.OffOverHA.Format("%.2f×"), r.OffOverHAP99.Format("%.2f×"))
	b.WriteString("\n| cold start, eBPF on | n | p50 ms | p90 ms | p99 ms | min–max ms |\n|---|---|---|---|---|---|\n")
	for _, x := range []struct {
		name string
		d    Dist
	}{{"via VIP (wake-on-connect)", r.ColdVIP}, {"via router", r.ColdRouter}} {
		fmt.Fprintf(&b, "| %s | %d | %.2f | %.2f | %.2f | %.2f–%.2f |\n", x.name, x.d.N, x.d.P50, x.d.P90, x.d.P99, x.d.Min, x.d.Max)
	}
	fmt.Fprintf(&b, "\nVIP p50 / router p50: %.2f×; failed %d.\n", r.ColdRatio, r.ColdFailed)
	for _, f := range r.ColdFailures {
		fmt.Fprintf(&b, "- failure: %s\n", oneLine(f, 300))
	}
	return b.String()
}
