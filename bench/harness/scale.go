package harness

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ebbrun/ebb/api"
)

// GoBench is one line of `go test -bench` output.
type GoBench struct {
	Name        string  `json:"name"`
	NsPerOp     float64 `json:"nsPerOp"`
	BytesPerOp  float64 `json:"bytesPerOp"`
	AllocsPerOp float64 `json:"allocsPerOp"`
}

// ScaleResult is section 6 of BENCHMARKS.md.
type ScaleResult struct {
	Functions      int       `json:"functions"`
	Workers        int       `json:"workers"`
	Created        int       `json:"created"`
	Failed         int       `json:"failed"`
	FailedWhy      []string  `json:"failedWhy,omitempty"`
	CreateSeconds  float64   `json:"createSeconds"`
	CreatePerSec   float64   `json:"createPerSecond"`
	CreateLatency  Dist      `json:"createLatency"`
	RoutesSeconds  float64   `json:"routesConvergedSeconds"` // after the last create; -1 if not
	Routes         float64   `json:"routes"`
	RSSBeforeMiB   float64   `json:"ebbdRSSBeforeMiB"`
	RSSAfterMiB    float64   `json:"ebbdRSSAfterMiB"`
	PeakRSSMiB     float64   `json:"ebbdPeakRSSMiB"`
	PerFunctionKiB float64   `json:"rssPerFunctionKiB"`
	ColdProbe      string    `json:"coldProbe"`
	GoBench        []GoBench `json:"routerLookupBench"`
	GoBenchCmd     string    `json:"routerLookupBenchCommand"`
	GoBenchErr     string    `json:"routerLookupBenchError,omitempty"`
}

