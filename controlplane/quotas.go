package controlplane

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/quota"
	"github.com/ebbrun/ebb/store"
)

// This file is the API's side of namespace quotas (internal/quota): the
// /v1/namespaces/{ns}/quota sub-resource, and the admission of a deploy.
//
// A deploy is admitted against what a namespace has reserved, not what it
// runs this instant, so that load never blocks a deploy: a function
// reserves its latest spec's min scale (times a replica's memory and
// CPU), and a deploy asks for max(min, initial) of its new spec beside the
// other functions' reservations, plus one function if it is new. What
// runs beyond that under load is the autoscaler's to clip.

// quotaUnits are what an ExceededError's numbers count, by resource.
var quotaUnits = map[string]string{
	quota.ResourceFunctions: "functions", quota.ResourceReplicas: "replicas",
	quota.ResourceMemory: "bytes", quota.ResourceCPU: "millicores", quota.ResourceSecrets: "secrets",
}

// quotaExceededDetail is the envelope of a change refused by a quota (403
// quota_exceeded): the numbers in the message and in error.quota.
func quotaExceededDetail(e *quota.ExceededError) api.ErrorDetail {
	return api.ErrorDetail{
		Code: api.CodeQuotaExceeded, Message: e.Error(),
		Quota: &api.QuotaExceeded{
			Namespace: e.Namespace, Resource: e.Resource, Unit: quotaUnits[e.Resource],
			Limit: e.Limit, Used: e.Used, Wants: e.Wants,
		},
	}
}

func (s *Server) getQuota(w http.ResponseWriter, r *http.Request) error {
	ns, err := namespaceName(r)
	if err != nil {
		return err
	}
	rec, _, err := s.namespace(r.Context(), ns)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, rec.Quota)
	return nil
}

// putQuota sets a namespace's quota, whole: a cap left out is no cap. A
// quota below what the namespace holds is taken: the autoscaler brings its
// replicas down to it, and deploys that would grow it are refused.
func (s *Server) putQuota(w http.ResponseWriter, r *http.Request) error {
	ns, err := namespaceName(r)
	if err != nil {
		return err
	}
	var body quotaBody
	if err := s.decodeJSON(w, r, &body); err != nil {
		return err
	}
	expect, dry, err := writeOptionsOf(r, body.ResourceVersion)
	if err != nil {
		return err
	}
	q := body.Quota
	if err := q.Validate(); err != nil {
		return err
	}
	var rv int64
	for range casRetries {
		rv, err = s.setQuota(r.Context(), ns, q, expect, dry)
		if !errors.Is(err, store.ErrConflict) {
			break
		}
	}
	if err != nil {
		return err
	}
	// The quota is part of the namespace record: its version is the ETag.
	setETag(w, resourceVersion(rv))
	writeJSON(w, http.StatusOK, q)
	return nil
}

// quotaBody is PUT /v1/namespaces/{ns}/quota's body: the quota, and the
// namespace record's resourceVersion the writer read.
type quotaBody struct {
	api.Quota
	ResourceVersion string `json:"resourceVersion,omitempty"`
}

// setQuota writes ns's quota at the record's version read, if expect
// holds, and returns the record's new version (the old one for a dry run).
func (s *Server) setQuota(ctx context.Context, ns string, q api.Quota, expect Precondition, dryRun bool) (int64, error) {
	rec, version, err := s.namespace(ctx, ns)
	if err != nil {
		return 0, err
	}
	if err := expect.Check(fmt.Sprintf("namespace %q", ns), version); err != nil {
		return 0, err
	}
	if rec.Deleting {
		return 0, errorf(http.StatusConflict, api.CodeConflict, "namespace %q is being deleted", ns)
	}
	if version == store.MustNotExist {
		rec.CreatedAt = s.deps.Now().UTC() // default, recorded now
	}
	rec.Quota = q
	if dryRun {
		return version, nil
	}
	rev, err := s.deps.Store.Txn(ctx, store.PutJSON(store.NamespaceKey(ns), rec, version))
	if err != nil {
		return 0, fmt.Errorf("write namespace %s: %w", ns, err)
	}
	return rev, nil
}

// namespaceQuota reads a namespace's quota. ok is false when it caps
// nothing (or the namespace has no record: default without one).
func (s *Server) namespaceQuota(ctx context.Context, ns string) (rec store.Namespace, version int64, l quota.Limits, ok bool, err error) {
	rec, version, err = store.GetJSON[store.Namespace](ctx, s.deps.Store, store.NamespaceKey(ns))
	if errors.Is(err, store.ErrNotFound) {
		return rec, 0, l, false, nil
	}
	if err != nil {
		return rec, 0, l, false, fmt.Errorf("read namespace %s: %w", ns, err)
	}
	if l, err = quota.Parse(rec.Quota); err != nil {
		return rec, 0, l, false, fmt.Errorf("namespace %s has an invalid quota: %w", ns, err)
	}
	return rec, version, l, l != quota.Limits{}, nil
}

