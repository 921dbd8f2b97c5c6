package main

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ebbrun/ebb/api"
)

func (a *app) jobsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "jobs",
		Aliases: []string{"job"},
		Short:   "Create, list, inspect and delete run-to-completion jobs, and read their logs",
		Long: `A job runs an image to completion, as a Kubernetes Job does: each of its pods
is one run of the image, and its exit code is the result (0 a success). The
job is Complete once --completions pods have succeeded, running at most
--parallelism at once; it fails once more than --backoff-limit pods have
failed, or when it has run longer than --active-deadline (its pods are
killed). A job's spec cannot change: delete it and create it again.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.jobsCreateCmd(), a.jobsListCmd(), a.jobsGetCmd(), a.jobsDeleteCmd(), a.jobsLogsCmd())
	return cmd
}

type jobOptions struct {
	image                    string
	args, env                []string
	secrets, secretFiles     []string
	completions, parallelism int
	backoffLimit             int
	activeDeadline, ttl      time.Duration
	cpu                      float64
	memory                   string
}

// spec builds the job's spec from the flags; changed says whether a flag
// was given (--backoff-limit 0 differs from none).
func (o jobOptions) spec(changed func(string) bool) (api.JobSpec, error) {
	spec := api.JobSpec{Image: o.image, Args: o.args, Completions: o.completions, Parallelism: o.parallelism,
		ActiveDeadline: api.D(o.activeDeadline), TTLAfterFinished: api.D(o.ttl),
		Resources: api.Resources{CPU: o.cpu, Memory: o.memory}}
	if spec.Image == "" {
		return spec, usagef("--image is required")
	}
	if changed("backoff-limit") {
		v := o.backoffLimit
		spec.BackoffLimit = &v
	}
	for _, e := range o.env {
		k, v, ok := strings.Cut(e, "=")
		if !ok || k == "" {
			return spec, usagef("--env %q: want KEY=VALUE", e)
		}
		if spec.Env == nil {
			spec.Env = map[string]string{}
		}
		spec.Env[k] = v
	}
	refs, err := applySecretFlags(nil, o.secrets, o.secretFiles)
	if err != nil {
		return spec, err
	}
	spec.Secrets = refs
	if err := spec.Validate(); err != nil {
		return spec, &usageError{err: err}
	}
	return spec, nil
}

func (a *app) jobsCreateCmd() *cobra.Command {
	var o jobOptions
	cmd := &cobra.Command{
		Use:   "create NAME --image IMAGE [--completions N] [--parallelism N] [--backoff-limit N] [--active-deadline D] [-- ARGS...]",
		Short: "Create a job, which starts running at once",
		Example: `  ebb jobs create migrate --image example.com/migrate:1 -- --to latest
  ebb jobs create batch --image example.com/worker:1 --completions 5 --parallelism 2 --backoff-limit 3 --active-deadline 10m`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return exactArgs("NAME")(cmd, args) // its "missing NAME"
			}
			return nil // the job's arguments follow --; RunE checks
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := api.ValidateName("job name", name); err != nil {
				return &usageError{err: err}
			}
			if dash := cmd.ArgsLenAtDash(); dash >= 0 {
				if dash != 1 {
					return usagef("give the job's NAME only, then -- and its arguments")
				}
				o.args = args[1:]
			} else if len(args) > 1 {
				return usagef("unexpected arguments %q: put the job's arguments after --", args[1:])
			}
			spec, err := o.spec(cmd.Flags().Changed)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			job, created, err := c.CreateJob(cmd.Context(), name, spec)
			if err != nil {
				return fmt.Errorf("create job %s: %w", name, err)
			}
			if a.structured() {
				return a.writeOut(job)
			}
			did := "created"
			if !created {
				did = "unchanged"
			}
			_, err = fmt.Fprintf(a.stdout, "%s job %s in namespace %s\n", did, job.Name, job.Namespace)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.image, "image", "", "image reference already pushed (required)")
	f.StringArrayVar(&o.env, "env", nil, "KEY=VALUE to set an environment variable (repeatable)")
	f.StringArrayVar(&o.secrets, "secret", nil, "NAME:KEY=VAR to set $VAR from key KEY of secret NAME (repeatable)")
	f.StringArrayVar(&o.secretFiles, "secret-file", nil, "NAME:KEY=FILE to put key KEY of secret NAME in /run/secrets/FILE (repeatable)")
	f.IntVar(&o.completions, "completions", 0, "pods that must succeed (default 1)")
	f.IntVar(&o.parallelism, "parallelism", 0, "most pods running at once (default 1)")
	f.IntVar(&o.backoffLimit, "backoff-limit", api.DefaultJobBackoffLimit, "failed pods tolerated; one more fails the job")
	f.DurationVar(&o.activeDeadline, "active-deadline", 0, "fail the job and kill its pods after this long, such as 10m (default: none)")
	f.DurationVar(&o.ttl, "ttl-after-finished", 0, "delete the job this long after it finished (default: keep it)")
	f.Float64Var(&o.cpu, "cpu", 0, "CPU limit per pod in cores (default 1)")
	f.StringVar(&o.memory, "memory", "", "memory limit per pod, such as 128Mi (default 256Mi)")
	return cmd
}

func (a *app) jobsListCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the jobs of the namespace",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			list, err := c.ListJobs(cmd.Context())
			if err != nil {
				return fmt.Errorf("list jobs: %w", err)
			}
			sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
			if a.structured() {
				if list == nil {
					list = []api.Job{}
				}
				return a.writeOut(api.JobList{Jobs: list})
			}
			t := newTable(a.stdout, "NAME", "PHASE", "COMPLETIONS", "ACTIVE", "FAILED", "AGE")
			for _, j := range list {
				t.row(j.Name, jobPhase(j), fmt.Sprintf("%d/%d", j.Status.Succeeded, j.Spec.Completions),
					strconv.Itoa(j.Status.Active), strconv.Itoa(j.Status.Failed), age(a.now(), j.CreatedAt))
			}
			return t.flush()
		},
	}
}

func jobPhase(j api.Job) string {
	switch {
	case j.Status.Phase == "":
		return "Pending"
	case j.Status.Reason != "":
		return j.Status.Phase + " (" + j.Status.Reason + ")"
	}
	return j.Status.Phase
}

func (a *app) jobsGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get NAME",
		Short: "Show a job's spec, status and every attempt's exit code",
		Args:  exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := api.ValidateName("job name", args[0]); err != nil {
				return &usageError{err: err}
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			j, err := c.GetJob(cmd.Context(), args[0])
			if err != nil {
				return fmt.Errorf("get job %s: %w", args[0], err)
			}
			if a.structured() {
				return a.writeOut(j)
			}
			return printJob(a.stdout, j)
		},
	}
}

func printJob(w io.Writer, j api.Job) error {
	fmt.Fprintf(w, "Name:         %s\nNamespace:    %s\nImage:        %s\n", j.Name, j.Namespace, j.Spec.Image)
	fmt.Fprintf(w, "Phase:        %s\n", jobPhase(j))
	fmt.Fprintf(w, "Completions:  %d/%d (parallelism %d, backoff limit %d)\n", j.Status.Succeeded, j.Spec.Completions, j.Spec.Parallelism, j.Spec.Backoff())
	fmt.Fprintf(w, "Active:       %d\nFailed:       %d\n", j.Status.Active, j.Status.Failed)
	if j.Status.Waiting != "" {
		fmt.Fprintf(w, "Waiting:      %s\n", j.Status.Waiting)
	}
	if !j.Status.StartedAt.IsZero() {
		fmt.Fprintf(w, "Started:      %s\n", j.Status.StartedAt.Format(time.RFC3339))
	}
	if !j.Status.CompletedAt.IsZero() {
		fmt.Fprintf(w, "Finished:     %s (after %s)\n", j.Status.CompletedAt.Format(time.RFC3339), j.Status.CompletedAt.Sub(j.Status.StartedAt).Round(time.Millisecond))
	}
	if len(j.Status.Attempts) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	t := newTable(w, "ATTEMPT", "NODE", "EXIT", "REASON", "DURATION")
	for _, at := range j.Status.Attempts {
		exit, dur, reason := "-", "-", at.Reason
		if at.ExitCode != nil {
			exit = strconv.Itoa(*at.ExitCode)
		}
		if !at.StartedAt.IsZero() && at.Finished() {
			dur = at.FinishedAt.Sub(at.StartedAt).Round(time.Millisecond).String()
		}
		if reason == "" {
			reason = "-"
			if !at.Finished() {
				reason = "running"
			}
		}
		t.row(strconv.Itoa(at.Index), at.Node, exit, reason, dur)
	}
	return t.flush()
}

func (a *app) jobsDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a job; its pods still running are killed",
		Args:  exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := api.ValidateName("job name", args[0]); err != nil {
				return &usageError{err: err}
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.DeleteJob(cmd.Context(), args[0]); err != nil {
				return fmt.Errorf("delete job %s: %w", args[0], err)
			}
			if a.structured() {
				return a.writeOut(map[string]any{"name": args[0], "deleted": true})
			}
			_, err = fmt.Fprintf(a.stdout, "deleted job %s\n", args[0])
			return err
		},
	}
}

func (a *app) jobsLogsCmd() *cobra.Command {
	var opts api.LogOptions
	cmd := &cobra.Command{
		Use:   "logs NAME [-f] [--tail N]",
		Short: "Print a job's logs, of every attempt, each line prefixed with its pod and stream",
		Args:  exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.streamLogs(cmd.Context(), "logs of job "+args[0], opts, func(c *api.Client) (io.ReadCloser, error) {
				return c.JobLogs(cmd.Context(), args[0], opts)
			})
		},
	}
	logFlags(cmd, &opts)
	return cmd
}
