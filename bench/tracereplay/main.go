package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/ebbrun/ebb/autoscaler"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "tracereplay:", err)
		os.Exit(1)
	}
}

type options struct {
	trace     string
	runtimes  string
	out       string
	seeds     int
	functions int
	workers   int
	hardLimit int
	hybrid    autoscaler.HybridConfig
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("tracereplay", flag.ContinueOnError)
	fs.StringVar(&o.trace, "trace", "traces/azure2019/100_inv.csv", "invocations per minute (N_inv.csv); the default is the subset shipped in bench/traces")
	fs.StringVar(&o.runtimes, "runtimes", "", "execution times (N_run.csv); default: the -trace path with _inv replaced by _run")
	fs.StringVar(&o.out, "out", "results", "directory for the JSON result; empty to skip writing it")
	fs.IntVar(&o.seeds, "seeds", 3, "how many arrival/duration seeds to run; figures are median and range over them")
	fs.IntVar(&o.functions, "functions", 0, "replay only the first N functions (0: all)")
	fs.IntVar(&o.workers, "workers", runtime.GOMAXPROCS(0), "functions simulated in parallel")
	fs.IntVar(&o.hardLimit, "hard-limit", 0, "per-replica concurrency hard limit of every function (0: none, ebb's default)")
	fs.DurationVar(&o.hybrid.RunningUpTo, "running-up-to", 0, "hybrid policy: RunningUpTo (0: the default)")
	fs.DurationVar(&o.hybrid.FallbackKeepAlive, "fallback-keep-alive", 0, "hybrid policy: FallbackKeepAlive (0: the default, the grace period)")
	fs.IntVar(&o.hybrid.MinSamples, "min-samples", 0, "hybrid policy: MinSamples (0: the default)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.runtimes == "" {
		o.runtimes = strings.Replace(o.trace, "_inv", "_run", 1)
	}
	if o.seeds < 1 || o.workers < 1 || o.functions < 0 || o.hardLimit < 0 {
		return o, errors.New("-seeds and -workers must be at least 1; -functions and -hard-limit not negative")
	}
	return o, nil
}

// report is the JSON written to bench/results.
type report struct {
	Date      time.Time   `json:"date"`
	Commit    string      `json:"commit"`
	Command   string      `json:"command"`
	Trace     string      `json:"trace"`
	Functions int         `json:"functions"`
	Seeds     []uint64    `json:"seeds"`
	Elapsed   string      `json:"elapsed"`
	Model     simModel    `json:"model"`
	Summary   []summary   `json:"summary"`
	Runs      []runResult `json:"runs"`
}

// simModel records the data-plane model the figures assume.
type simModel struct {
	Tick            string `json:"tick"`
	Report          string `json:"statInterval"`
	ColdStart       string `json:"coldStart"`
	PreCreatedStart string `json:"preCreatedStart"`
	PreCreate       string `json:"preCreate"`
	HardLimit       int    `json:"hardLimit"`
	Arrivals        string `json:"arrivals"`
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	o, err := parseFlags(args)
	if err != nil {
		return err
	}
	fns, err := loadTrace(o.trace, o.runtimes)
	if err != nil {
		return err
	}
	if o.functions > 0 && o.functions < len(fns) {
		fns = fns[:o.functions]
	}
	horizon := 0
	for _, fn := range fns {
		horizon = max(horizon, len(fn.PerMin))
	}
	seeds := make([]uint64, o.seeds)
	for i := range seeds {
		seeds[i] = uint64(i + 1)
	}
	pols := policies(time.Duration(horizon)*time.Minute, o.hardLimit, o.hybrid)
	began := time.Now()
	runs, err := replayAll(ctx, fns, pols, seeds, o.workers)
	if err != nil {
		return err
	}
	elapsed := time.Since(began)
	sums := summarize(pols, runs)
	base := baseConfig(0, o.hardLimit)
	rep := report{
		Date: time.Now().UTC(), Commit: gitCommit(ctx), Command: strings.TrimSpace("cd bench && go run ./tracereplay " + strings.Join(args, " ")),
		Trace: o.trace, Functions: len(fns), Seeds: seeds, Elapsed: elapsed.Round(time.Millisecond).String(),
		Model: simModel{
			Tick: base.Tick.String(), Report: base.Report.String(), ColdStart: base.ColdStart.String(),
			PreCreatedStart: base.PreCreatedStart.String(), PreCreate: base.PreCreate.String(), HardLimit: o.hardLimit,
			Arrivals: "each minute's count uniform over the minute (Poisson given the count); durations from the run-time percentiles",
		},
		Summary: sums, Runs: runs,
	}
	writeTable(stdout, rep)
	if o.out != "" {
		if err := os.MkdirAll(o.out, 0o755); err != nil {
			return err
		}
		path := filepath.Join(o.out, "tracereplay-"+rep.Date.Format("20060102-150405")+".json")
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "\nwrote %s\n", path)
	}
	return nil
}

// writeTable prints the summary as the markdown table RESULTS.md records.
func writeTable(w io.Writer, rep report) {
	var requests int64
	if len(rep.Runs) > 0 {
		requests = rep.Runs[0].Requests
	}
	fmt.Fprintf(w, "%d functions, %d requests per seed, seeds %v, %s (commit %s)\n\n",
		rep.Functions, requests, rep.Seeds, rep.Elapsed, rep.Commit)
	fmt.Fprintln(w, "| policy | cold starts % | pre-created starts % | cold + pre-created % | idle replica-s | idle vs fixed 10 min | pre-created task-s |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, s := range rep.Summary {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", s.Policy,
			pct(s.ColdPct), pct(s.PreCreatedPct), pct(s.ColdOrPreCreatedPct),
			num(s.IdleReplicaSeconds), ratio(s.IdleVsFixed10), num(s.PreCreatedTaskSecond))
	}
}

func pct(s stat) string {
	if s.Min == s.Max {
		return fmt.Sprintf("%.3f", s.Median)
	}
	return fmt.Sprintf("%.3f (%.3f–%.3f)", s.Median, s.Min, s.Max)
}

func num(s stat) string {
	if s.Min == s.Max {
		return fmt.Sprintf("%.0f", s.Median)
	}
	return fmt.Sprintf("%.0f (%.0f–%.0f)", s.Median, s.Min, s.Max)
}

func ratio(s stat) string {
	if s.Min == s.Max {
		return fmt.Sprintf("%.2f", s.Median)
	}
	return fmt.Sprintf("%.2f (%.2f–%.2f)", s.Median, s.Min, s.Max)
}

func gitCommit(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, "git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}
