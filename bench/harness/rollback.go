package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ebbrun/ebb/api"
)

// The rollback section: how long a bad canary keeps its share. Under a
// steady load from hey, a function with a rollout policy gets a canary
// that answers 500 to every request (examples/hello's HELLO_FAIL_PERCENT),
// ten times in a row; each time the section times the bad step from its
// start to the rollout's rollback (its own record) and to the last 5xx a
// client got (what the router did), in analysis intervals. Issue 15's goal
// is a p50 of at most 2 intervals.

const (
	rollbackRuns     = 10
	rollbackInterval = 2 * time.Second
	rollbackRate     = 200 // req/s
	rollbackWorkers  = 10
	// rollbackFailPercent makes every canary request fail, so that the
	// last 5xx a client got is the last request the canary served.
	rollbackFailPercent = 100
)

// rollbackPolicy judges every rollbackInterval; the steps are long, as
// only the first one, which fails, matters.
func rollbackPolicy() api.RolloutPolicy {
	return api.RolloutPolicy{
		Steps:        []int{5, 50, 100},
		Interval:     api.D(rollbackInterval),
		StepDuration: api.D(time.Minute),
		MinRequests:  10,
	}
}

// RollbackRun is one bad canary.
type RollbackRun struct {
	Canary     string    `json:"canary"`
	Reason     string    `json:"reason"`
	Checks     int       `json:"checks"`
	StepStart  time.Time `json:"stepStart"`
	FinishedAt time.Time `json:"finishedAt"`
	// RecordMs is FinishedAt − StepStart: the bad step's life by the
	// rollout's own record, up to the write that gives stable 100%.
	RecordMs float64 `json:"recordMs"`
	// Client5xx counts the 5xx clients got during the run; First5xxMs and
	// Last5xxMs are when the first and last of them were sent, after
	// StepStart. Every canary request fails, so Last5xxMs is the last
	// request the router sent the canary.
	Client5xx  int     `json:"client5xx"`
	First5xxMs float64 `json:"first5xxMs"`
	Last5xxMs  float64 `json:"last5xxMs"`
}

// RollbackResult is the rollback section.
type RollbackResult struct {
	Policy     string        `json:"policy"`
	Load       string        `json:"load"`
	IntervalMs float64       `json:"intervalMs"`
	Runs       []RollbackRun `json:"runs"`
	// Intervals is RecordMs / interval; ClientIntervals Last5xxMs / interval.
	Intervals       Spread `json:"intervals"`
	ClientIntervals Spread `json:"clientIntervals"`
	RecordMs        Spread `json:"recordMs"`
	Answers         int    `json:"answers"`
	Non5xxErrors    int    `json:"otherNon2xx"`
}

