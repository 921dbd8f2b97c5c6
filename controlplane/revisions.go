package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/store"
)

// deleteRevision is DELETE .../functions/{name}/revisions/{rev}: 204 when
// the revision and what belongs to it are gone, 404 when the function has
// no such revision, 409 while the revision is routed or is the latest.
func (s *Server) deleteRevision(w http.ResponseWriter, r *http.Request) error {
	name, err := s.functionName(r)
	if err != nil {
		return err
	}
	rev := r.PathValue("rev")
	if err := api.ValidateQualifiedName("revision", rev); err != nil {
		return err
	}
	if err := s.removeRevision(r.Context(), name, rev); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// removeRevision deletes revision rev (ebb's name or the one its spec
// gave it) of function qualified, retrying lost races. The API's delete and
// the garbage collector (revisions_gc.go) both go through it.
func (s *Server) removeRevision(ctx context.Context, qualified, rev string) error {
	var err error
	for range casRetries {
		err = s.removeRevisionOnce(ctx, qualified, rev)
		if !errors.Is(err, store.ErrConflict) {
			break
		}
	}
	return err
}

// removeRevisionOnce deletes the revision record with its scale,
// keep-alive state and assignments in one transaction that also checks the
// function record's version: a traffic write that routes the revision
// either committed before (the check fails, and the retry refuses the
// revision) or fails itself on the revision's version, since
// applyFunctionOnce checks every revision a split names. Node agents see
// the assignments vanish and stop the replicas.
func (s *Server) removeRevisionOnce(ctx context.Context, name, rev string) error {
	fn, fnVersion, err := store.GetJSON[store.Function](ctx, s.deps.Store, store.FunctionKey(name))
	if err != nil {
		return functionErr(name, err)
	}
	revs, _, err := store.ListJSON[store.Revision](ctx, s.deps.Store, store.RevisionsPrefix(name))
	if err != nil {
		return fmt.Errorf("list revisions of %s: %w", name, err)
	}
	var target *store.Versioned[store.Revision]
	records := make([]store.Revision, 0, len(revs))
	for i, r := range revs {
		records = append(records, r.Value)
		// A spec's revisionName names its revision as well as ebb's name.
		if r.Value.Name == rev || (r.Value.Spec.RevisionName != "" && r.Value.Spec.RevisionName == rev) {
			target = &revs[i]
		}
	}
	if target == nil {
		return errorf(http.StatusNotFound, api.CodeNotFound, "revision %q of function %s does not exist", rev, describe(name))
	}
	if why, pinned := revisionPins(fn, records)[target.Value.Name]; pinned {
		return errorf(http.StatusConflict, api.CodeConflict,
			"revision %s of function %s cannot be deleted: %s; move its traffic and tags elsewhere first (ebb traffic)", target.Value.Name, describe(name), why)
	}
	assignments, _, err := store.ListJSON[store.Assignment](ctx, s.deps.Store, store.PrefixAssignments)
	if err != nil {
		return err
	}
	ops := []store.Op{store.Check(store.FunctionKey(name), fnVersion)}
	ops = append(ops, revisionDeleteOps(name, []store.KV{{Key: target.Key, Version: target.Version}}, assignments)...)
	if _, err := s.deps.Store.Txn(ctx, ops...); err != nil {
		return fmt.Errorf("delete revision %s: %w", target.Value.Name, err)
	}
	return nil
}

// revisionPins says, for each revision of fn that must not be deleted, why:
// a traffic target names it (by percent, tag or any other match: a
// target that names a revision routes to it, whatever it carries), it is
// the latest revision, or it is the revision whose spec the function has
// now (a spec that went back to a revision by its revisionName). revs are
// the function's revisions. The API's delete and the garbage collector
// share it, so neither ever removes what the other keeps.
func revisionPins(fn store.Function, revs []store.Revision) map[string]string {
	pins := map[string]string{}
	pin := func(rev, why string) {
		if _, ok := pins[rev]; !ok && rev != "" {
			pins[rev] = why
		}
	}
	traffic := store.ResolveTraffic(fn)
	// Percents first: the most telling reason wins.
	for _, t := range traffic {
		if t.Percent > 0 {
			pin(t.Revision, fmt.Sprintf("it receives %d%% of the traffic", t.Percent))
		}
	}
	for _, t := range traffic {
		if t.Tag != "" {
			pin(t.Revision, fmt.Sprintf("traffic tag %q routes to it", t.Tag))
		}
	}
	for _, t := range traffic {
		pin(t.Revision, "a traffic target routes to it")
	}
	pin(fn.LatestRevision, "it is the function's latest revision")
	if named := fn.Spec.RevisionName; named != "" {
		for _, r := range revs {
			if r.Spec.RevisionName == named {
				pin(r.Name, fmt.Sprintf("its spec (revisionName %q) is the function's current spec", named))
			}
		}
	}
	return pins
}
