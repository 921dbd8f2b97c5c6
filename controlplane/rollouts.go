package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/controlplane/rollouts"
	"github.com/ebbrun/ebb/rollout"
	"github.com/ebbrun/ebb/store"
)

// The rollout routes: GET .../functions/{name}/rollouts (newest first),
// GET .../rollouts/{id}, and POST .../rollouts/{id}/{action} for the
// actions promote, pause, resume and abort. Rollouts start when a spec
// write makes a new revision (startRollout); the runner of package
// controlplane/rollouts drives them.

func (s *Server) listRollouts(w http.ResponseWriter, r *http.Request) error {
	name, err := s.functionName(r)
	if err != nil {
		return err
	}
	recs, err := s.readRollouts(r.Context(), name)
	if err != nil {
		return err
	}
	list := api.RolloutList{Items: []api.Rollout{}}
	for _, v := range recs {
		list.Items = append(list.Items, rolloutView(v.Value))
	}
	slices.SortStableFunc(list.Items, func(a, b api.Rollout) int { return b.StartedAt.Compare(a.StartedAt) })
	writeJSON(w, http.StatusOK, list)
	return nil
}

func (s *Server) getRollout(w http.ResponseWriter, r *http.Request) error {
	name, id, err := rolloutName(s, r)
	if err != nil {
		return err
	}
	rec, _, err := s.readRollout(r.Context(), name, id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, rolloutView(rec))
	return nil
}

func (s *Server) actOnRollout(w http.ResponseWriter, r *http.Request) error {
	name, id, err := rolloutName(s, r)
	if err != nil {
		return err
	}
	action := r.PathValue("action")
	var body api.RolloutAction
	if r.ContentLength != 0 {
		if err := s.decodeJSON(w, r, &body); err != nil {
			return err
		}
	}
	if err := body.Validate(); err != nil {
		return err
	}
	var rec store.Rollout
	for range casRetries {
		rec, err = s.actOnRolloutOnce(r.Context(), name, id, action, body.Reason)
		if !errors.Is(err, store.ErrConflict) {
			break
		}
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, rolloutView(rec))
	return nil
}

// actOnRolloutOnce applies an action at the versions read: the record's
// new state and, for promote and abort, the traffic, in one transaction.
func (s *Server) actOnRolloutOnce(ctx context.Context, name, id, action, reason string) (store.Rollout, error) {
	rec, version, err := s.readRollout(ctx, name, id)
	if err != nil {
		return rec, err
	}
	now := s.deps.Now().UTC()
	st, dec, err := rollouts.Act(now, rec.RolloutState, action, reason)
	switch {
	case errors.Is(err, rollouts.ErrUnknownAction):
		return rec, errorf(http.StatusNotFound, api.CodeNotFound, "%s", err)
	case errors.Is(err, rollout.ErrTransition):
		return rec, errorf(http.StatusConflict, api.CodeConflict, "rollout %s of %s: %s", id, describe(name), err)
	case err != nil:
		return rec, err
	}
	rec.RolloutState = st
	if _, err := rollouts.Write(ctx, s.deps.Store, rec, version, dec, now); err != nil {
		return rec, err
	}
	return rec, nil
}

// rolloutName is the qualified function name and the rollout id of a
// request, both checked.
func rolloutName(s *Server, r *http.Request) (string, string, error) {
	name, err := s.functionName(r)
	if err != nil {
		return "", "", err
	}
	id := r.PathValue("id")
	if err := api.ValidateQualifiedName("rollout id", id); err != nil {
		return "", "", err
	}
	return name, id, nil
}

func (s *Server) readRollout(ctx context.Context, name, id string) (store.Rollout, int64, error) {
	rec, version, err := store.GetJSON[store.Rollout](ctx, s.deps.Store, store.RolloutKey(name, id))
	if errors.Is(err, store.ErrNotFound) {
		if _, ferr := s.deps.Store.Get(ctx, store.FunctionKey(name)); ferr != nil {
			return rec, 0, functionErr(name, ferr)
		}
		return rec, 0, errorf(http.StatusNotFound, api.CodeNotFound, "function %s has no rollout %q", describe(name), id)
	}
	if err != nil {
		return rec, 0, fmt.Errorf("read rollout %s of %s: %w", id, name, err)
	}
	return rec, version, nil
}

// readRollouts lists a function's rollouts; 404 when the function does
// not exist.
func (s *Server) readRollouts(ctx context.Context, name string) ([]store.Versioned[store.Rollout], error) {
	if _, err := s.deps.Store.Get(ctx, store.FunctionKey(name)); err != nil {
		return nil, functionErr(name, err)
	}
	recs, _, err := store.ListJSON[store.Rollout](ctx, s.deps.Store, store.RolloutsPrefix(name))
	if err != nil {
		return nil, fmt.Errorf("list rollouts of %s: %w", name, err)
	}
	return recs, nil
}

func rolloutView(rec store.Rollout) api.Rollout {
	ns, fn := api.SplitQualifiedName(rec.Function)
	return api.Rollout{ID: rec.ID, Function: fn, Namespace: ns, RolloutState: rec.RolloutState}
}

// startRollout is what a spec write that makes revision canary adds when
// the spec has a rollout policy (rollouts.Begin): the canary gets the
// first step instead of all traffic. fn is the record being written, with
// its traffic before the write.
func (s *Server) startRollout(ctx context.Context, fn *store.Function, policy api.RolloutPolicy, prevLatest, canary string) ([]store.Op, error) {
	recs, _, err := store.ListJSON[store.Rollout](ctx, s.deps.Store, store.RolloutsPrefix(fn.Name))
	if err != nil {
		return nil, fmt.Errorf("list rollouts of %s: %w", fn.Name, err)
	}
	return rollouts.Begin(s.deps.Now().UTC(), fn, policy, prevLatest, canary, recs)
}

// abortRollouts ends fn's live rollouts because its traffic is being set
// by hand: a person's split wins over a rollout's.
func (s *Server) abortRollouts(ctx context.Context, name string) ([]store.Op, error) {
	recs, _, err := store.ListJSON[store.Rollout](ctx, s.deps.Store, store.RolloutsPrefix(name))
	if err != nil {
		return nil, fmt.Errorf("list rollouts of %s: %w", name, err)
	}
	var ops []store.Op
	for _, v := range recs {
		if v.Value.Phase.Final() {
			continue
		}
		st, _, err := rollout.Abort(s.deps.Now().UTC(), v.Value.RolloutState, "traffic set by hand")
		if err != nil {
			return nil, err
		}
		rec := v.Value
		rec.RolloutState = st
		ops = append(ops, store.PutJSON(v.Key, rec, v.Version))
	}
	return ops, nil
}
