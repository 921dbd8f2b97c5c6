package cron

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/controlplane/jobs"
	"github.com/ebbrun/ebb/queue"
	"github.com/ebbrun/ebb/store"
)

// Queue is what cron needs of the invocation queue (queue.Queue has it).
type Queue interface {
	Enqueue(ctx context.Context, inv api.Invocation) (api.Invocation, bool, error)
	Get(ctx context.Context, function, id string) (api.Invocation, error)
}

var _ Queue = queue.Queue(nil)

// Config tunes a Runner. Zero fields take their defaults.
type Config struct {
	// Poll is the longest the loop sleeps: how soon it sees a new or
	// changed trigger and a finished run. A due run wakes it on time
	// whatever Poll is. Default 1s.
	Poll time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Deps are a Runner's collaborators.
type Deps struct {
	Store  store.Store
	Queue  Queue
	Logger *slog.Logger
	// Registerer, when set, gets the runner's metrics.
	Registerer prometheus.Registerer
}

// Runner fires the cron triggers of every function. Any number may run on
// one store: the run record's MustNotExist claim lets one fire each run.
type Runner struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	metrics *metrics
}

// New builds a Runner; it does nothing until Run or Tick.
func New(cfg Config, deps Deps) (*Runner, error) {
	if deps.Store == nil || deps.Queue == nil {
		return nil, errors.New("cron: Deps.Store and Deps.Queue are required")
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, err
	}
	return &Runner{cfg: cfg, deps: deps, log: deps.Logger, metrics: m}, nil
}

