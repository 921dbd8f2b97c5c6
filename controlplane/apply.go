package controlplane

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/controlplane/auth"
	"github.com/ebbrun/ebb/manifest"
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

// errorDetail is the error envelope the PUT a document stands for would
// answer err with (quota numbers included).
func (s *Server) errorDetail(r *http.Request, err error) *api.ErrorDetail {
	_, detail := s.errorOf(r, err)
	return &detail
}

// applyObject applies one document after checking that the caller may
// write it in its namespace: the route only checked the namespace of the
// URL.
func (s *Server) applyObject(ctx context.Context, p auth.Principal, o manifest.Object, dryRun bool) (string, error) {
	ns, name := o.Metadata.Namespace, o.Metadata.Name
	switch {
	case o.Function != nil:
		if err := s.mayWriteIn(ctx, p, ns, auth.FunctionsWrite, auth.TrafficWrite); err != nil {
			return "", err
		}
		if err := api.ValidateQualified(ns, name); err != nil {
			return "", err
		}
		spec := o.APISpec()
		// A manifest without traffic gives the latest revision all of it,
		// as manifest.Normalize (and so ebb diff) has it, unless its
		// rollouts own the traffic (nil keeps it).
		var traffic []api.TrafficTarget
		switch {
		case len(o.Function.Traffic) > 0:
			traffic = o.Function.Traffic
		case manifest.OwnsTraffic(*o.Function):
			traffic = []api.TrafficTarget{{LatestRevision: true, Percent: 100}}
		}
		res, err := s.applyFunction(ctx, api.QualifiedName(ns, name), FunctionWrite{Spec: &spec, Traffic: traffic, DryRun: dryRun})
		return string(res.Action), err
	case o.Secret != nil:
		if err := s.mayWriteIn(ctx, p, ns, auth.SecretsWrite); err != nil {
			return "", err
		}
		data := make(map[string][]byte, len(o.Secret.Data))
		for k, v := range o.Secret.Data {
			if v.Value == nil {
				return "", &api.ValidationError{Field: "spec.data." + k, Reason: "has no value: the client resolves fromFile and fromEnv before it applies"}
			}
			data[k] = v.Value
		}
		_, action, err := s.applySecret(ctx, ns, name, data, secretWrite{SkipUnchanged: true, DryRun: dryRun})
		return string(action), err
	case o.CronTrigger != nil:
		if err := s.mayWriteIn(ctx, p, ns, auth.FunctionsWrite); err != nil {
			return "", err
		}
		if err := api.ValidateName("metadata.name", name); err != nil {
			return "", err
		}
		if err := api.ValidateQualified(ns, o.CronTrigger.Function); err != nil {
			return "", err
		}
		if err := o.CronTrigger.CronTriggerSpec.Validate(); err != nil {
			return "", err
		}
		_, action, err := s.applyCronTrigger(ctx, api.QualifiedName(ns, o.CronTrigger.Function), name, o.CronTrigger.CronTriggerSpec, dryRun)
		return action, err
	case o.Job != nil:
		if err := s.mayWriteIn(ctx, p, ns, auth.FunctionsWrite); err != nil {
			return "", err
		}
		if err := api.ValidateQualified(ns, name); err != nil {
			return "", err
		}
		_, action, err := s.applyJob(ctx, ns, name, *o.Job, dryRun)
		return action, err
	case o.Namespace != nil:
		if err := authorizeAll(p, name, auth.NamespacesWrite); err != nil {
			return "", err
		}
		_, action, err := s.applyNamespace(ctx, name, o.Namespace.Quota, Precondition{}, dryRun)
		return string(action), err
	}
	return "", &api.ValidationError{Field: "kind", Reason: fmt.Sprintf("%q cannot be applied", o.Kind)}
}

// mayWriteIn checks that p holds perms in namespace ns and that ns
// exists: the checks handleNamespaced makes for a PUT's URL, here for a
// document's namespace.
func (s *Server) mayWriteIn(ctx context.Context, p auth.Principal, ns string, perms ...auth.Permission) error {
	if err := authorizeAll(p, ns, perms...); err != nil {
		return err
	}
	_, _, err := s.namespace(ctx, ns)
	return err
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
