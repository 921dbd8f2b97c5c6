package main

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ebbrun/ebb/api"
)

func (a *app) trafficCmd() *cobra.Command {
	var tags, matches, untags []string
	cmd := &cobra.Command{
		Use:   "traffic NAME REVISION=PERCENT... [--tag REVISION=TAG]... [--match REVISION:HEADER=VALUE[,HEADER=VALUE]...]...",
		Short: "Split a function's traffic between revisions",
		Long: `Split a function's traffic between revisions. The percents must sum to 100.

A REVISION is a revision name (hello-00002, or hello.team-a-00002 in
namespace team-a), its generation number (2), or
@latest (also written latest), which always follows the newest revision.
--tag gives a revision its own URL, {tag}-{function}.{domain} (in a
namespace other than default, {tag}-{function}.{namespace}.{domain}); a tagged
revision that is not in the split gets 0% of the main traffic, which is how
a canary is previewed before it gets any.
--match sends every request to the function's URL whose headers all match
to a revision, whatever the percents say (header names ignore case, values
are exact; a value cannot hold a comma here, the API takes any). Each --match
adds a 0% target; matches are tried in the order given, before the split,
and a tag header (Ebb-Tag or Knative-Serving-Tag) is tried before them.`,
		Example: `  ebb traffic hello hello-00001=90 hello-00002=10
  ebb traffic hello 1=50 @latest=50 --tag 2=canary
  ebb traffic hello @latest=100
  ebb traffic hello 1=100 --match 2:user=tester
  ebb traffic hello 1=100 --match 2:x-env=beta,x-team=core --match 3:user=admin`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(untags) > 0 && (len(args) != 1 || len(tags) > 0 || len(matches) > 0) {
				return usagef("--untag takes the function name alone: it edits the current split (usage: ebb traffic NAME --untag TAG)")
			}
			if len(args) < 2 && len(untags) == 0 {
				return usagef("need a function name and at least one REVISION=PERCENT (usage: %s)", cmd.UseLine())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if len(untags) > 0 {
				return a.untag(cmd.Context(), name, untags) // lifecycle.go
			}
			ns, err := a.inNamespace()
			if err != nil {
				return err
			}
			// Revision names carry the function's qualified name.
			targets, err := parseTraffic(api.QualifiedName(ns, name), args[1:], tags)
			if err != nil {
				return err
			}
			if targets, err = withMatches(api.QualifiedName(ns, name), targets, matches); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			fn, err := c.SetTraffic(cmd.Context(), name, targets)
			if err != nil {
				return fmt.Errorf("set traffic of %s: %w", name, err)
			}
			if a.structured() {
				return a.writeOut(fn)
			}
			return printTraffic(a.stdout, fn)
		},
	}
	cmd.Flags().StringArrayVar(&tags, "tag", nil, "REVISION=TAG: give a revision its own URL (repeatable)")
	cmd.Flags().StringArrayVar(&matches, "match", nil, "REVISION:HEADER=VALUE[,HEADER=VALUE...]: send requests with all these headers to a revision (repeatable, tried in order)")
	cmd.Flags().StringArrayVar(&untags, "untag", nil, "TAG: remove a tag from the current split, alone with NAME (repeatable)")
	return cmd
}

func printTraffic(w io.Writer, fn api.Function) error {
	matched := false
	for _, tt := range fn.Traffic {
		matched = matched || len(tt.Headers) > 0
	}
	if !matched {
		t := newTable(w, "REVISION", "PERCENT", "TAG", "URL")
		for _, tt := range fn.Traffic {
			t.row(targetName(tt, fn.LatestRevision), fmt.Sprintf("%d%%", tt.Percent), tt.Tag, tt.URL)
		}
		return t.flush()
	}
	t := newTable(w, "REVISION", "PERCENT", "TAG", "MATCH", "URL")
	for _, tt := range fn.Traffic {
		t.row(targetName(tt, fn.LatestRevision), fmt.Sprintf("%d%%", tt.Percent), tt.Tag, formatMatch(tt.Headers), tt.URL)
	}
	return t.flush()
}

// formatMatch writes a header match as --match takes it, names sorted.
func formatMatch(h map[string]string) string {
	names := make([]string, 0, len(h))
	for name := range h {
		names = append(names, name)
	}
	sort.Strings(names)
	for i, name := range names {
		names[i] = name + "=" + h[name]
	}
	return strings.Join(names, ",")
}