func (h *Harness) scale(ctx context.Context) (Result, error) {
	res := &ScaleResult{Functions: 10000, Workers: 16, RoutesSeconds: -1}
	e, err := h.StartEbbd(ctx, EbbdOptions{Name: "scale"})
	if err != nil {
		return nil, err
	}
	defer e.Stop()
	ref, err := e.PushHello(ctx)
	if err != nil {
		return nil, err
	}
	rss, _, err := e.RSS()
	if err != nil {
		return nil, err
	}
	res.RSSBeforeMiB = float64(rss) / (1 << 20)
	zero := 0
	spec := api.FunctionSpec{Image: ref, Scale: api.Scale{Initial: &zero}}
	var (
		next atomic.Int64
		mu   sync.Mutex
		lat  []time.Duration
		wg   sync.WaitGroup
	)
	began := time.Now()
	for w := 0; w < res.Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= res.Functions {
					return
				}
				t0 := time.Now()
				_, _, err := e.Client.PutFunction(ctx, fmt.Sprintf("f%05d", i), spec)
				d := time.Since(t0)
				mu.Lock()
				if err != nil {
					res.Failed++
					if len(res.FailedWhy) < 5 {
						res.FailedWhy = append(res.FailedWhy, err.Error())
					}
				} else {
					res.Created++
					lat = append(lat, d)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res.CreateSeconds = time.Since(began).Seconds()
	res.CreatePerSec = float64(res.Created) / res.CreateSeconds
	res.CreateLatency = Summarize(lat)
	h.log.Info("scale: created", "functions", res.Created, "failed", res.Failed, "per_second", int(res.CreatePerSec))

	// The router builds its table from the store watch; count the hosts.
	done := time.Now()
	if err := poll(ctx, 2*time.Minute, 100*time.Millisecond, func() (bool, error) {
		m, err := e.Metrics(ctx)
		if err != nil {
			return false, nil
		}
		res.Routes = m.Get("ebb_router_routes")
		return res.Routes >= float64(res.Created), nil
	}); err == nil {
		res.RoutesSeconds = time.Since(done).Seconds()
	}
	rss, hwm, err := e.RSS()
	if err != nil {
		return nil, err
	}
	res.RSSAfterMiB, res.PeakRSSMiB = float64(rss)/(1<<20), float64(hwm)/(1<<20)
	if res.Created > 0 {
		res.PerFunctionKiB = (res.RSSAfterMiB - res.RSSBeforeMiB) * 1024 / float64(res.Created)
	}
	// One of them still starts from zero with 10,000 others around.
	probe := fmt.Sprintf("f%05d", res.Functions/2)
	t := FirstRequest(ctx, e.HTTPAddr, probe+".localhost", "/", time.Minute)
	if t.Err != nil {
		res.ColdProbe = fmt.Sprintf("%s: %v", probe, t.Err)
	} else {
		res.ColdProbe = fmt.Sprintf("%s from zero: status %d, TTFB %.1f ms", probe, t.Status, ms(t.FirstByte))
	}
	res.GoBench, res.GoBenchCmd, err = h.routerLookupBench(ctx)
	if err != nil {
		res.GoBenchErr = err.Error()
	}
	return res, nil
}

var benchLine = regexp.MustCompile(`^(Benchmark\S+)\s+\d+\s+([\d.]+) ns/op(?:\s+([\d.]+) B/op)?(?:\s+([\d.]+) allocs/op)?`)

// routerLookupBench runs the router's route-lookup Go benchmark (a table of
// 10,000 functions) and parses its lines.
func (h *Harness) routerLookupBench(ctx context.Context) ([]GoBench, string, error) {
	args := []string{"test", "-run", "^$", "-bench", "^BenchmarkRouteLookup$", "-benchmem", "-count", "3", "./router/"}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = h.cfg.RepoDir
	out, err := cmd.CombinedOutput()
	command := "go " + strings.Join(args, " ")
	if err != nil {
		return nil, command, fmt.Errorf("%s: %w: %s", command, err, oneLine(string(out), 300))
	}
	return ParseGoBench(string(out)), command, nil
}

// ParseGoBench reads the result lines of `go test -bench -benchmem`.
func ParseGoBench(out string) []GoBench {
	var bs []GoBench
	for _, line := range strings.Split(out, "\n") {
		m := benchLine.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		b := GoBench{Name: m[1]}
		b.NsPerOp, _ = strconv.ParseFloat(m[2], 64)
		if m[3] != "" {
			b.BytesPerOp, _ = strconv.ParseFloat(m[3], 64)
		}
		if m[4] != "" {
			b.AllocsPerOp, _ = strconv.ParseFloat(m[4], 64)
		}
		bs = append(bs, b)
	}
	return bs
}

// lookupSpread groups the benchmark's runs by name.
func (r *ScaleResult) lookupSpread() ([]string, map[string]Spread, map[string]float64) {
	var names []string
	ns := map[string][]float64{}
	allocs := map[string]float64{}
	for _, b := range r.GoBench {
		if _, ok := ns[b.Name]; !ok {
			names = append(names, b.Name)
		}
		ns[b.Name] = append(ns[b.Name], b.NsPerOp)
		allocs[b.Name] = max(allocs[b.Name], b.AllocsPerOp)
	}
	out := map[string]Spread{}
	for n, v := range ns {
		out[n] = SpreadOf(v)
	}
	return names, out, allocs
}

// Rows implements Result.
func (r *ScaleResult) Rows() []Row {
	rows := []Row{
		{Figure: fmt.Sprintf("create %d functions at zero via the API (%d clients)", r.Functions, r.Workers),
			Value:  fmt.Sprintf("%.0f/s (%d ok, %d failed, %.1f s; PUT p50 %.1f ms, p99 %.1f)", r.CreatePerSec, r.Created, r.Failed, r.CreateSeconds, r.CreateLatency.P50, r.CreateLatency.P99),
			Method: "typed API client, PUT /v1/functions with initial scale 0, functions / wall time"},
		{Figure: "ebbd RSS with them", Value: fmt.Sprintf("%.0f MiB (from %.0f; %.1f KiB per function; peak %.0f MiB)", r.RSSAfterMiB, r.RSSBeforeMiB, r.PerFunctionKiB, r.PeakRSSMiB),
			Method: "VmRSS before and after, VmHWM for the peak"},
		{Figure: "router routes converged after the last create", Value: secs(r.RoutesSeconds), Method: "polls the ebb_router_routes gauge"},
	}
	names, sp, allocs := r.lookupSpread()
	for _, n := range names {
		rows = append(rows, Row{Figure: "router " + n + " (10,000 routes)", Value: fmt.Sprintf("%s ns/op, %.0f allocs/op", sp[n].Format("%.1f"), allocs[n]), Method: r.GoBenchCmd})
	}
	return rows
}

// Goals implements Result.
func (r *ScaleResult) Goals() []Goal {
	gs := []Goal{
		{Source: "BENCHMARKS", Goal: fmt.Sprintf("%d functions deploy at zero", r.Functions), Value: fmt.Sprintf("%d created, %d failed", r.Created, r.Failed), Status: goalIf(r.Created == r.Functions)},
		{Source: "BENCHMARKS", Goal: "the router serves every one of them", Value: fmt.Sprintf("%.0f routes; %s", r.Routes, r.ColdProbe), Status: goalIf(r.RoutesSeconds >= 0 && strings.Contains(r.ColdProbe, "status 200"))},
	}
	_, _, allocs := r.lookupSpread()
	if len(allocs) > 0 {
		var worst float64
		for _, a := range allocs {
			worst = max(worst, a)
		}
		gs = append(gs, Goal{Source: "CONVENTIONS", Goal: "route lookup allocates nothing", Value: fmt.Sprintf("%.0f allocs/op", worst), Status: goalIf(worst == 0)})
	}
	return gs
}

// Markdown implements Result.
func (r *ScaleResult) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Method: %d clients PUT %d functions (hello image, initial scale 0) through the typed API client as fast as the API answers; the rate is functions / wall time. "+
		"ebbd's RSS is VmRSS before and after (VmHWM for the peak); route convergence polls the router's `ebb_router_routes` gauge; then one function is called from zero. "+
		"The route lookup cost is the router's own Go benchmark (`%s`, a 10,000-function table).\n\n", r.Workers, r.Functions, r.GoBenchCmd)
	b.WriteString("| figure | value |\n|---|---|\n")
	fmt.Fprintf(&b, "| created / failed | %d / %d |\n", r.Created, r.Failed)
	fmt.Fprintf(&b, "| create rate | %.0f functions/s over %.1f s |\n", r.CreatePerSec, r.CreateSeconds)
	fmt.Fprintf(&b, "| PUT latency | p50 %.1f ms, p90 %.1f, p99 %.1f, max %.1f |\n", r.CreateLatency.P50, r.CreateLatency.P90, r.CreateLatency.P99, r.CreateLatency.Max)
	fmt.Fprintf(&b, "| ebbd RSS before → after | %.1f → %.1f MiB (%.1f KiB per function), peak %.1f MiB |\n", r.RSSBeforeMiB, r.RSSAfterMiB, r.PerFunctionKiB, r.PeakRSSMiB)
	fmt.Fprintf(&b, "| routes in the router's table | %.0f, converged %s after the last create |\n", r.Routes, secs(r.RoutesSeconds))
	fmt.Fprintf(&b, "| a function called from zero among them | %s |\n", r.ColdProbe)
	names, sp, allocs := r.lookupSpread()
	for _, n := range names {
		fmt.Fprintf(&b, "| %s | %s ns/op, %.0f allocs/op (3 runs) |\n", n, sp[n].Format("%.1f"), allocs[n])
	}
	if r.GoBenchErr != "" {
		fmt.Fprintf(&b, "\nRoute lookup benchmark failed: %s\n", oneLine(r.GoBenchErr, 300))
	}
	for _, w := range r.FailedWhy {
		fmt.Fprintf(&b, "\n- failure: %s", oneLine(w, 200))
	}
	return b.String()
}
