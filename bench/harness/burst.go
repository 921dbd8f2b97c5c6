package harness

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// BurstRun is one burst of concurrent first requests to a function at zero.
type BurstRun struct {
	N            int         `json:"n"`
	OK           int         `json:"ok"`
	Failed       int         `json:"failed"`
	Statuses     map[int]int `json:"statuses"`
	Errors       []string    `json:"errors,omitempty"`
	TimeToLastMs float64     `json:"timeToLastResponseMs"`
	FirstByte    Dist        `json:"firstByte"`
	RSSBeforeMiB float64     `json:"ebbdRSSBeforeMiB"`
	PeakRSSMiB   float64     `json:"ebbdPeakRSSMiB"`
	PerRequestKB float64     `json:"ebbdPeakBytesPerRequestKiB"`
	ReadyAfter   int         `json:"readyReplicasAfter"`
}

// BurstResult is section 3 of BENCHMARKS.md.
type BurstResult struct {
	Spec   string     `json:"spec"`
	Bursts []BurstRun `json:"bursts"`
}

func (h *Harness) burst(ctx context.Context) (Result, error) {
	res := &BurstResult{}
	e, err := h.StartEbbd(ctx, EbbdOptions{Name: "burst"})
	if err != nil {
		return nil, err
	}
	defer e.Stop()
	ref, err := e.PushHello(ctx)
	if err != nil {
		return nil, err
	}
	spec := coldSpec(ref)
	spec.Scale.Max = 2
	res.Spec = "hello, concurrency target 100 (default), no hard limit, max 2 replicas, stable window 6s, grace 1s, called once before so it has a pre-created task"
	if _, err := e.Deploy(ctx, "burst", spec, 2*time.Minute); err != nil {
		return nil, err
	}
	if t := FirstRequest(ctx, e.HTTPAddr, "burst.localhost", "/", time.Minute); t.Err != nil || t.Status != 200 {
		return nil, fmt.Errorf("first call: status %d: %v %s", t.Status, t.Err, strings.TrimSpace(t.Body))
	}
	for _, n := range []int{1000, 10000} {
		if _, err := e.WaitRevision(ctx, "burst", 90*time.Second, atZero(false)); err != nil {
			return nil, err
		}
		_, _ = e.WaitRevision(ctx, "burst", 15*time.Second, atZero(true))
		run, err := h.burstOnce(ctx, e, n)
		if err != nil {
			return nil, err
		}
		if fn, err := e.Client.GetFunction(ctx, "burst"); err == nil {
			if r, ok := latest(fn); ok {
				run.ReadyAfter = r.Ready
			}
		}
		h.log.Info("burst", "n", n, "ok", run.OK, "failed", run.Failed, "last_ms", int(run.TimeToLastMs), "peak_rss_mib", int(run.PeakRSSMiB))
		res.Bursts = append(res.Bursts, run)
	}
	return res, nil
}

// burstOnce releases n requests at once, each on its own connection, and
// waits for all of them.
func (h *Harness) burstOnce(ctx context.Context, e *Ebbd, n int) (BurstRun, error) {
	run := BurstRun{N: n, Statuses: map[int]int{}}
	if err := resetPeakRSS(e.PID()); err != nil {
		return run, fmt.Errorf("reset ebbd peak RSS: %w", err)
	}
	rss, _, err := e.RSS()
	if err != nil {
		return run, err
	}
	run.RSSBeforeMiB = float64(rss) / (1 << 20)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		ttfb  []time.Duration
		last  time.Duration
		gate  = make(chan struct{})
		ready sync.WaitGroup
	)
	ready.Add(n)
	var start time.Time
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ready.Done()
			<-gate
			t := FirstRequest(ctx, e.HTTPAddr, "burst.localhost", "/", 2*time.Minute)
			end := time.Since(start)
			mu.Lock()
			defer mu.Unlock()
			last = max(last, end)
			switch {
			case t.Err != nil:
				run.Failed++
				if len(run.Errors) < 5 {
					run.Errors = append(run.Errors, t.Err.Error())
				}
			case t.Status != 200:
				run.Failed++
				run.Statuses[t.Status]++
				if len(run.Errors) < 5 {
					run.Errors = append(run.Errors, fmt.Sprintf("status %d: %s", t.Status, strings.TrimSpace(t.Body)))
				}
			default:
				run.OK++
				run.Statuses[t.Status]++
				ttfb = append(ttfb, t.FirstByte)
			}
		}()
	}
	ready.Wait()
	start = time.Now()
	close(gate)
	wg.Wait()
	_, hwm, err := e.RSS()
	if err != nil {
		return run, err
	}
	run.TimeToLastMs = ms(last)
	run.FirstByte = Summarize(ttfb)
	run.PeakRSSMiB = float64(hwm) / (1 << 20)
	run.PerRequestKB = float64(hwm-rss) / 1024 / float64(n)
	return run, nil
}

// Rows implements Result.
func (r *BurstResult) Rows() []Row {
	var rows []Row
	for _, b := range r.Bursts {
		rows = append(rows, Row{
			Figure: fmt.Sprintf("%d concurrent to a function at zero", b.N),
			Value: fmt.Sprintf("%d/%d ok, last response %.0f ms, ebbd peak RSS %.0f MiB (+%.1f KiB/request)",
				b.OK, b.N, b.TimeToLastMs, b.PeakRSSMiB, b.PerRequestKB),
			Method: "Go client: N goroutines released at once, one fresh connection each, to a function at zero; ebbd VmHWM reset just before",
		})
	}
	return rows
}

// Goals implements Result.
func (r *BurstResult) Goals() []Goal {
	var gs []Goal
	for _, b := range r.Bursts {
		gs = append(gs, Goal{Source: "BENCHMARKS", Goal: fmt.Sprintf("all %d burst requests succeed", b.N),
			Value: fmt.Sprintf("%d ok, %d failed", b.OK, b.Failed), Status: goalIf(b.Failed == 0 && b.OK == b.N)})
	}
	return gs
}

// Markdown implements Result.
func (r *BurstResult) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Method: the harness's Go client opens N connections at once (all goroutines released by one channel close) to a function at zero (%s); "+
		"time to last response is from the release to the last body read; ebbd's peak RSS is VmHWM from /proc/<pid>/status, reset (clear_refs 5) just before each burst; "+
		"per-request memory is (peak − RSS before) / N.\n\n", r.Spec)
	b.WriteString("| burst | ok | failed | time to last response | TTFB p50 / p99 | ebbd RSS before | ebbd peak RSS | peak bytes per request | ready replicas after |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, x := range r.Bursts {
		fmt.Fprintf(&b, "| %d | %d | %d | %.0f ms | %.0f / %.0f ms | %.1f MiB | %.1f MiB | %.1f KiB | %d |\n",
			x.N, x.OK, x.Failed, x.TimeToLastMs, x.FirstByte.P50, x.FirstByte.P99, x.RSSBeforeMiB, x.PeakRSSMiB, x.PerRequestKB, x.ReadyAfter)
	}
	for _, x := range r.Bursts {
		if len(x.Statuses) > 1 || len(x.Errors) > 0 {
			codes := make([]int, 0, len(x.Statuses))
			for c := range x.Statuses {
				codes = append(codes, c)
			}
			sort.Ints(codes)
			fmt.Fprintf(&b, "\nBurst %d: statuses", x.N)
			for _, c := range codes {
				fmt.Fprintf(&b, " %d×%d", c, x.Statuses[c])
			}
			for _, e := range x.Errors {
				fmt.Fprintf(&b, "; error: %s", oneLine(e, 200))
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}
