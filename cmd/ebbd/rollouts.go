package main

import (
	"context"
	"fmt"

	"golang.org/x/sync/errgroup"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/autoscaler"
	"github.com/ebbrun/ebb/controlplane/rollouts"
	"github.com/ebbrun/ebb/rollout/promql"
)

// startRollouts runs the rollout runner of a control plane. Every control
// plane runs one; the leases in the rollout records decide which drives
// each rollout.
func (d *daemon) startRollouts(ctx context.Context, g *errgroup.Group) (*rollouts.Runner, error) {
	deps := rollouts.Deps{
		Store:    d.store,
		Rollouts: d.caches.Rollouts(),
		Logger:   d.log.With("component", "rollouts"),
	}
	if d.cfg.PrometheusURL != "" {
		client, err := promql.New(promql.Config{URL: d.cfg.PrometheusURL, Logger: deps.Logger})
		if err != nil {
			return nil, fmt.Errorf("--prometheus-url: %w", err)
		}
		deps.PromQL = promql.Checker{Querier: client}
	}
	r, err := rollouts.New(rollouts.Config{Owner: d.cfg.NodeName, Lease: d.cfg.RolloutLease}, deps)
	if err != nil {
		return nil, err
	}
	g.Go(func() error { return r.Run(ctx) })
	return r, nil
}

// statsTee is the autoscaler as the routers' stats sink, with the rollout
// runner getting every report too: the runner judges canaries on the
// outcomes the routers count. It is still the autoscaler for activations
// and its status endpoint.
type statsTee struct {
	*autoscaler.Runner
	rollouts *rollouts.Runner
}

func (t statsTee) Report(stats []api.RevisionStat) {
	t.Runner.Report(stats)
	t.rollouts.Report(stats)
}
