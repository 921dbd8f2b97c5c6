package harness

import (
	"context"
	"fmt"
	"time"
)

// wrkInto runs wrk against t's target for d, after a second of warm-up
// when warm, and adds the run to t.
func (h *Harness) wrkInto(ctx context.Context, t *TargetResult, d time.Duration, warm bool) error {
	if warm {
		if _, raw, err := RunWrk(ctx, WrkOptions{URL: t.URL, Host: t.Host, Connections: wrkLoad.connections, Threads: wrkLoad.threads, Duration: time.Second}); err != nil {
			return fmt.Errorf("warm up %s: %w (%s)", t.Name, err, oneLine(raw, 300))
		}
	}
	w, raw, err := RunWrk(ctx, WrkOptions{URL: t.URL, Host: t.Host, Connections: wrkLoad.connections, Threads: wrkLoad.threads, Duration: d})
	if err != nil {
		return fmt.Errorf("%s: %w (%s)", t.Name, err, oneLine(raw, 300))
	}
	h.log.Info("wrk", "target", t.Name, "rps", int(w.RPS), "p50ms", w.P50, "p99ms", w.P99, "errors", w.Non2xx+w.SocketErrs)
	t.Runs = append(t.Runs, w)
	return nil
}

// abba runs a and b rounds times, alternating which goes first (ABBA), so
// that a drift of the machine weighs on both; first says the round is the
// first.
func abba(rounds int, a, b func(first bool) error) error {
	for r := 0; r < rounds; r++ {
		x, y := a, b
		if r%2 == 1 {
			x, y = b, a
		}
		if err := x(r == 0); err != nil {
			return err
		}
		if err := y(r == 0); err != nil {
			return err
		}
	}
	return nil
}

// costPct is, per pair of runs, 100 × (1 − with req/s / base req/s).
func costPct(with, base *TargetResult) Spread {
	var cost []float64
	for _, ratio := range Ratios(runsOf(with.Runs, func(w WrkResult) float64 { return w.RPS }), runsOf(base.Runs, func(w WrkResult) float64 { return w.RPS })) {
		cost = append(cost, 100*(1-ratio))
	}
	return SpreadOf(cost)
}