// Run ticks until ctx ends, waking at the next run's time or after Poll,
// whichever is first.
func (r *Runner) Run(ctx context.Context) error {
	for {
		now := r.cfg.Now()
		next := r.Tick(ctx, now)
		wait := r.cfg.Poll
		if !next.IsZero() && next.Sub(now) < wait {
			wait = max(next.Sub(now), 0)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// Tick handles every trigger once at now and returns the earliest next
// schedule time among them (zero when none). Errors are logged: a trigger
// that fails is tried again at the next tick.
func (r *Runner) Tick(ctx context.Context, now time.Time) time.Time {
	triggers, _, err := store.ListJSON[store.CronTrigger](ctx, r.deps.Store, store.PrefixCronTriggers)
	if err != nil {
		r.log.Warn("cron: list triggers", "err", err)
		return time.Time{}
	}
	var next time.Time
	for _, tr := range triggers {
		n, err := r.trigger(ctx, now, tr.Key)
		if err != nil && ctx.Err() == nil {
			r.log.Warn("cron: trigger", "trigger", tr.Key, "err", err)
		}
		if !n.IsZero() && (next.IsZero() || n.Before(next)) {
			next = n
		}
	}
	return next
}

// trigger handles one trigger: it settles its runs, claims and fires what
// is due, and prunes its history. A lost race (an API write, another
// control plane) re-reads and decides again.
func (r *Runner) trigger(ctx context.Context, now time.Time, key string) (time.Time, error) {
	var err error
	for range 4 {
		var next time.Time
		next, err = r.triggerOnce(ctx, now, key)
		if !errors.Is(err, store.ErrConflict) {
			return next, err
		}
	}
	return time.Time{}, err
}

func (r *Runner) triggerOnce(ctx context.Context, now time.Time, key string) (time.Time, error) {
	tr, version, err := store.GetJSON[store.CronTrigger](ctx, r.deps.Store, key)
	if errors.Is(err, store.ErrNotFound) {
		return time.Time{}, nil // deleted since the listing
	}
	if err != nil {
		return time.Time{}, err
	}
	if _, err := r.deps.Store.Get(ctx, store.FunctionKey(tr.Function)); errors.Is(err, store.ErrNotFound) {
		// A trigger written while its function was being deleted: the
		// function's delete removes its triggers, this the stragglers.
		return time.Time{}, r.orphan(ctx, tr, version)
	} else if err != nil {
		return time.Time{}, err
	}
	sched, err := api.ParseCronSchedule(tr.Spec.Schedule, tr.Spec.TimeZone)
	if err != nil {
		return time.Time{}, fmt.Errorf("stored schedule: %w", err)
	}
	runs, err := r.settle(ctx, tr)
	if err != nil {
		return time.Time{}, err
	}
	var pending []store.Versioned[store.CronRun]
	for _, run := range runs {
		if !run.Value.Outcome.Final() {
			pending = append(pending, run)
		}
	}
	d := Decide(now, tr, sched, len(pending) > 0)
	if d.Changed(tr) {
		if err := r.apply(ctx, now, tr, version, d, pending); err != nil {
			return time.Time{}, err
		}
		tr.LastScheduled = d.Cursor
	}
	r.prune(ctx, tr)
	return Next(tr, sched), nil
}

// Next is the trigger's next schedule time: the first after its cursor
// (after its creation at first); zero while it is suspended.
func Next(tr store.CronTrigger, sched api.CronSchedule) time.Time {
	if tr.Spec.Suspend {
		return time.Time{}
	}
	from := tr.LastScheduled
	if from.IsZero() {
		from = tr.CreatedAt
	}
	return sched.Next(from)
}

// orphan deletes a trigger of a function that does not exist, and its runs.
func (r *Runner) orphan(ctx context.Context, tr store.CronTrigger, version int64) error {
	ops, err := DeleteOps(ctx, r.deps.Store, tr.Function, tr.Name, version)
	if err != nil {
		return err
	}
	_, err = r.deps.Store.Txn(ctx, ops...)
	return err
}

// DeleteOps are the deletes of trigger name of function fn (at version)
// and of its run records (at the versions listed): the API's delete and
// the runner's removal of orphans write them in one transaction.
func DeleteOps(ctx context.Context, st store.Store, fn, name string, version int64) ([]store.Op, error) {
	ops := []store.Op{store.Delete(store.CronTriggerKey(fn, name), version)}
	runs, _, err := st.List(ctx, store.CronRunsPrefix(fn, name))
	if err != nil {
		return nil, err
	}
	for _, kv := range runs {
		ops = append(ops, store.Delete(kv.Key, kv.Version))
	}
	return ops, nil
}

// settle brings the trigger's runs up to date: a run claimed but not
// enqueued is enqueued (its claimer died in between), a pending run whose
// invocation is final takes its outcome. It returns the runs as they now
// are.
func (r *Runner) settle(ctx context.Context, tr store.CronTrigger) ([]store.Versioned[store.CronRun], error) {
	runs, _, err := store.ListJSON[store.CronRun](ctx, r.deps.Store, store.CronRunsPrefix(tr.Function, tr.Name))
	if err != nil {
		return nil, err
	}
	for i, run := range runs {
		if run.Value.Outcome.Final() {
			continue
		}
		if !run.Value.Enqueued {
			v, err := Enqueue(ctx, r.deps.Store, r.deps.Queue, tr, run)
			if err != nil {
				return nil, err
			}
			runs[i] = v
			continue
		}
		outcome, err := r.outcome(ctx, tr, run.Value)
		if err != nil {
			return nil, err
		}
		if !outcome.Final() {
			continue
		}
		run.Value.Outcome = outcome
		rev, err := r.deps.Store.Txn(ctx, store.PutJSON(run.Key, run.Value, run.Version))
		if err != nil {
			return nil, err
		}
		run.Version = rev
		runs[i] = run
	}
	return runs, nil
}

// apply writes a decision: the trigger's cursor and missed count and,
// when a run is due, its claim (MustNotExist) in one transaction; then it
// enqueues a fired run.
func (r *Runner) apply(ctx context.Context, now time.Time, tr store.CronTrigger, version int64, d Decision, pending []store.Versioned[store.CronRun]) error {
	tr.LastScheduled = d.Cursor
	tr.Missed += d.Missed
	var ops []store.Op
	var claim *store.CronRun
	if !d.Run.IsZero() {
		runKey := store.CronRunKey(tr.Function, tr.Name, d.Run)
		// A run-now in the same second holds the key already: it is this
		// run, so the cursor moves past it without a second claim.
		_, err := r.deps.Store.Get(ctx, runKey)
		switch {
		case errors.Is(err, store.ErrNotFound):
			claim = &store.CronRun{Function: tr.Function, Trigger: tr.Name, CronRun: api.CronRun{Scheduled: d.Run.UTC(), Outcome: api.CronRunPending}}
			if d.Skip {
				claim.Outcome = api.CronRunSkipped
			} else {
				claim.InvocationID = NewInvocationID()
				claim.FiredAt = now.UTC()
				tr.LastFired = now.UTC()
			}
			ops = append(ops, store.PutJSON(runKey, claim, store.MustNotExist))
		case err != nil:
			return err
		}
	}
	if d.Replace && claim != nil {
		for _, p := range pending {
			p.Value.Replaced = true
			ops = append(ops, store.PutJSON(p.Key, p.Value, p.Version))
		}
	}
	ops = append(ops, store.PutJSON(store.CronTriggerKey(tr.Function, tr.Name), tr, version))
	rev, err := r.deps.Store.Txn(ctx, ops...)
	if err != nil {
		return err
	}
	if d.Missed > 0 {
		r.metrics.runs.WithLabelValues("missed").Add(float64(d.Missed))
		r.log.Info("cron: runs missed", "function", tr.Function, "trigger", tr.Name, "missed", d.Missed)
	}
	if claim == nil {
		return nil
	}
	if claim.Outcome.Final() {
		r.metrics.runs.WithLabelValues("skipped").Inc()
		return nil
	}
	r.metrics.runs.WithLabelValues("fired").Inc()
	r.metrics.lateness.Observe(now.Sub(d.Run).Seconds())
	run := store.Versioned[store.CronRun]{Key: store.CronRunKey(tr.Function, tr.Name, d.Run), Value: *claim, Version: rev}
	_, err = Enqueue(ctx, r.deps.Store, r.deps.Queue, tr, run)
	return err
}

// prune deletes the runs past the history limits, each at the version
// read; a run changed meanwhile stays until the next tick.
func (r *Runner) prune(ctx context.Context, tr store.CronTrigger) {
	runs, _, err := store.ListJSON[store.CronRun](ctx, r.deps.Store, store.CronRunsPrefix(tr.Function, tr.Name))
	if err != nil {
		return
	}
	for _, run := range Prune(tr.Spec, runs) {
		_, _ = r.deps.Store.Txn(ctx, store.Delete(run.Key, run.Version))
	}
}

// Enqueue puts a claimed run's invocation in the queue and marks the run
// enqueued. The idempotency key is the run's, so a run enqueued twice
// (its first claimer died before marking it, or two loops found it
// unmarked) is one invocation. The API's run-now calls it too.
func Enqueue(ctx context.Context, st store.Store, q Queue, tr store.CronTrigger, run store.Versioned[store.CronRun]) (store.Versioned[store.CronRun], error) {
	if tr.Spec.Job != nil {
		if err := createJob(ctx, st, tr, &run.Value); err != nil {
			return run, err
		}
	} else if _, _, err := q.Enqueue(ctx, Invocation(tr, run.Value)); err != nil {
		return run, fmt.Errorf("enqueue run %s: %w", run.Key, err)
	}
	run.Value.Enqueued = true
	rev, err := st.Txn(ctx, store.PutJSON(run.Key, run.Value, run.Version))
	if err != nil {
		return run, err
	}
	run.Version = rev
	return run, nil
}

// createJob creates a CronJob run's job, named after the trigger and the
// run's time so that a run created twice (its claimer died before marking
// it) is one job: an existing job of that name is this run's.
func createJob(ctx context.Context, st store.Store, tr store.CronTrigger, run *store.CronRun) error {
	ns, _ := api.SplitQualifiedName(tr.Function)
	run.Job = api.CronJobName(tr.Name, run.Scheduled)
	created := run.FiredAt
	if created.IsZero() {
		created = run.Scheduled
	}
	_, err := jobs.Create(ctx, st, ns, run.Job, *tr.Spec.Job, created)
	if err != nil && !errors.Is(err, store.ErrConflict) {
		return fmt.Errorf("create job %s for run of %s: %w", run.Job, tr.Name, err)
	}
	return nil
}

// outcome is an enqueued run's outcome as its invocation, or its job,
// now says: Pending while that runs.
func (r *Runner) outcome(ctx context.Context, tr store.CronTrigger, run store.CronRun) (api.CronRunOutcome, error) {
	if run.Job != "" {
		return jobOutcome(ctx, r.deps.Store, tr, run)
	}
	inv, err := r.deps.Queue.Get(ctx, tr.Function, run.InvocationID)
	switch {
	case errors.Is(err, queue.ErrNotFound):
		return api.CronRunLost, nil
	case err != nil:
		return "", fmt.Errorf("invocation %s: %w", run.InvocationID, err)
	case inv.Status.Final():
		return Outcome(inv.Status), nil
	}
	return api.CronRunPending, nil
}

// jobOutcome is a CronJob run's outcome from its job; pending while it runs.
func jobOutcome(ctx context.Context, st store.Store, tr store.CronTrigger, run store.CronRun) (api.CronRunOutcome, error) {
	ns, _ := api.SplitQualifiedName(tr.Function)
	job, _, err := store.GetJSON[store.Job](ctx, st, store.JobKey(api.QualifiedName(ns, run.Job)))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return api.CronRunLost, nil
	case err != nil:
		return "", fmt.Errorf("job %s: %w", run.Job, err)
	case job.Status.Phase == api.JobComplete:
		return api.CronRunSucceeded, nil
	case job.Status.Phase == api.JobFailed:
		return api.CronRunFailed, nil
	}
	return api.CronRunPending, nil
}

// Invocation is the asynchronous invocation a run sends.
func Invocation(tr store.CronTrigger, run store.CronRun) api.Invocation {
	req := tr.Spec.WithDefaults().Request
	header := req.Header.Clone()
	if header == nil {
		header = http.Header{}
	}
	header.Set(api.HeaderCronTrigger, tr.Name)
	header.Set(api.HeaderCronScheduled, run.Scheduled.UTC().Format(time.RFC3339))
	ns, _ := api.SplitQualifiedName(tr.Function)
	created := run.FiredAt
	if created.IsZero() {
		created = run.Scheduled
	}
	return api.Invocation{
		ID:        run.InvocationID,
		Function:  tr.Function,
		Namespace: ns,
		Request: api.InvocationRequest{
			Method: req.Method,
			Path:   req.Path,
			Header: header,
			Body:   []byte(req.Body),
		},
		MaxAttempts:    api.DefaultInvocationAttempts,
		IdempotencyKey: IdempotencyKey(tr.Name, run.Scheduled),
		CreatedAt:      created,
	}
}

// IdempotencyKey is a run's key in the queue: cron/{trigger}/{unix}.
func IdempotencyKey(trigger string, scheduled time.Time) string {
	return "cron/" + trigger + "/" + strconv.FormatInt(scheduled.Unix(), 10)
}

// NewInvocationID is a random 128-bit hex id, as api.Invocation.ID is.
func NewInvocationID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}
