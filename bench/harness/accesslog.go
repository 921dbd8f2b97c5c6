package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The accesslog section: what the access log costs the router. Two ebbds
// run side by side, one without an access log and one writing every line
// to a rotated file in its data dir (and keeping each function's recent
// lines in memory for `ebb logs --access`), each with one warm replica of
// examples/hello. Rounds alternate wrk between them (ABBA, so a drift of
// the machine weighs on both), and the cost is per pair. Issue 19's goal is
// under 5%.

// AccessLogResult is the accesslog section.
type AccessLogResult struct {
	Wrk    string        `json:"wrk"`
	Rounds int           `json:"rounds"`
	Off    *TargetResult `json:"off"`
	On     *TargetResult `json:"on"`
	// CostPct is 100 × (1 − on req/s / off req/s), per pair of runs.
	CostPct Spread `json:"costPercent"`
	// Lines is how many lines the logging ebbd's file held at the end.
	Lines int `json:"lines"`
}

func (h *Harness) accessLog(ctx context.Context) (Result, error) {
	const fn = "acc"
	off, err := h.StartEbbd(ctx, EbbdOptions{Name: "accesslog-off"})
	if err != nil {
		return nil, err
	}
	defer off.Stop()
	logFile := filepath.Join(h.work, "access.log")
	on, err := h.StartEbbd(ctx, EbbdOptions{Name: "accesslog-on", Args: []string{"--access-log", logFile}})
	if err != nil {
		return nil, err
	}
	defer on.Stop()
	for _, e := range []*Ebbd{off, on} {
		if _, err := h.warmFunction(ctx, e, fn); err != nil {
			return nil, err
		}
	}
	rounds := 8
	if h.cfg.Quick {
		rounds = 3
	}
	d := h.wrkDuration()
	res := &AccessLogResult{
		Wrk:    fmt.Sprintf("wrk -t%d -c%d -d%s --latency", wrkLoad.threads, wrkLoad.connections, d),
		Rounds: rounds,
		Off:    &TargetResult{Target: Target{Name: "access log off", Method: "ebbd without --access-log", URL: "http://" + off.HTTPAddr + "/", Host: fn + ".localhost"}},
		On:     &TargetResult{Target: Target{Name: "access log on", Method: "ebbd --access-log FILE (every line, rotated file)", URL: "http://" + on.HTTPAddr + "/", Host: fn + ".localhost"}},
	}
	if err := abba(rounds,
		func(first bool) error { return h.wrkInto(ctx, res.Off, d, first) },
		func(first bool) error { return h.wrkInto(ctx, res.On, d, first) },
	); err != nil {
		return nil, err
	}
	res.Off.summarize()
	res.On.summarize()
	res.CostPct = costPct(res.On, res.Off)
	// The logging ebbd flushes its buffer within 200ms; the file then
	// holds a line per request (rotated files aside).
	if err := poll(ctx, 5*time.Second, 50*time.Millisecond, func() (bool, error) {
		b, err := os.ReadFile(logFile)
		res.Lines = strings.Count(string(b), "\n")
		return err == nil && res.Lines > 0, nil
	}); err != nil {
		return nil, fmt.Errorf("the logging ebbd wrote no access lines to %s: %w", logFile, err)
	}
	return res, nil
}

// Rows implements Result.
func (r *AccessLogResult) Rows() []Row {
	return []Row{
		{Figure: "req/s, access log off", Value: r.Off.RPS.Format("%.0f") + " req/s, p99 " + r.Off.P99.Format("%.2f") + " ms", Method: r.Wrk + ", one warm replica"},
		{Figure: "req/s, access log on (file)", Value: r.On.RPS.Format("%.0f") + " req/s, p99 " + r.On.P99.Format("%.2f") + " ms",
			Baseline: "access log off", Ratio: fmt.Sprintf("cost %s%%", r.CostPct.Format("%.1f")), Method: fmt.Sprintf("%s; %d rounds ABBA against the ebbd without", r.Wrk, r.Rounds)},
	}
}

// Goals implements Result.
func (r *AccessLogResult) Goals() []Goal {
	errs := r.Off.Errs + r.On.Errs
	return []Goal{
		{Source: "issue 19", Goal: "the access log costs the router < 5% req/s", Value: r.CostPct.Format("%.1f") + "%", Status: goalIf(len(r.CostPct.Runs) > 0 && r.CostPct.Median < 5)},
		{Source: "BENCHMARKS", Goal: "no errors in the access log runs", Value: fmt.Sprintf("%d non-2xx or socket errors", errs), Status: goalIf(errs == 0)},
	}
}

// Markdown implements Result.
func (r *AccessLogResult) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Method: `%s` with `Host: acc.localhost` at one warm replica of examples/hello on each of two ebbds running side by side, "+
		"one without an access log and one with `--access-log FILE` (every request a JSON line in a rotated file, and in the function's in-memory ring); "+
		"%d rounds alternating (ABBA) between them. The logging ebbd's file held %d lines at the end. "+
		"Cost per pair: 100 × (1 − on req/s / off req/s), median (min–max): **%s%%**.\n\n",
		r.Wrk, r.Rounds, r.Lines, r.CostPct.Format("%.1f"))
	b.WriteString(targetTable([]*TargetResult{r.Off, r.On}))
	return b.String()
}
