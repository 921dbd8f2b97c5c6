package controlplane

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"mime"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/controlplane/auth"
	"github.com/ebbrun/ebb/internal/ociimage"
	"github.com/ebbrun/ebb/internal/quota"
	"github.com/ebbrun/ebb/manifest"
	"github.com/ebbrun/ebb/store"
)

// apply is POST /v1/apply and /v1/namespaces/{ns}/apply: a manifest
// stream, each document applied on its own through the same code as the
// PUT handlers, all or nothing per document. The answer is 200 with one
// result per document even when some failed; 400 only when the stream
// cannot be parsed at all. ?dryRun=server (or All) validates every
// document and writes nothing.
func (s *Server) apply(w http.ResponseWriter, r *http.Request) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || !applyTypes[mt] {
			return errorf(http.StatusUnsupportedMediaType, api.CodeUnsupportedType, "Content-Type must be application/yaml or application/json, not %q", ct)
		}
	}
	dryRun, err := dryRunOf(r)
	if err != nil {
		return err
	}
	// Secrets arrive with their values, so the body may be as large as a
	// secret's.
	body := http.MaxBytesReader(w, r.Body, max(s.cfg.MaxBodyBytes, maxSecretBodyBytes))
	objs, err := manifest.Parse("request", body, manifest.Options{
		Lenient:          r.URL.Query().Get("lenient") == "true",
		DefaultNamespace: namespaceOf(r),
		// Secrets arrive with their values; the server reads no files.
		Resolved: true,
	})
	if err != nil {
		var maxErr *http.MaxBytesError
		if errors.As(err, &maxErr) {
			return err
		}
		return errorf(http.StatusBadRequest, api.CodeInvalid, "%s", err.Error())
	}
	p, _ := auth.PrincipalFrom(r.Context())
	out := api.ApplyResponse{Results: make([]api.ApplyResult, 0, len(objs))}
	for _, o := range objs {
		res := api.ApplyResult{Kind: o.Kind, Namespace: o.Metadata.Namespace, Name: o.Metadata.Name, Warnings: o.Warnings}
		if res.Warnings == nil {
			res.Warnings = []string{}
		}
		action, err := s.applyObject(r.Context(), p, o, dryRun)
		if err != nil {
			res.Error = s.errorDetail(r, err)
		} else {
			res.Action = action
		}
		out.Results = append(out.Results, res)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

var applyTypes = map[string]bool{
	"application/yaml": true, "application/x-yaml": true, "text/yaml": true,
	"application/json": true,
}

// dryRunOf reads ?dryRun: "server" and "All" (Kubernetes' spelling) ask
// for a dry run; anything else is a 400 rather than a silent real write.
func dryRunOf(r *http.Request) (bool, error) {
	switch v := r.URL.Query().Get("dryRun"); v {
	case "":
		return false, nil
	case "server", "All":
		return true, nil
	default:
		return false, &api.ValidationError{Field: "dryRun", Reason: fmt.Sprintf("%q: want server or All", v)}
	}
}

// errorDetail is the error envelope writeErr would answer err with, so a
// document's failure carries the same code and message as the PUT it
// stands for (quota numbers included).
func (s *Server) errorDetail(r *http.Request, err error) *api.ErrorDetail {
	rec := httptest.NewRecorder()
	s.writeErr(rec, r, err)
	var body api.ErrorBody
	if json.Unmarshal(rec.Body.Bytes(), &body) != nil || body.Error.Code == "" {
		return &api.ErrorDetail{Code: api.CodeInternal, Message: err.Error()}
	}
	return &body.Error
}

// applyObject applies one document after checking that the caller may
// write it in its namespace: the route only checked the namespace of the
// URL.
func (s *Server) applyObject(ctx context.Context, p auth.Principal, o manifest.Object, dryRun bool) (string, error) {
	ns, name := o.Metadata.Namespace, o.Metadata.Name
	switch {
	case o.Function != nil:
		perms := []auth.Permission{auth.FunctionsWrite, auth.TrafficWrite}
		if err := authorizeAll(p, ns, perms...); err != nil {
			return "", err
		}
		if err := s.namespaceExists(ctx, ns); err != nil {
			return "", err
		}
		return s.applyFunction(ctx, ns, name, o.APISpec(), o.Function.Traffic, dryRun)
	case o.Secret != nil:
		if err := authorizeAll(p, ns, auth.SecretsWrite); err != nil {
			return "", err
		}
		if err := s.namespaceExists(ctx, ns); err != nil {
			return "", err
		}
		return s.applySecret(ctx, ns, name, *o.Secret, dryRun)
	case o.Namespace != nil:
		if err := authorizeAll(p, name, auth.NamespacesWrite); err != nil {
			return "", err
		}
		return s.applyNamespace(ctx, name, *o.Namespace, dryRun)
	}
	return "", &api.ValidationError{Field: "kind", Reason: fmt.Sprintf("%q cannot be applied", o.Kind)}
}

func authorizeAll(p auth.Principal, ns string, perms ...auth.Permission) error {
	if err := api.ValidateName("namespace", ns); err != nil {
		return err
	}
	for _, perm := range perms {
		if err := auth.Authorize(p, perm, ns); err != nil {
			return errorf(http.StatusForbidden, api.CodeForbidden, "%s", err.Error())
		}
	}
	return nil
}

func (s *Server) namespaceExists(ctx context.Context, ns string) error {
	_, _, err := s.namespace(ctx, ns)
	return err
}

// applyFunction validates the whole document (spec, image, secrets,
// quota, traffic against the revisions there will be) before it writes
// anything, then writes the spec and the traffic through applySpec and
// setTraffic. Traffic left out means the latest revision takes it all.
func (s *Server) applyFunction(ctx context.Context, ns, name string, spec api.FunctionSpec, traffic []api.TrafficTarget, dryRun bool) (string, error) {
	if err := api.ValidateQualified(ns, name); err != nil {
		return "", err
	}
	q := api.QualifiedName(ns, name)
	spec = spec.WithDefaults()
	if err := spec.Validate(); err != nil {
		return "", err
	}
	var err error
	if spec.Image, err = ociimage.NormalizeName(spec.Image); err != nil {
		return "", &api.ValidationError{Field: "image", Reason: err.Error()}
	}
	if err := s.requireImage(ctx, spec.Image); err != nil {
		return "", err
	}
	if err := s.checkSecretRefs(ctx, q, spec.Secrets); err != nil {
		return "", err
	}
	if len(traffic) == 0 {
		traffic = []api.TrafficTarget{{LatestRevision: true, Percent: 100}}
	}
	for range casRetries {
		action, err := s.applyFunctionOnce(ctx, q, spec, traffic, dryRun)
		if !errors.Is(err, store.ErrConflict) {
			return action, err
		}
	}
	return "", errorf(http.StatusConflict, api.CodeConflict, "function %s changed concurrently; retry", describe(q))
}

func (s *Server) applyFunctionOnce(ctx context.Context, q string, spec api.FunctionSpec, traffic []api.TrafficTarget, dryRun bool) (string, error) {
	fn, _, err := store.GetJSON[store.Function](ctx, s.deps.Store, store.FunctionKey(q))
	created := errors.Is(err, store.ErrNotFound)
	if err != nil && !created {
		return "", fmt.Errorf("read function %s: %w", q, err)
	}
	// Labels are metadata: a change of labels alone rewrites the record
	// but makes no revision.
	specChanged := created || !reflect.DeepEqual(fn.Spec.WithoutLabels(), spec.WithoutLabels())
	labelsChanged := !maps.Equal(fn.Spec.Labels, spec.Labels)
	// The revisions the traffic may name: those there are, and the one
	// this apply creates when the spec changes.
	revs, _, err := s.deps.Store.List(ctx, store.RevisionsPrefix(q))
	if err != nil {
		return "", err
	}
	exists := map[string]bool{}
	for _, kv := range revs {
		exists[strings.TrimPrefix(kv.Key, store.RevisionsPrefix(q))] = true
	}
	if specChanged {
		exists[api.RevisionName(q, fn.Generation+1)] = true
	}
	if err := api.ValidateTraffic(traffic, func(rev string) bool { return exists[rev] }); err != nil {
		return "", err
	}
	trafficChanged := !reflect.DeepEqual(fn.Traffic, traffic)
	if !specChanged && !labelsChanged && !trafficChanged {
		return api.ApplyUnchanged, nil
	}
	if specChanged {
		// Quota admission reads only; a dry run stops after it.
		if _, err := s.admitSpec(ctx, q, created, spec); err != nil {
			return "", err
		}
	}
	if _, err := s.namespaceOpen(ctx, q); err != nil {
		return "", err
	}
	if dryRun {
		return actionOf(created), nil
	}
	if specChanged || labelsChanged {
		if _, err := s.applySpec(ctx, q, spec); err != nil {
			return "", err
		}
	}
	// A new function already follows its latest revision.
	if !created || !reflect.DeepEqual(traffic, []api.TrafficTarget{{LatestRevision: true, Percent: 100}}) {
		if err := s.setTraffic(ctx, q, traffic); err != nil {
			return "", err
		}
	}
	return actionOf(created), nil
}

func actionOf(created bool) string {
	if created {
		return api.ApplyCreated
	}
	return api.ApplyConfigured
}

// applySecret writes a secret's values, which the client resolved from
// its files and environment; it never reads a file itself. Values equal
// to the stored ones write nothing, so functions that use the secret do
// not roll.
func (s *Server) applySecret(ctx context.Context, ns, name string, spec manifest.SecretSpec, dryRun bool) (string, error) {
	if err := api.ValidateName("secret name", name); err != nil {
		return "", err
	}
	sec, err := s.secrets()
	if err != nil {
		return "", err
	}
	data := make(map[string][]byte, len(spec.Data))
	for k, v := range spec.Data {
		if v.Value == nil {
			return "", &api.ValidationError{Field: "spec.data." + k, Reason: "has no value: the client resolves fromFile and fromEnv before it applies"}
		}
		data[k] = v.Value
	}
	if err := api.ValidateSecretData(data); err != nil {
		return "", err
	}
	old, err := sec.SecretValues(ctx, ns, name)
	created := errors.Is(err, ErrSecretNotFound)
	switch {
	case err != nil && !created:
		return "", err
	case !created && maps.EqualFunc(old, data, bytes.Equal):
		return api.ApplyUnchanged, nil
	}
	guard, err := s.admitNew(ctx, ns, quota.ResourceSecrets, store.SecretsPrefix(ns), store.SecretKey(ns, name))
	if err != nil {
		return "", err
	}
	if guard == nil {
		if guard, err = s.namespaceOpen(ctx, api.QualifiedName(ns, name)); err != nil {
			return "", err
		}
	}
	if dryRun {
		return actionOf(created), nil
	}
	if _, err := sec.put(ctx, ns, name, data, false, false, guard...); err != nil {
		return "", err
	}
	return actionOf(created), nil
}

// applyNamespace creates the namespace or sets its quota.
func (s *Server) applyNamespace(ctx context.Context, ns string, spec manifest.NamespaceSpec, dryRun bool) (string, error) {
	if err := spec.Quota.Validate(); err != nil {
		return "", err
	}
	for range casRetries {
		action, err := s.applyNamespaceOnce(ctx, ns, spec.Quota, dryRun)
		if !errors.Is(err, store.ErrConflict) {
			return action, err
		}
	}
	return "", errorf(http.StatusConflict, api.CodeConflict, "namespace %q changed concurrently; retry", ns)
}

func (s *Server) applyNamespaceOnce(ctx context.Context, ns string, q api.Quota, dryRun bool) (string, error) {
	rec, version, err := store.GetJSON[store.Namespace](ctx, s.deps.Store, store.NamespaceKey(ns))
	created := errors.Is(err, store.ErrNotFound)
	switch {
	case err != nil && !created:
		return "", fmt.Errorf("read namespace %s: %w", ns, err)
	case !created && rec.Deleting:
		return "", errorf(http.StatusConflict, api.CodeConflict, "namespace %q is being deleted; delete it again to finish, then create it", ns)
	case !created && reflect.DeepEqual(rec.Quota, q):
		return api.ApplyUnchanged, nil
	case dryRun:
		return actionOf(created), nil
	case created:
		rec = store.Namespace{Name: ns, CreatedAt: s.deps.Now().UTC(), Quota: q}
		version = store.MustNotExist
	default:
		rec.Quota = q
	}
	if _, err := s.deps.Store.Txn(ctx, store.PutJSON(store.NamespaceKey(ns), rec, version)); err != nil {
		return "", fmt.Errorf("write namespace %s: %w", ns, err)
	}
	return actionOf(created), nil
}
