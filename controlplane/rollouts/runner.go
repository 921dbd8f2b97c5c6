package rollouts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/revhealth"
	"github.com/ebbrun/ebb/rollout"
	"github.com/ebbrun/ebb/rollout/promql"
	"github.com/ebbrun/ebb/store"
)

// Config tunes a Runner. Zero fields take their defaults.
type Config struct {
	// Owner names this control plane in the leases it takes. Required:
	// ebbd passes its node name, which a restart keeps, so a restarted
	// control plane goes on with its rollouts at once.
	Owner string
	// Lease is how long a claim on a rollout lasts unrenewed, and so the
	// longest a dead control plane's rollouts wait for another. It is at
	// least three of the rollout's analysis intervals. Default 15s.
	Lease time.Duration
	// Tick is how often the runner looks at its rollouts; a decision
	// comes at most this late. Default 100ms.
	Tick time.Duration
	// QueryTimeout bounds one analysis's PromQL checks. Default 5s.
	QueryTimeout time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.Lease <= 0 {
		c.Lease = 15 * time.Second
	}
	if c.Tick <= 0 {
		c.Tick = 100 * time.Millisecond
	}
	if c.QueryTimeout <= 0 {
		c.QueryTimeout = 5 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// PromQL answers a rollout's PromQL checks, in the policy's order: NaN
// for a check with no value, and the errors met, for the log.
// promql.Checker is the real one.
type PromQL interface {
	Check(ctx context.Context, at time.Time, checks []api.PromCheck, vars promql.Vars) ([]float64, error)
}

// Deps are a Runner's collaborators.
type Deps struct {
	Store store.Store
	// Rollouts is the process's cache of store.PrefixRollouts; when nil
	// the runner opens its own and runs it.
	Rollouts *store.Cache[store.Rollout]
	// PromQL, when set, answers the policies' PromQL checks; without it a
	// policy with checks finds them missing, so its steps wait and, at
	// their deadline, fail.
	PromQL PromQL
	Logger *slog.Logger
}

// Runner judges the live rollouts it holds every analysis interval, on
// the router outcomes it is given through Report.
type Runner struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	own  func(context.Context) error

	mu sync.Mutex
	// sums are running sums of outcomes since the revision was first
	// watched, for the canary and stable revisions of live rollouts only.
	sums map[string]*api.Outcomes
	// drives are the rollouts this runner holds, by record key.
	drives map[string]*drive
}

// drive is what the runner keeps of a rollout it holds.
type drive struct {
	rec     store.Rollout
	version int64
	// The window: the sums when it started, and when it ends.
	canary api.Outcomes
	stable api.Outcomes
	next   time.Time
}

// New builds a Runner; it does nothing until Run.
func New(cfg Config, deps Deps) (*Runner, error) {
	if cfg.Owner == "" {
		return nil, errors.New("rollouts: Config.Owner is required")
	}
	if deps.Store == nil {
		return nil, errors.New("rollouts: Deps.Store is required")
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Runner{cfg: cfg.withDefaults(), deps: deps, log: deps.Logger, sums: map[string]*api.Outcomes{}, drives: map[string]*drive{}}
	if r.deps.Rollouts == nil {
		c := store.NewCache[store.Rollout](deps.Store, store.PrefixRollouts, store.CacheConfig[store.Rollout]{})
		r.deps.Rollouts, r.own = c, c.Run
	}
	return r, nil
}

// Report takes a batch of load reports (the autoscaler's stats sink
// gets the same ones) and adds the outcomes of watched revisions to their
// sums. It never blocks on the store.
func (r *Runner) Report(stats []api.RevisionStat) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range stats {
		if sum := r.sums[s.Revision]; sum != nil && s.Outcomes != nil {
			sum.Add(*s.Outcomes)
		}
	}
}

// Run drives rollouts until ctx ends.
func (r *Runner) Run(ctx context.Context) error {
	if r.own != nil {
		go func() { _ = r.own(ctx) }()
	}
	select {
	case <-r.deps.Rollouts.Ready():
	case <-ctx.Done():
		return nil
	}
	t := time.NewTicker(r.cfg.Tick)
	defer t.Stop()
	for {
		r.Tick(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Tick looks at every live rollout once: it takes those nobody holds,
// and judges those it holds whose interval is up.
func (r *Runner) Tick(ctx context.Context) {
	now := r.cfg.Now()
	live := map[string]store.Versioned[store.Rollout]{}
	watched := map[string]bool{}
	for v := range r.deps.Rollouts.Snapshot().All() {
		if !v.Value.Phase.Final() {
			live[v.Key] = v
			watched[v.Value.Canary], watched[v.Value.Stable] = true, true
		}
	}
	r.watch(watched)
	for key := range r.drives {
		if _, ok := live[key]; !ok {
			delete(r.drives, key)
		}
	}
	for key, v := range live {
		err := r.step(ctx, now, key, v)
		if err == nil || ctx.Err() != nil {
			continue
		}
		// Start over from the store's state next tick. A lost race (an
		// API action, another control plane) is the usual cause.
		delete(r.drives, key)
		if errors.Is(err, store.ErrConflict) {
			r.log.Debug("rollout changed under the runner", "rollout", key, "err", err)
		} else {
			r.log.Warn("rollout step failed", "rollout", key, "err", err)
		}
	}
}

// watch keeps sums for exactly the revisions named.
func (r *Runner) watch(revisions map[string]bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for rev := range r.sums {
		if !revisions[rev] {
			delete(r.sums, rev)
		}
	}
	for rev := range revisions {
		if r.sums[rev] == nil {
			r.sums[rev] = &api.Outcomes{}
		}
	}
}

// reading is the running sum of rev now, a copy.
func (r *Runner) reading(rev string) api.Outcomes {
	r.mu.Lock()
	defer r.mu.Unlock()
	sum := r.sums[rev]
	if sum == nil {
		return api.Outcomes{}
	}
	o := *sum
	o.Latency = append([]int64(nil), sum.Latency...)
	return o
}

// step moves one live rollout: claim it if free, renew its lease, or
// judge its window when its interval is up.
func (r *Runner) step(ctx context.Context, now time.Time, key string, v store.Versioned[store.Rollout]) error {
	d := r.drives[key]
	rec, version := v.Value, v.Version
	if d != nil && d.version > version {
		// The cache has not caught up with our own last write.
		rec, version = d.rec, d.version
	}
	if rec.Owner != r.cfg.Owner && now.Before(rec.LeaseUntil) {
		delete(r.drives, key) // another control plane drives it
		return nil
	}
	lease := max(r.cfg.Lease, 3*rec.Policy.Interval.Duration)
	if d == nil || rec.Owner != r.cfg.Owner {
		// Claim it. The window starts now: figures from before are not
		// ours, or were lost with the process that had them.
		rec.Owner, rec.LeaseUntil = r.cfg.Owner, now.Add(lease)
		ver, err := Write(ctx, r.deps.Store, rec, version, rollout.Decision{}, now)
		if err != nil {
			return err
		}
		r.drives[key] = r.newWindow(rec, ver, now)
		r.log.Info("driving rollout", "rollout", key, "phase", rec.Phase, "percent", rec.Percent)
		return nil
	}
	d.rec, d.version = rec, version // an API action may have changed it
	if now.Before(d.next) {
		if rec.LeaseUntil.Sub(now) < lease/2 {
			rec.LeaseUntil = now.Add(lease)
			ver, err := Write(ctx, r.deps.Store, rec, version, rollout.Decision{}, now)
			if err != nil {
				return err
			}
			d.rec, d.version = rec, ver
		}
		return nil
	}
	var (
		dec rollout.Decision
		err error
	)
	if rec.Phase == rollout.Progressing {
		obs := rollout.Observation{
			At:     now,
			Canary: r.reading(rec.Canary).Since(d.canary).Figures(),
			Stable: r.reading(rec.Stable).Since(d.stable).Figures(),
		}
		obs.PromQL = r.promQL(ctx, now, rec)
		if obs.CanaryFailed, err = r.canaryFailed(ctx, rec.Canary); err != nil {
			return err
		}
		rec.RolloutState, dec = rollout.Step(now, rec.RolloutState, obs)
	}
	rec.LeaseUntil = now.Add(lease)
	ver, err := Write(ctx, r.deps.Store, rec, version, dec, now)
	if err != nil {
		return err
	}
	r.drives[key] = r.newWindow(rec, ver, now)
	if dec.Set || rec.Phase.Final() {
		r.log.Info("rollout decision", "rollout", key, "phase", rec.Phase, "percent", rec.Percent, "reason", dec.Reason)
	}
	return nil
}

// newWindow starts the next analysis window of a rollout at now.
func (r *Runner) newWindow(rec store.Rollout, version int64, now time.Time) *drive {
	return &drive{
		rec:     rec,
		version: version,
		canary:  r.reading(rec.Canary),
		stable:  r.reading(rec.Stable),
		next:    now.Add(rec.Policy.Interval.Duration),
	}
}

// canaryFailed is why the canary cannot serve at all, from its nodes'
// reports, judged by the rule the activator fails requests fast on; ""
// while it can.
func (r *Runner) canaryFailed(ctx context.Context, canary string) (string, error) {
	recs, _, err := store.ListJSON[store.RevisionNodeStatus](ctx, r.deps.Store, store.RevStatusPrefix(canary))
	if err != nil {
		return "", fmt.Errorf("read the status of canary %s: %w", canary, err)
	}
	nodes := make([]store.RevisionNodeStatus, len(recs))
	for i, v := range recs {
		nodes[i] = v.Value
	}
	v := revhealth.Judge(nodes)
	if !v.Failed {
		return "", nil
	}
	return v.Reason + ": " + v.Message, nil
}

// promQL answers rec's PromQL checks; nil when it has none.
func (r *Runner) promQL(ctx context.Context, now time.Time, rec store.Rollout) []float64 {
	checks := rec.Policy.PromQL
	if len(checks) == 0 || r.deps.PromQL == nil {
		return nil
	}
	ns, _ := api.SplitQualifiedName(rec.Function)
	vars := promql.Vars{Canary: rec.Canary, Stable: rec.Stable, Function: rec.Function, Namespace: ns, Interval: rec.Policy.Interval.Duration}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.QueryTimeout)
	defer cancel()
	values, err := r.deps.PromQL.Check(ctx, now, checks, vars)
	if err != nil {
		r.log.Warn("rollout PromQL checks without a value; they wait", "rollout", rec.Function+"/"+rec.ID, "err", err)
	}
	return values
}
