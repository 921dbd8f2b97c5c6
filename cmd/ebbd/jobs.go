package main

import (
	"github.com/ebbrun/ebb/controlplane/jobs"
	"github.com/ebbrun/ebb/internal/liveness"
)

// newJobs builds the job controller of a control plane, which the leader
// runs (runLeaderLoops); it writes a job's decision at the version it
// read, so two never act on one reading even across a change of leader. A
// node is live while its lease holds. The node agent side needs no wiring:
// every agent runs the job pods the controller places on its node.
func (d *daemon) newJobs(live *liveness.Watcher) (leaderLoop, error) {
	r, err := jobs.New(jobs.Config{Live: live.Live}, d.leaderStore(), d.log)
	if err != nil {
		return nil, err
	}
	return r.Run, nil
}
