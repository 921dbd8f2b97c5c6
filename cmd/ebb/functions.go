package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ebbrun/ebb/api"
)

func (a *app) listCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the namespace's functions with their URL, latest revision, readiness and traffic",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			fns, err := c.ListFunctions(cmd.Context())
			if err != nil {
				return fmt.Errorf("list functions: %w", err)
			}
			sort.Slice(fns, func(i, j int) bool { return fns[i].Name < fns[j].Name })
			if a.structured() {
				if fns == nil {
					fns = []api.Function{}
				}
				return a.writeOut(api.FunctionList{Functions: fns})
			}
			return printFunctionList(a.stdout, fns, a.now())
		},
	}
}

func printFunctionList(w io.Writer, fns []api.Function, now time.Time) error {
	t := newTable(w, "NAME", "URL", "LATEST", "READY", "TRAFFIC", "AGE")
	for _, fn := range fns {
		t.row(fn.Name, fn.URL, fn.LatestRevision, readyOf(fn.Revisions), trafficSummary(fn), age(now, fn.CreatedAt))
	}
	return t.flush()
}

func (a *app) getCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get NAME",
		Short: "Show a function's spec, traffic and revision status",
		Args:  exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			fn, err := c.GetFunction(cmd.Context(), args[0])
			if err != nil {
				return fmt.Errorf("get %s: %w", args[0], err)
			}
			if a.structured() {
				return a.writeOut(fn)
			}
			return printFunction(a.stdout, fn, a.now())
		},
	}
}

// printFunction writes the human view of one function: a key-value block,
// then its traffic and its revisions, then the last words of any crashing
// revision.
func printFunction(w io.Writer, fn api.Function, now time.Time) error {
	s := fn.Spec
	kv := newKV(w)
	kv.add("Name", fn.Name)
	kv.add("Namespace", fn.Namespace)
	kv.add("URL", fn.URL)
	kv.add("Image", s.Image)
	kv.add("Latest", fn.LatestRevision)
	kv.add("Port", orNone(s.Port, "default"))
	kv.add("Env", envSummary(s.Env))
	if len(s.Args) > 0 {
		kv.add("Args", strings.Join(s.Args, " "))
	}
	if len(s.Secrets) > 0 {
		names := make([]string, len(s.Secrets))
		for i, sec := range s.Secrets {
			if sec.Env != "" {
				names[i] = fmt.Sprintf("%s:%s=$%s", sec.Secret, sec.Key, sec.Env)
			} else {
				names[i] = fmt.Sprintf("%s:%s=/run/secrets/%s", sec.Secret, sec.Key, sec.File)
			}
		}
		kv.add("Secrets", strings.Join(names, " "))
	}
	kv.add("Scale", scaleSummary(s.Scale))
	kv.add("Concurrency", concurrencySummary(s.Concurrency))
	kv.add("Resources", resourcesSummary(s.Resources))
	kv.add("Timeout", durationOr(s.Timeout, "default"))
	kv.add("Created", timestamp(now, fn.CreatedAt))
	kv.add("Updated", timestamp(now, fn.UpdatedAt))
	if err := kv.flush(); err != nil {
		return err
	}

	fmt.Fprintln(w, "\nTraffic:")
	t := newTable(indent(w), "REVISION", "PERCENT", "TAG", "URL")
	for _, tt := range fn.Traffic {
		t.row(targetName(tt, fn.LatestRevision), fmt.Sprintf("%d%%", tt.Percent), tt.Tag, tt.URL)
	}
	if err := t.flush(); err != nil {
		return err
	}

	fmt.Fprintln(w, "\nRevisions:")
	t = newTable(indent(w), "NAME", "STATE", "READY", "PRECREATED", "RESTARTS", "TRAFFIC", "AGE", "MESSAGE")
	for _, r := range fn.Revisions {
		t.row(r.Name, r.State, fmt.Sprintf("%d/%d", r.Ready, r.Desired), fmt.Sprint(r.PreCreated),
			fmt.Sprint(r.Restarts), fmt.Sprintf("%d%%", r.Percent), age(now, r.CreatedAt), r.Message)
	}
	if err := t.flush(); err != nil {
		return err
	}
	for _, r := range fn.Revisions {
		if len(r.LastLogLines) == 0 {
			continue
		}
		exit := ""
		if r.LastExitCode != nil {
			exit = fmt.Sprintf(", exit code %d", *r.LastExitCode)
		}
		fmt.Fprintf(w, "\nLast log lines of %s (%s%s):\n", r.Name, r.State, exit)
		for _, l := range r.LastLogLines {
			fmt.Fprintf(w, "  | %s\n", l)
		}
	}
	return nil
}

