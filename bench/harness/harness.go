package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Sections, in the order they run and are reported.
var Sections = []string{"coldstart", "dataplane", "burst", "autoscale", "tracereplay", "scale", "ebpf", "rollback", "headers", "async", "tls", "grpc", "accesslog"}

// Config configures one harness run. Zero fields take the defaults listed.
type Config struct {
	// Only runs these sections (see Sections); empty runs all.
	Only []string
	// Quick shortens every section so the whole run takes minutes: fewer
	// wrk seconds, a shorter step load, one trace-replay seed.
	Quick bool
	// RepoDir is the repository root. Default "..": the harness is the
	// bench module and runs from bench/.
	RepoDir string
	// BinDir holds ebbd, ebb and hello from make build. Default RepoDir/bin.
	BinDir string
	// OutDir receives JSON and PNGs. Default RepoDir/bench/results.
	OutDir string
	// ResultsFile is the markdown record. Default RepoDir/bench/RESULTS.md.
	ResultsFile string
	// Trace is the Azure trace for trace replay. Default
	// RepoDir/bench/traces/azure2019/100_inv.csv, the subset shipped with
	// the repository.
	Trace string
	// EbbdGOMAXPROCS is GOMAXPROCS for every ebbd, so the router gets one
	// core like HAProxy (nbthread 1) and nginx (1 worker). Default 1.
	EbbdGOMAXPROCS int
	// Isolation is every ebbd's --isolation unless a section sets it: "on"
	// (default, what users get) or "off" (host network, for machines
	// without the privileges isolation needs). The cold start section
	// always runs both, side by side.
	Isolation string
	// KeepWork keeps the temp work dir (ebbd data dirs and logs).
	KeepWork bool
	// NoRecord skips latest.json and RESULTS.md; the run's JSON and plots
	// still go to OutDir.
	NoRecord bool
	// Command is the command line recorded with the results.
	Command string
	// Stdout receives the summary table. Default os.Stdout.
	Stdout io.Writer
	// Logger receives progress. Default: text to stderr at info.
	Logger *slog.Logger
}

// WithDefaults fills zero fields.
func (c Config) WithDefaults() Config {
	if c.RepoDir == "" {
		c.RepoDir = ".."
	}
	if abs, err := filepath.Abs(c.RepoDir); err == nil {
		c.RepoDir = abs
	}
	if c.BinDir == "" {
		c.BinDir = filepath.Join(c.RepoDir, "bin")
	}
	if c.OutDir == "" {
		c.OutDir = filepath.Join(c.RepoDir, "bench", "results")
	}
	if c.ResultsFile == "" {
		c.ResultsFile = filepath.Join(c.RepoDir, "bench", "RESULTS.md")
	}
	if c.Trace == "" {
		c.Trace = filepath.Join(c.RepoDir, "bench", "traces", "azure2019", "100_inv.csv")
	}
	if c.EbbdGOMAXPROCS == 0 {
		c.EbbdGOMAXPROCS = 1
	}
	if c.Isolation == "" {
		c.Isolation = IsolationOn
	}
	if c.Command == "" {
		c.Command = "make bench"
	}
	if c.Stdout == nil {
		c.Stdout = os.Stdout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return c
}

// Validate reports the first invalid setting.
func (c Config) Validate() error {
	for _, s := range c.Only {
		if !slices.Contains(Sections, s) {
			return fmt.Errorf("-only %q: sections are %s", s, strings.Join(Sections, ","))
		}
	}
	if c.EbbdGOMAXPROCS < 0 {
		return errors.New("ebbd GOMAXPROCS must not be negative")
	}
	if c.Isolation != IsolationOn && c.Isolation != IsolationOff {
		return fmt.Errorf("-isolation %q: want on or off", c.Isolation)
	}
	return nil
}

func (c Config) runs(section string) bool {
	return len(c.Only) == 0 || slices.Contains(c.Only, section)
}

// Harness runs the sections and records the results.
type Harness struct {
	cfg   Config
	log   *slog.Logger
	procs *Procs
	hc    *http.Client
	work  string
	began time.Time

	// networkLeft collects what ebbds of the current section left of their
	// replica networks (see Ebbd.Stop); leftAny says whether any section's
	// did, which fails the run.
	mu          sync.Mutex
	networkLeft []error
	leftAny     bool
}

// noteNetworkLeft records that an ebbd's replica network could not be
// removed completely.
func (h *Harness) noteNetworkLeft(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.networkLeft = append(h.networkLeft, err)
	h.leftAny = true
}

// takeNetworkLeft returns and forgets what noteNetworkLeft recorded, as
// one error (nil if nothing).
func (h *Harness) takeNetworkLeft() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.networkLeft) == 0 {
		return nil
	}
	err := fmt.Errorf("%w: %w", errNetworkLeft, errors.Join(h.networkLeft...))
	h.networkLeft = nil
	return err
}

