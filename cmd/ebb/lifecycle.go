package main

import (
	"context"
	"fmt"
	"reflect"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ebbrun/ebb/api"
)

// Revision lifecycle: rollback, revisions delete, traffic --untag and
// deploy --tag/--no-traffic. Each reads the function once and writes its
// split with If-Match on the version read, so a change made meanwhile is a
// 409 to retry, never a split silently overwritten.

func (a *app) rollbackCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rollback NAME [REVISION]",
		Short: "Send all traffic to the previous ready revision, or the one named",
		Long: `Send 100% of a function's traffic to one revision in one write.

Without REVISION it is the newest ready (or idle) revision older than the
one taking the most traffic now. REVISION is a revision name (hello-00002)
or a generation number (2). Tags keep their URLs at 0%; every other
target leaves the split. The split is written only if the function has not
changed since it was read (If-Match); otherwise run the command again.`,
		Example: `  ebb rollback hello
  ebb rollback hello 3`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 || len(args) > 2 {
				return usagef("want NAME and at most one REVISION (usage: %s)", cmd.UseLine())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			ns, err := a.functionNamespace(name)
			if err != nil {
				return err
			}
			named := ""
			if len(args) == 2 {
				if named, err = parseRevisionArg(api.QualifiedName(ns, name), args[1]); err != nil {
					return usagef("revision %q: %v", args[1], err)
				}
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			fn, err := c.GetFunction(cmd.Context(), name)
			if err != nil {
				return fmt.Errorf("read %s: %w", name, err)
			}
			target, err := rollbackTarget(fn, named)
			if err != nil {
				return err
			}
			fn, err = c.SetTrafficWith(cmd.Context(), name, rollbackTraffic(fn, target), api.WriteOptions{IfMatch: fn.ResourceVersion})
			if err != nil {
				return fmt.Errorf("roll back %s to %s: %w", name, target, err)
			}
			fmt.Fprintf(a.stderr, "Rolled back %s: %s takes 100%% of the traffic\n", name, target)
			if a.structured() {
				return a.writeOut(fn)
			}
			return printTraffic(a.stdout, fn)
		},
	}
}

// parseRevisionArg reads a REVISION naming one revision: a generation
// number or a revision name (not @latest, which names none for good).
func parseRevisionArg(function, s string) (string, error) {
	t, _, err := parseTarget(function, s)
	if err != nil {
		return "", err
	}
	if t.LatestRevision {
		return "", fmt.Errorf("name a revision, such as %s or its generation number", api.RevisionName(function, 1))
	}
	return t.Revision, nil
}

// usable reports whether traffic may be sent to a revision in state: a
// failed or crash-looping one may not, nor one still starting.
func usable(state string) bool {
	return state == api.RevisionReady || state == api.RevisionIdle
}

// rollbackTarget picks the revision a rollback sends traffic to: named
// when given (it must exist and not have failed), else the newest usable
// revision older than the one taking the most traffic (the newest of
// those on a tie).
func rollbackTarget(fn api.Function, named string) (string, error) {
	if named != "" {
		rs := findRevision(fn, named)
		if rs == nil {
			return "", &exitError{code: exitNotFound, err: fmt.Errorf("function %s has no revision %s (see 'ebb revisions %s')", fn.Name, named, fn.Name)}
		}
		if rs.State == api.RevisionFailed || rs.State == api.RevisionCrashLoop {
			return "", &exitError{code: exitFailure, err: fmt.Errorf("revision %s is %s: roll back to a revision that runs", named, rs.State)}
		}
		return named, nil
	}
	var current *api.RevisionStatus
	for i := range fn.Revisions {
		if rs := &fn.Revisions[i]; current == nil || rs.Percent > current.Percent ||
			(rs.Percent == current.Percent && rs.Generation > current.Generation) {
			current = rs
		}
	}
	var prev *api.RevisionStatus
	for i := range fn.Revisions {
		rs := &fn.Revisions[i]
		if current != nil && rs.Generation < current.Generation && usable(rs.State) && (prev == nil || rs.Generation > prev.Generation) {
			prev = rs
		}
	}
	if prev == nil {
		from := "its only revision"
		if current != nil {
			from = current.Name
		}
		return "", &exitError{code: exitNotFound, err: fmt.Errorf("function %s has no ready revision older than %s to roll back to; name one with 'ebb rollback %s REVISION'", fn.Name, from, fn.Name)}
	}
	return prev.Name, nil
}

// rollbackTraffic is the split of a rollback to target: 100% to it, and
// each tag kept at 0% where it points now (on target's own entry when it
// tags target).
func rollbackTraffic(fn api.Function, target string) []api.TrafficTarget {
	out := []api.TrafficTarget{{Revision: target, Percent: 100}}
	for _, t := range requestTargets(fn) {
		if t.Tag == "" {
			continue
		}
		kept := api.TrafficTarget{Revision: t.Revision, LatestRevision: t.LatestRevision, Tag: t.Tag}
		if kept.Revision == target && out[0].Tag == "" {
			out[0].Tag = t.Tag
			continue
		}
		out = append(out, kept)
	}
	return out
}

// requestTargets turns a function's split as the API shows it back into
// what a write sends: no URL, and latestRevision targets without the
// revision they resolve to. Every other field is kept as it is.
func requestTargets(fn api.Function) []api.TrafficTarget {
	out := make([]api.TrafficTarget, 0, len(fn.Traffic))
	for _, t := range fn.Traffic {
		t.URL = ""
		if t.LatestRevision {
			t.Revision = ""
		}
		out = append(out, t)
	}
	return out
}

