package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/store"
)

// namespaceCascade returns the deletes of what else lives in namespace ns
// and goes with it, beyond its functions (and what a function's delete
// removes). They run in the namespace delete's one transaction, so each
// delete must carry the version it listed (or store.AnyVersion).
type namespaceCascade func(ctx context.Context, st store.Store, ns string) ([]store.Op, error)

// namespaceCascades is the extension point for objects that live in a
// namespace: secrets, tokens. Add one entry per kind of object, e.g.
// deletePrefix(store.SecretsPrefix) for keys under a per-namespace prefix,
// or a function that lists records and picks the namespace's (tokens).
func namespaceCascades() []namespaceCascade {
	return []namespaceCascade{deletePrefix(store.SecretsPrefix), namespaceTokens, namespaceJobs, namespaceDomains}
}

// deletePrefix is the cascade of every key under prefix(ns).
func deletePrefix(prefix func(ns string) string) namespaceCascade {
	return func(ctx context.Context, st store.Store, ns string) ([]store.Op, error) {
		kvs, _, err := st.List(ctx, prefix(ns))
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", prefix(ns), err)
		}
		ops := make([]store.Op, 0, len(kvs))
		for _, kv := range kvs {
			ops = append(ops, store.Delete(kv.Key, kv.Version))
		}
		return ops, nil
	}
}

// namespace reads a namespace's record: 404 naming it when it does not
// exist. The default namespace exists without a record (version
// store.MustNotExist then).
func (s *Server) namespace(ctx context.Context, ns string) (store.Namespace, int64, error) {
	rec, version, err := store.GetJSON[store.Namespace](ctx, s.deps.Store, store.NamespaceKey(ns))
	switch {
	case errors.Is(err, store.ErrNotFound) && ns == api.DefaultNamespace:
		return store.Namespace{Name: ns}, store.MustNotExist, nil
	case errors.Is(err, store.ErrNotFound):
		return rec, 0, errorf(http.StatusNotFound, api.CodeNotFound, "namespace %q does not exist; create it with `ebb namespaces create %s`", ns, ns)
	case err != nil:
		return rec, 0, fmt.Errorf("read namespace %s: %w", ns, err)
	}
	return rec, version, nil
}

// namespaceOpen checks that the namespace of a function (by its qualified
// name) takes new functions, and returns the check to add to the
// transaction that writes one: the namespace still at the version read
// here, so not marked deleting meanwhile. The default namespace is never
// deleted and needs no check.
func (s *Server) namespaceOpen(ctx context.Context, qualified string) ([]store.Op, error) {
	ns, _ := api.SplitQualifiedName(qualified)
	if ns == api.DefaultNamespace {
		return nil, nil
	}
	rec, version, err := s.namespace(ctx, ns)
	if err != nil {
		return nil, err
	}
	if rec.Deleting {
		return nil, errorf(http.StatusConflict, api.CodeConflict, "namespace %q is being deleted", ns)
	}
	return []store.Op{store.Check(store.NamespaceKey(ns), version)}, nil
}

// namespaceName validates the {ns} of a /v1/namespaces/{ns} path.
func namespaceName(r *http.Request) (string, error) {
	ns := r.PathValue("ns")
	if err := api.ValidateName("namespace", ns); err != nil {
		return "", err
	}
	return ns, nil
}

// functionCounts counts the functions of each namespace.
func (s *Server) functionCounts(ctx context.Context) (map[string]int, error) {
	kvs, _, err := s.deps.Store.List(ctx, store.PrefixFunctions)
	if err != nil {
		return nil, err
	}
	counts := map[string]int{}
	for _, kv := range kvs {
		ns, _ := api.SplitQualifiedName(strings.TrimPrefix(kv.Key, store.PrefixFunctions))
		counts[ns]++
	}
	return counts, nil
}

// namespaceOut is the API's view of a namespace record at version.
func namespaceOut(rec store.Namespace, version int64, functions int) api.Namespace {
	return api.Namespace{Name: rec.Name, Functions: functions, Deleting: rec.Deleting, Quota: rec.Quota, CreatedAt: rec.CreatedAt, ResourceVersion: resourceVersion(version)}
}

func (s *Server) listNamespaces(w http.ResponseWriter, r *http.Request) error {
	page, err := pageOf(r)
	if err != nil {
		return err
	}
	recs, _, err := store.ListJSON[store.Namespace](r.Context(), s.deps.Store, store.PrefixNamespaces)
	if err != nil {
		return err
	}
	counts, err := s.functionCounts(r.Context())
	if err != nil {
		return err
	}
	list := api.NamespaceList{Namespaces: make([]api.Namespace, 0, len(recs)+1)}
	hasDefault := false
	for _, rec := range recs {
		hasDefault = hasDefault || rec.Value.Name == api.DefaultNamespace
		list.Namespaces = append(list.Namespaces, namespaceOut(rec.Value, rec.Version, counts[rec.Value.Name]))
	}
	if !hasDefault {
		list.Namespaces = append(list.Namespaces, namespaceOut(store.Namespace{Name: api.DefaultNamespace}, 0, counts[api.DefaultNamespace]))
	}
	slices.SortFunc(list.Namespaces, func(a, b api.Namespace) int { return strings.Compare(a.Name, b.Name) })
	list.Namespaces, list.Continue = paginate(list.Namespaces, page, func(n api.Namespace) string { return n.Name })
	writeJSON(w, http.StatusOK, list)
	return nil
}

