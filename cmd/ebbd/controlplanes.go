package main

import (
	"context"
	"errors"
	"strings"
	"sync"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/autoscaler"
)

// controlPlanes is the autoscaler of a cluster with several control
// planes, as routers and node agents on other machines reach it: every
// report and activation goes to each, because any may lead. The standbys
// take reports too, so that whichever leads next decides on warm figures;
// only the leader acts on an activation.
type controlPlanes []*autoscaler.Client

// autoscalerURLs splits --autoscaler-url, a comma-separated list of the
// control planes' API URLs.
func autoscalerURLs(s string) []string {
	var urls []string
	for u := range strings.SplitSeq(s, ",") {
		if u = strings.TrimSpace(u); u != "" {
			urls = append(urls, u)
		}
	}
	return urls
}

// Report sends stats to every control plane at once.
func (c controlPlanes) Report(stats []api.RevisionStat) {
	var wg sync.WaitGroup
	for _, cl := range c {
		wg.Go(func() { cl.Report(stats) })
	}
	wg.Wait()
}

// Activate asks every control plane at once and succeeds if any answered:
// the leader decides, the others answer at once. An unknown revision is
// reported as such.
func (c controlPlanes) Activate(ctx context.Context, revision string) error {
	errs := make([]error, len(c))
	var wg sync.WaitGroup
	for i, cl := range c {
		wg.Go(func() { errs[i] = cl.Activate(ctx, revision) })
	}
	wg.Wait()
	for _, err := range errs {
		if err == nil {
			return nil
		}
	}
	for _, err := range errs {
		if errors.Is(err, autoscaler.ErrUnknownRevision) {
			return err
		}
	}
	return errors.Join(errs...)
}
