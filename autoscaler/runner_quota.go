package autoscaler

import (
	"slices"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/quota"
	"github.com/ebbrun/ebb/store"
)

// This file is the runner's side of namespace quotas: it follows the
// namespaces/ records for their quotas and the job pods, which hold their
// share first, and clips each decision to its revision's share of what is
// left of its namespace's quota (quota.Clip). Only namespaces
// whose quota caps replicas, memory or CPU cost anything: a decision in
// any other namespace looks up one map entry and goes on, so a saturated
// namespace never slows another's decisions.

// clip is what the quota did to one decision.
type clip struct {
	// granted is the count to run: the decider's, or less under the quota.
	granted int
	// reason says why granted is below the decider's count; "" if not.
	reason string
	// over are revisions of the namespace that hold more than their share
	// while this one has less than its own: they scale down first.
	over []string
}

// onNamespaces folds namespaces/{ns} records into the quotas by namespace.
// A quota that does not parse (the API validates them) caps nothing, and
// is logged.
func (r *Runner) onNamespaces(u store.Update[store.Namespace]) {
	r.nsRecs = fold(r.nsRecs, u, lastSegment, nil)
	limits := make(map[string]quota.Limits, len(r.nsRecs))
	for ns, rec := range r.nsRecs {
		l, err := quota.Parse(rec.Value.Quota)
		if err != nil {
			r.log.Warn("ignoring an invalid namespace quota", "namespace", ns, "err", err)
			continue
		}
		if l.CapsReplicas() {
			limits[ns] = l
		}
	}
	r.limits = limits
}

// onJobPods folds the job pod records into what they hold by namespace.
// A pod's record lives from its placement until the job controller folds
// its end into the job's status, a tick after it exits: every record
// holds its share, as the job controller counts it.
func (r *Runner) onJobPods(u store.Update[store.JobPod]) {
	r.jobPodRecs = fold(r.jobPodRecs, u, func(key string) string { return key }, nil)
	use := map[string]quota.Usage{}
	for _, p := range r.jobPodRecs {
		ns := p.Value.Namespace
		if ns == "" {
			ns = api.DefaultNamespace
		}
		use[ns] = use[ns].Plus(quota.PerJobPod(p.Value.Spec.WithDefaults()))
	}
	r.jobUse = use
}

// namespaceOf is the namespace a revision's function lives in.
func namespaceOf(function string) string {
	ns, _ := api.SplitQualifiedName(function)
	return ns
}

// clipLocked clips the decider's count for rs to its namespace's quota.
func (r *Runner) clipLocked(rs *revState, desired int) clip {
	l, capped := r.limits[rs.namespace]
	if !capped {
		return clip{granted: desired}
	}
	names := r.namespaceRevisionsLocked(rs.namespace)
	wants := make([]quota.Want, 0, len(names))
	self := -1
	for _, name := range names {
		w, ok := r.wantLocked(name)
		if !ok {
			continue
		}
		if name == rs.name {
			self = len(wants)
			w.Desired = desired
		}
		wants = append(wants, w)
	}
	if self < 0 {
		return clip{granted: desired}
	}
	grants := quota.Clip(l, r.jobUse[rs.namespace], wants)
	g := grants[self]
	c := clip{granted: g.Granted, reason: g.Reason}
	if g.Granted < g.Share {
		c.over = quota.Over(wants, grants)
	}
	return c
}

// wantLocked is what Clip needs of a revision: what its decider last
// wanted (what it holds, if it has not decided yet in this runner), what
// it holds (its last written count) and one replica's size.
func (r *Runner) wantLocked(name string) (quota.Want, bool) {
	d, ok := r.demandLocked(name)
	if !ok {
		return quota.Want{}, false
	}
	held := r.scales[name].Value.Desired
	w := quota.Want{
		Name: name, Desired: held, Held: held,
		Each: quota.Usage{Replicas: 1, Memory: d.Memory, MilliCPU: quota.MilliCPU(d.CPU)},
	}
	if rs := r.revs[name]; rs != nil && rs.scaled {
		w.Desired = rs.last.Decision.Desired
	}
	return w, true
}

// namespaceRevisionsLocked lists the revisions of a namespace's functions,
// from an index rebuilt only after the revisions changed.
func (r *Runner) namespaceRevisionsLocked(ns string) []string {
	if r.byNamespace == nil {
		r.byNamespace = map[string][]string{}
		for name, rec := range r.records {
			n := namespaceOf(rec.Value.Function)
			r.byNamespace[n] = append(r.byNamespace[n], name)
		}
		for _, names := range r.byNamespace {
			slices.Sort(names)
		}
	}
	return r.byNamespace[ns]
}
