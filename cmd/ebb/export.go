package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/manifest"
)

func (a *app) exportCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "export [function|namespace|secret|job] NAME [-o yaml|json]",
		Short: "Write an object's manifest, which applies back unchanged",
		Long: `Write an object's manifest (apiVersion: ebb.dev/v1). A function (the
default kind): the spec as stored, its labels and its traffic split. A
namespace: its quota. A secret: its keys, each read at apply time from an
environment variable (DB_PASSWORD for key password of secret db), since
the API never gives a value back. A job: its spec, not its status.
Applying the manifest back changes
nothing, so 'ebb export hello | ebb apply -f -' is a no-op (for a secret,
with its variables set to its values). YAML unless -o json.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return usagef("export takes NAME or KIND NAME")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			format := "yaml"
			if a.output == "json" {
				format = "json"
			}
			kind, name := "function", args[0]
			if len(args) == 2 {
				kind, name = args[0], args[1]
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			obj, err := exportObject(cmd.Context(), c, kind, name)
			if err != nil {
				return err
			}
			out, err := manifest.Render([]manifest.Object{obj}, format)
			if err != nil {
				return fmt.Errorf("export %s %s: %w", kind, name, err)
			}
			_, err = a.stdout.Write(out)
			return err
		},
	}
}

// exportObject reads one object of kind and makes its manifest.
func exportObject(ctx context.Context, c *api.Client, kind, name string) (manifest.Object, error) {
	switch kind {
	case "function", "functions", "fn":
		fn, err := c.GetFunction(ctx, name)
		if err != nil {
			return manifest.Object{}, fmt.Errorf("export function %s: %w", name, err)
		}
		return manifest.FromFunction(fn), nil
	case "namespace", "namespaces", "ns":
		ns, err := c.GetNamespace(ctx, name)
		if err != nil {
			return manifest.Object{}, fmt.Errorf("export namespace %s: %w", name, err)
		}
		return manifest.FromNamespace(ns), nil
	case "secret", "secrets":
		s, err := c.GetSecret(ctx, name)
		if err != nil {
			return manifest.Object{}, fmt.Errorf("export secret %s: %w", name, err)
		}
		return manifest.FromSecret(s), nil
	case "job", "jobs":
		j, err := c.GetJob(ctx, name)
		if err != nil {
			return manifest.Object{}, fmt.Errorf("export job %s: %w", name, err)
		}
		return manifest.FromJob(j), nil
	}
	return manifest.Object{}, usagef("export: kind %q: must be function, namespace, secret or job", kind)
}

// waitFor are the conditions `ebb wait --for` takes. Each says whether
// the function is there yet; an error means it never will be.
var waitFor = map[string]func(api.Function) (bool, error){
	// ready: the latest revision is not failing and has the replicas it
	// is asked for (none, for one at rest at zero): deploy's judgement
	// of a revision it did not just create.
	"ready": func(fn api.Function) (bool, error) {
		done, _, err := judge(waitGoal{revision: fn.LatestRevision}, fn, &waitState{})
		return done, err
	},
	// idle: every revision is at zero and asked for nothing.
	"idle": func(fn api.Function) (bool, error) {
		for _, r := range fn.Revisions {
			if r.Desired > 0 || r.Ready > 0 {
				return false, nil
			}
		}
		return true, nil
	},
}

func (a *app) waitCmd() *cobra.Command {
	var forCond string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "wait NAME --for ready|idle [--timeout 60s]",
		Short: "Wait until a function is ready (its routed revisions have their replicas) or idle (at zero)",
		Args:  exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			cond, ok := waitFor[forCond]
			if !ok {
				return usagef("--for %q: must be ready or idle", forCond)
			}
			if timeout <= 0 {
				return usagef("--timeout %s: must be positive", timeout)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			fn, err := a.waitUntil(ctx, c, args[0], cond)
			var failed *revisionFailed
			if errors.As(err, &failed) {
				return &exitError{code: exitDeployWait, err: err}
			}
			if err != nil {
				if ctx.Err() == context.DeadlineExceeded && cmd.Context().Err() == nil {
					return &exitError{code: exitDeployWait, err: fmt.Errorf("function %s was not %s within %s", args[0], forCond, timeout)}
				}
				return fmt.Errorf("wait for %s: %w", args[0], err)
			}
			if a.structured() {
				return a.writeOut(fn)
			}
			_, err = fmt.Fprintf(a.stdout, "function/%s %s\n", fn.Name, forCond)
			return err
		},
	}
	cmd.Flags().StringVar(&forCond, "for", "", "condition: ready or idle")
	cmd.Flags().DurationVar(&timeout, "timeout", 60*time.Second, "how long to wait")
	return cmd
}

// waitUntil follows the function through the watch endpoint until cond
// holds. A watch that breaks is opened again; the function's current
// state comes first on each (ADDED), so no change is missed.
func (a *app) waitUntil(ctx context.Context, c *api.Client, name string, cond func(api.Function) (bool, error)) (api.Function, error) {
	fn, err := c.GetFunction(ctx, name)
	if err != nil {
		return fn, err
	}
	if done, err := cond(fn); done || err != nil {
		return fn, err
	}
	for {
		events, err := c.WatchFunctions(ctx, api.WatchOptions{})
		if err != nil {
			return fn, err
		}
		for ev := range events {
			switch {
			case ev.Type == api.WatchError:
				err = ev.Err
			case ev.Type == api.WatchDeleted && ev.Object != nil && ev.Object.Name == name:
				return *ev.Object, fmt.Errorf("function %s was deleted", name)
			case ev.Object != nil && ev.Object.Name == name:
				fn = *ev.Object
				if done, err := cond(fn); done || err != nil {
					return fn, err
				}
			}
		}
		if ctx.Err() != nil {
			return fn, ctx.Err()
		}
		if err != nil {
			fmt.Fprintf(a.stderr, "watch broke (%v); watching again\n", err)
		}
		// A stream that ended at once must not spin: the next open waits
		// its turn.
		select {
		case <-ctx.Done():
			return fn, ctx.Err()
		case <-time.After(a.pollInterval):
		}
	}
}
