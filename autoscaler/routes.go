package autoscaler

import "github.com/ebbrun/ebb/store"

// routedRevisions returns the revisions some route reaches: those a
// function's traffic gives a percent, a tag or a header match,
// latestRevision resolved.
// Min scale applies to those only (Observation.Unrouted).
func routedRevisions(fns map[string]store.Versioned[store.Function]) map[string]bool {
	routed := map[string]bool{}
	for _, fn := range fns {
		for _, t := range store.ResolveTraffic(fn.Value) {
			if t.Revision != "" && (t.Percent > 0 || t.Tag != "" || len(t.Headers) > 0) {
				routed[t.Revision] = true
			}
		}
	}
	return routed
}

// routedLocked says whether a route reaches the revision. One whose
// function the cache has not shown yet counts as routed, so that min scale
// is never dropped for want of news.
func (r *Runner) routedLocked(rs *revState) bool {
	if _, ok := r.functions[rs.function]; !ok {
		return true
	}
	return r.routed[rs.name]
}
