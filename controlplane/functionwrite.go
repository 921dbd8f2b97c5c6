package controlplane

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"slices"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/ociimage"
	"github.com/ebbrun/ebb/store"
)

// Action says what a write did (or, dry, would do) to an object: the
// words ebb apply prints.
type Action string

const (
	ActionCreated    Action = "created"
	ActionConfigured Action = "configured"
	ActionUnchanged  Action = "unchanged"
	// ActionDeleted is apply's prune (removeFunction).
	ActionDeleted Action = "deleted"
)

// FunctionWrite is the desired state of one function, for applyFunction:
// what PUT .../functions/{name} and PUT .../traffic do, and what the apply
// handler does for a Function document, in one transaction.
type FunctionWrite struct {
	// Spec is the desired spec, labels included; nil keeps the spec (a
	// traffic-only write, which needs the function to exist).
	Spec *api.FunctionSpec
	// Traffic is the desired split; nil keeps it (a new function follows
	// its latest revision).
	Traffic []api.TrafficTarget
	// Expect is checked against the function record's version before
	// writing, and the write is at the version read (CAS).
	Expect Precondition
	// DryRun validates everything (names, admission, quota, images,
	// secrets, traffic) and writes nothing.
	DryRun bool
}

// FunctionResult is what applyFunction did.
type FunctionResult struct {
	Action Action
	// Function is the function as GET would show it afterwards (for a dry
	// run, as it would be), ResourceVersion included.
	Function api.Function
	// Revision is the revision the write created ("" if none: unchanged
	// spec, labels-only or traffic-only change).
	Revision string
}

// applyFunction makes function qualified (api.QualifiedName) match w: a
// new revision only when the spec without labels changed, the record
// rewritten when the spec, labels or traffic changed, nothing written when
// nothing did (ActionUnchanged). A concurrent writer's win is retried
// against the new state, unless w.Expect then fails (409).
func (s *Server) applyFunction(ctx context.Context, qualified string, w FunctionWrite) (FunctionResult, error) {
	if w.Spec != nil {
		spec, err := s.prepareSpec(ctx, qualified, *w.Spec)
		if err != nil {
			return FunctionResult{}, err
		}
		w.Spec = &spec
	}
	var (
		res FunctionResult
		err error
	)
	for range casRetries {
		res, err = s.applyFunctionOnce(ctx, qualified, w)
		// A lost race is retried against the new state; a precondition
		// that no longer holds is a 409 of its own (an *httpError).
		if !errors.Is(err, store.ErrConflict) {
			break
		}
	}
	return res, err
}

// prepareSpec defaults, validates and normalizes a spec and checks what it
// refers to: its image has been pushed, its secrets exist.
func (s *Server) prepareSpec(ctx context.Context, qualified string, spec api.FunctionSpec) (api.FunctionSpec, error) {
	spec = spec.WithDefaults()
	if len(spec.Labels) == 0 {
		spec.Labels = nil // no labels, however spelled, is one state
	} else {
		spec.Labels = maps.Clone(spec.Labels)
	}
	if err := spec.Validate(); err != nil {
		return spec, err
	}
	_, bare := api.SplitQualifiedName(qualified)
	if err := api.ValidateRevisionName(bare, spec.RevisionName); err != nil {
		return spec, err
	}
	// Store the image as the runtime names it, so "hello" and
	// "docker.io/library/hello:latest" are the same spec.
	var err error
	written := spec.Image
	if spec.Image, err = ociimage.NormalizeName(spec.Image); err != nil {
		return spec, &api.ValidationError{Field: "image", Reason: err.Error()}
	}
	if err := s.requireImage(ctx, written, spec.Image); err != nil {
		return spec, err
	}
	if err := s.checkPullSecret(ctx, qualified, spec.ImagePullSecret); err != nil {
		return spec, err
	}
	if err := s.checkSecretRefs(ctx, qualified, spec.Secrets); err != nil {
		return spec, err
	}
	return spec, nil
}