// withoutTag removes tag from targets, dropping a target that routes
// nothing once untagged (0% and nothing else set); found reports whether
// any target carried it.
func withoutTag(targets []api.TrafficTarget, tag string) (out []api.TrafficTarget, found bool) {
	for _, t := range targets {
		if t.Tag != tag {
			out = append(out, t)
			continue
		}
		found = true
		t.Tag = ""
		bare := api.TrafficTarget{Revision: t.Revision, LatestRevision: t.LatestRevision}
		if t.Percent == 0 && reflect.DeepEqual(t, bare) {
			continue
		}
		out = append(out, t)
	}
	return out, found
}

// untag is `ebb traffic NAME --untag TAG...`: the split without those
// tags, written with If-Match.
func (a *app) untag(ctx context.Context, name string, tags []string) error {
	for _, tag := range tags {
		if err := api.ValidateName("tag", tag); err != nil {
			return usagef("--untag %q: %v", tag, err)
		}
	}
	c, err := a.client()
	if err != nil {
		return err
	}
	fn, err := c.GetFunction(ctx, name)
	if err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	targets := requestTargets(fn)
	for _, tag := range tags {
		var found bool
		if targets, found = withoutTag(targets, tag); !found {
			return &exitError{code: exitNotFound, err: fmt.Errorf("function %s has no tag %q", name, tag)}
		}
	}
	fn, err = c.SetTrafficWith(ctx, name, targets, api.WriteOptions{IfMatch: fn.ResourceVersion})
	if err != nil {
		return fmt.Errorf("untag %s of %s: %w", strings.Join(tags, ", "), name, err)
	}
	if a.structured() {
		return a.writeOut(fn)
	}
	return printTraffic(a.stdout, fn)
}

// checkTagFlags checks deploy's --tag and --no-traffic on their own.
func (o deployOptions) checkTagFlags() error {
	if o.tag != "" {
		if err := api.ValidateName("tag", o.tag); err != nil {
			return usagef("--tag: %v", err)
		}
	}
	if o.noTraffic && o.tag == "" {
		return usagef("--no-traffic needs --tag NAME: a revision without traffic is reachable only at its tag's URL")
	}
	return nil
}

// putDeploy writes a deploy's spec. With --tag the new latest revision
// then gets the tag (moved there if another target had it); with
// --no-traffic the split is first pinned to the revisions @latest names
// now, so the new revision takes none of it. Each write is If-Match on the
// one before, so nothing another writer did in between is overwritten.
func (a *app) putDeploy(ctx context.Context, c *api.Client, name string, spec api.FunctionSpec, existing api.Function, o deployOptions) (api.Function, bool, error) {
	if o.tag == "" {
		return c.PutFunction(ctx, name, spec)
	}
	rv := existing.ResourceVersion
	if o.noTraffic {
		pinned := requestTargets(existing)
		follows := false
		for i, t := range pinned {
			if t.LatestRevision {
				follows = true
				pinned[i].LatestRevision, pinned[i].Revision = false, existing.LatestRevision
			}
		}
		if follows {
			fn, err := c.SetTrafficWith(ctx, name, pinned, api.WriteOptions{IfMatch: rv})
			if err != nil {
				return api.Function{}, false, fmt.Errorf("pin the traffic of %s to %s: %w", name, existing.LatestRevision, err)
			}
			rv = fn.ResourceVersion
			fmt.Fprintf(a.stderr, "Pinned the traffic of %s that followed @latest to %s\n", name, existing.LatestRevision)
		}
	}
	fn, created, err := c.PutFunctionWith(ctx, name, spec, api.WriteOptions{IfMatch: rv})
	if err != nil {
		return api.Function{}, false, err
	}
	latest := fn.LatestRevision
	targets, _ := withoutTag(requestTargets(fn), o.tag)
	targets = append(targets, api.TrafficTarget{Revision: latest, Tag: o.tag})
	if fn, err = c.SetTrafficWith(ctx, name, targets, api.WriteOptions{IfMatch: fn.ResourceVersion}); err != nil {
		return api.Function{}, false, fmt.Errorf("tag %s %q: %w", latest, o.tag, err)
	}
	return fn, created, nil
}

func (a *app) revisionsDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME REVISION...",
		Short: "Delete revisions that take no traffic",
		Long: `Delete revisions of a function with what runs for them. A REVISION is a
revision name (hello-00002) or a generation number (2). A revision the
traffic split names (by a percent, a tag or a match) or the latest one is
refused: move its traffic with 'ebb traffic' or 'ebb rollback' first.
Unrouted revisions are also deleted by the control plane's garbage
collector, which keeps the newest (ebbd --revision-history).`,
		Example: `  ebb revisions delete hello hello-00002
  ebb revisions delete hello 1 2 3`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 2 {
				return usagef("need a function name and at least one REVISION (usage: %s)", cmd.UseLine())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			ns, err := a.functionNamespace(name)
			if err != nil {
				return err
			}
			revs := make([]string, 0, len(args)-1)
			for _, arg := range args[1:] {
				rev, err := parseRevisionArg(api.QualifiedName(ns, name), arg)
				if err != nil {
					return usagef("revision %q: %v", arg, err)
				}
				revs = append(revs, rev)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			for _, rev := range revs {
				if err := c.DeleteRevision(cmd.Context(), name, rev); err != nil {
					return fmt.Errorf("delete revision %s of %s: %w", rev, name, err)
				}
				if !a.structured() {
					fmt.Fprintf(a.stdout, "deleted revision %s\n", rev)
				}
			}
			if a.structured() {
				return a.writeOut(map[string]any{"name": name, "deleted": revs})
			}
			return nil
		},
	}
}
