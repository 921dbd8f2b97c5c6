package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/ebbrun/ebb/api"
)

// Watch retries: a read that fails on the server's side or in transit
// (ebbd restarting, say) is tried again, waiting twice as long each time
// up to watchMaxWait, and the watch gives up after watchRetries failures
// in a row: half a minute and more at the default poll interval.
const (
	watchRetries = 10
	watchMaxWait = 5 * time.Second
)

const rolloutLong = `Follow and steer the canary rollouts of a function.

A function whose spec has a rollout policy (rollout: steps, interval,
stepDuration, maxErrorRate, maxLatencyRatio, minRequests, deadline, promql)
does not move all its traffic to a new revision at once: the new revision,
the canary, gets the policy's first step's percent, and the control plane
judges it every interval on its error rate and latency against the stable
revision. A step that passes for its whole duration moves the canary to the
next; a failed check moves 100% back to the stable revision (RolledBack).

A rollout's ID is its canary revision's name (hello-00002), or here its
generation number (2). Without ID a command acts on the newest rollout.

  status   the phase, the current step, each step's last analysis and the
           reason; --watch follows it until it ends and exits 0 when it
           Succeeded, 7 when it was RolledBack or Aborted
  promote  end it now in the canary's favour: 100% to the canary
  pause    hold it at its current percent; no check runs until resume
  resume   continue a paused rollout; the current step starts over
  abort    end it now in the stable revision's favour: 100% back to stable

An action the rollout's phase forbids (resuming one that succeeded, say) is
refused with the server's reason and exit code 4. Setting traffic by hand
('ebb traffic', 'ebb rollback') during a rollout aborts it.`

func (a *app) rolloutCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollout",
		Short: "Follow and steer canary rollouts: status, promote, pause, resume, abort",
		Long:  rolloutLong,
		Example: `  ebb rollout status hello --watch
  ebb rollout status hello 2 -o json
  ebb rollout pause hello
  ebb rollout promote hello --reason "checked the dashboards"
  ebb rollout abort hello hello-00002 --reason "support tickets"`,
		Args: cobra.ArbitraryArgs,
		RunE: groupRunE,
	}
	cmd.AddCommand(
		a.rolloutStatusCmd(),
		a.rolloutActionCmd(api.RolloutPromote, "End a rollout now: the canary gets 100% of the traffic", true),
		a.rolloutActionCmd(api.RolloutPause, "Hold a rollout at its current percent until resume", false),
		a.rolloutActionCmd(api.RolloutResume, "Continue a paused rollout; its current step starts over", false),
		a.rolloutActionCmd(api.RolloutAbort, "End a rollout now: the stable revision gets 100% back", true),
	)
	return cmd
}

func (a *app) rolloutStatusCmd() *cobra.Command {
	var watch bool
	cmd := &cobra.Command{
		Use:   "status NAME [ID]",
		Short: "Show a rollout: phase, step, each step's last analysis and the reason",
		Long: `Show a rollout: its phase, the canary and stable revisions and their
percents, the current step, each step's last analysis (verdict, requests,
error rate, p50 and p99 of canary and stable, latency ratio, PromQL values)
and the reason it ended. Without ID, the newest rollout of the function.

--watch prints one line each time the phase, the step, the percent or the
last analysis changes (with -o json, the rollout as one JSON object per
line), until the rollout ends: exit 0 when it Succeeded, 7 with its reason
when it was RolledBack or Aborted. It reads the rollout every 500ms, or
every analysis interval when that is shorter.`,
		Example: `  ebb rollout status hello
  ebb rollout status hello --watch && echo promoted
  ebb rollout status hello hello-00002 -o yaml`,
		Args: rolloutArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			name, id, err := a.parseRolloutArgs(args)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			r, err := readRollout(ctx, c, name, id)
			if err != nil {
				return err
			}
			if watch {
				return a.watchRollout(ctx, c, name, r)
			}
			if a.structured() {
				return a.writeOut(r)
			}
			return printRollout(a.stdout, r, a.now())
		},
	}
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "follow the rollout until it ends; exit 7 if it was rolled back or aborted")
	return cmd
}