// applyFunctionOnce is one attempt of applyFunction: read, decide, and
// write in one transaction at the versions read.
func (s *Server) applyFunctionOnce(ctx context.Context, name string, w FunctionWrite) (FunctionResult, error) {
	now := s.deps.Now().UTC()
	// A namespace's delete first marks it deleting, then removes what it
	// lists: checking the namespace's version in this transaction makes a
	// function written meanwhile fail here instead of outliving it.
	nsCheck, err := s.namespaceOpen(ctx, name)
	if err != nil {
		return FunctionResult{}, err
	}
	fn, version, err := store.GetJSON[store.Function](ctx, s.deps.Store, store.FunctionKey(name))
	created := false
	switch {
	case errors.Is(err, store.ErrNotFound):
		if w.Spec == nil {
			return FunctionResult{}, functionErr(name, err)
		}
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
		return FunctionResult{}, fmt.Errorf("read function %s: %w", name, err)
	}
	if err := w.Expect.Check("function "+describe(name), version); err != nil {
		return FunctionResult{}, err
	}
	revs, err := s.readRevisions(ctx, name)
	if err != nil {
		return FunctionResult{}, err
	}
	var ops []store.Op
	var newRev *store.Revision
	changed := created
	prevLatest := fn.LatestRevision
	if w.Spec != nil && !reflect.DeepEqual(fn.Spec, *w.Spec) {
		changed = true
		named, err := revs.named(w.Spec.RevisionName, *w.Spec)
		if err != nil {
			return FunctionResult{}, err
		}
		// A spec under a revision name it already has is that revision
		// again: the function's spec goes back to it, and no revision is
		// made (as Knative does when a template names an existing one).
		if named == "" && (created || !reflect.DeepEqual(fn.Spec.RevisionSpec(), w.Spec.RevisionSpec())) {
			// A capped namespace admits the deploy against its quota, and
			// its record's rewrite (which implies the namespace check)
			// orders the namespace's deploys.
			quotaOps, err := s.admitSpec(ctx, name, created, *w.Spec)
			if err != nil {
				return FunctionResult{}, err
			}
			if quotaOps != nil {
				nsCheck = quotaOps
			}
			fn.Generation++
			fn.LatestRevision = api.RevisionName(name, fn.Generation)
			newRev = &store.Revision{
				Name:       fn.LatestRevision,
				Function:   name,
				Generation: fn.Generation,
				// Labels are the function's metadata, not what a revision runs.
				Spec:      w.Spec.RevisionSpec(),
				CreatedAt: now,
			}
			ops = append(ops, store.PutJSON(store.RevisionKey(name, newRev.Name), *newRev, store.MustNotExist))
		}
		fn.Spec = *w.Spec
	}
	if newRev != nil {
		revs.add(*newRev)
	}
	// With a rollout policy a new revision earns its traffic step by step
	// rather than taking it all; a split given in the same write wins.
	if newRev != nil && !created && w.Traffic == nil && w.Spec.Rollout != nil {
		rollOps, err := s.startRollout(ctx, &fn, *w.Spec.Rollout, prevLatest, newRev.Name)
		if err != nil {
			return FunctionResult{}, err
		}
		ops = append(ops, rollOps...)
	}
	// Traffic may name a revision by the name its spec gave it; the split
	// is kept under ebb's names, so naming it either way is the same split.
	traffic := revs.resolve(w.Traffic)
	if traffic != nil && !reflect.DeepEqual(fn.Traffic, traffic) {
		exists := func(rev string) bool {
			_, ok := revs.versions[rev]
			return ok
		}
		if err := api.ValidateTraffic(traffic, exists); err != nil {
			return FunctionResult{}, err
		}
		changed = true
		fn.Traffic = traffic
		abortOps, err := s.abortRollouts(ctx, name)
		if err != nil {
			return FunctionResult{}, err
		}
		ops = append(ops, abortOps...)
		// Each named revision is checked in the same transaction, so a
		// split can never point at a revision deleted meanwhile.
		for _, t := range traffic {
			if v, ok := revs.versions[t.Revision]; ok && t.Revision != "" && v != store.MustNotExist {
				ops = append(ops, store.Check(store.RevisionKey(name, t.Revision), v))
			}
		}
	}
	res := FunctionResult{Action: ActionUnchanged}
	if !changed {
		res.Function, err = s.functionStatus(ctx, name)
		return res, err
	}
	res.Action = ActionConfigured
	if created {
		res.Action = ActionCreated
	}
	if newRev != nil {
		res.Revision = newRev.Name
	}
	fn.UpdatedAt = now
	if w.DryRun {
		// What GET would show: the record as it would be, beside the
		// observed state of the revisions that exist.
		res.Function, err = s.statusOf(ctx, fn, version, newRev)
		return res, err
	}
	// The record goes after its new revision: a watcher then sees a
	// creation's revision -00001 before the record (watch.go tells
	// ADDED from MODIFIED by it).
	ops = append(ops, store.PutJSON(store.FunctionKey(name), fn, version))
	if _, err := s.deps.Store.Txn(ctx, append(ops, nsCheck...)...); err != nil {
		return FunctionResult{}, fmt.Errorf("write function %s: %w", name, err)
	}
	res.Function, err = s.functionStatus(ctx, name)
	return res, err
}

