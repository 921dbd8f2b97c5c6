package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// EBPFResult is section 7 of BENCHMARKS.md: the data plane through the
// router with ebbd's eBPF programs on and off, in the same run.
type EBPFResult struct {
	Built  bool   `json:"built"`
	Reason string `json:"reason,omitempty"`
	Rounds int    `json:"rounds"`
	Wrk    string `json:"wrk"`
	// Per body size: the router with eBPF off and on.
	Small      []*TargetResult `json:"small"`
	Large      []*TargetResult `json:"large"`
	SmallGain  Spread          `json:"smallRPSOnOverOff"`
	LargeGain  Spread          `json:"largeRPSOnOverOff"`
	SmallP99   Spread          `json:"smallP99OnOverOff"`
	LargeP99   Spread          `json:"largeP99OnOverOff"`
	NodeReport string          `json:"nodeReport"`
}

// echoScript makes wrk POST a 64 KiB body to /echo, which sends it back.
const echoScript = `wrk.method = "POST"
wrk.path = "/echo"
wrk.body = string.rep("x", 65536)
wrk.headers["Content-Type"] = "application/octet-stream"
`

func (h *Harness) ebpf(ctx context.Context) (Result, error) {
	res := &EBPFResult{Rounds: 3}
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
		res.Reason = fmt.Sprintf("ebbd --ebpf on runs, but its node record reports ebpf=%q: the programs are not wired into ebbd yet", state)
		return res, nil
	}
	res.Built = true
	script := filepath.Join(h.work, "echo64k.lua")
	if err := os.WriteFile(script, []byte(echoScript), 0o644); err != nil {
		return nil, err
	}
	d := h.wrkDuration()
	res.Wrk = fmt.Sprintf("wrk -t2 -c32 -d%s --latency", d)
	off := [2]*TargetResult{{Target: Target{Name: "ebpf off, 10 B"}}, {Target: Target{Name: "ebpf off, 64 KiB"}}}
	on := [2]*TargetResult{{Target: Target{Name: "ebpf on, 10 B"}}, {Target: Target{Name: "ebpf on, 64 KiB"}}}
	for r := 0; r < res.Rounds; r++ {
		for _, mode := range []string{"off", "on"} {
			got, err := h.ebpfRound(ctx, mode, script, d)
			if err != nil {
				return nil, err
			}
			dst := off
			if mode == "on" {
				dst = on
			}
			for i := range dst {
				dst[i].Method = got[i].Method
				dst[i].Runs = append(dst[i].Runs, got[i].Runs...)
			}
		}
	}
	for _, t := range append(off[:], on[:]...) {
		t.RPS = SpreadOf(runsOf(t.Runs, func(w WrkResult) float64 { return w.RPS }))
		t.P50 = SpreadOf(runsOf(t.Runs, func(w WrkResult) float64 { return w.P50 }))
		t.P99 = SpreadOf(runsOf(t.Runs, func(w WrkResult) float64 { return w.P99 }))
		for _, w := range t.Runs {
			t.Errs += w.Non2xx + w.SocketErrs
		}
	}
	res.Small, res.Large = []*TargetResult{off[0], on[0]}, []*TargetResult{off[1], on[1]}
	res.SmallGain = SpreadOf(Ratios(on[0].RPS.Runs, off[0].RPS.Runs))
	res.LargeGain = SpreadOf(Ratios(on[1].RPS.Runs, off[1].RPS.Runs))
	res.SmallP99 = SpreadOf(Ratios(on[0].P99.Runs, off[0].P99.Runs))
	res.LargeP99 = SpreadOf(Ratios(on[1].P99.Runs, off[1].P99.Runs))
	return res, nil
}

// ebpfRound starts an ebbd with eBPF mode, warms one replica and measures
// the router with small and 64 KiB bodies, one run each.
func (h *Harness) ebpfRound(ctx context.Context, mode, script string, d time.Duration) ([]*TargetResult, error) {
	e, err := h.StartEbbd(ctx, EbbdOptions{Name: "ebpf-" + mode, EBPF: mode})
	if err != nil {
		return nil, err
	}
	defer e.Stop()
	if _, err := h.warmFunction(ctx, e, "dp"); err != nil {
		return nil, err
	}
	targets := []Target{
		{Name: "ebpf " + mode + ", 10 B", Method: "wrk → router → replica, GET / (about 80 B)", URL: "http://" + e.HTTPAddr + "/", Host: "dp.localhost"},
		{Name: "ebpf " + mode + ", 64 KiB", Method: "wrk → router → replica, POST /echo 64 KiB", URL: "http://" + e.HTTPAddr + "/", Host: "dp.localhost", Script: script},
	}
	return h.measureTargets(ctx, targets, 1, d)
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
		return []Row{{Figure: "eBPF on vs off (data plane, function-to-function, wake-on-connect)", Value: "not built: " + oneLine(r.Reason, 160)}}
	}
	return []Row{
		{Figure: "router req/s, 10 B, eBPF on", Value: r.Small[1].RPS.Format("%.0f"), Baseline: "eBPF off " + r.Small[0].RPS.Format("%.0f"), Ratio: r.SmallGain.Format("%.2f×")},
		{Figure: "router req/s, 64 KiB, eBPF on", Value: r.Large[1].RPS.Format("%.0f"), Baseline: "eBPF off " + r.Large[0].RPS.Format("%.0f"), Ratio: r.LargeGain.Format("%.2f×")},
		{Figure: "function-to-function via VIP vs via router", Value: "not measured by the harness yet"},
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
		{Source: "issue 7", Goal: "function-to-function via VIP p50 ≤ ½ via router", Value: "not measured by the harness yet", Status: GoalNotMeasured},
	}
}

// Markdown implements Result.
func (r *EBPFResult) Markdown() string {
	if !r.Built {
		return "Not built: " + r.Reason + ". The harness starts `ebbd --ebpf on` and reads `ebpf` from `GET /v1/nodes`; when it says \"on\" this section " +
			"alternates ebbd with `--ebpf off` and `--ebpf on` (3 rounds, one fresh ebbd each) and measures the router with wrk at 10 B and 64 KiB bodies. " +
			"The loader-level figures are in the hand-written \"eBPF\" section below."
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Method: `%s` through the router, %d rounds alternating a fresh ebbd with `--ebpf off` and one with `--ebpf on` (node reports %q), each with one warm replica; "+
		"10 B is GET / (about 80 B of body), 64 KiB is POST /echo with a 64 KiB body echoed back. Ratios are per round, on / off.\n\n", r.Wrk, r.Rounds, r.NodeReport)
	b.WriteString(targetTable(append(append([]*TargetResult{}, r.Small...), r.Large...)))
	fmt.Fprintf(&b, "\nreq/s on/off: 10 B %s, 64 KiB %s; p99 on/off: 10 B %s, 64 KiB %s.\n",
		r.SmallGain.Format("%.2f×"), r.LargeGain.Format("%.2f×"), r.SmallP99.Format("%.2f×"), r.LargeP99.Format("%.2f×"))
	return b.String()
}