func (a *app) rolloutActionCmd(action, short string, withReason bool) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   action + " NAME [ID]",
		Short: short,
		Long: short + `.

Without ID, the newest rollout of the function. Prints the rollout's phase
and reason afterwards (-o json: the whole rollout). A rollout that has
ended takes no action: the server refuses it with its reason (exit 4).`,
		Args: rolloutArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			name, id, err := a.parseRolloutArgs(args)
			if err != nil {
				return err
			}
			if err := (api.RolloutAction{Reason: reason}).Validate(); err != nil {
				return usagef("--reason: %v", err)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			if id == "" {
				newest, err := newestRollout(ctx, c, name)
				if err != nil {
					return err
				}
				id = newest.ID
			}
			r, err := c.RolloutAction(ctx, name, id, action, reason)
			if err != nil {
				return fmt.Errorf("%s rollout %s of %s: %w", action, id, name, err)
			}
			if a.structured() {
				return a.writeOut(r)
			}
			_, err = fmt.Fprintln(a.stdout, actionSummary(name, r))
			return err
		},
	}
	if withReason {
		cmd.Flags().StringVar(&reason, "reason", "", "why, recorded as the rollout's reason (one line)")
	}
	return cmd
}

// rolloutArgs takes NAME and an optional ID.
func rolloutArgs(cmd *cobra.Command, args []string) error {
	switch {
	case len(args) == 0:
		return usagef("missing NAME (usage: %s)", cmd.UseLine())
	case len(args) > 2:
		return usagef("unexpected argument %q (usage: %s)", args[2], cmd.UseLine())
	}
	return nil
}

// parseRolloutArgs checks NAME and reads ID, a revision name or a
// generation number, into the canary revision's name; "" when not given.
func (a *app) parseRolloutArgs(args []string) (name, id string, err error) {
	name = args[0]
	ns, err := a.functionNamespace(name)
	if err != nil {
		return "", "", err
	}
	if len(args) < 2 {
		return name, "", nil
	}
	if id, err = parseRevisionArg(api.QualifiedName(ns, name), args[1]); err != nil {
		return "", "", usagef("rollout %q: %v", args[1], err)
	}
	return name, id, nil
}

// readRollout reads rollout id of function name, or its newest rollout
// when id is "".
func readRollout(ctx context.Context, c *api.Client, name, id string) (api.Rollout, error) {
	if id == "" {
		return newestRollout(ctx, c, name)
	}
	r, err := c.Rollout(ctx, name, id)
	if err != nil {
		return api.Rollout{}, fmt.Errorf("read rollout %s of %s: %w", id, name, err)
	}
	return r, nil
}

// newestRollout is the first rollout the API lists: the newest.
func newestRollout(ctx context.Context, c *api.Client, name string) (api.Rollout, error) {
	list, err := c.Rollouts(ctx, name)
	if err != nil {
		return api.Rollout{}, fmt.Errorf("list rollouts of %s: %w", name, err)
	}
	if len(list) == 0 {
		return api.Rollout{}, &exitError{code: exitNotFound, err: fmt.Errorf(
			"function %s has no rollouts: one starts when a spec change makes a new revision of a function with a rollout policy", name)}
	}
	r := list[0]
	if err := api.ValidateQualifiedName("rollout id", r.ID); err != nil {
		// Not the user's mistake, so not a usage error: %v drops the type.
		return api.Rollout{}, fmt.Errorf("list rollouts of %s: the API listed a rollout with a bad id: %v", name, err)
	}
	return r, nil
}

