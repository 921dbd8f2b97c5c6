package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/ebbrun/ebb/api"
)

func (a *app) logsCmd() *cobra.Command {
	var opts api.LogOptions
	cmd := &cobra.Command{
		Use:   "logs NAME [-f] [--tail N] [--revision REV]",
		Short: "Print a function's logs, each line prefixed with its replica and stream",
		Args:  exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.Tail < 0 {
				return usagef("--tail %d: must not be negative", opts.Tail)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			rc, err := c.Logs(ctx, args[0], opts)
			if err != nil {
				return fmt.Errorf("logs of %s: %w", args[0], err)
			}
			defer rc.Close()
			_, err = io.Copy(a.stdout, rc)
			// Interrupting a follow is how it is meant to end.
			if err != nil && opts.Follow && errors.Is(ctx.Err(), context.Canceled) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("logs of %s: %w", args[0], err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&opts.Follow, "follow", "f", false, "keep printing new lines until interrupted")
	f.IntVar(&opts.Tail, "tail", 0, "print only the last N lines (0 prints all)")
	f.StringVar(&opts.Revision, "revision", "", "only this revision's lines")
	return cmd
}