// withMatches adds a 0% target for each REVISION:HEADER=VALUE[,...] match,
// in order, and checks the result as the API will.
func withMatches(function string, targets []api.TrafficTarget, matches []string) ([]api.TrafficTarget, error) {
	if len(matches) == 0 {
		return targets, nil
	}
	for _, arg := range matches {
		revArg, list, ok := strings.Cut(arg, ":")
		if !ok || list == "" {
			return nil, usagef("--match %q: want REVISION:HEADER=VALUE, such as %s:user=tester", arg, api.RevisionName(function, 2))
		}
		t, _, err := parseTarget(function, revArg)
		if err != nil {
			return nil, usagef("--match %q: %v", arg, err)
		}
		t.Headers = map[string]string{}
		for _, pair := range strings.Split(list, ",") {
			name, value, ok := strings.Cut(pair, "=")
			if !ok || name == "" {
				return nil, usagef("--match %q: %q is not HEADER=VALUE", arg, pair)
			}
			if _, dup := t.Headers[name]; dup {
				return nil, usagef("--match %q: header %s is named twice", arg, name)
			}
			t.Headers[name] = value
		}
		targets = append(targets, t)
	}
	if err := api.ValidateTraffic(targets, func(string) bool { return true }); err != nil {
		return nil, usagef("%v", err)
	}
	return targets, nil
}

// parseTraffic turns REVISION=PERCENT arguments and REVISION=TAG tags into
// traffic targets and checks them as the API will, so mistakes are usage
// errors found before anything is sent.
func parseTraffic(function string, splits, tags []string) ([]api.TrafficTarget, error) {
	var targets []api.TrafficTarget
	index := map[string]int{} // target key → position in targets
	for _, arg := range splits {
		revArg, pctArg, ok := cutLast(arg, "=")
		if !ok {
			return nil, usagef("traffic %q: want REVISION=PERCENT, such as %s=100", arg, api.RevisionName(function, 1))
		}
		t, key, err := parseTarget(function, revArg)
		if err != nil {
			return nil, usagef("traffic %q: %v", arg, err)
		}
		pct, err := strconv.Atoi(strings.TrimSuffix(pctArg, "%"))
		if err != nil || pct < 0 || pct > 100 {
			return nil, usagef("traffic %q: percent %q must be a whole number from 0 to 100", arg, pctArg)
		}
		if _, dup := index[key]; dup {
			return nil, usagef("traffic %q: %s is named twice", arg, revArg)
		}
		t.Percent = pct
		index[key] = len(targets)
		targets = append(targets, t)
	}
	for _, arg := range tags {
		revArg, tag, ok := cutLast(arg, "=")
		if !ok {
			return nil, usagef("--tag %q: want REVISION=TAG, such as %s=canary", arg, api.RevisionName(function, 2))
		}
		t, key, err := parseTarget(function, revArg)
		if err != nil {
			return nil, usagef("--tag %q: %v", arg, err)
		}
		if err := api.ValidateName("tag", tag); err != nil {
			return nil, usagef("--tag %q: %v", arg, err)
		}
		if i, ok := index[key]; ok && targets[i].Tag == "" {
			targets[i].Tag = tag
			continue
		}
		// Not in the split, or already tagged: a 0% target carries the tag.
		t.Tag = tag
		if _, ok := index[key]; !ok {
			index[key] = len(targets)
		}
		targets = append(targets, t)
	}
	if err := api.ValidateTraffic(targets, func(string) bool { return true }); err != nil {
		return nil, usagef("%v", err)
	}
	return targets, nil
}

// parseTarget reads a REVISION: @latest or latest, a generation number, or a
// revision name. key identifies the target for duplicate checks.
func parseTarget(function, s string) (api.TrafficTarget, string, error) {
	switch {
	case s == "@latest" || s == "latest":
		return api.TrafficTarget{LatestRevision: true}, "@latest", nil
	case s != "" && strings.Trim(s, "0123456789") == "":
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return api.TrafficTarget{}, "", fmt.Errorf("generation %q must be a number from 1", s)
		}
		rev := api.RevisionName(function, n)
		return api.TrafficTarget{Revision: rev}, rev, nil
	}
	if err := api.ValidateQualifiedName("revision", s); err != nil {
		return api.TrafficTarget{}, "", err
	}
	return api.TrafficTarget{Revision: s}, s, nil
}

func cutLast(s, sep string) (before, after string, ok bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}
