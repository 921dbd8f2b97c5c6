package main

import (
	"context"

	"golang.org/x/sync/errgroup"

	"github.com/ebbrun/ebb/controlplane/jobs"
)

// startJobs runs the job controller of a control plane. Every control
// plane may run one: each writes a job's decision at the version it read,
// so two never both act on one reading. The node agent side needs no
// wiring: every agent runs the job pods the controller places on its node.
func (d *daemon) startJobs(ctx context.Context, g *errgroup.Group) error {
	r, err := jobs.New(jobs.Config{}, d.store, d.log)
	if err != nil {
		return err
	}
	g.Go(func() error { return r.Run(ctx) })
	return nil
}
