package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ebbrun/ebb/api"
)

func (a *app) cronCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cron",
		Short: "Call a function on a schedule: create, list, get, delete and run-now cron triggers",
		Long: `A cron trigger calls its function on a schedule: a five-field cron expression
("*/5 * * * *"), a descriptor (@hourly, @daily) or "@every 2s", read in a
time zone (--tz, default UTC). Each run is an asynchronous invocation, with
its retries and its result ('ebb invocations get'); the trigger's status
lists its recent runs with their invocation ids and outcomes.

--concurrency says what a run due while the previous one is unfinished
does: Allow (fire anyway), Forbid (skip it) or Replace (fire, and stop
waiting for the previous one, which still runs to its end). A run found
later than --starting-deadline (the control planes were down) is counted as
missed; of several missed, only the newest within the deadline is fired.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.cronCreateCmd(), a.cronListCmd(), a.cronGetCmd(), a.cronDeleteCmd(), a.cronRunNowCmd())
	return cmd
}

// cronNames checks FN and NAME before any request.
func cronNames(args []string) error {
	if err := api.ValidateName("function name", args[0]); err != nil {
		return &usageError{err: err}
	}
	if len(args) > 1 {
		if err := api.ValidateName("cron trigger name", args[1]); err != nil {
			return &usageError{err: err}
		}
	}
	return nil
}

type cronFlags struct {
	schedule, tz, path, method, data, concurrency string
	headers                                       []string
	deadline                                      time.Duration
	successful, failed                            int
	suspend                                       bool
}

// spec builds the trigger's spec; every error is a usage error naming its
// flag.
func (o cronFlags) spec(cmd *cobra.Command) (api.CronTriggerSpec, error) {
	spec := api.CronTriggerSpec{
		Schedule: o.schedule, TimeZone: o.tz, ConcurrencyPolicy: api.CronPolicy(o.concurrency),
		StartingDeadline: api.D(o.deadline), Suspend: o.suspend,
		Request: api.CronRequest{Method: strings.ToUpper(o.method), Path: o.path},
	}
	if o.schedule == "" {
		return spec, usagef("--schedule is required, e.g. --schedule '@every 1m' or '0 3 * * *'")
	}
	if c := o.concurrency; c != "" {
		// Accept any case; the API takes Allow, Forbid, Replace.
		spec.ConcurrencyPolicy = api.CronPolicy(strings.ToUpper(c[:1]) + strings.ToLower(c[1:]))
	}
	if cmd.Flags().Changed("successful-history") {
		spec.SuccessfulHistory = &o.successful
	}
	if cmd.Flags().Changed("failed-history") {
		spec.FailedHistory = &o.failed
	}
	for _, h := range o.headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(k) == "" {
			return spec, usagef("--header %q: want NAME:VALUE", h)
		}
		if spec.Request.Header == nil {
			spec.Request.Header = http.Header{}
		}
		spec.Request.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	body := o.data
	if file, ok := strings.CutPrefix(o.data, "@"); ok {
		f, err := os.Open(file)
		if err != nil {
			return spec, &usageError{err: fmt.Errorf("--data: %w", err)}
		}
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, api.MaxInvocationBody+1))
		if err != nil {
			return spec, &usageError{err: fmt.Errorf("--data: %w", err)}
		}
		body = string(b)
	}
	spec.Request.Body = body
	if err := spec.Validate(); err != nil {
		return spec, &usageError{err: err}
	}
	return spec, nil
}

func (a *app) cronCreateCmd() *cobra.Command {
	var o cronFlags
	cmd := &cobra.Command{
		Use:     "create FN NAME --schedule EXPR",
		Aliases: []string{"set"},
		Short:   "Create a cron trigger of a function, or replace its spec",
		Example: `  ebb cron create report nightly --schedule '0 3 * * *' --tz Europe/Paris --path /run --data '{"full":true}'
  ebb cron create hello tick --schedule '@every 2s' --concurrency Forbid`,
		Args: exactArgs("FN", "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := cronNames(args); err != nil {
				return err
			}
			spec, err := o.spec(cmd)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			tr, created, err := c.PutCronTrigger(cmd.Context(), args[0], args[1], spec)
			if err != nil {
				return fmt.Errorf("create cron trigger %s of %s: %w", args[1], args[0], err)
			}
			if a.structured() {
				return a.writeOut(tr)
			}
			did := "updated"
			if created {
				did = "created"
			}
			_, err = fmt.Fprintf(a.stdout, "%s cron trigger %s of %s (%s %s); next run %s\n", did, tr.Name, tr.Function,
				tr.Schedule, tr.TimeZone, utcTime(tr.Status.NextScheduleTime))
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.schedule, "schedule", "", "cron expression, @hourly-style descriptor or '@every DURATION' (required)")
	f.StringVar(&o.tz, "tz", "", "IANA time zone the schedule is read in (default UTC)")
	f.StringVar(&o.path, "path", "", "request path (default /)")
	f.StringVar(&o.method, "method", "", "request method (default POST)")
	f.StringVar(&o.data, "data", "", "request body, or @FILE to read it from a file (at most 1 MiB)")
	f.StringArrayVar(&o.headers, "header", nil, "request header NAME:VALUE (repeatable)")
	f.StringVar(&o.concurrency, "concurrency", "", "Allow, Forbid or Replace (default Allow)")
	f.DurationVar(&o.deadline, "starting-deadline", 0, "how late a run may still fire (default 1m)")
	f.IntVar(&o.successful, "successful-history", 0, "successful runs to keep (default 3)")
	f.IntVar(&o.failed, "failed-history", 0, "failed runs to keep (default 1)")
	f.BoolVar(&o.suspend, "suspend", false, "create it suspended: no run fires")
	return cmd
}

// utcTime renders a time for a table, in UTC; zero is "-".
func utcTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func (a *app) cronListCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "list FN",
		Aliases: []string{"ls"},
		Short:   "List a function's cron triggers",
		Args:    exactArgs("FN"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := cronNames(args); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			list, err := c.CronTriggers(cmd.Context(), args[0])
			if err != nil {
				return fmt.Errorf("list cron triggers of %s: %w", args[0], err)
			}
			if a.structured() {
				return a.writeOut(api.CronTriggerList{Items: list})
			}
			t := newTable(a.stdout, "NAME", "SCHEDULE", "TZ", "POLICY", "SUSPENDED", "LAST", "NEXT", "MISSED")
			for _, tr := range list {
				t.row(tr.Name, tr.Schedule, tr.TimeZone, string(tr.ConcurrencyPolicy), fmt.Sprint(tr.Suspend),
					age(a.now(), tr.Status.LastScheduleTime), utcTime(tr.Status.NextScheduleTime), fmt.Sprint(tr.Status.Missed))
			}
			return t.flush()
		},
	}
}

// cronTriggerCmd is a command on one trigger (FN NAME): call asks the
// API and returns what -o json|yaml prints and what a table prints.
func (a *app) cronTriggerCmd(use, short, verb string, call func(ctx context.Context, c *api.Client, fn, name string) (any, func(io.Writer) error, error)) *cobra.Command {
	return &cobra.Command{
		Use:   use + " FN NAME",
		Short: short,
		Args:  exactArgs("FN", "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := cronNames(args); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			out, human, err := call(cmd.Context(), c, args[0], args[1])
			if err != nil {
				return fmt.Errorf("%s cron trigger %s of %s: %w", verb, args[1], args[0], err)
			}
			if a.structured() {
				return a.writeOut(out)
			}
			return human(a.stdout)
		},
	}
}

func (a *app) cronGetCmd() *cobra.Command {
	return a.cronTriggerCmd("get", "Show a cron trigger and its recent runs", "get",
		func(ctx context.Context, c *api.Client, fn, name string) (any, func(io.Writer) error, error) {
			tr, err := c.CronTrigger(ctx, fn, name)
			return tr, func(w io.Writer) error { return printCronTrigger(w, tr) }, err
		})
}

func (a *app) cronDeleteCmd() *cobra.Command {
	return a.cronTriggerCmd("delete", "Delete a cron trigger and its run history (queued runs still go)", "delete",
		func(ctx context.Context, c *api.Client, fn, name string) (any, func(io.Writer) error, error) {
			err := c.DeleteCronTrigger(ctx, fn, name)
			return map[string]any{"function": fn, "name": name, "deleted": true}, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "deleted cron trigger %s of %s\n", name, fn)
				return err
			}, err
		})
}

func (a *app) cronRunNowCmd() *cobra.Command {
	return a.cronTriggerCmd("run-now", "Fire a run of a cron trigger now, whatever its schedule", "run",
		func(ctx context.Context, c *api.Client, fn, name string) (any, func(io.Writer) error, error) {
			run, err := c.RunCronTrigger(ctx, fn, name)
			return run, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "fired cron trigger %s of %s: invocation %s\n", name, fn, run.InvocationID)
				return err
			}, err
		})
}

func printCronTrigger(w io.Writer, tr api.CronTrigger) error {
	tw := newTabwriter(w)
	fmt.Fprintf(tw, "Name:\t%s\n", tr.Name)
	fmt.Fprintf(tw, "Function:\t%s\n", tr.Function)
	fmt.Fprintf(tw, "Schedule:\t%s (%s)\n", tr.Schedule, tr.TimeZone)
	fmt.Fprintf(tw, "Request:\t%s %s (%d bytes)\n", tr.Request.Method, tr.Request.Path, len(tr.Request.Body))
	fmt.Fprintf(tw, "Concurrency:\t%s\n", tr.ConcurrencyPolicy)
	fmt.Fprintf(tw, "Starting deadline:\t%s\n", tr.StartingDeadline.Duration)
	fmt.Fprintf(tw, "Suspended:\t%v\n", tr.Suspend)
	fmt.Fprintf(tw, "Last schedule:\t%s\n", utcTime(tr.Status.LastScheduleTime))
	fmt.Fprintf(tw, "Next schedule:\t%s\n", utcTime(tr.Status.NextScheduleTime))
	fmt.Fprintf(tw, "Missed:\t%d\n", tr.Status.Missed)
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(tr.Status.Runs) == 0 {
		_, err := fmt.Fprintln(w, "\nNo runs kept.")
		return err
	}
	fmt.Fprintln(w)
	t := newTable(w, "SCHEDULED", "OUTCOME", "INVOCATION", "NOTE")
	for _, r := range tr.Status.Runs {
		var note []string
		if r.Manual {
			note = append(note, "run-now")
		}
		if r.Replaced {
			note = append(note, "replaced")
		}
		t.row(utcTime(r.Scheduled), string(r.Outcome), r.InvocationID, strings.Join(note, ","))
	}
	return t.flush()
}
