package main

import (
	"fmt"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/autoscaler"
	"github.com/ebbrun/ebb/controlplane/rollouts"
	"github.com/ebbrun/ebb/rollout/promql"
)

// newRollouts builds the rollout runner of a control plane; the leader
// runs it (runLeaderLoops). The leases in the rollout records still decide
// which runner drives each rollout, across a change of leader.
func (d *daemon) newRollouts() (*rollouts.Runner, error) {
	deps := rollouts.Deps{
		Store:    d.leaderStore(),
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
