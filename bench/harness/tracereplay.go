package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// replayStat mirrors bench/tracereplay's median and range.
type replayStat struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

func (s replayStat) spread() Spread {
	return Spread{Median: s.Median, Min: s.Min, Max: s.Max, Runs: []float64{s.Min, s.Max}}
}

// replayPolicy mirrors one row of bench/tracereplay's summary.
type replayPolicy struct {
	Policy              string     `json:"policy"`
	ColdPct             replayStat `json:"coldPct"`
	PreCreatedPct       replayStat `json:"preCreatedPct"`
	ColdOrPreCreatedPct replayStat `json:"coldOrPreCreatedPct"`
	IdleReplicaSeconds  replayStat `json:"idleReplicaSeconds"`
	IdleVsFixed10       replayStat `json:"idleVsFixed10"`
}

// TraceReplayResult is section 5 of BENCHMARKS.md: bench/tracereplay's
// figures, folded into the summary.
type TraceReplayResult struct {
	Command     string         `json:"command"`
	JSON        string         `json:"json"`
	Functions   int            `json:"functions"`
	Seeds       []uint64       `json:"seeds"`
	Elapsed     string         `json:"elapsed"`
	WallSeconds float64        `json:"wallSeconds"`
	Model       map[string]any `json:"model"`
	Policies    []replayPolicy `json:"policies"`
}

const (
	replayOurs  = "ebb: hybrid histogram + pre-created tasks"
	replayFixed = "fixed 10-minute keep-alive"
)

var wroteRE = regexp.MustCompile(`(?m)^wrote (\S+\.json)\s*$`)

func (h *Harness) traceReplay(ctx context.Context) (Result, error) {
	seeds := 3
	if h.cfg.Quick {
		seeds = 1
	}
	// The command runs in bench/, the module it belongs to. Paths are
	// relative to it so the recorded command works on any clone.
	benchDir := filepath.Join(h.cfg.RepoDir, "bench")
	rel := func(p string) string {
		if r, err := filepath.Rel(benchDir, p); err == nil {
			return r
		}
		return p
	}
	args := []string{"run", "./tracereplay", "-trace", rel(h.cfg.Trace), "-seeds", strconv.Itoa(seeds), "-out", rel(h.cfg.OutDir)}
	command := "cd bench && go " + strings.Join(args, " ")
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = benchDir
	began := time.Now()
	out, err := cmd.CombinedOutput()
	wall := time.Since(began)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %s", command, err, oneLine(string(out), 500))
	}
	m := wroteRE.FindSubmatch(out)
	if m == nil {
		return nil, fmt.Errorf("bench/tracereplay wrote no JSON: %s", oneLine(string(out), 500))
	}
	path := string(m[1])
	if !filepath.IsAbs(path) {
		path = filepath.Join(benchDir, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rep struct {
		Functions int            `json:"functions"`
		Seeds     []uint64       `json:"seeds"`
		Elapsed   string         `json:"elapsed"`
		Model     map[string]any `json:"model"`
		Summary   []replayPolicy `json:"summary"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	jsonRel, _ := filepath.Rel(benchDir, path)
	return &TraceReplayResult{
		Command: command, JSON: jsonRel, Functions: rep.Functions, Seeds: rep.Seeds,
		Elapsed: rep.Elapsed, WallSeconds: wall.Seconds(), Model: rep.Model, Policies: rep.Summary,
	}, nil
}

func (r *TraceReplayResult) policy(name string) (replayPolicy, bool) {
	for _, p := range r.Policies {
		if p.Policy == name {
			return p, true
		}
	}
	return replayPolicy{}, false
}

// Rows implements Result.
func (r *TraceReplayResult) Rows() []Row {
	var rows []Row
	fixed, _ := r.policy(replayFixed)
	for _, p := range r.Policies {
		row := Row{Figure: "trace replay: " + p.Policy,
			Value:  fmt.Sprintf("cold %s%%, idle %s replica-s", p.ColdPct.spread().Format("%.3f"), p.IdleReplicaSeconds.spread().Format("%.0f")),
			Method: fmt.Sprintf("bench/tracereplay: Azure 2019, %d functions, one day in simulated time through the real decider; median (min–max) over seeds %v", r.Functions, r.Seeds)}
		if p.Policy != replayFixed && fixed.ColdPct.Median > 0 {
			row.Baseline = "fixed 10-minute keep-alive"
			row.Ratio = fmt.Sprintf("cold %.2f×, idle %s", p.ColdPct.Median/fixed.ColdPct.Median, p.IdleVsFixed10.spread().Format("%.2f×"))
		}
		rows = append(rows, row)
	}
	return rows
}

// Goals implements Result.
func (r *TraceReplayResult) Goals() []Goal {
	ours, ok1 := r.policy(replayOurs)
	fixed, ok2 := r.policy(replayFixed)
	if !ok1 || !ok2 {
		return []Goal{{Source: "issue 5", Goal: "trace replay: cold % ≤ fixed 10 min with ≤ 50% of its idle", Value: "policies missing from the replay", Status: GoalNotMeasured}}
	}
	return []Goal{
		{Source: "issue 5", Goal: "trace replay: cold-start % ≤ fixed 10-minute keep-alive", Value: fmt.Sprintf("%.3f%% vs %.3f%% (pre-created starts not counted as cold; %.3f%% counting them)", ours.ColdPct.Median, fixed.ColdPct.Median, ours.ColdOrPreCreatedPct.Median),
			Status: goalIf(ours.ColdPct.Median <= fixed.ColdPct.Median)},
		{Source: "issue 5", Goal: "trace replay: idle replica-seconds ≤ 50% of fixed 10 min", Value: ours.IdleVsFixed10.spread().Format("%.2f×"), Status: goalIf(ours.IdleVsFixed10.Median <= 0.5)},
		{Source: "issue 5", Goal: "trace replay runs in under 2 minutes", Value: fmt.Sprintf("%.0f s wall (replay %s, plus compile)", r.WallSeconds, r.Elapsed), Status: goalIf(r.WallSeconds < 120)},
	}
}

// Markdown implements Result.
func (r *TraceReplayResult) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Method: `%s` replays the Azure 2019 trace (%d functions, a full day) in simulated time through the real autoscaler and keep-alive policy, seeds %v; "+
		"median (min–max) over seeds. Model: %v. Raw JSON: `bench/%s`. The hand-written \"Trace replay\" section below explains the model and the sensitivity runs.\n\n",
		r.Command, r.Functions, r.Seeds, r.Model, r.JSON)
	b.WriteString("| policy | cold % | pre-created % | cold + pre-created % | idle replica-s | idle vs fixed 10 min |\n|---|---|---|---|---|---|\n")
	for _, p := range r.Policies {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", p.Policy, p.ColdPct.spread().Format("%.3f"), p.PreCreatedPct.spread().Format("%.3f"),
			p.ColdOrPreCreatedPct.spread().Format("%.3f"), p.IdleReplicaSeconds.spread().Format("%.0f"), p.IdleVsFixed10.spread().Format("%.2f"))
	}
	return b.String()
}