func scaleSummary(s api.Scale) string {
	max := "unlimited"
	if s.Max > 0 {
		max = fmt.Sprint(s.Max)
	}
	out := fmt.Sprintf("min %d, max %s", s.Min, max)
	if s.Initial != nil {
		out += fmt.Sprintf(", initial %d", *s.Initial)
	}
	if s.ScaleToZeroGrace.Duration > 0 {
		out += ", scale-to-zero grace " + s.ScaleToZeroGrace.String()
	}
	return out
}

func concurrencySummary(c api.Concurrency) string {
	var out string
	if c.Metric == api.MetricRPS {
		out = fmt.Sprintf("rps target %d", c.RPSTarget)
	} else {
		out = "target " + orNone(c.Target, "default")
	}
	if c.TargetUtilization > 0 {
		out += fmt.Sprintf(" at %g utilization", c.TargetUtilization)
	}
	return out + ", hard limit " + orNone(c.HardLimit, "none")
}

func resourcesSummary(r api.Resources) string {
	cpu, mem := "default", "default"
	if r.CPU > 0 {
		cpu = fmt.Sprint(r.CPU)
	}
	if r.Memory != "" {
		mem = r.Memory
	}
	out := "cpu " + cpu + ", memory " + mem
	if r.Pids > 0 {
		out += fmt.Sprintf(", pids %d", r.Pids)
	}
	return out
}

func durationOr(d api.Duration, zero string) string {
	if d.Duration == 0 {
		return zero
	}
	return d.String()
}

func timestamp(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339) + " (" + age(now, t) + " ago)"
}

// kv writes "Key:  value" lines with the values aligned.
type kv struct{ t *table }

func newKV(w io.Writer) *kv {
	return &kv{t: &table{tw: newTabwriter(w)}}
}

func (k *kv) add(key, value string) { k.t.row(key+":", value) }
func (k *kv) flush() error          { return k.t.flush() }

// indenter prefixes every line written through it with two spaces, for
// tables nested under a heading. tabwriter writes a line in several pieces,
// so it remembers whether the next byte starts a line.
type indenter struct {
	w       io.Writer
	midLine bool
}

func indent(w io.Writer) *indenter { return &indenter{w: w} }

func (in *indenter) Write(p []byte) (int, error) {
	var b strings.Builder
	for _, c := range string(p) {
		if !in.midLine {
			b.WriteString("  ")
		}
		b.WriteRune(c)
		in.midLine = c != '\n'
	}
	if _, err := io.WriteString(in.w, b.String()); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (a *app) deleteCmd() *cobra.Command {
	var files fileFlags
	cmd := &cobra.Command{
		Use:   "delete (NAME | -f FILE|DIR|-)",
		Short: "Delete a function with all its revisions, or the objects of manifests",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(files.files) > 0 {
				if len(args) > 0 {
					return usagef("give NAME or -f, not both")
				}
				return nil
			}
			return exactArgs("NAME")(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(files.files) > 0 {
				return a.deleteFiles(cmd.Context(), files)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.DeleteFunction(cmd.Context(), args[0]); err != nil {
				return fmt.Errorf("delete %s: %w", args[0], err)
			}
			if a.structured() {
				return a.writeOut(map[string]any{"name": args[0], "deleted": true})
			}
			_, err = fmt.Fprintf(a.stdout, "deleted function %s\n", args[0])
			return err
		},
	}
	files.register(cmd)
	return cmd
}

func (a *app) revisionsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "revisions NAME",
		Aliases: []string{"revs"},
		Short:   "List a function's revisions, newest first",
		Args:    exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			revs, err := c.ListRevisions(cmd.Context(), args[0])
			if err != nil {
				return fmt.Errorf("list revisions of %s: %w", args[0], err)
			}
			// {fn}-NNNNN names sort by generation.
			sort.Slice(revs, func(i, j int) bool { return revs[i].Name > revs[j].Name })
			if a.structured() {
				if revs == nil {
					revs = []api.Revision{}
				}
				return a.writeOut(api.RevisionList{Revisions: revs})
			}
			return printRevisions(a.stdout, revs, a.now())
		},
	}
	cmd.AddCommand(a.revisionsDeleteCmd())
	return cmd
}

func printRevisions(w io.Writer, revs []api.Revision, now time.Time) error {
	t := newTable(w, "NAME", "IMAGE", "TRAFFIC", "TAGS", "STATE", "READY", "RESTARTS", "AGE")
	for _, r := range revs {
		st := r.Status
		t.row(r.Name, r.Spec.Image, fmt.Sprintf("%d%%", st.Percent), strings.Join(st.Tags, ","), st.State,
			fmt.Sprintf("%d/%d", st.Ready, st.Desired), fmt.Sprint(st.Restarts), age(now, st.CreatedAt))
	}
	return t.flush()
}
