package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ebbrun/ebb/api"
)

func (a *app) logsCmd() *cobra.Command {
	var opts api.LogOptions
	cmd := &cobra.Command{
		Use:   "logs NAME [-f] [--tail N] [--revision REV | --access]",
		Short: "Print a function's logs, each line prefixed with its replica and stream",
		Args:  exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.streamLogs(cmd.Context(), "logs of "+args[0], opts, func(c *api.Client) (io.ReadCloser, error) {
				return c.Logs(cmd.Context(), args[0], opts)
			})
		},
	}
	f := logFlags(cmd, &opts)
	f.StringVar(&opts.Revision, "revision", "", "only this revision's lines")
	f.BoolVar(&opts.Access, "access", false, "the function's access log (one JSON line per request, from the routers) instead of its output")
	return cmd
}

// logFlags adds the flags every log command takes (-f, --tail).
func logFlags(cmd *cobra.Command, opts *api.LogOptions) *pflag.FlagSet {
	f := cmd.Flags()
	f.BoolVarP(&opts.Follow, "follow", "f", false, "keep printing new lines until interrupted")
	f.IntVar(&opts.Tail, "tail", 0, "print only the last N lines (0 prints all)")
	return f
}

// streamLogs copies the log stream open returns to stdout: a function's
// or a job's. what names it in errors ("logs of hello").
func (a *app) streamLogs(ctx context.Context, what string, opts api.LogOptions, open func(*api.Client) (io.ReadCloser, error)) error {
	if opts.Tail < 0 {
		return usagef("--tail %d: must not be negative", opts.Tail)
	}
	c, err := a.client()
	if err != nil {
		return err
	}
	rc, err := open(c)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer rc.Close()
	_, err = io.Copy(a.stdout, rc)
	// Interrupting a follow is how it is meant to end.
	if err != nil && opts.Follow && errors.Is(ctx.Err(), context.Canceled) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}