func (h *Harness) rollback(ctx context.Context) (Result, error) {
	e, err := h.StartEbbd(ctx, EbbdOptions{Name: "rollback"})
	if err != nil {
		return nil, err
	}
	defer e.Stop()
	ref, err := e.PushHello(ctx)
	if err != nil {
		return nil, err
	}
	policy := rollbackPolicy()
	spec := func(env map[string]string) api.FunctionSpec {
		p := policy
		return api.FunctionSpec{Image: ref, Env: env, Scale: api.Scale{Min: 1}, Rollout: &p}
	}
	const fn = "rb"
	if _, err := e.Deploy(ctx, fn, spec(map[string]string{"GOOD": "1"}), 2*time.Minute); err != nil {
		return nil, err
	}
	res := &RollbackResult{
		Policy: fmt.Sprintf("steps 5/50/100, interval %s, minRequests 10, default thresholds; canary answers 500 to %d%% of requests (HELLO_FAIL_PERCENT)",
			rollbackInterval, rollbackFailPercent),
		Load:       fmt.Sprintf("hey -c %d -q %d (%d req/s) over the whole run, -o csv", rollbackWorkers, rollbackRate/rollbackWorkers, rollbackRate),
		IntervalMs: ms(rollbackInterval),
	}
	load, err := h.startHeyCSV(ctx, fn+".localhost", e.HTTPAddr)
	if err != nil {
		return nil, err
	}
	defer load.stop()
	for run := 1; run <= rollbackRuns; run++ {
		r, err := h.badCanary(ctx, e, fn, spec(map[string]string{"HELLO_FAIL_PERCENT": strconv.Itoa(rollbackFailPercent), "RUN": strconv.Itoa(run)}))
		if err != nil {
			return nil, fmt.Errorf("run %d: %w", run, err)
		}
		res.Runs = append(res.Runs, r)
		h.log.Info("rollback", "run", run, "canary", r.Canary, "record_ms", int(r.RecordMs), "checks", r.Checks, "reason", r.Reason)
		// The rollback pinned the stable revision at 100%, which is where
		// the next run's rollout starts from.
	}
	answers, err := load.stop()
	if err != nil {
		return nil, err
	}
	res.Answers = len(answers)
	res.attribute(answers, load.started)
	var rec, cli []float64
	for _, r := range res.Runs {
		rec = append(rec, r.RecordMs)
		cli = append(cli, r.Last5xxMs)
	}
	res.RecordMs = SpreadOf(rec)
	res.Intervals = SpreadOf(scale(rec, 1/res.IntervalMs))
	res.ClientIntervals = SpreadOf(scale(cli, 1/res.IntervalMs))
	return res, nil
}

// badCanary starts a rollout of spec, a failing canary, and waits for its
// rollback.
func (h *Harness) badCanary(ctx context.Context, e *Ebbd, fn string, spec api.FunctionSpec) (RollbackRun, error) {
	f, _, err := e.Client.PutFunction(ctx, fn, spec)
	if err != nil {
		return RollbackRun{}, err
	}
	id := f.LatestRevision
	var r api.Rollout
	err = poll(ctx, time.Minute, 20*time.Millisecond, func() (bool, error) {
		var err error
		r, err = e.Client.Rollout(ctx, fn, id)
		return err == nil && r.Phase.Final(), err
	})
	if err != nil {
		b, _ := json.Marshal(r)
		return RollbackRun{}, fmt.Errorf("rollout %s: %w; last seen %s; ebbd log tail:\n%s", id, err, b, e.LogTail())
	}
	if r.Phase != api.RolloutRolledBack || len(r.Steps) == 0 {
		return RollbackRun{}, fmt.Errorf("rollout %s ended %s after %d steps, not rolled back: %s", id, r.Phase, len(r.Steps), r.Reason)
	}
	step := r.Steps[len(r.Steps)-1]
	return RollbackRun{
		Canary: id, Reason: r.Reason, Checks: step.Checks,
		StepStart: step.StartedAt, FinishedAt: r.FinishedAt,
		RecordMs: ms(r.FinishedAt.Sub(step.StartedAt)),
	}, nil
}

// attribute gives each run the 5xx clients got from its step's start to
// the next run's.
func (r *RollbackResult) attribute(answers []HeyAnswer, started time.Time) {
	for _, a := range answers {
		if a.Status < 500 {
			if a.Status >= 300 {
				r.Non5xxErrors++
			}
			continue
		}
		sent := started.Add(a.Sent)
		for i := len(r.Runs) - 1; i >= 0; i-- {
			run := &r.Runs[i]
			if sent.Before(run.StepStart) {
				continue
			}
			at := ms(sent.Sub(run.StepStart))
			if run.Client5xx == 0 || at < run.First5xxMs {
				run.First5xxMs = at
			}
			run.Last5xxMs = max(run.Last5xxMs, at)
			run.Client5xx++
			break
		}
	}
}

func scale(xs []float64, f float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = x * f
	}
	return out
}

// heyCSV is hey running in the background with -o csv until stopped.
type heyCSV struct {
	proc    *Proc
	out     string
	started time.Time
	done    bool
}

