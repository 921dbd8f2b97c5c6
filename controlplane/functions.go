package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/ociimage"
	"github.com/ebbrun/ebb/store"
)

// casRetries bounds how often a write retries after losing a version race
// to a concurrent writer before answering 409.
const casRetries = 8

func (s *Server) putFunction(w http.ResponseWriter, r *http.Request) error {
	name, err := s.functionName(r)
	if err != nil {
		return err
	}
	var spec api.FunctionSpec
	if err := s.decodeJSON(w, r, &spec); err != nil {
		return err
	}
	spec = spec.WithDefaults()
	if err := spec.Validate(); err != nil {
		return err
	}
	// Store the image as the runtime names it, so "hello" and
	// "docker.io/library/hello:latest" are the same spec.
	if spec.Image, err = ociimage.NormalizeName(spec.Image); err != nil {
		return &api.ValidationError{Field: "image", Reason: err.Error()}
	}
	if err := s.requireImage(r.Context(), spec.Image); err != nil {
		return err
	}
	var created bool
	for range casRetries {
		created, err = s.applySpec(r.Context(), name, spec)
		if !errors.Is(err, store.ErrConflict) {
			break
		}
	}
	if err != nil {
		return err
	}
	fn, err := s.functionStatus(r.Context(), name)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, fn)
	return nil
}

func (s *Server) requireImage(ctx context.Context, ref string) error {
	_, err := s.deps.Store.Get(ctx, store.ImageKey(ref))
	if errors.Is(err, store.ErrNotFound) {
		return &api.ValidationError{Field: "image", Reason: fmt.Sprintf("image %q has not been pushed; push it first with `ebb images push FILE` or POST /v1/images", ref)}
	}
	return err
}

// applySpec creates the function or, if the spec changed, its next revision,
// in one transaction. Re-applying the current spec writes nothing.
func (s *Server) applySpec(ctx context.Context, name string, spec api.FunctionSpec) (created bool, err error) {
	now := s.deps.Now().UTC()
	// A namespace's delete first marks it deleting, then removes what it
	// lists: checking the namespace's version in this transaction makes a
	// function written meanwhile fail here instead of outliving it.
	nsCheck, err := s.namespaceOpen(ctx, name)
	if err != nil {
		return false, err
	}
	fn, version, err := store.GetJSON[store.Function](ctx, s.deps.Store, store.FunctionKey(name))
	switch {
	case errors.Is(err, store.ErrNotFound):
		fn = store.Function{
			Name:      name,
			CreatedAt: now,
			// A new function follows its latest revision, so each new
			// revision takes all traffic until the user pins a split.
			Traffic: []api.TrafficTarget{{LatestRevision: true, Percent: 100}},
		}
		version = store.MustNotExist
		created = true
	case err != nil:
		return false, fmt.Errorf("read function %s: %w", name, err)
	case reflect.DeepEqual(fn.Spec, spec):
		return false, nil
	}
	// A capped namespace admits the deploy against its quota, and its
	// record's rewrite (which implies the namespace check) orders the
	// namespace's deploys.
	if quotaOps, err := s.admitSpec(ctx, name, created, spec); err != nil {
		return false, err
	} else if quotaOps != nil {
		nsCheck = quotaOps
	}
	fn.Spec = spec
	fn.Generation++
	fn.LatestRevision = api.RevisionName(name, fn.Generation)
	fn.UpdatedAt = now
	rev := store.Revision{
		Name:       fn.LatestRevision,
		Function:   name,
		Generation: fn.Generation,
		Spec:       spec,
		CreatedAt:  now,
	}
	ops := []store.Op{
		store.PutJSON(store.FunctionKey(name), fn, version),
		store.PutJSON(store.RevisionKey(name, rev.Name), rev, store.MustNotExist),
	}
	_, err = s.deps.Store.Txn(ctx, append(ops, nsCheck...)...)
	if err != nil {
		return false, fmt.Errorf("write function %s: %w", name, err)
	}
	return created, nil
}

func (s *Server) getFunction(w http.ResponseWriter, r *http.Request) error {
	name, err := s.functionName(r)
	if err != nil {
		return err
	}
	fn, err := s.functionStatus(r.Context(), name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, fn)
	return nil
}

