// Command ebbbench runs ebb's benchmark harness (bench/harness): every
// figure of shared/BENCHMARKS.md side by side with its baseline, one summary
// table, JSON and plots in bench/results/, and bench/RESULTS.md updated.
//
//	cd bench && go run ./cmd/ebbbench [-only coldstart,dataplane,...] [-quick]
//
// bench/ is a Go module of its own, so that the product's go.mod does not
// carry the plotting libraries. make bench builds bin/ first and runs this
// command from bench/ with -repo set to the repository root.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/ebbrun/ebb/bench/harness"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ebbbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ebbbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	only := fs.String("only", "", "comma-separated sections to run: "+strings.Join(harness.Sections, ","))
	quick := fs.Bool("quick", false, "short runs: the whole harness in under 10 minutes")
	repo := fs.String("repo", "..", "repository root (the default fits a run from bench/)")
	keep := fs.Bool("keep", false, "keep the temp work dir (ebbd data dirs and logs)")
	noRecord := fs.Bool("no-record", false, "record nothing in bench/: JSON and plots go to a temp dir, RESULTS.md is left alone")
	procs := fs.Int("ebbd-gomaxprocs", 1, "GOMAXPROCS of every ebbd the harness starts (1: one core, like the peers)")
	isolation := fs.String("isolation", harness.IsolationOn, "every ebbd's --isolation (on: the default users get; off: host network, for machines without the privileges); the coldstart section runs both either way")
	verbose := fs.Bool("v", false, "debug logging")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	var sections []string
	if *only != "" {
		for _, s := range strings.Split(*only, ",") {
			if s = strings.TrimSpace(s); s != "" {
				sections = append(sections, s)
			}
		}
	}
	var outDir string
	if *noRecord {
		var err error
		if outDir, err = os.MkdirTemp("", "ebbbench-results-"); err != nil {
			return err
		}
		fmt.Fprintln(stderr, "ebbbench: -no-record: results go to", outDir)
	}
	command := "make bench"
	if *only != "" {
		command += " BENCH=" + *only
	}
	if *quick {
		command += " QUICK=1"
	}
	if *isolation != harness.IsolationOn {
		// make bench has no knob for it: record the command itself.
		command = "cd bench && go run ./cmd/ebbbench -isolation " + *isolation
		if *only != "" {
			command += " -only " + *only
		}
		if *quick {
			command += " -quick"
		}
	}
	return harness.Run(ctx, harness.Config{
		Only:           sections,
		Quick:          *quick,
		RepoDir:        *repo,
		OutDir:         outDir,
		KeepWork:       *keep,
		NoRecord:       *noRecord,
		EbbdGOMAXPROCS: *procs,
		Isolation:      *isolation,
		Command:        command,
		Stdout:         stdout,
		Logger:         slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})),
	})
}
