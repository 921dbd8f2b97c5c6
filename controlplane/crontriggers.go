package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"time"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/controlplane/cron"
	"github.com/ebbrun/ebb/store"
)

// The cron trigger routes, under .../functions/{name}/crontriggers: GET
// (by name), PUT/GET/DELETE .../{trigger}, and POST .../{trigger}/run,
// which fires a run now. The control plane's cron.Runner fires the
// scheduled runs.

// maxCronTriggerJSON bounds a trigger's JSON: a body of
// api.MaxInvocationBody may double in escaping, and one over the limit
// should get the 400 naming request.body rather than a bare 413.
const maxCronTriggerJSON = 3*api.MaxInvocationBody + 64<<10

func (s *Server) listCronTriggers(w http.ResponseWriter, r *http.Request) error {
	fn, err := s.functionName(r)
	if err != nil {
		return err
	}
	if _, err := s.deps.Store.Get(r.Context(), store.FunctionKey(fn)); err != nil {
		return functionErr(fn, err)
	}
	recs, _, err := store.ListJSON[store.CronTrigger](r.Context(), s.deps.Store, store.CronTriggersPrefix(fn))
	if err != nil {
		return err
	}
	runs, _, err := store.ListJSON[store.CronRun](r.Context(), s.deps.Store, store.CronRunsFunctionPrefix(fn))
	if err != nil {
		return err
	}
	list := api.CronTriggerList{Items: []api.CronTrigger{}}
	for _, rec := range recs {
		var mine []store.CronRun
		for _, run := range runs {
			if run.Value.Trigger == rec.Value.Name {
				mine = append(mine, run.Value)
			}
		}
		list.Items = append(list.Items, cronTriggerView(rec.Value, mine))
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}

func (s *Server) putCronTrigger(w http.ResponseWriter, r *http.Request) error {
	fn, name, err := cronTriggerName(s, r)
	if err != nil {
		return err
	}
	var spec api.CronTriggerSpec
	if err := decodeJSONLimit(w, r, &spec, maxCronTriggerJSON); err != nil {
		return err
	}
	if err := spec.Validate(); err != nil {
		return err
	}
	tr, action, err := s.applyCronTrigger(r.Context(), fn, name, spec, false)
	if err != nil {
		return err
	}
	runs, err := s.cronRuns(r.Context(), fn, name)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if action == api.ApplyCreated {
		status = http.StatusCreated
	}
	writeJSON(w, status, cronTriggerView(tr, runs))
	return nil
}

// applyCronTrigger creates or replaces trigger name of function fn (a
// validated spec; defaults are applied here), retrying lost races; a dry
// run checks and writes nothing. The PUT handler and apply share it.
func (s *Server) applyCronTrigger(ctx context.Context, fn, name string, spec api.CronTriggerSpec, dryRun bool) (tr store.CronTrigger, action string, err error) {
	spec = spec.WithDefaults()
	if spec.Job != nil {
		// Each run names a job after the trigger and its time: the
		// longest such name must be a valid job name in the namespace.
		ns, _ := api.SplitQualifiedName(fn)
		if err := api.ValidateQualified(ns, api.CronJobName(name, time.Unix(1e10-1, 0))); err != nil {
			return tr, "", &api.ValidationError{Field: "name", Reason: fmt.Sprintf("%q is too long for a trigger that creates jobs (named {trigger}-{unix time}): %v", name, err)}
		}
	}
	for range casRetries {
		tr, action, err = s.applyCronTriggerOnce(ctx, fn, name, spec, dryRun)
		if !errors.Is(err, store.ErrConflict) {
			break
		}
	}
	return tr, action, err
}

// applyCronTriggerOnce writes the trigger at the versions read, with its
// function's record checked, so a trigger is never written for a function
// deleted meanwhile. The firing state (cursor, missed count) is kept.
func (s *Server) applyCronTriggerOnce(ctx context.Context, fn, name string, spec api.CronTriggerSpec, dryRun bool) (store.CronTrigger, string, error) {
	fnKV, err := s.deps.Store.Get(ctx, store.FunctionKey(fn))
	if err != nil {
		return store.CronTrigger{}, "", functionErr(fn, err)
	}
	key := store.CronTriggerKey(fn, name)
	now := s.deps.Now().UTC()
	tr, version, err := store.GetJSON[store.CronTrigger](ctx, s.deps.Store, key)
	action := api.ApplyConfigured
	switch {
	case errors.Is(err, store.ErrNotFound):
		tr = store.CronTrigger{Function: fn, Name: name, CreatedAt: now}
		version, action = store.MustNotExist, api.ApplyCreated
	case err != nil:
		return tr, "", err
	case reflect.DeepEqual(tr.Spec, spec):
		return tr, api.ApplyUnchanged, nil
	}
	tr.Spec, tr.UpdatedAt = spec, now
	if dryRun {
		return tr, action, nil
	}
	_, err = s.deps.Store.Txn(ctx, store.Check(fnKV.Key, fnKV.Version), store.PutJSON(key, tr, version))
	return tr, action, err
}

func (s *Server) getCronTrigger(w http.ResponseWriter, r *http.Request) error {
	fn, name, err := cronTriggerName(s, r)
	if err != nil {
		return err
	}
	tr, _, err := s.readCronTrigger(r.Context(), fn, name)
	if err != nil {
		return err
	}
	runs, err := s.cronRuns(r.Context(), fn, name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, cronTriggerView(tr, runs))
	return nil
}

func (s *Server) deleteCronTrigger(w http.ResponseWriter, r *http.Request) error {
	fn, name, err := cronTriggerName(s, r)
	if err != nil {
		return err
	}
	for range casRetries {
		err = s.deleteCronTriggerOnce(r.Context(), fn, name)
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

// deleteCronTriggerOnce removes the trigger and its run records in one
// transaction; invocations already queued go on.
func (s *Server) deleteCronTriggerOnce(ctx context.Context, fn, name string) error {
	_, version, err := s.readCronTrigger(ctx, fn, name)
	if err != nil {
		return err
	}
	ops, err := cron.DeleteOps(ctx, s.deps.Store, fn, name, version)
	if err != nil {
		return err
	}
	_, err = s.deps.Store.Txn(ctx, ops...)
	return err
}

// runCronTrigger fires a run now (202): it claims the run of the current
// second and enqueues it as the runner would. A run of the same second,
// scheduled or asked, is that run already: 409.
func (s *Server) runCronTrigger(w http.ResponseWriter, r *http.Request) error {
	fn, name, err := cronTriggerName(s, r)
	if err != nil {
		return err
	}
	if s.deps.Queue == nil {
		return errorf(http.StatusNotImplemented, api.CodeInternal, "this control plane runs without an invocation queue")
	}
	tr, _, err := s.readCronTrigger(r.Context(), fn, name)
	if err != nil {
		return err
	}
	now := s.deps.Now().UTC()
	run := store.CronRun{Function: fn, Trigger: name, CronRun: api.CronRun{
		Scheduled: now.Truncate(1e9), FiredAt: now, InvocationID: cron.NewInvocationID(), Outcome: api.CronRunPending, Manual: true,
	}}
	key := store.CronRunKey(fn, name, run.Scheduled)
	rev, err := s.deps.Store.Txn(r.Context(), store.PutJSON(key, run, store.MustNotExist))
	if errors.Is(err, store.ErrConflict) {
		return errorf(http.StatusConflict, api.CodeConflict, "cron trigger %s of %s has a run at %s already", name, describe(fn), run.Scheduled.Format("2006-01-02T15:04:05Z"))
	}
	if err != nil {
		return err
	}
	// The run is durable from here: should the enqueue fail, the cron
	// runner finds it unmarked and enqueues it under the same id, so the
	// answer is 202 either way (a 5xx would invite a second run).
	if _, err := cron.Enqueue(r.Context(), s.deps.Store, s.deps.Queue, tr, store.Versioned[store.CronRun]{Key: key, Value: run, Version: rev}); err != nil {
		s.deps.Logger.Warn("run-now: enqueue failed; the cron runner will enqueue the run", "function", fn, "trigger", name, "err", err)
	}
	writeJSON(w, http.StatusAccepted, run.CronRun)
	return nil
}

// cronTriggerName is the qualified function name and the trigger name of
// a request, both checked.
func cronTriggerName(s *Server, r *http.Request) (string, string, error) {
	fn, err := s.functionName(r)
	if err != nil {
		return "", "", err
	}
	name := r.PathValue("trigger")
	if err := api.ValidateName("cron trigger name", name); err != nil {
		return "", "", err
	}
	return fn, name, nil
}

func (s *Server) readCronTrigger(ctx context.Context, fn, name string) (store.CronTrigger, int64, error) {
	tr, version, err := store.GetJSON[store.CronTrigger](ctx, s.deps.Store, store.CronTriggerKey(fn, name))
	if errors.Is(err, store.ErrNotFound) {
		if _, ferr := s.deps.Store.Get(ctx, store.FunctionKey(fn)); ferr != nil {
			return tr, 0, functionErr(fn, ferr)
		}
		return tr, 0, fmt.Errorf("cron trigger %s of %s: %w", name, describe(fn), err)
	}
	return tr, version, err
}

func (s *Server) cronRuns(ctx context.Context, fn, name string) ([]store.CronRun, error) {
	recs, _, err := store.ListJSON[store.CronRun](ctx, s.deps.Store, store.CronRunsPrefix(fn, name))
	if err != nil {
		return nil, err
	}
	runs := make([]store.CronRun, 0, len(recs))
	for _, rec := range recs {
		runs = append(runs, rec.Value)
	}
	return runs, nil
}

// cronTriggerView is a trigger as the API shows it: its runs newest first.
func cronTriggerView(tr store.CronTrigger, runs []store.CronRun) api.CronTrigger {
	ns, bare := api.SplitQualifiedName(tr.Function)
	v := api.CronTrigger{
		Name: tr.Name, Function: bare, Namespace: ns, CronTriggerSpec: tr.Spec,
		CreatedAt: tr.CreatedAt, UpdatedAt: tr.UpdatedAt,
		Status: api.CronTriggerStatus{
			LastScheduleTime: tr.LastScheduled, LastFireTime: tr.LastFired, Missed: tr.Missed, Runs: []api.CronRun{},
		},
	}
	for _, run := range runs {
		v.Status.Runs = append(v.Status.Runs, run.CronRun)
	}
	slices.SortFunc(v.Status.Runs, func(a, b api.CronRun) int { return b.Scheduled.Compare(a.Scheduled) })
	if sched, err := api.ParseCronSchedule(tr.Spec.Schedule, tr.Spec.TimeZone); err == nil {
		v.Status.NextScheduleTime = cron.Next(tr, sched)
	}
	return v
}
