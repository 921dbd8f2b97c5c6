package harness

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Result is what a section measured.
type Result interface {
	// Rows are its lines of the summary table.
	Rows() []Row
	// Goals are the targets of the issues it checks, each met or missed.
	Goals() []Goal
	// Markdown is its section of RESULTS.md below the run header: one
	// method line per figure, the tables and the raw numbers.
	Markdown() string
}

// Row is one line of the summary table.
type Row struct {
	Figure   string `json:"figure"`
	Value    string `json:"value"`
	Baseline string `json:"baseline,omitempty"`
	Ratio    string `json:"ratio,omitempty"`
	// Method says in one line how the figure was taken.
	Method string `json:"method,omitempty"`
}

// Goal statuses.
const (
	GoalMet         = "met"
	GoalMissed      = "missed"
	GoalNotMeasured = "not measured"
	GoalNotBuilt    = "not built"
)

// Goal is one target from an issue with what this run measured against it.
type Goal struct {
	Source string `json:"source"`
	Goal   string `json:"goal"`
	Value  string `json:"value"`
	Status string `json:"status"`
}

func goalIf(ok bool) string {
	if ok {
		return GoalMet
	}
	return GoalMissed
}

// Machine describes where the run happened.
type Machine struct {
	NProc     int    `json:"nproc"`
	Kernel    string `json:"kernel"`
	CPU       string `json:"cpu"`
	MemoryMiB int64  `json:"memoryMiB"`
	LoadStart string `json:"loadAverageAtStart"`
	LoadEnd   string `json:"loadAverageAtEnd"`
	Go        string `json:"go"`
}

// RunInfo identifies one harness run.
type RunInfo struct {
	Date    time.Time `json:"date"`
	Commit  string    `json:"commit"`
	Dirty   bool      `json:"dirty"`
	Command string    `json:"command"`
	Mode    string    `json:"mode"`
	Machine Machine   `json:"machine"`
}

// SectionReport is one section's outcome, as recorded in JSON.
type SectionReport struct {
	Run      RunInfo         `json:"run"`
	Elapsed  string          `json:"elapsed"`
	Error    string          `json:"error,omitempty"`
	Rows     []Row           `json:"rows"`
	Goals    []Goal          `json:"goals"`
	Markdown string          `json:"markdown"`
	Raw      json.RawMessage `json:"raw,omitempty"`
}

// Report is one run: the JSON written to bench/results/ebbbench-*.json.
type Report struct {
	RunInfo
	Elapsed        string                    `json:"elapsed"`
	ElapsedSeconds float64                   `json:"elapsedSeconds"`
	Sections       map[string]*SectionReport `json:"sections"`
	// Goals are the run's own: how long the whole harness took.
	Goals []Goal `json:"goals,omitempty"`

	cfg Config
}

func newReport(cfg Config, began time.Time) *Report {
	mode := "full"
	if cfg.Quick {
		mode = "quick"
	}
	commit, dirty := gitCommit(cfg.RepoDir)
	return &Report{
		RunInfo: RunInfo{
			Date: began.UTC(), Commit: commit, Dirty: dirty, Command: cfg.Command, Mode: mode,
			Machine: machine(),
		},
		Sections: map[string]*SectionReport{},
		cfg:      cfg,
	}
}

func (r *Report) add(name string, res Result, err error, elapsed time.Duration) {
	s := &SectionReport{Run: r.RunInfo, Elapsed: elapsed.Round(time.Second).String()}
	if err != nil {
		s.Error = err.Error()
	}
	if res != nil {
		s.Rows, s.Goals, s.Markdown = res.Rows(), res.Goals(), res.Markdown()
		if raw, jerr := json.Marshal(res); jerr == nil {
			s.Raw = raw
		}
	}
	r.Sections[name] = s
}

// finish stamps the load average at the end into every section's run info
// and, for a run of every section, checks the harness's own time limit.
func (r *Report) finish() {
	if len(r.cfg.Only) == 0 {
		limit, what := 45*time.Minute, "full run finishes in under 45 minutes"
		if r.cfg.Quick {
			limit, what = 10*time.Minute, "quick run finishes in under 10 minutes"
		}
		r.Goals = append(r.Goals, Goal{Source: "issue 6", Goal: what,
			Value:  fmt.Sprintf("%s (harness only; make bench adds make build)", r.Elapsed),
			Status: goalIf(time.Duration(r.ElapsedSeconds*float64(time.Second)) < limit)})
	}
	r.Machine.LoadEnd = loadAvg()
	for _, s := range r.Sections {
		s.Run.Machine.LoadEnd = r.Machine.LoadEnd
	}
}

