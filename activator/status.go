package activator

import (
	"context"
	"fmt"

	"github.com/ebbrun/ebb/internal/revhealth"
	"github.com/ebbrun/ebb/store"
)

// failure is what the node agents report about a revision that cannot run.
type failure struct {
	state, message string
}

// failState is a revision's failure (nil when healthy) and a channel that
// closes when it is superseded, to wake waiters.
type failState struct {
	fail *failure
	wake chan struct{}
}

// failedError ends a wait for a revision that fails fast.
type failedError struct{ f *failure }

func (e failedError) Error() string { return e.f.message }

func failedBody(rs *revState, f *failure) string {
	return "ebb: revision " + rs.name + " of " + rs.function + " cannot serve (" + f.state + "): " + f.message + "\n"
}

// watchStatus follows every node's revision status until ctx ends.
func (a *Activator) watchStatus(ctx context.Context) error {
	err := a.statuses.Follow(ctx, func(store.Update[store.RevisionNodeStatus]) {
		a.onStatus(a.statuses.Snapshot())
	})
	if store.FollowEnded(ctx, err) {
		return nil
	}
	return fmt.Errorf("activator: follow %s: %w", store.PrefixRevStatus, err)
}

// onStatus decides from the status snapshot which revisions fail fast, by
// the same verdict the status API names a revision's state with, and wakes
// the requests waiting for a revision whose verdict changed.
func (a *Activator) onStatus(snap *store.Snapshot[store.RevisionNodeStatus]) {
	byRev := map[string][]store.RevisionNodeStatus{}
	for v := range snap.All() {
		byRev[v.Value.Revision] = append(byRev[v.Value.Revision], v.Value)
	}
	failures := map[string]*failure{}
	for rev, nodes := range byRev {
		if v := revhealth.Judge(nodes); v.Failed {
			failures[rev] = &failure{state: v.Reason, message: v.Message}
		}
	}
	a.setFailures(failures)
}

// setFailures makes failures the fail-fast verdicts and wakes the waiters
// of every revision whose verdict changed.
func (a *Activator) setFailures(failures map[string]*failure) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.failures = failures
	a.states.Range(func(_, v any) bool {
		rs := v.(*revState)
		old := rs.fstate.Load()
		f := failures[rs.name]
		if (old.fail == nil) == (f == nil) && (f == nil || *f == *old.fail) {
			return true
		}
		rs.fstate.Store(&failState{fail: f, wake: make(chan struct{})})
		close(old.wake)
		return true
	})
}
