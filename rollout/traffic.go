package rollout

import "github.com/ebbrun/ebb/api"

// StableOf is the revision a rollout of a new revision starts from: the
// one revision that the split sends every percent to, with latestRevision
// read as prevLatest (the latest revision before the new one). It is ""
// when the split divides the traffic, or follows no revision: there is
// then no single stable revision to judge a canary against.
func StableOf(traffic []api.TrafficTarget, prevLatest string) string {
	stable := ""
	for _, t := range traffic {
		if t.Percent == 0 {
			continue
		}
		rev := t.Revision
		if t.LatestRevision {
			rev = prevLatest
		}
		if t.Percent != 100 || rev == "" {
			return ""
		}
		stable = rev
	}
	return stable
}

// Traffic is the split that gives st's canary its share: stable and
// canary by st.Percent while the rollout lives; all to the stable revision
// after a rollback or an abort; after success, all to the latest revision
// (so the function follows its latest revisions again) when the canary is
// still latest, else pinned to the canary.
//
// The routes of current that do not carry a percent survive: a tag's URL
// and a header match. A target that carried a percent keeps its tag or its
// match, at 0%.
func Traffic(current []api.TrafficTarget, st State, latest string) []api.TrafficTarget {
	var out []api.TrafficTarget
	switch {
	case st.Percent >= 100 && st.Canary == latest:
		out = []api.TrafficTarget{{LatestRevision: true, Percent: 100}}
	case st.Percent >= 100:
		out = []api.TrafficTarget{{Revision: st.Canary, Percent: 100}}
	case st.Percent <= 0:
		out = []api.TrafficTarget{{Revision: st.Stable, Percent: 100}}
	default:
		out = []api.TrafficTarget{{Revision: st.Stable, Percent: 100 - st.Percent}, {Revision: st.Canary, Percent: st.Percent}}
	}
	for _, t := range current {
		if t.Tag == "" && len(t.Headers) == 0 {
			continue
		}
		t.Percent = 0
		out = append(out, t)
	}
	return out
}