func (s *Server) getNamespace(w http.ResponseWriter, r *http.Request) error {
	ns, err := namespaceName(r)
	if err != nil {
		return err
	}
	rec, version, err := s.namespace(r.Context(), ns)
	if err != nil {
		return err
	}
	counts, err := s.functionCounts(r.Context())
	if err != nil {
		return err
	}
	out := namespaceOut(rec, version, counts[ns])
	setETag(w, out.ResourceVersion)
	writeJSON(w, http.StatusOK, out)
	return nil
}

// putNamespace creates a namespace; creating one that exists is a no-op
// answered 200, and one being deleted is a conflict. If-Match (or a body
// resourceVersion) makes it a check of the existing record's version.
func (s *Server) putNamespace(w http.ResponseWriter, r *http.Request) error {
	ns, err := namespaceName(r)
	if err != nil {
		return err
	}
	var body namespaceBody
	if r.ContentLength != 0 {
		if err := s.decodeJSON(w, r, &body); err != nil {
			return err
		}
	}
	expect, dry, err := writeOptionsOf(r, body.ResourceVersion)
	if err != nil {
		return err
	}
	if err := body.Quota.Validate(); err != nil {
		return err
	}
	rec, version, err := store.GetJSON[store.Namespace](r.Context(), s.deps.Store, store.NamespaceKey(ns))
	if errors.Is(err, store.ErrNotFound) {
		version = store.MustNotExist
	} else if err != nil {
		return err
	}
	if err := expect.Check(fmt.Sprintf("namespace %q", ns), version); err != nil {
		return err
	}
	switch {
	case version != store.MustNotExist && rec.Deleting:
		return errorf(http.StatusConflict, api.CodeConflict, "namespace %q is being deleted; delete it again to finish, then create it", ns)
	case version != store.MustNotExist:
		out := namespaceOut(rec, version, 0)
		setETag(w, out.ResourceVersion)
		writeJSON(w, http.StatusOK, out)
		return nil
	}
	rec = store.Namespace{Name: ns, CreatedAt: s.deps.Now().UTC(), Quota: body.Quota}
	if dry {
		writeJSON(w, http.StatusCreated, namespaceOut(rec, 0, 0))
		return nil
	}
	rev, err := s.deps.Store.Txn(r.Context(), store.PutJSON(store.NamespaceKey(ns), rec, version))
	if err != nil {
		return fmt.Errorf("write namespace %s: %w", ns, err)
	}
	out := namespaceOut(rec, rev, 0)
	setETag(w, out.ResourceVersion)
	writeJSON(w, http.StatusCreated, out)
	return nil
}

// namespaceBody is PUT /v1/namespaces/{ns}'s body.
type namespaceBody struct {
	api.NamespaceSpec
	ResourceVersion string `json:"resourceVersion,omitempty"`
}

// applyNamespace makes namespace ns exist with quota q: what the apply
// handler does for a Namespace document. It creates the namespace, or sets
// its quota when it differs (configured), or writes nothing (unchanged).
// expect is checked against the record's version (default without a
// record counts as absent), and the write is at the version read.
func (s *Server) applyNamespace(ctx context.Context, ns string, q api.Quota, expect Precondition, dryRun bool) (api.Namespace, Action, error) {
	if err := api.ValidateName("namespace", ns); err != nil {
		return api.Namespace{}, "", err
	}
	if err := q.Validate(); err != nil {
		return api.Namespace{}, "", err
	}
	var (
		out    api.Namespace
		action Action
		err    error
	)
	for range casRetries {
		out, action, err = s.applyNamespaceOnce(ctx, ns, q, expect, dryRun)
		if !errors.Is(err, store.ErrConflict) {
			break
		}
	}
	return out, action, err
}