// revisionVersions maps a function's revisions to their record versions.
// revisionIndex is what a function write needs of the function's
// revisions: each one's version, to check in the write's transaction, and
// the names specs gave them (api.FunctionSpec.RevisionName).
type revisionIndex struct {
	versions map[string]int64          // by ebb's name
	byName   map[string]store.Revision // by the spec's revision name
}

func (s *Server) readRevisions(ctx context.Context, name string) (revisionIndex, error) {
	recs, _, err := store.ListJSON[store.Revision](ctx, s.deps.Store, store.RevisionsPrefix(name))
	if err != nil {
		return revisionIndex{}, fmt.Errorf("list revisions of %s: %w", name, err)
	}
	idx := revisionIndex{versions: make(map[string]int64, len(recs)), byName: map[string]store.Revision{}}
	for _, r := range recs {
		idx.versions[r.Value.Name] = r.Version
		if n := r.Value.Spec.RevisionName; n != "" {
			idx.byName[n] = r.Value
		}
	}
	return idx, nil
}

// add counts a revision the write is making (not in the store yet).
func (idx revisionIndex) add(r store.Revision) {
	idx.versions[r.Name] = store.MustNotExist
	if r.Spec.RevisionName != "" {
		idx.byName[r.Spec.RevisionName] = r
	}
}

// named is the revision that revisionName already names, "" if none. A
// name belongs to its revision for good: another spec under it is refused.
func (idx revisionIndex) named(revisionName string, spec api.FunctionSpec) (string, error) {
	if revisionName == "" {
		return "", nil
	}
	r, ok := idx.byName[revisionName]
	if !ok {
		return "", nil
	}
	if !reflect.DeepEqual(r.Spec.RevisionSpec(), spec.RevisionSpec()) {
		return "", &api.ValidationError{Field: "revisionName", Reason: fmt.Sprintf(
			"%q already names revision %s, which runs another spec; revisions never change, so give this spec another name", revisionName, r.Name)}
	}
	return r.Name, nil
}

// resolve rewrites targets that name a revision by its spec's name to
// ebb's name; nil stays nil.
func (idx revisionIndex) resolve(targets []api.TrafficTarget) []api.TrafficTarget {
	if targets == nil {
		return nil
	}
	out := slices.Clone(targets)
	for i, t := range out {
		if _, ok := idx.versions[t.Revision]; ok || t.Revision == "" {
			continue
		}
		if r, ok := idx.byName[t.Revision]; ok {
			out[i].Revision = r.Name
		}
	}
	return out
}

// functionBody is PUT .../functions/{name}'s body: the spec, and the
// resourceVersion the writer read (an alternative to If-Match).
type functionBody struct {
	api.FunctionSpec
	ResourceVersion string `json:"resourceVersion,omitempty"`
}

// trafficBody is PUT .../traffic's body.
type trafficBody struct {
	api.TrafficRequest
	ResourceVersion string `json:"resourceVersion,omitempty"`
}

// writeFunctionResult answers a function write: 201 when it created the
// function (or would have), 200 otherwise, with its ETag.
func writeFunctionResult(w http.ResponseWriter, res FunctionResult) {
	status := http.StatusOK
	if res.Action == ActionCreated {
		status = http.StatusCreated
	}
	setETag(w, res.Function.ResourceVersion)
	writeJSON(w, status, res.Function)
}
