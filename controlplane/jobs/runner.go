package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"time"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/store"
)

// Config tunes a Runner. Zero fields take their defaults.
type Config struct {
	// Tick is how often the runner looks at every job. Default 200ms.
	Tick time.Duration
	// NodeDownAfter is how long a node may miss heartbeats before it is
	// dead: its pods are lost and no new ones go there. It is at least
	// three of the node's heartbeat intervals. Default 15s.
	NodeDownAfter time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Live, if set, says whether a node's liveness lease holds, and
	// replaces NodeDownAfter: nodes write their records only when they
	// change, so a record's age says nothing of the node.
	Live func(node string) bool
}

func (c Config) withDefaults() Config {
	if c.Tick <= 0 {
		c.Tick = 200 * time.Millisecond
	}
	if c.NodeDownAfter <= 0 {
		c.NodeDownAfter = 15 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Runner is the job controller's shell around decide.
type Runner struct {
	cfg   Config
	store store.Store
	log   *slog.Logger
}

// New returns a Runner; it does nothing until Run or Tick.
func New(cfg Config, s store.Store, log *slog.Logger) (*Runner, error) {
	if s == nil {
		return nil, errors.New("jobs: a store is required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Runner{cfg: cfg.withDefaults(), store: s, log: log.With("component", "jobs")}, nil
}

// Run ticks until ctx ends. A failed tick is logged and retried on the
// next one.
func (r *Runner) Run(ctx context.Context) error {
	t := time.NewTicker(r.cfg.Tick)
	defer t.Stop()
	for {
		if err := r.Tick(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("job controller tick", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Tick reads every job, job pod, pod report and node once, and applies
// decide's answer for each job.
func (r *Runner) Tick(ctx context.Context) error {
	now := r.cfg.Now()
	jobs, _, err := store.ListJSON[store.Job](ctx, r.store, store.PrefixJobs)
	if err != nil {
		return fmt.Errorf("list jobs: %w", err)
	}
	pods, _, err := store.ListJSON[store.JobPod](ctx, r.store, store.PrefixJobPods)
	if err != nil {
		return fmt.Errorf("list job pods: %w", err)
	}
	reports, _, err := store.ListJSON[store.JobPodStatus](ctx, r.store, store.PrefixJobPodStatus)
	if err != nil {
		return fmt.Errorf("list job pod reports: %w", err)
	}
	nodes, _, err := store.ListJSON[store.Node](ctx, r.store, store.PrefixNodes)
	if err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	live := map[string]*Node{}
	var liveNodes []*Node
	for _, n := range nodes {
		down := max(r.cfg.NodeDownAfter, 3*n.Value.HeartbeatInterval.Duration)
		up := now.Sub(n.Value.Heartbeat) <= down
		if r.cfg.Live != nil {
			up = r.cfg.Live(n.Value.Name)
		}
		if up {
			v := &Node{Name: n.Value.Name, CPU: n.Value.CPU, Memory: n.Value.MemoryBytes,
				AllocCPU: n.Value.AllocatedCPU, AllocMemory: n.Value.AllocatedMemory, Images: n.Value.Images}
			live[v.Name] = v
			liveNodes = append(liveNodes, v)
		}
	}
	reported := map[string]bool{}
	for _, rep := range reports {
		reported[rep.Value.Name] = true
	}
	for _, p := range pods {
		n := live[p.Value.Node]
		if n == nil {
			continue
		}
		n.JobPods++
		if !reported[p.Value.Name] {
			// Not started yet, so not in the node's heartbeat either;
			// once running it is, and once exited it holds nothing.
			spec := p.Value.Spec.WithDefaults()
			n.AllocCPU += spec.Resources.CPU
			n.AllocMemory += memoryOf(spec)
		}
	}
	reportOf := map[string]*store.JobPodStatus{}
	for i := range reports {
		reportOf[reports[i].Value.Name] = &reports[i].Value
	}
	podsOf := map[string][]store.JobPod{}
	for _, p := range pods {
		podsOf[p.Value.Job] = append(podsOf[p.Value.Job], p.Value)
	}

	var errs []error
	exists := map[string]bool{}
	for _, j := range jobs {
		name := strings.TrimPrefix(j.Key, store.PrefixJobs)
		exists[name] = true
		in := Input{Job: j.Value, Nodes: liveNodes, Now: now}
		for _, p := range podsOf[name] {
			in.Pods = append(in.Pods, Pod{Name: p.Name, Index: p.Index, Node: p.Node, Report: reportOf[p.Name], NodeLive: live[p.Node] != nil})
		}
		d := decide(in)
		if err := r.apply(ctx, name, j, podsOf[name], d, now); err != nil {
			errs = append(errs, err)
		}
	}
	// The pods and reports of deleted jobs go; deleting a running pod's
	// record kills it.
	var ops []store.Op
	for _, p := range pods {
		if !exists[p.Value.Job] {
			ops = append(ops, store.Delete(p.Key, store.AnyVersion))
		}
	}
	for _, rep := range reports {
		if !exists[rep.Value.Job] {
			ops = append(ops, store.Delete(rep.Key, store.AnyVersion))
		}
	}
	if len(ops) > 0 {
		if _, err := r.store.Txn(ctx, ops...); err != nil {
			errs = append(errs, fmt.Errorf("delete pods of deleted jobs: %w", err))
		}
	}
	return errors.Join(errs...)
}

// apply writes one job's decision in one transaction at the version read.
// A conflict (the job changed meanwhile) is not an error: the next tick
// decides again on what is new.
func (r *Runner) apply(ctx context.Context, name string, j store.Versioned[store.Job], pods []store.JobPod, d Decision, now time.Time) error {
	nodeOf := map[string]string{}
	for _, p := range pods {
		nodeOf[p.Name] = p.Node
	}
	var ops []store.Op
	if d.DeleteJob {
		ops = append(ops, store.Delete(j.Key, j.Version))
		for _, p := range pods {
			ops = append(ops, store.Delete(store.JobPodKey(p.Node, p.Name), store.AnyVersion),
				store.Delete(store.JobPodStatusKey(name, p.Name), store.AnyVersion))
		}
		r.log.Info("job deleted after its ttl", "job", name)
	} else {
		if reflect.DeepEqual(d.Status, j.Value.Status) && len(d.Create) == 0 && len(d.Delete) == 0 {
			return nil
		}
		job := j.Value
		job.Status = d.Status
		ops = append(ops, store.PutJSON(j.Key, job, j.Version))
		spec := job.Spec.WithDefaults()
		for _, a := range d.Create {
			pod := store.JobPod{
				Name: store.JobPodName(name, a.Index), Job: name, Namespace: job.Namespace,
				Index: a.Index, Node: a.Node, Spec: spec, CreatedAt: now,
			}
			ops = append(ops, store.PutJSON(store.JobPodKey(a.Node, pod.Name), pod, store.MustNotExist))
		}
		for _, p := range d.Delete {
			ops = append(ops, store.Delete(store.JobPodKey(nodeOf[p], p), store.AnyVersion),
				store.Delete(store.JobPodStatusKey(name, p), store.AnyVersion))
		}
		if d.Status.Phase != j.Value.Status.Phase && d.Status.Phase != api.JobRunning {
			r.log.Info("job finished", "job", name, "phase", d.Status.Phase, "reason", d.Status.Reason,
				"succeeded", d.Status.Succeeded, "failed", d.Status.Failed)
		}
	}
	if _, err := r.store.Txn(ctx, ops...); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return nil
		}
		return fmt.Errorf("job %s: %w", name, err)
	}
	return nil
}
