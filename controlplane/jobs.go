package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/store"
)

// Jobs (issue 20): the API writes a job's record and reads it back; the
// job controller (controlplane/jobs) runs it and writes its status.

// putJob creates a job from the api.JobSpec in the body. A job's spec
// cannot change: putting the same spec again answers 200 with the job,
// another 409.
func (s *Server) putJob(w http.ResponseWriter, r *http.Request) error {
	ns, name, _, err := jobName(r)
	if err != nil {
		return err
	}
	var spec api.JobSpec
	if err := s.decodeJSON(w, r, &spec); err != nil {
		return err
	}
	job, action, err := s.applyJob(r.Context(), ns, name, spec, false)
	if err != nil {
		return err
	}
	code := http.StatusOK
	if action == api.ApplyCreated {
		code = http.StatusCreated
	}
	writeJSON(w, code, job)
	return nil
}

// applyJob creates the job (a PUT or an applied Job document), or leaves
// it be when it exists with the same spec; another spec is a conflict,
// for a job's spec cannot change. dryRun validates and writes nothing.
func (s *Server) applyJob(ctx context.Context, ns, name string, spec api.JobSpec, dryRun bool) (store.Job, string, error) {
	if err := spec.Validate(); err != nil {
		return store.Job{}, "", err
	}
	spec = spec.WithDefaults()
	qualified := api.QualifiedName(ns, name)
	old, _, err := store.GetJSON[store.Job](ctx, s.deps.Store, store.JobKey(qualified))
	switch {
	case err == nil && reflect.DeepEqual(old.Spec, spec):
		return old, api.ApplyUnchanged, nil
	case err == nil:
		return store.Job{}, "", errorf(http.StatusConflict, api.CodeConflict, "job %s exists with another spec, which cannot change; delete it first", describe(qualified))
	case !errors.Is(err, store.ErrNotFound):
		return store.Job{}, "", fmt.Errorf("read job %s: %w", qualified, err)
	}
	ops, err := s.namespaceOpen(ctx, qualified)
	if err != nil {
		return store.Job{}, "", err
	}
	if err := s.admitJob(ctx, ns, spec); err != nil {
		return store.Job{}, "", err
	}
	job := store.Job{Name: name, Namespace: ns, Spec: spec, CreatedAt: s.deps.Now().UTC()}
	if dryRun {
		return job, api.ApplyCreated, nil
	}
	ops = append(ops, store.PutJSON(store.JobKey(qualified), job, store.MustNotExist))
	if _, err := s.deps.Store.Txn(ctx, ops...); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return store.Job{}, "", errorf(http.StatusConflict, api.CodeConflict, "job %s was created or its namespace changed meanwhile; try again", describe(qualified))
		}
		return store.Job{}, "", fmt.Errorf("write job %s: %w", qualified, err)
	}
	return job, api.ApplyCreated, nil
}

func (s *Server) getJob(w http.ResponseWriter, r *http.Request) error {
	_, _, qualified, err := jobName(r)
	if err != nil {
		return err
	}
	job, err := s.readJob(r.Context(), qualified)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, job)
	return nil
}

func (s *Server) listJobs(w http.ResponseWriter, r *http.Request) error {
	ns := namespaceOf(r)
	recs, _, err := store.ListJSON[store.Job](r.Context(), s.deps.Store, store.PrefixJobs)
	if err != nil {
		return fmt.Errorf("list jobs: %w", err)
	}
	list := api.JobList{Jobs: []api.Job{}}
	for _, rec := range recs {
		if jobNamespace(rec.Value) == ns {
			list.Jobs = append(list.Jobs, rec.Value)
		}
	}
	slices.SortFunc(list.Jobs, func(a, b api.Job) int { return strings.Compare(a.Name, b.Name) })
	writeJSON(w, http.StatusOK, list)
	return nil
}

// deleteJob deletes the job's record; the job controller then deletes its
// pods, which kills those still running.
func (s *Server) deleteJob(w http.ResponseWriter, r *http.Request) error {
	_, _, qualified, err := jobName(r)
	if err != nil {
		return err
	}
	if _, err := s.readJob(r.Context(), qualified); err != nil {
		return err
	}
	if _, err := s.deps.Store.Txn(r.Context(), store.Delete(store.JobKey(qualified), store.AnyVersion)); err != nil {
		return fmt.Errorf("delete job %s: %w", qualified, err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// jobLogs streams a job's logs, of every attempt, as a function's logs.
func (s *Server) jobLogs(w http.ResponseWriter, r *http.Request) error {
	ns, name, qualified, err := jobName(r)
	if err != nil {
		return err
	}
	if _, err := s.readJob(r.Context(), qualified); err != nil {
		return err
	}
	req, err := logRequest(r, api.JobLogName(ns, name))
	if err != nil {
		return err
	}
	return s.streamLogs(w, r, req)
}

func (s *Server) readJob(ctx context.Context, qualified string) (store.Job, error) {
	job, _, err := store.GetJSON[store.Job](ctx, s.deps.Store, store.JobKey(qualified))
	if errors.Is(err, store.ErrNotFound) {
		return job, errorf(http.StatusNotFound, api.CodeNotFound, "job %s does not exist", describe(qualified))
	}
	if err != nil {
		return job, fmt.Errorf("read job %s: %w", qualified, err)
	}
	return job, nil
}

// jobName is the namespace, name and qualified name of the job a request
// addresses. Jobs are named as functions are, so that their pods' names
// ({qualified}-{attempt}) fit a container id.
func jobName(r *http.Request) (ns, name, qualified string, err error) {
	ns, name = namespaceOf(r), r.PathValue("name")
	if err := api.ValidateQualified(ns, name); err != nil {
		return "", "", "", err
	}
	return ns, name, api.QualifiedName(ns, name), nil
}

func jobNamespace(j store.Job) string {
	if j.Namespace == "" {
		return api.DefaultNamespace
	}
	return j.Namespace
}

// namespaceJobs is the cascade of a namespace's jobs: their records are
// keyed by qualified name, not under a prefix of the namespace's own.
func namespaceJobs(ctx context.Context, st store.Store, ns string) ([]store.Op, error) {
	recs, _, err := store.ListJSON[store.Job](ctx, st, store.PrefixJobs)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	var ops []store.Op
	for _, rec := range recs {
		if jobNamespace(rec.Value) == ns {
			ops = append(ops, store.Delete(rec.Key, rec.Version))
		}
	}
	return ops, nil
}
