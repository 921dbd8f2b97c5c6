package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/ebbrun/ebb/api"
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
	var body functionBody
	if err := s.decodeJSON(w, r, &body); err != nil {
		return err
	}
	expect, dry, err := writeOptionsOf(r, body.ResourceVersion)
	if err != nil {
		return err
	}
	res, err := s.applyFunction(r.Context(), name, FunctionWrite{Spec: &body.FunctionSpec, Expect: expect, DryRun: dry})
	if err != nil {
		return err
	}
	writeFunctionResult(w, res)
	return nil
}

func (s *Server) requireImage(ctx context.Context, ref string) error {
	_, err := s.deps.Store.Get(ctx, store.ImageKey(ref))
	if errors.Is(err, store.ErrNotFound) {
		return &api.ValidationError{Field: "image", Reason: fmt.Sprintf("image %q has not been pushed; push it first with `ebb images push FILE` or POST /v1/images", ref)}
	}
	return err
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
	setETag(w, fn.ResourceVersion)
	writeJSON(w, http.StatusOK, fn)
	return nil
}

// listFunctions lists the namespace's functions by name, a page at a
// time, those matching ?labelSelector only; ?watch=true follows them
// instead (watch.go).
func (s *Server) listFunctions(w http.ResponseWriter, r *http.Request) error {
	sel, err := api.ParseSelector(r.URL.Query().Get("labelSelector"))
	if err != nil {
		return err
	}
	watch, err := watchOf(r)
	if err != nil {
		return err
	}
	if watch {
		return s.watchFunctions(w, r, sel)
	}
	pg, err := pageOf(r)
	if err != nil {
		return err
	}
	snap, err := s.readSnapshot(r.Context())
	if err != nil {
		return err
	}
	// Only the namespace's own functions: one namespace's status is never
	// seen through another's paths.
	ns := namespaceOf(r)
	list := api.FunctionList{Functions: []api.Function{}}
	for _, fn := range snap.functions {
		if fnNS, _ := api.SplitQualifiedName(fn.Value.Name); fnNS == ns && sel.Matches(fn.Value.Spec.Labels) {
			list.Functions = append(list.Functions, s.buildStatus(fn.Value, fn.Version, snap))
		}
	}
	slices.SortFunc(list.Functions, func(a, b api.Function) int { return strings.Compare(a.Name, b.Name) })
	list.Functions, list.Continue = paginate(list.Functions, pg, func(f api.Function) string { return f.Name })
	writeJSON(w, http.StatusOK, list)
	return nil
}