// Run runs the configured sections, prints the summary, writes the JSON and
// plots and updates RESULTS.md. Everything it started is stopped before it
// returns, also when ctx is cancelled (Ctrl-C) or a section fails. A
// section that fails is reported as failed; the others still run.
func Run(ctx context.Context, cfg Config) error {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	h := &Harness{cfg: cfg, log: cfg.Logger, procs: NewProcs(cfg.Logger), began: time.Now(), hc: newHTTPClient(64)}
	if err := h.preflight(ctx); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "ebbbench-")
	if err != nil {
		return err
	}
	h.work = work
	// With isolation, runc runs as an unprivileged host uid (the mapped root
	// of the replica's user namespace) and must pass through the work dir
	// to reach the bundles of each ebbd's containerd; ebbd makes its own
	// data dir searchable the same way. Search only: nothing is listed.
	if err := os.Chmod(work, 0o711); err != nil {
		return err
	}
	defer func() {
		h.procs.StopAll()
		if pids := KillUnder(work); len(pids) > 0 {
			h.log.Warn("killed leftover processes of this run", "pids", pids)
		}
		if cfg.KeepWork {
			h.log.Info("kept work dir", "dir", work)
		} else if err := RemoveTree(work); err != nil {
			h.log.Warn("remove work dir", "dir", work, "err", err)
		}
	}()
	raiseFileLimit(h.log)

	rep := newReport(cfg, h.began)
	for _, name := range Sections {
		if !cfg.runs(name) {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		h.log.Info("section start", "section", name)
		began := time.Now()
		res, err := h.runSection(ctx, name)
		// Every ebbd of the section has stopped: a replica network any of
		// them left fails the section.
		if left := h.takeNetworkLeft(); left != nil {
			err = errors.Join(err, left)
		}
		elapsed := time.Since(began)
		h.log.Info("section done", "section", name, "elapsed", elapsed.Round(time.Second), "err", err)
		rep.add(name, res, err, elapsed)
		// The child processes of one section never outlive it.
		h.procs.StopAll()
	}
	rep.Elapsed = time.Since(h.began).Round(time.Second).String()
	rep.ElapsedSeconds = time.Since(h.began).Seconds()
	rep.finish()
	if ctx.Err() != nil {
		// An interrupted run records nothing: its figures are partial.
		rep.printSummary(cfg.Stdout)
		return fmt.Errorf("interrupted, nothing recorded: %w", ctx.Err())
	}
	if err := rep.write(h); err != nil {
		return err
	}
	rep.printSummary(cfg.Stdout)
	if h.leftAny {
		return fmt.Errorf("%w on the node: see the failed sections", errNetworkLeft)
	}
	return nil
}

func (h *Harness) runSection(ctx context.Context, name string) (result Result, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("section %s panicked: %v", name, r)
		}
	}()
	switch name {
	case "coldstart":
		return h.coldStart(ctx)
	case "dataplane":
		return h.dataPlane(ctx)
	case "burst":
		return h.burst(ctx)
	case "autoscale":
		return h.autoscale(ctx)
	case "tracereplay":
		return h.traceReplay(ctx)
	case "scale":
		return h.scale(ctx)
	case "ebpf":
		return h.ebpf(ctx)
	case "rollback":
		return h.rollback(ctx)
	case "headers":
		return h.headers(ctx)
	case "async":
		return h.async(ctx)
	case "tls":
		return h.tlsSection(ctx)
	case "grpc":
		return h.grpcSection(ctx)
	case "accesslog":
		return h.accessLog(ctx)
	}
	return nil, fmt.Errorf("unknown section %q", name)
}

// preflight checks the binaries and installs missing peers with apt-get.
func (h *Harness) preflight(ctx context.Context) error {
	for _, b := range []string{"ebbd", "ebb", "hello"} {
		if _, err := os.Stat(filepath.Join(h.cfg.BinDir, b)); err != nil {
			return fmt.Errorf("%s/%s missing: run make build first (make bench does)", h.cfg.BinDir, b)
		}
	}
	need := map[string]string{"wrk": "wrk", "hey": "hey", "haproxy": "haproxy", "nginx": "nginx", "containerd": "containerd", "runc": "runc"}
	if h.cfg.runs("async") {
		need["redis-server"] = "redis-server"
	}
	if h.cfg.runs("grpc") {
		need["h2load"] = "nghttp2-client"
	}
	var missing []string
	for bin, pkg := range need {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, pkg)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	slices.Sort(missing)
	if os.Geteuid() != 0 {
		return fmt.Errorf("missing %s: install them or run as root so the harness can apt-get them", strings.Join(missing, " "))
	}
	h.log.Info("installing missing packages", "packages", missing)
	_ = exec.CommandContext(ctx, "apt-get", "update", "-qq").Run()
	cmd := exec.CommandContext(ctx, "apt-get", append([]string{"install", "-y", "-qq"}, missing...)...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get install %s: %w: %s", strings.Join(missing, " "), err, out)
	}
	return nil
}

// raiseFileLimit lifts the soft open-file limit to the hard one: a burst of
// 10,000 connections needs 10,000 descriptors here and as many in ebbd,
// which inherits the limit.
func raiseFileLimit(log *slog.Logger) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			log.Warn("raise open-file limit", "err", err)
		}
	}
}

// newHTTPClient is the harness's client for the API and metrics: loopback
// only, so no proxy from the environment, and enough idle connections for
// its parallel API calls.
func newHTTPClient(idle int) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Client{Transport: &http.Transport{
		Proxy:               nil,
		DialContext:         d.DialContext,
		MaxIdleConns:        idle,
		MaxIdleConnsPerHost: idle,
		IdleConnTimeout:     30 * time.Second,
	}}
}
