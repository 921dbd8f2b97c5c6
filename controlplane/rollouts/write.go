package rollouts

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/rollout"
	"github.com/ebbrun/ebb/store"
)

// History is how many finished rollouts of a function are kept; Begin
// deletes older ones.
const History = 10

// ErrUnknownAction is wrapped by Act's error for an action it does not know.
var ErrUnknownAction = errors.New("unknown rollout action")

// Begin is what starts a rollout of revision canary, the new latest
// revision a spec write is making for function fn under policy: the
// rollout's record and the split that gives the canary its first step,
// set on fn for the caller to write with the ops returned, in the same
// transaction as the revision. existing are fn's rollouts as read.
//
// The stable revision is that of a live rollout, which the new one
// supersedes (it ends Aborted), else the one revision the split sends all
// traffic to (rollout.StableOf, with latestRevision read as prevLatest).
// With neither, as when a hand-set split divides the traffic, no rollout
// starts: Begin returns nil and leaves fn alone.
func Begin(now time.Time, fn *store.Function, policy api.RolloutPolicy, prevLatest, canary string, existing []store.Versioned[store.Rollout]) ([]store.Op, error) {
	var ops []store.Op
	stable := rollout.StableOf(fn.Traffic, prevLatest)
	for _, v := range existing {
		if v.Value.Phase.Final() {
			continue
		}
		st, _, err := rollout.Abort(now, v.Value.RolloutState, "superseded by revision "+canary)
		if err != nil {
			return nil, err
		}
		rec := v.Value
		rec.RolloutState = st
		ops = append(ops, store.PutJSON(v.Key, rec, v.Version))
		stable = v.Value.Stable
	}
	if stable == "" || stable == canary {
		return nil, nil
	}
	st, _, err := rollout.Start(now, policy, stable, canary)
	if err != nil {
		return nil, err
	}
	fn.Traffic = rollout.Traffic(fn.Traffic, st, canary)
	rec := store.Rollout{ID: canary, Function: fn.Name, RolloutState: st}
	ops = append(ops, store.PutJSON(store.RolloutKey(fn.Name, canary), rec, store.MustNotExist))
	return append(ops, trimHistory(existing)...), nil
}

// trimHistory deletes the finished rollouts beyond the newest History-1,
// making room for the one starting.
func trimHistory(existing []store.Versioned[store.Rollout]) []store.Op {
	var finished []store.Versioned[store.Rollout]
	for _, v := range existing {
		if v.Value.Phase.Final() {
			finished = append(finished, v)
		}
	}
	slices.SortFunc(finished, func(a, b store.Versioned[store.Rollout]) int { return b.Value.StartedAt.Compare(a.Value.StartedAt) })
	var ops []store.Op
	for i, v := range finished {
		if i >= History-1 {
			ops = append(ops, store.Delete(v.Key, v.Version))
		}
	}
	return ops
}

// Act applies one of the API's actions (api.RolloutPromote, ...) to a
// rollout's state. An action its phase forbids wraps rollout.ErrTransition;
// an unknown one ErrUnknownAction.
func Act(now time.Time, st api.RolloutState, action, reason string) (api.RolloutState, rollout.Decision, error) {
	switch action {
	case api.RolloutPromote:
		return rollout.Promote(now, st, reason)
	case api.RolloutAbort:
		return rollout.Abort(now, st, reason)
	case api.RolloutPause:
		return rollout.Pause(now, st)
	case api.RolloutResume:
		return rollout.Resume(now, st)
	}
	return st, rollout.Decision{}, fmt.Errorf("%w %q: use %s, %s, %s or %s", ErrUnknownAction, action,
		api.RolloutPromote, api.RolloutPause, api.RolloutResume, api.RolloutAbort)
}

// Write stores rec at version (the version read; store.ErrConflict if it
// changed since) and, when the decision sets a percent, the function's
// traffic for rec's state, at the function's and both revisions' versions,
// all in one transaction. It returns the store revision written, which is
// rec's new version.
func Write(ctx context.Context, st store.Store, rec store.Rollout, version int64, dec rollout.Decision, now time.Time) (int64, error) {
	ops := []store.Op{store.PutJSON(store.RolloutKey(rec.Function, rec.ID), rec, version)}
	if dec.Set {
		fn, fnVersion, err := store.GetJSON[store.Function](ctx, st, store.FunctionKey(rec.Function))
		if err != nil {
			return 0, fmt.Errorf("read function %s for rollout %s: %w", rec.Function, rec.ID, err)
		}
		fn.Traffic = rollout.Traffic(fn.Traffic, rec.RolloutState, fn.LatestRevision)
		fn.UpdatedAt = now
		ops = append(ops, store.PutJSON(store.FunctionKey(rec.Function), fn, fnVersion))
		// A split never names a revision deleted meanwhile.
		for _, rev := range []string{rec.Stable, rec.Canary} {
			kv, err := st.Get(ctx, store.RevisionKey(rec.Function, rev))
			if err != nil {
				return 0, fmt.Errorf("read revision %s for rollout %s: %w", rev, rec.ID, err)
			}
			ops = append(ops, store.Check(kv.Key, kv.Version))
		}
	}
	v, err := st.Txn(ctx, ops...)
	if err != nil {
		return 0, fmt.Errorf("write rollout %s of %s: %w", rec.ID, rec.Function, err)
	}
	return v, nil
}
