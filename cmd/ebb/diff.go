package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/pmezard/go-difflib/difflib"
	"github.com/spf13/cobra"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/manifest"
)

// Exit codes of `ebb diff`, as kubectl diff's: 1 means there are changes,
// so every failure is 2 or more.
const exitDiffChanges = 1

const diffLong = `Show what 'ebb apply -f' would change, as a unified diff of the live
object's manifest (as 'ebb export' writes it) and the manifest's, both with
their defaults filled in. A function that does not exist yet diffs against
nothing. Secret values are never readable, so Secrets are not compared.

Exit code 0: no change; 1: changes; 2 or more: an error (see 'ebb --help').`

func (a *app) diffCmd() *cobra.Command {
	var o fileFlags
	cmd := &cobra.Command{
		Use:   "diff -f FILE|DIR|- [--recursive] [--lenient]",
		Short: "Show what apply would change, as a unified diff (exit 1 when there are changes)",
		Long:  diffLong,
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			changed, err := a.diff(cmd.Context(), o)
			if err != nil {
				return diffFailure(err)
			}
			if changed {
				return &exitError{code: exitDiffChanges, err: errChanges}
			}
			return nil
		},
	}
	o.register(cmd)
	return cmd
}

// errChanges is the "error" of a diff that found changes: its exit code 1
// is the answer, and its line on stderr says so.
var errChanges = errors.New("the manifests differ from the live objects")

// diffFailure keeps a failed diff's exit code clear of 1, which means
// "changes": any failure that would exit 1 exits 2.
func diffFailure(err error) error {
	if exitCode(err) == exitFailure {
		return &exitError{code: exitUsage, err: err}
	}
	return err
}

func (a *app) diff(ctx context.Context, o fileFlags) (bool, error) {
	ns, err := a.inNamespace()
	if err != nil {
		return false, err
	}
	objs, err := a.loadManifests(o, ns)
	if err != nil {
		return false, err
	}
	c, err := a.client()
	if err != nil {
		return false, err
	}
	changed := false
	for _, obj := range objs {
		live, ok, err := a.liveObject(ctx, c, obj)
		if err != nil {
			return false, err
		}
		if !ok {
			continue
		}
		d, err := diffObjects(live, obj)
		if err != nil {
			return false, err
		}
		if d != "" {
			changed = true
			if _, err := io.WriteString(a.stdout, d); err != nil {
				return false, err
			}
		}
	}
	return changed, nil
}

// liveObject reads the object obj describes as a manifest; nil when it
// does not exist. ok is false for kinds diff cannot compare.
func (a *app) liveObject(ctx context.Context, c *api.Client, obj manifest.Object) (live *manifest.Object, ok bool, err error) {
	name := obj.Metadata.Name
	switch {
	case obj.Function != nil:
		fn, err := clientIn(c, obj.Metadata.Namespace).GetFunction(ctx, name)
		if api.IsNotFound(err) {
			return nil, true, nil
		}
		if err != nil {
			return nil, false, fmt.Errorf("get function %s: %w", name, err)
		}
		cur := manifest.FromFunction(fn)
		return &cur, true, nil
	case obj.CronTrigger != nil:
		tr, err := clientIn(c, obj.Metadata.Namespace).CronTrigger(ctx, obj.CronTrigger.Function, name)
		if api.IsNotFound(err) {
			return nil, true, nil
		}
		if err != nil {
			return nil, false, fmt.Errorf("get cron trigger %s: %w", name, err)
		}
		cur := manifest.FromCronTrigger(tr)
		return &cur, true, nil
	case obj.Job != nil:
		job, err := clientIn(c, obj.Metadata.Namespace).GetJob(ctx, name)
		if api.IsNotFound(err) {
			return nil, true, nil
		}
		if err != nil {
			return nil, false, fmt.Errorf("get job %s: %w", name, err)
		}
		cur := manifest.FromJob(job)
		return &cur, true, nil
	case obj.Namespace != nil:
		n, err := c.GetNamespace(ctx, name)
		if api.IsNotFound(err) {
			return nil, true, nil
		}
		if err != nil {
			return nil, false, fmt.Errorf("get namespace %s: %w", name, err)
		}
		return &manifest.Object{APIVersion: manifest.APIVersion, Kind: obj.Kind,
			Metadata: manifest.Metadata{Name: n.Name}, Namespace: &manifest.NamespaceSpec{Quota: n.Quota}}, true, nil
	}
	fmt.Fprintf(a.stderr, "%s: %s/%s is not compared (its values cannot be read back)\n", where(obj), strings.ToLower(obj.Kind), name)
	return nil, false, nil
}

// diffObjects is the unified diff of the live object (nil: none) and the
// desired one, both normalized and rendered as ebb manifests; "" when
// they are the same.
func diffObjects(live *manifest.Object, desired manifest.Object) (string, error) {
	want, err := manifest.Render([]manifest.Object{normalized(desired)}, "yaml")
	if err != nil {
		return "", fmt.Errorf("render %s: %w", desired.Metadata.Name, err)
	}
	var have []byte
	if live != nil {
		if desired.Function != nil && live.Function != nil && !manifest.OwnsTraffic(*desired.Function) {
			// The manifest leaves the traffic to its rollouts: a split
			// mid-rollout is no difference.
			f := *live.Function
			f.Traffic = nil
			l := *live
			l.Function = &f
			live = &l
		}
		if have, err = manifest.Render([]manifest.Object{normalized(*live)}, "yaml"); err != nil {
			return "", fmt.Errorf("render live %s: %w", desired.Metadata.Name, err)
		}
	}
	id := strings.ToLower(desired.Kind) + "/" + desired.Metadata.Name
	if ns := desired.Metadata.Namespace; ns != "" {
		id = ns + "/" + id
	}
	return difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A:        splitLines(have),
		B:        splitLines(want),
		FromFile: "live/" + id,
		ToFile:   "manifest/" + id,
		Context:  3,
	})
}

// splitLines splits b into lines that keep their newline, as difflib
// wants them; empty input is no lines.
func splitLines(b []byte) []string {
	if len(b) == 0 {
		return nil
	}
	s := string(b)
	if !strings.HasSuffix(s, "\n") {
		s += "\n"
	}
	lines := strings.SplitAfter(s, "\n")
	return lines[:len(lines)-1] // SplitAfter's last element is the empty rest
}