func (s *Server) deleteFunction(w http.ResponseWriter, r *http.Request) error {
	name, err := s.functionName(r)
	if err != nil {
		return err
	}
	expect, dry, err := writeOptionsOf(r, "")
	if err != nil {
		return err
	}
	if err := s.removeFunction(r.Context(), name, expect, dry); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// removeFunction deletes function qualified with everything that goes
// with it (deleteOnce), retrying lost races; expect (If-Match) is checked
// against the record's version in the delete's transaction. A dry run
// checks and deletes nothing. A missing function is 404. The apply
// handler's prune calls it.
func (s *Server) removeFunction(ctx context.Context, qualified string, expect Precondition, dryRun bool) error {
	var err error
	for range casRetries {
		err = s.deleteOnce(ctx, qualified, expect, dryRun)
		if !errors.Is(err, store.ErrConflict) {
			break
		}
	}
	if err == nil && !dryRun {
		s.dropInvocations(ctx, qualified)
	}
	return err
}

// deleteOnce removes the function, its revisions and the autoscaler's scale
// decisions, keep-alive state and assignments for them, in one transaction. Node agents see
// their assignments vanish and stop the replicas, which removes endpoints.
func (s *Server) deleteOnce(ctx context.Context, name string, expect Precondition, dryRun bool) error {
	kv, err := s.deps.Store.Get(ctx, store.FunctionKey(name))
	if err != nil {
		return functionErr(name, err)
	}
	// The delete is at kv.Version, so the check holds in its transaction.
	if err := expect.Check("function "+describe(name), kv.Version); err != nil {
		return err
	}
	if dryRun {
		return nil
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
// the function, its rollouts, its cron triggers and runs, its revisions and, for each revision, its
// scale, keep-alive state and assignments.
func (s *Server) functionDeleteOps(ctx context.Context, kv store.KV, assignments []store.Versioned[store.Assignment]) ([]store.Op, error) {
	name := strings.TrimPrefix(kv.Key, store.PrefixFunctions)
	ops := []store.Op{store.Delete(kv.Key, kv.Version)}
	revs, _, err := s.deps.Store.List(ctx, store.RevisionsPrefix(name))
	if err != nil {
		return nil, err
	}
	// Its rollouts, live or finished, go with it; a runner driving one
	// finds it gone and lets go.
	rolls, _, err := s.deps.Store.List(ctx, store.RolloutsPrefix(name))
	if err != nil {
		return nil, err
	}
	for _, kv := range rolls {
		ops = append(ops, store.Delete(kv.Key, kv.Version))
	}
	// Its cron triggers and their runs go too; invocations already queued
	// go on (the queue's own DeleteFunction drops them).
	for _, prefix := range []string{store.CronTriggersPrefix(name), store.CronRunsFunctionPrefix(name)} {
		kvs, _, err := s.deps.Store.List(ctx, prefix)
		if err != nil {
			return nil, err
		}
		for _, kv := range kvs {
			ops = append(ops, store.Delete(kv.Key, kv.Version))
		}
	}
	return append(ops, revisionDeleteOps(name, revs, assignments)...), nil
}

// revisionDeleteOps are the deletes of revision records revs of function
// name, each at the version read, and of what belongs to each revision:
// its scale, its keep-alive state and every node's assignment of it. A
// function's delete and a revision's (revisions.go) both use it, so the two
// never disagree on what a revision owns.
func revisionDeleteOps(name string, revs []store.KV, assignments []store.Versioned[store.Assignment]) []store.Op {
	var ops []store.Op
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
	return ops
}

func (s *Server) listRevisions(w http.ResponseWriter, r *http.Request) error {
	name, err := s.functionName(r)
	if err != nil {
		return err
	}
	pg, err := pageOf(r)
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
	slices.SortFunc(list.Revisions, func(a, b api.Revision) int { return strings.Compare(a.Name, b.Name) })
	list.Revisions, list.Continue = paginate(list.Revisions, pg, func(r api.Revision) string { return r.Name })
	writeJSON(w, http.StatusOK, list)
	return nil
}

func (s *Server) putTraffic(w http.ResponseWriter, r *http.Request) error {
	name, err := s.functionName(r)
	if err != nil {
		return err
	}
	var body trafficBody
	if err := s.decodeJSON(w, r, &body); err != nil {
		return err
	}
	expect, dry, err := writeOptionsOf(r, body.ResourceVersion)
	if err != nil {
		return err
	}
	traffic := body.Traffic
	if traffic == nil {
		traffic = []api.TrafficTarget{} // validated: an empty split is refused
	}
	res, err := s.applyFunction(r.Context(), name, FunctionWrite{Traffic: traffic, Expect: expect, DryRun: dry})
	if err != nil {
		return err
	}
	setETag(w, res.Function.ResourceVersion)
	writeJSON(w, http.StatusOK, res.Function)
	return nil
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
	pg, err := pageOf(r)
	if err != nil {
		return err
	}
	nodes, _, err := store.ListJSON[store.Node](r.Context(), s.deps.Store, store.PrefixNodes)
	if err != nil {
		return err
	}
	out := api.NodeList{Nodes: make([]api.Node, 0, len(nodes))}
	now := s.deps.Now()
	for _, n := range nodes {
		if s.deps.NodeLive != nil {
			n.Value.Heartbeat = time.Time{}
			if s.deps.NodeLive(n.Value.Name) {
				n.Value.Heartbeat = now
			}
		}
		out.Nodes = append(out.Nodes, n.Value)
	}
	slices.SortFunc(out.Nodes, func(a, b api.Node) int { return strings.Compare(a.Name, b.Name) })
	out.Nodes, out.Continue = paginate(out.Nodes, pg, func(n api.Node) string { return n.Name })
	writeJSON(w, http.StatusOK, out)
	return nil
}