// startHeyCSV sends rollbackRate requests per second to host at addr
// until stop, for at most ten minutes.
func (h *Harness) startHeyCSV(ctx context.Context, host, addr string) (*heyCSV, error) {
	out := filepath.Join(h.work, "hey-rollback.csv")
	f, err := os.Create(out)
	if err != nil {
		return nil, err
	}
	defer f.Close() // the child has its own copy
	cmd := exec.CommandContext(ctx, "hey", "-z", "10m", "-c", strconv.Itoa(rollbackWorkers), "-q", strconv.Itoa(rollbackRate/rollbackWorkers),
		"-t", "10", "-host", host, "-o", "csv", "http://"+addr+"/")
	cmd.Stdout, cmd.Stderr = f, f
	l := &heyCSV{out: out, started: time.Now()}
	if l.proc, err = h.procs.Start("hey-rollback", cmd); err != nil {
		return nil, err
	}
	return l, nil
}

// stop interrupts hey, which then prints its report, and reads it.
func (l *heyCSV) stop() ([]HeyAnswer, error) {
	if l.done {
		return nil, nil
	}
	l.done = true
	l.proc.Stop(syscall.SIGINT, 30*time.Second)
	b, err := os.ReadFile(l.out)
	if err != nil {
		return nil, err
	}
	return ParseHeyCSV(string(b))
}

// Rows implements Result.
func (r *RollbackResult) Rows() []Row {
	return []Row{{
		Figure: "bad step's start to 100% on stable",
		Value: fmt.Sprintf("%s intervals (p50 %.0f ms, max %.0f ms); last 5xx a client got: %s intervals",
			r.Intervals.Format("%.2f"), r.RecordMs.Median, r.RecordMs.Max, r.ClientIntervals.Format("%.2f")),
		Method: fmt.Sprintf("%d failing canaries in a row under %s; interval %s; the rollout's record (step start to finishedAt) and hey's CSV",
			len(r.Runs), r.Load, time.Duration(r.IntervalMs*float64(time.Millisecond))),
	}}
}

// Goals implements Result.
func (r *RollbackResult) Goals() []Goal {
	return []Goal{{
		Source: "issue 15", Goal: "bad step to 100% back on stable: p50 ≤ 2 analysis intervals",
		Value:  r.Intervals.Format("%.2f") + " intervals",
		Status: goalIf(len(r.Runs) > 0 && r.Intervals.Median <= 2 && r.ClientIntervals.Median <= 2),
	}}
}

// Markdown implements Result.
func (r *RollbackResult) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Method: one ebbd, function `rb` with a rollout policy (%s), under %s. %d times in a row a spec change makes a canary that fails; "+
		"the rollout starts it at 5%% and must roll it back, to the same stable revision each time. "+
		"*Record* is the rollout's own: from its bad step's start to finishedAt, the write that gives the stable revision 100%%. "+
		"*Client* is when the last 5xx a client got was sent, after the step's start: every canary request fails, so it is the last request the router sent the canary. "+
		"The router reports its counts every second, so up to 1 s of each figure is the report's lag.\n\n", r.Policy, r.Load, len(r.Runs))
	fmt.Fprintf(&b, "Record: %s intervals, %s ms. Client: %s intervals. %d answers, %d non-5xx errors.\n\n",
		r.Intervals.Format("%.2f"), r.RecordMs.Format("%.0f"), r.ClientIntervals.Format("%.2f"), r.Answers, r.Non5xxErrors)
	b.WriteString("| run | canary | checks | record ms | client 5xx | first 5xx ms | last 5xx ms | reason |\n|---|---|---|---|---|---|---|---|\n")
	for i, run := range r.Runs {
		fmt.Fprintf(&b, "| %d | %s | %d | %.0f | %d | %.0f | %.0f | %s |\n", i+1, run.Canary, run.Checks, run.RecordMs, run.Client5xx, run.First5xxMs, run.Last5xxMs, mdCell(oneLine(run.Reason, 160)))
	}
	return b.String()
}
