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

// trafficShares returns, per function, the percent of its plain traffic
// (the split, not tags or header matches) each revision gets,
// latestRevision resolved; a function without a split sends all of it to
// its latest revision, as the router does. Queued asynchronous work is
// delivered to the function's own host, so it follows the split.
func trafficShares(fns map[string]store.Versioned[store.Function]) map[string]map[string]int {
	shares := make(map[string]map[string]int, len(fns))
	for name, fn := range fns {
		split := map[string]int{}
		for _, t := range store.ResolveTraffic(fn.Value) {
			if t.Revision != "" && t.Percent > 0 {
				split[t.Revision] += t.Percent
			}
		}
		if len(fn.Value.Traffic) == 0 && fn.Value.LatestRevision != "" {
			split[fn.Value.LatestRevision] = 100
		}
		shares[name] = split
	}
	return shares
}