// write saves the run's JSON, merges it into latest.json (the newest result
// of every section, so a partial run keeps the others) and rewrites the
// generated part of RESULTS.md from that.
func (r *Report) write(h *Harness) error {
	if err := os.MkdirAll(h.cfg.OutDir, 0o755); err != nil {
		return err
	}
	path := filepath.Join(h.cfg.OutDir, "ebbbench-"+r.Date.Format("20060102-150405")+".json")
	if err := writeJSON(path, r); err != nil {
		return err
	}
	h.log.Info("wrote results", "path", path)
	if h.cfg.NoRecord {
		return nil
	}
	latestPath := filepath.Join(h.cfg.OutDir, "latest.json")
	latest := map[string]*SectionReport{}
	if b, err := os.ReadFile(latestPath); err == nil {
		_ = json.Unmarshal(b, &latest)
	}
	for name, s := range r.Sections {
		latest[name] = s
	}
	if err := writeJSON(latestPath, latest); err != nil {
		return err
	}
	return updateResults(h.cfg.ResultsFile, renderGenerated(latest, filepath.Base(path), r))
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// printSummary writes the one summary table of the run.
func (r *Report) printSummary(w io.Writer) {
	fmt.Fprintf(w, "\nebb benchmark summary — %s, commit %s%s, %s mode, %d CPUs, kernel %s, %s\n\n",
		r.Date.Format("2006-01-02 15:04 MST"), r.Commit, dirtyMark(r.Dirty), r.Mode, r.Machine.NProc, r.Machine.Kernel, r.Elapsed)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SECTION\tFIGURE\tVALUE\tBASELINE\tRATIO")
	for _, name := range Sections {
		s, ok := r.Sections[name]
		if !ok {
			continue
		}
		if s.Error != "" {
			fmt.Fprintf(tw, "%s\t%s\t%s\t\t\n", name, "FAILED", oneLine(s.Error, 100))
		}
		for _, row := range s.Rows {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", name, row.Figure, row.Value, row.Baseline, row.Ratio)
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "GOAL\tSOURCE\tMEASURED\tSTATUS")
	for _, g := range r.Goals {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", g.Goal, g.Source, g.Value, strings.ToUpper(g.Status))
	}
	for _, name := range Sections {
		if s, ok := r.Sections[name]; ok {
			for _, g := range s.Goals {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", g.Goal, g.Source, g.Value, strings.ToUpper(g.Status))
			}
		}
	}
	tw.Flush()
}

func dirtyMark(d bool) string {
	if d {
		return " (with uncommitted changes)"
	}
	return ""
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

var sectionTitles = map[string]string{
	"coldstart":   "Cold start",
	"dataplane":   "Data plane",
	"burst":       "Activator burst",
	"autoscale":   "Autoscaling step",
	"tracereplay": "Trace replay",
	"scale":       "Scale: 10,000 functions",
	"ebpf":        "eBPF on and off",
	"rollback":    "Rollback of a bad canary",
	"headers":     "Header-match rules",
	"async":       "Asynchronous invocations",
	"tls":         "TLS termination",
	"accesslog":   "Access log on and off",
	"grpc":        "gRPC and HTTP/2",
}

// Markers around the part of RESULTS.md the harness owns.
const (
	beginMarker = "<!-- ebbbench:begin (generated by bench/cmd/ebbbench; edits here are overwritten) -->"
	endMarker   = "<!-- ebbbench:end -->"
)

// renderGenerated renders the harness's part of RESULTS.md from the newest
// result of every section.
func renderGenerated(latest map[string]*SectionReport, jsonName string, run *Report) string {
	var b strings.Builder
	b.WriteString(beginMarker + "\n\n")
	b.WriteString("## Harness summary\n\n")
	fmt.Fprintf(&b, "Generated by `make bench` (`cd bench && go run ./cmd/ebbbench`). Last run: `%s`, %s, commit `%s`%s, %s mode, "+
		"%d CPUs (%s), kernel %s, %s; raw JSON `bench/results/%s` and `bench/results/latest.json`. "+
		"Figures are medians with the min–max of alternating runs; each ratio compares figures taken side by side in the same run. "+
		"The machine is a shared 2-vCPU VM: read absolute times as noisy and ratios as the result.\n\n",
		run.Command, run.Date.Format("2006-01-02 15:04 MST"), run.Commit, dirtyMark(run.Dirty), run.Mode,
		run.Machine.NProc, run.Machine.CPU, run.Machine.Kernel, run.Elapsed, jsonName)
	b.WriteString("| section | figure | value | baseline | ratio | method |\n|---|---|---|---|---|---|\n")
	for _, name := range Sections {
		s, ok := latest[name]
		if !ok {
			continue
		}
		if s.Error != "" {
			fmt.Fprintf(&b, "| %s | **failed** | %s | | | |\n", sectionTitles[name], mdCell(oneLine(s.Error, 200)))
		}
		for _, row := range s.Rows {
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", sectionTitles[name], mdCell(row.Figure), mdCell(row.Value), mdCell(row.Baseline), mdCell(row.Ratio), mdCell(row.Method))
		}
	}
	b.WriteString("\n### Goals\n\n| goal | from | measured | status |\n|---|---|---|---|\n")
	goalRow := func(g Goal) {
		status := g.Status
		if status == GoalMet || status == GoalMissed {
			status = "**" + status + "**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", mdCell(g.Goal), g.Source, mdCell(g.Value), status)
	}
	for _, g := range run.Goals {
		goalRow(g)
	}
	for _, name := range Sections {
		if s, ok := latest[name]; ok {
			for _, g := range s.Goals {
				goalRow(g)
			}
		}
	}
	b.WriteString("\n")
	for _, name := range Sections {
		s, ok := latest[name]
		if !ok {
			continue
		}
		fmt.Fprintf(&b, "### %s\n\n", sectionTitles[name])
		fmt.Fprintf(&b, "Run %s, commit `%s`%s, %s mode, %d CPUs, kernel %s, load average %s at start and %s at end; section took %s. Command: `%s`.\n\n",
			s.Run.Date.Format("2006-01-02 15:04 MST"), s.Run.Commit, dirtyMark(s.Run.Dirty), s.Run.Mode, s.Run.Machine.NProc,
			s.Run.Machine.Kernel, s.Run.Machine.LoadStart, s.Run.Machine.LoadEnd, s.Elapsed, sectionCommand(s.Run, name))
		if s.Error != "" {
			fmt.Fprintf(&b, "**Failed:** %s\n\n", mdCell(oneLine(s.Error, 2000)))
		}
		b.WriteString(strings.TrimSpace(s.Markdown))
		b.WriteString("\n\n")
	}
	b.WriteString(endMarker + "\n")
	return b.String()
}

// sectionCommand is the command that reproduces one section alone.
func sectionCommand(run RunInfo, name string) string {
	cmd := "make bench BENCH=" + name
	if run.Mode == "quick" {
		cmd += " QUICK=1"
	}
	return cmd
}

func mdCell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// updateResults replaces the generated part of RESULTS.md, or inserts it
// before the first hand-written section, leaving everything else as is.
func updateResults(path, generated string) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	out := spliceGenerated(string(old), generated)
	return os.WriteFile(path, []byte(out), 0o644)
}

func spliceGenerated(old, generated string) string {
	if i := strings.Index(old, beginMarker); i >= 0 {
		if j := strings.Index(old[i:], endMarker); j >= 0 {
			return old[:i] + generated + old[i+j+len(endMarker)+1:]
		}
	}
	if old == "" {
		return "# Benchmark results\n\n" + generated
	}
	// Before the first "## " heading, after the title and intro.
	if i := strings.Index(old, "\n## "); i >= 0 {
		return old[:i+1] + generated + "\n" + old[i+1:]
	}
	return strings.TrimRight(old, "\n") + "\n\n" + generated
}

func gitCommit(dir string) (string, bool) {
	out, err := exec.Command("git", "-C", dir, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown", false
	}
	status, _ := exec.Command("git", "-C", dir, "status", "--porcelain", "--untracked-files=no").Output()
	return strings.TrimSpace(string(out)), len(bytes.TrimSpace(status)) > 0
}

func machine() Machine {
	m := Machine{NProc: runtime.NumCPU(), Go: runtime.Version(), LoadStart: loadAvg()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "model name") {
				if _, v, ok := strings.Cut(line, ":"); ok {
					m.CPU = strings.TrimSpace(v)
				}
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		f := strings.Fields(string(b))
		if len(f) > 1 && f[0] == "MemTotal:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			m.MemoryMiB = kb >> 10
		}
	}
	return m
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