func (s *Server) applyNamespaceOnce(ctx context.Context, ns string, q api.Quota, expect Precondition, dryRun bool) (api.Namespace, Action, error) {
	rec, version, err := store.GetJSON[store.Namespace](ctx, s.deps.Store, store.NamespaceKey(ns))
	action := ActionConfigured
	switch {
	case errors.Is(err, store.ErrNotFound):
		version = store.MustNotExist
		rec = store.Namespace{Name: ns, CreatedAt: s.deps.Now().UTC()}
		action = ActionCreated
		if ns == api.DefaultNamespace {
			action = ActionConfigured // default exists without a record
		}
	case err != nil:
		return api.Namespace{}, "", fmt.Errorf("read namespace %s: %w", ns, err)
	case rec.Deleting:
		return api.Namespace{}, "", errorf(http.StatusConflict, api.CodeConflict, "namespace %q is being deleted", ns)
	}
	if err := expect.Check(fmt.Sprintf("namespace %q", ns), version); err != nil {
		return api.Namespace{}, "", err
	}
	counts, err := s.functionCounts(ctx)
	if err != nil {
		return api.Namespace{}, "", err
	}
	if version != store.MustNotExist && rec.Quota == q {
		return namespaceOut(rec, version, counts[ns]), ActionUnchanged, nil
	}
	if version == store.MustNotExist && ns == api.DefaultNamespace && q.IsZero() {
		return namespaceOut(rec, 0, counts[ns]), ActionUnchanged, nil
	}
	rec.Quota = q
	if dryRun {
		return namespaceOut(rec, version, counts[ns]), action, nil
	}
	rev, err := s.deps.Store.Txn(ctx, store.PutJSON(store.NamespaceKey(ns), rec, version))
	if err != nil {
		return api.Namespace{}, "", fmt.Errorf("write namespace %s: %w", ns, err)
	}
	return namespaceOut(rec, rev, counts[ns]), action, nil
}

// deleteNamespace deletes a namespace with its functions (and all a
// function's delete removes) and whatever the cascades add. Without
// ?force=true it refuses (409) while one of its functions has ready
// replicas: ebb has no rollouts or asynchronous invocations yet, and
// replicas that serve are the running work a delete would cut.
func (s *Server) deleteNamespace(w http.ResponseWriter, r *http.Request) error {
	ns, err := namespaceName(r)
	if err != nil {
		return err
	}
	if ns == api.DefaultNamespace {
		return &api.ValidationError{Field: "namespace", Reason: "the default namespace cannot be deleted"}
	}
	force := false
	if v := r.URL.Query().Get("force"); v != "" {
		if force, err = strconv.ParseBool(v); err != nil {
			return &api.ValidationError{Field: "force", Reason: "must be true or false"}
		}
	}
	for range casRetries {
		err = s.deleteNamespaceOnce(r.Context(), ns, force)
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

// deleteNamespaceOnce marks the namespace deleting (so no function can be
// created in it from then on, see namespaceOpen), then deletes it and
// everything in it in one transaction.
func (s *Server) deleteNamespaceOnce(ctx context.Context, ns string, force bool) error {
	rec, version, err := s.namespace(ctx, ns)
	if err != nil {
		return err
	}
	if !force {
		if err := s.refuseWhileServing(ctx, ns); err != nil {
			return err
		}
	}
	if !rec.Deleting {
		rec.Deleting = true
		if version, err = s.deps.Store.Txn(ctx, store.PutJSON(store.NamespaceKey(ns), rec, version)); err != nil {
			return fmt.Errorf("mark namespace %s deleting: %w", ns, err)
		}
	}
	fns, _, err := s.deps.Store.List(ctx, store.PrefixFunctions)
	if err != nil {
		return err
	}
	assignments, _, err := store.ListJSON[store.Assignment](ctx, s.deps.Store, store.PrefixAssignments)
	if err != nil {
		return err
	}
	ops := []store.Op{store.Delete(store.NamespaceKey(ns), version)}
	var deleted []string
	for _, kv := range fns {
		if fnNS, _ := api.SplitQualifiedName(strings.TrimPrefix(kv.Key, store.PrefixFunctions)); fnNS != ns {
			continue
		}
		fnOps, err := s.functionDeleteOps(ctx, kv, assignments)
		if err != nil {
			return err
		}
		ops = append(ops, fnOps...)
		deleted = append(deleted, strings.TrimPrefix(kv.Key, store.PrefixFunctions))
	}
	for _, cascade := range s.cascades {
		more, err := cascade(ctx, s.deps.Store, ns)
		if err != nil {
			return err
		}
		ops = append(ops, more...)
	}
	if _, err = s.deps.Store.Txn(ctx, ops...); err != nil {
		return err
	}
	for _, fn := range deleted {
		s.dropInvocations(ctx, fn)
	}
	return nil
}

// refuseWhileServing is 409 naming the namespace's functions that have
// ready replicas.
func (s *Server) refuseWhileServing(ctx context.Context, ns string) error {
	endpoints, _, err := store.ListJSON[store.Endpoint](ctx, s.deps.Store, store.PrefixEndpoints)
	if err != nil {
		return err
	}
	var serving []string
	for _, ep := range endpoints {
		fnNS, fn := api.SplitQualifiedName(ep.Value.Function)
		if fnNS == ns && !slices.Contains(serving, fn) {
			serving = append(serving, fn)
		}
	}
	if len(serving) == 0 {
		return nil
	}
	slices.Sort(serving)
	return errorf(http.StatusConflict, api.CodeConflict,
		"namespace %q has functions with ready replicas (%s); delete with force to stop them", ns, strings.Join(serving, ", "))
}
