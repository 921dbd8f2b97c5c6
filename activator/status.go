package activator

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/ebbrun/ebb/api"
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
	err := store.Mirror(ctx, a.deps.Store, store.PrefixRevStatus, a.onStatus)
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("activator: watch %s: %w", store.PrefixRevStatus, err)
}

// onStatus decodes the status snapshot, decides which revisions fail fast
// and wakes the requests waiting for a revision whose verdict changed.
func (a *Activator) onStatus(snap map[string]store.KV) {
	keys := make([]string, 0, len(snap))
	for k := range snap {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	byRev := map[string][]store.RevisionNodeStatus{}
	for _, k := range keys {
		var st store.RevisionNodeStatus
		if err := json.Unmarshal(snap[k].Value, &st); err != nil {
			a.log.Warn("skipping undecodable revision status", "key", k, "err", err)
			continue
		}
		byRev[st.Revision] = append(byRev[st.Revision], st)
	}
	failures := map[string]*failure{}
	for rev, nodes := range byRev {
		if f := failFast(nodes); f != nil {
			failures[rev] = f
		}
	}
	a.setFailures(failures)
}

// failFast decides, from one revision's node statuses in key order,
// whether its requests are answered at once rather than held: when no node
// has a replica ready and some node reports Failed or CrashLoop. The answer
// names the first Failed node's message, else the first CrashLoop node's.
func failFast(nodes []store.RevisionNodeStatus) *failure {
	var fail *failure
	for _, st := range nodes {
		if st.Ready > 0 {
			return nil
		}
		if (st.State == api.RevisionFailed || st.State == api.RevisionCrashLoop) &&
			(fail == nil || (fail.state != api.RevisionFailed && st.State == api.RevisionFailed)) {
			msg := st.Message
			if msg == "" {
				msg = "replicas " + map[string]string{api.RevisionFailed: "cannot start", api.RevisionCrashLoop: "keep crashing"}[st.State]
			}
			fail = &failure{state: st.State, message: msg}
		}
	}
	return fail
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
