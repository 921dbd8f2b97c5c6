package harness

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/ebbrun/ebb/api"
)

// The headers section: what header-match rules cost the router. One
// function, one warm replica; wrk's requests carry none of the matched
// headers, so with the rules on the router tries each of them and falls
// through to the split, the cost every request of a function with rules
// pays. Rounds alternate the split without rules and with five (ABBA, so
// a drift of the machine weighs on both), and the cost is per pair.
// Issue 15's goal is under 3%.

const headerRules = 5

// HeadersResult is the headers section.
type HeadersResult struct {
	Wrk    string        `json:"wrk"`
	Rounds int           `json:"rounds"`
	None   *TargetResult `json:"none"`
	Five   *TargetResult `json:"five"`
	// CostPct is 100 × (1 − five req/s / none req/s), per pair of runs.
	CostPct Spread `json:"costPercent"`
	Rules   string `json:"rules"`
}

func (h *Harness) headers(ctx context.Context) (Result, error) {
	e, err := h.StartEbbd(ctx, EbbdOptions{Name: "headers"})
	if err != nil {
		return nil, err
	}
	defer e.Stop()
	const fn = "hdr"
	if _, err := h.warmFunction(ctx, e, fn); err != nil {
		return nil, err
	}
	f, err := e.Client.GetFunction(ctx, fn)
	if err != nil {
		return nil, err
	}
	stable := f.LatestRevision
	// The revision the rules send to: a second one, which wrk never
	// reaches.
	spec := f.Spec
	spec.Env = map[string]string{"MATCHED": "1"}
	zero := 0
	spec.Scale.Min, spec.Scale.Initial = 0, &zero
	if f, _, err = e.Client.PutFunction(ctx, fn, spec); err != nil {
		return nil, err
	}
	matched := f.LatestRevision
	none := []api.TrafficTarget{{Revision: stable, Percent: 100}}
	five := append([]api.TrafficTarget{}, none...)
	var rules []string
	for i := 1; i <= headerRules; i++ {
		name := fmt.Sprintf("x-rule-%d", i)
		five = append(five, api.TrafficTarget{Revision: matched, Headers: map[string]string{name: "on"}})
		rules = append(rules, name+": on")
	}
	// Pairs of adjacent runs, many of them: the machine's noise between
	// runs is several times the 3% the goal allows.
	rounds := 8
	if h.cfg.Quick {
		rounds = 3
	}
	d := h.wrkDuration()
	res := &HeadersResult{
		Wrk: fmt.Sprintf("wrk -t%d -c%d -d%s --latency", wrkLoad.threads, wrkLoad.connections, d), Rounds: rounds,
		None:  &TargetResult{Target: Target{Name: "no rules", Method: "split " + stable + " 100%", URL: "http://" + e.HTTPAddr + "/", Host: fn + ".localhost"}},
		Five:  &TargetResult{Target: Target{Name: "5 rules", Method: fmt.Sprintf("the same split after %d header-match targets to %s", headerRules, matched), URL: "http://" + e.HTTPAddr + "/", Host: fn + ".localhost"}},
		Rules: strings.Join(rules, ", "),
	}
	// probe carries the last rule's header: it reaches matched only once
	// the router has the table with the rules.
	probe := map[string]string{fmt.Sprintf("x-rule-%d", headerRules): "on"}
	set := func(targets []api.TrafficTarget, want string) error {
		if _, err := e.Client.SetTraffic(ctx, fn, targets); err != nil {
			return err
		}
		return poll(ctx, time.Minute, 10*time.Millisecond, func() (bool, error) {
			t, body := getBodyWith(ctx, h.hc, e.HTTPAddr, fn+".localhost", "/", probe)
			return t.Err == nil && t.Status == 200 && strings.Contains(body, "revision="+want+"\n"), nil
		})
	}
	measure := func(t *TargetResult, targets []api.TrafficTarget, want string, warm bool) error {
		if err := set(targets, want); err != nil {
			return fmt.Errorf("%s: %w", t.Name, err)
		}
		return h.wrkInto(ctx, t, d, warm)
	}
	if err := abba(rounds,
		func(first bool) error { return measure(res.None, none, stable, first) },
		func(first bool) error { return measure(res.Five, five, matched, first) },
	); err != nil {
		return nil, err
	}
	res.None.summarize()
	res.Five.summarize()
	res.CostPct = costPct(res.Five, res.None)
	return res, nil
}

// Rows implements Result.
func (r *HeadersResult) Rows() []Row {
	return []Row{
		{Figure: "req/s, no header rules", Value: r.None.RPS.Format("%.0f") + " req/s, p99 " + r.None.P99.Format("%.2f") + " ms", Method: r.Wrk + ", one warm replica"},
		{Figure: "req/s, 5 header rules (none matching)", Value: r.Five.RPS.Format("%.0f") + " req/s, p99 " + r.Five.P99.Format("%.2f") + " ms",
			Baseline: "no rules", Ratio: fmt.Sprintf("cost %s%%", r.CostPct.Format("%.1f")), Method: fmt.Sprintf("%s; %d rounds ABBA with no rules", r.Wrk, r.Rounds)},
	}
}

// Goals implements Result.
func (r *HeadersResult) Goals() []Goal {
	errs := r.None.Errs + r.Five.Errs
	return []Goal{
		{Source: "issue 15", Goal: "5 header-match rules cost the router < 3% req/s", Value: r.CostPct.Format("%.1f") + "%", Status: goalIf(len(r.CostPct.Runs) > 0 && r.CostPct.Median < 3)},
		{Source: "BENCHMARKS", Goal: "no errors in the header runs", Value: fmt.Sprintf("%d non-2xx or socket errors", errs), Status: goalIf(errs == 0)},
	}
}

// Markdown implements Result.
func (r *HeadersResult) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Method: `%s` with `Host: hdr.localhost` at one warm replica of examples/hello, %d rounds alternating (ABBA) the split alone and the split after %d header-match targets (%s) "+
		"to another revision; wrk's requests carry none of those headers, so each request is checked against every rule and falls through to the split. "+
		"Before each run the harness waits until the router has the new table (a request with the last rule's header reaches the rules' revision, or not). "+
		"Cost per pair: 100 × (1 − rules req/s / no-rules req/s), median (min–max): **%s%%**.\n\n",
		r.Wrk, r.Rounds, headerRules, r.Rules, r.CostPct.Format("%.1f"))
	b.WriteString(targetTable([]*TargetResult{r.None, r.Five}))
	return b.String()
}