// watchRollout prints r, then reads it again every poll interval and
// prints it each time its progress changes, until it ends. A rollout that
// Succeeded is success; RolledBack and Aborted are exitRolloutFailed with
// the rollout's reason, so scripts can gate on it.
func (a *app) watchRollout(ctx context.Context, c *api.Client, name string, r api.Rollout) error {
	emit := a.rolloutEmitter()
	if err := emit(r); err != nil {
		return err
	}
	failures := 0
	for !r.Phase.Final() {
		if err := a.sleep(ctx, pollWait(a.pollInterval, r.Policy.Interval.Duration, failures)); err != nil {
			return fmt.Errorf("watch rollout %s of %s: %w", r.ID, name, err)
		}
		next, err := c.Rollout(ctx, name, r.ID)
		if err != nil {
			if ctx.Err() != nil || !transient(err) || failures+1 >= watchRetries {
				return fmt.Errorf("watch rollout %s of %s: %w", r.ID, name, err)
			}
			if failures == 0 {
				fmt.Fprintf(a.stderr, "reading rollout %s failed (%s); trying again\n", r.ID, plain(err.Error()))
			}
			failures++
			continue
		}
		if failures > 0 {
			fmt.Fprintf(a.stderr, "reading rollout %s works again\n", r.ID)
			failures = 0
		}
		if !sameProgress(r, next) {
			if err := emit(next); err != nil {
				return err
			}
		}
		r = next
	}
	if r.Phase == api.RolloutSucceeded {
		return nil
	}
	return &exitError{code: exitRolloutFailed, err: fmt.Errorf("rollout %s of %s ended %s: %s", r.ID, name, r.Phase, orDash(plain(r.Reason)))}
}

// pollWait is how long a watch waits before its next read: every poll
// interval, or every analysis interval when that is shorter (never below
// the shortest interval a policy may have), doubled for each failed read
// in a row up to watchMaxWait.
func pollWait(poll, analysis time.Duration, failures int) time.Duration {
	wait := poll
	if analysis > 0 && analysis < wait {
		wait = max(analysis, api.MinRolloutInterval)
	}
	for range failures {
		wait = min(2*wait, max(poll, watchMaxWait))
	}
	return wait
}