func (s *Server) listFunctions(w http.ResponseWriter, r *http.Request) error {
	snap, err := s.readSnapshot(r.Context())
	if err != nil {
		return err
	}
	// Only the namespace's own functions: one namespace's status is never
	// seen through another's paths.
	ns := namespaceOf(r)
	list := api.FunctionList{Functions: []api.Function{}}
	for _, fn := range snap.functions {
		if fnNS, _ := api.SplitQualifiedName(fn.Value.Name); fnNS == ns {
			list.Functions = append(list.Functions, s.buildStatus(fn.Value, snap))
		}
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}

func (s *Server) deleteFunction(w http.ResponseWriter, r *http.Request) error {
	name, err := s.functionName(r)
	if err != nil {
		return err
	}
	for range casRetries {
		err = s.deleteOnce(r.Context(), name)
		if !errors.Is(err, store.ErrConflict) {
			break
		}
	}
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// deleteOnce removes the function, its revisions and the autoscaler's scale
// decisions, keep-alive state and assignments for them, in one transaction. Node agents see
// their assignments vanish and stop the replicas, which removes endpoints.
func (s *Server) deleteOnce(ctx context.Context, name string) error {
	kv, err := s.deps.Store.Get(ctx, store.FunctionKey(name))
	if err != nil {
		return functionErr(name, err)
	}
	assignments, _, err := store.ListJSON[store.Assignment](ctx, s.deps.Store, store.PrefixAssignments)
	if err != nil {
		return err
	}
	ops, err := s.functionDeleteOps(ctx, kv, assignments)
	if err != nil {
		return err
	}
	_, err = s.deps.Store.Txn(ctx, ops...)
	return err
}

// functionDeleteOps are the deletes of one function (kv, its record):
// the function, its revisions and, for each revision, its scale,
// keep-alive state and assignments.
func (s *Server) functionDeleteOps(ctx context.Context, kv store.KV, assignments []store.Versioned[store.Assignment]) ([]store.Op, error) {
	name := strings.TrimPrefix(kv.Key, store.PrefixFunctions)
	ops := []store.Op{store.Delete(kv.Key, kv.Version)}
	revs, _, err := s.deps.Store.List(ctx, store.RevisionsPrefix(name))
	if err != nil {
		return nil, err
	}
	isRevision := map[string]bool{}
	for _, rev := range revs {
		ops = append(ops, store.Delete(rev.Key, rev.Version))
		revName := strings.TrimPrefix(rev.Key, store.RevisionsPrefix(name))
		isRevision[revName] = true
		ops = append(ops, store.Delete(store.ScaleKey(revName), store.AnyVersion),
			store.Delete(store.KeepAliveKey(revName), store.AnyVersion))
	}
	for _, a := range assignments {
		if isRevision[a.Value.Revision] {
			ops = append(ops, store.Delete(a.Key, a.Version))
		}
	}
	return ops, nil
}

func (s *Server) listRevisions(w http.ResponseWriter, r *http.Request) error {
	name, err := s.functionName(r)
	if err != nil {
		return err
	}
	fn, err := s.functionStatus(r.Context(), name)
	if err != nil {
		return err
	}
	revs, _, err := store.ListJSON[store.Revision](r.Context(), s.deps.Store, store.RevisionsPrefix(name))
	if err != nil {
		return err
	}
	statusByName := map[string]api.RevisionStatus{}
	for _, st := range fn.Revisions {
		statusByName[st.Name] = st
	}
	list := api.RevisionList{Revisions: make([]api.Revision, 0, len(revs))}
	for _, rev := range revs {
		list.Revisions = append(list.Revisions, api.Revision{
			Name:      rev.Value.Name,
			Function:  fn.Name,
			Namespace: fn.Namespace,
			Spec:      redact(rev.Value.Spec),
			Status:    statusByName[rev.Value.Name],
		})
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}

func (s *Server) putTraffic(w http.ResponseWriter, r *http.Request) error {
	name, err := s.functionName(r)
	if err != nil {
		return err
	}
	var req api.TrafficRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		return err
	}
	for range casRetries {
		err = s.setTraffic(r.Context(), name, req.Traffic)
		if !errors.Is(err, store.ErrConflict) {
			break
		}
	}
	if err != nil {
		return err
	}
	fn, err := s.functionStatus(r.Context(), name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, fn)
	return nil
}

// setTraffic validates the split against the revisions that exist and
// writes it. Each named revision is checked in the same transaction, so a
// split can never point at a revision deleted meanwhile.
func (s *Server) setTraffic(ctx context.Context, name string, traffic []api.TrafficTarget) error {
	fn, version, err := store.GetJSON[store.Function](ctx, s.deps.Store, store.FunctionKey(name))
	if err != nil {
		return functionErr(name, err)
	}
	revs, _, err := s.deps.Store.List(ctx, store.RevisionsPrefix(name))
	if err != nil {
		return err
	}
	revVersion := map[string]int64{}
	for _, kv := range revs {
		revVersion[strings.TrimPrefix(kv.Key, store.RevisionsPrefix(name))] = kv.Version
	}
	exists := func(rev string) bool { _, ok := revVersion[rev]; return ok }
	if err := api.ValidateTraffic(traffic, exists); err != nil {
		return err
	}
	fn.Traffic = traffic
	fn.UpdatedAt = s.deps.Now().UTC()
	ops := []store.Op{store.PutJSON(store.FunctionKey(name), fn, version)}
	for _, t := range traffic {
		if t.Revision != "" {
			ops = append(ops, store.Check(store.RevisionKey(name, t.Revision), revVersion[t.Revision]))
		}
	}
	_, err = s.deps.Store.Txn(ctx, ops...)
	return err
}

func functionErr(name string, err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusNotFound, api.CodeNotFound, "function %s does not exist", describe(name))
	}
	return err
}

// describe names a function by its qualified name for a message: "hello"
// in default, "hello" in namespace "team-a" elsewhere.
func describe(qualified string) string {
	ns, fn := api.SplitQualifiedName(qualified)
	if ns == api.DefaultNamespace {
		return fmt.Sprintf("%q", fn)
	}
	return fmt.Sprintf("%q in namespace %q", fn, ns)
}

func (s *Server) listNodes(w http.ResponseWriter, r *http.Request) error {
	nodes, _, err := store.ListJSON[store.Node](r.Context(), s.deps.Store, store.PrefixNodes)
	if err != nil {
		return err
	}
	out := struct {
		Nodes []store.Node `json:"nodes"`
	}{Nodes: make([]store.Node, 0, len(nodes))}
	for _, n := range nodes {
		out.Nodes = append(out.Nodes, n.Value)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