// admitSpec checks a deploy of function qualified (new when created)
// against its namespace's quota. When the namespace has one, it returns
// the op that rewrites the namespace's record at the version read, for the
// deploy's transaction: deploys in a capped namespace then land one at a
// time, each admitted against what the others wrote. It replaces the
// namespace check of namespaceOpen, which it implies.
func (s *Server) admitSpec(ctx context.Context, qualified string, created bool, spec api.FunctionSpec) ([]store.Op, error) {
	ns, _ := api.SplitQualifiedName(qualified)
	rec, version, l, capped, err := s.namespaceQuota(ctx, ns)
	if err != nil || !capped {
		return nil, err
	}
	if rec.Deleting {
		return nil, errorf(http.StatusConflict, api.CodeConflict, "namespace %q is being deleted", ns)
	}
	each := quota.PerReplica(spec)
	// One replica that can never fit is refused whatever the scale says.
	if err := quota.Admit(ns, "one replica of the deploy", l, quota.Usage{}, each); err != nil {
		return nil, err
	}
	fns, _, err := store.ListJSON[store.Function](ctx, s.deps.Store, store.PrefixFunctions)
	if err != nil {
		return nil, fmt.Errorf("list functions: %w", err)
	}
	used, err := s.jobPodsUse(ctx, ns)
	if err != nil {
		return nil, err
	}
	for _, fn := range fns {
		name := strings.TrimPrefix(fn.Key, store.PrefixFunctions)
		if other, _ := api.SplitQualifiedName(name); other != ns || name == qualified {
			continue
		}
		used.Functions++
		used = used.Plus(quota.PerReplica(fn.Value.Spec).Times(fn.Value.Spec.Scale.Min))
	}
	initial := api.DefaultInitialScale
	if spec.Scale.Initial != nil {
		initial = *spec.Scale.Initial
	}
	change := each.Times(max(spec.Scale.Min, initial))
	if created {
		change.Functions = 1
	}
	if err := quota.Admit(ns, "deploy", l, used, change); err != nil {
		return nil, err
	}
	return []store.Op{store.PutJSON(store.NamespaceKey(ns), rec, version)}, nil
}

// jobPodsUse is what the job pods of namespace ns hold of its quota: a
// replica's worth each, with its limits, from its placement until the job
// controller folds its end into its job (as the controller and the
// autoscaler count them).
func (s *Server) jobPodsUse(ctx context.Context, ns string) (quota.Usage, error) {
	pods, _, err := store.ListJSON[store.JobPod](ctx, s.deps.Store, store.PrefixJobPods)
	if err != nil {
		return quota.Usage{}, fmt.Errorf("list job pods: %w", err)
	}
	var used quota.Usage
	for _, p := range pods {
		if cmp.Or(p.Value.Namespace, api.DefaultNamespace) == ns {
			used = used.Plus(quota.PerJobPod(p.Value.Spec.WithDefaults()))
		}
	}
	return used, nil
}

// admitJob refuses a job whose one pod can never fit its namespace's
// quota: it would wait forever. Pods beyond what the quota has room for
// now wait (the job controller's status.waiting says why).
func (s *Server) admitJob(ctx context.Context, ns string, spec api.JobSpec) error {
	_, _, l, capped, err := s.namespaceQuota(ctx, ns)
	if err != nil || !capped {
		return err
	}
	return quota.Admit(ns, "one pod of the job", l, quota.Usage{}, quota.PerJobPod(spec.WithDefaults()))
}

// admitNew checks the creation of an object counted by a quota's resource
// (quota.ResourceSecrets: the secrets under secrets/{ns}/) in namespace
// ns: key is the object's key, prefix holds every object of its kind in
// ns. Replacing an object that exists adds nothing. When the namespace
// caps the resource, it returns the op that rewrites the namespace's
// record at the version read, for the creating transaction (it replaces
// namespaceOpen's check, which it implies), so that racing creations are
// admitted one at a time; nil when nothing is capped.
func (s *Server) admitNew(ctx context.Context, ns, resource, prefix, key string) ([]store.Op, error) {
	rec, version, l, capped, err := s.namespaceQuota(ctx, ns)
	if err != nil || !capped {
		return nil, err
	}
	if rec.Deleting {
		return nil, errorf(http.StatusConflict, api.CodeConflict, "namespace %q is being deleted", ns)
	}
	kvs, _, err := s.deps.Store.List(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", prefix, err)
	}
	var used, change quota.Usage
	for _, kv := range kvs {
		if kv.Key == key {
			return []store.Op{store.PutJSON(store.NamespaceKey(ns), rec, version)}, nil
		}
	}
	switch resource {
	case quota.ResourceSecrets:
		used.Secrets, change.Secrets = len(kvs), 1
	default:
		return nil, fmt.Errorf("admit a new object: %s is not a counted resource", resource)
	}
	if err := quota.Admit(ns, "create", l, used, change); err != nil {
		return nil, err
	}
	return []store.Op{store.PutJSON(store.NamespaceKey(ns), rec, version)}, nil
}