// transient reports whether a failed read may work when tried again: the
// server failed (5xx) or the request never got an answer.
func transient(err error) bool {
	var ue *url.Error
	return api.IsServerError(err) || (errors.As(err, &ue) && !errors.Is(err, context.Canceled))
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// rolloutEmitter prints one state of a watched rollout: a line for
// people, one compact JSON object a line (NDJSON) with -o json, or one
// YAML document each with -o yaml.
func (a *app) rolloutEmitter() func(api.Rollout) error {
	switch a.output {
	case "json":
		return func(r api.Rollout) error {
			b, err := json.Marshal(r)
			if err != nil {
				return err
			}
			_, err = a.stdout.Write(append(b, '\n'))
			return err
		}
	case "yaml":
		return func(r api.Rollout) error {
			if _, err := io.WriteString(a.stdout, "---\n"); err != nil {
				return err
			}
			return writeYAML(a.stdout, r)
		}
	}
	return func(r api.Rollout) error {
		_, err := fmt.Fprintf(a.stdout, "%s  %s\n", a.now().Format("15:04:05"), progressLine(r))
		return err
	}
}

// sameProgress reports whether b shows nothing new over a: the same phase,
// step, percent, reason and last analysis.
func sameProgress(a, b api.Rollout) bool {
	la, lb := lastAnalysis(a), lastAnalysis(b)
	sameLast := la == lb || (la != nil && lb != nil && la.At.Equal(lb.At) && la.Verdict == lb.Verdict && la.Reason == lb.Reason)
	return a.Phase == b.Phase && a.Step == b.Step && a.Percent == b.Percent && a.Reason == b.Reason &&
		len(a.Steps) == len(b.Steps) && sameLast
}

// lastAnalysis is the newest analysis of any step: a step just entered
// has none yet, and the one before's is what moved the canary there.
func lastAnalysis(r api.Rollout) *api.RolloutAnalysis {
	for i := len(r.Steps) - 1; i >= 0; i-- {
		if r.Steps[i].Last != nil {
			return r.Steps[i].Last
		}
	}
	return nil
}

// progressLine is one watched state: phase, step, how many of the step's
// checks passed, the last analysis in brief and, once the rollout ended,
// why.
func progressLine(r api.Rollout) string {
	s := fmt.Sprintf("%-11s  %s", plain(string(r.Phase)), stepText(r))
	if n := len(r.Steps); n > 0 {
		s += fmt.Sprintf("  passed %d/%d", r.Steps[n-1].Passed, r.Steps[n-1].Checks)
	}
	if last := lastAnalysis(r); last != nil {
		s += "  last check: " + analysisBrief(*last)
	} else {
		s += "  no check yet"
	}
	if r.Reason != "" {
		s += "  reason: " + plain(r.Reason)
	}
	return s
}

// stepText is "step 2/4: canary 25%".
func stepText(r api.Rollout) string {
	return fmt.Sprintf("step %d/%d: canary %d%%", r.Step+1, len(r.Policy.Steps), r.Percent)
}

// analysisBrief is one analysis on one line: verdict, requests, error
// rate and the latencies compared (p99s, or p50s in a small window).
func analysisBrief(an api.RolloutAnalysis) string {
	q, canary, stable := "p99", an.Canary.P99, an.Stable.P99
	if an.LatencyQuantile == "p50" {
		q, canary, stable = "p50", an.Canary.P50, an.Stable.P50
	}
	s := fmt.Sprintf("%s, %d requests, error rate %s, %s %s vs %s", plain(string(an.Verdict)), an.Canary.Requests,
		percent(an.ErrorRate), q, latency(canary), latency(stable))
	if an.LatencyRatio > 0 {
		s += " (" + ratio(an.LatencyRatio, "") + ")"
	}
	return s
}

// actionSummary is what an action prints: the phase it left the rollout
// in, its step and, when set, its reason.
func actionSummary(name string, r api.Rollout) string {
	s := fmt.Sprintf("rollout %s of %s: %s, %s", plain(r.ID), name, plain(string(r.Phase)), stepText(r))
	if r.Reason != "" {
		s += "; reason: " + plain(r.Reason)
	}
	return s
}

// printRollout is status's view for people: a summary, a table of the
// steps reached with their last analysis's figures, and each analysis's
// reason and PromQL values.
func printRollout(w io.Writer, r api.Rollout, now time.Time) error {
	tw := newTabwriter(w)
	field := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	of := plain(r.ID) + " of " + plain(r.Function)
	if r.Namespace != "" && r.Namespace != api.DefaultNamespace {
		of += " in namespace " + plain(r.Namespace)
	}
	field("Rollout", of)
	field("Phase", plain(string(r.Phase)))
	step := stepText(r)
	if r.Phase == api.RolloutProgressing && !r.StepStart.IsZero() {
		step += fmt.Sprintf(", for %s of %s", age(now, r.StepStart), shortDuration(r.Policy.StepDuration.Duration))
	}
	field("Step", step)
	field("Canary", fmt.Sprintf("%s at %d%%", plain(r.Canary), r.Percent))
	field("Stable", fmt.Sprintf("%s at %d%%", plain(r.Stable), 100-r.Percent))
	field("Started", when(now, r.StartedAt))
	if !r.FinishedAt.IsZero() {
		field("Finished", when(now, r.FinishedAt))
	}
	field("Policy", policyText(r.Policy))
	if r.Reason != "" {
		field("Reason", plain(r.Reason))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Steps) == 0 {
		_, err := fmt.Fprintln(w, "\nNo step reached yet.")
		return err
	}
	fmt.Fprintln(w)
	t := newTable(w, "STEP", "PERCENT", "PASSED", "VERDICT", "REQUESTS", "ERROR-RATE", "P50", "P99", "RATIO")
	for i, s := range r.Steps {
		row := []string{strconv.Itoa(i + 1), fmt.Sprintf("%d%%", s.Percent), fmt.Sprintf("%d/%d", s.Passed, s.Checks)}
		if an := s.Last; an != nil {
			row = append(row, plain(string(an.Verdict)),
				fmt.Sprintf("%d/%d", an.Canary.Requests, an.Stable.Requests),
				percent(an.ErrorRate),
				latency(an.Canary.P50)+"/"+latency(an.Stable.P50),
				latency(an.Canary.P99)+"/"+latency(an.Stable.P99),
				ratio(an.LatencyRatio, an.LatencyQuantile))
		}
		t.row(row...)
	}
	if err := t.flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nREQUESTS, P50 and P99 are canary/stable over the last analysis's window.")
	for i, s := range r.Steps {
		if s.Last == nil {
			fmt.Fprintf(w, "Step %d: no check yet.\n", i+1)
			continue
		}
		an := s.Last
		fmt.Fprintf(w, "Step %d, last check %s: %s: %s\n", i+1, when(now, an.At), plain(string(an.Verdict)), orDash(plain(an.Reason)))
		for j, p := range an.PromQL {
			value := strconv.FormatFloat(p.Value, 'g', 4, 64)
			if p.Missing {
				value = "no value"
			}
			fmt.Fprintf(w, "  promql[%d] %s = %s (max %s)\n", j, plain(p.Query), value, strconv.FormatFloat(p.Max, 'g', 4, 64))
		}
	}
	return nil
}

// policyText is a policy on one line.
func policyText(p api.RolloutPolicy) string {
	steps := make([]string, len(p.Steps))
	for i, s := range p.Steps {
		steps[i] = strconv.Itoa(s) + "%"
	}
	s := fmt.Sprintf("steps %s, a check every %s, %s a step, maxErrorRate %g, maxLatencyRatio %g (slack %s), minRequests %d, deadline %s",
		strings.Join(steps, " "), shortDuration(p.Interval.Duration), shortDuration(p.StepDuration.Duration),
		p.ErrorRateLimit(), p.MaxLatencyRatio, shortDuration(p.LatencySlack.Duration), p.MinRequests, shortDuration(p.Deadline.Duration))
	if n := len(p.PromQL); n > 0 {
		s += fmt.Sprintf(", %d PromQL checks", n)
	}
	return s
}

// shortDuration is d without zero units at its end: 1m, not 1m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// when is a time and how long ago it was.
func when(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339) + " (" + age(now, t) + " ago)"
}

// percent renders a share 0-1 as a percent with two decimals.
func percent(share float64) string {
	return strconv.FormatFloat(share*100, 'f', 2, 64) + "%"
}

// ratio renders canary p99 / stable p99; 0 means it was not compared.
// ratio is a latency ratio with the quantile it compares: 1.40x p99.
func ratio(r float64, quantile string) string {
	if r <= 0 {
		return "-"
	}
	return strings.TrimSpace(strconv.FormatFloat(r, 'f', 2, 64) + "x " + quantile)
}

// latency rounds a latency to about three digits: 850µs, 12.3ms, 1.25s.
func latency(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < 10*time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	case d < time.Second:
		return d.Round(100 * time.Microsecond).String()
	}
	return d.Round(10 * time.Millisecond).String()
}

// plain makes text from the server safe to print on one line: line
// breaks, tabs and other characters a terminal would act on are shown
// escaped, so a reason cannot forge lines or colour the screen.
func plain(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return !unicode.IsGraphic(r) }) < 0 {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unicode.IsGraphic(r) {
			b.WriteRune(r)
			continue
		}
		q := strconv.QuoteRune(r) // '\n', '\x1b', '\u202e'
		b.WriteString(q[1 : len(q)-1])
	}
	return b.String()
}
