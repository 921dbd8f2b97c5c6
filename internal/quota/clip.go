package quota

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// Want is one revision of a capped namespace, as the autoscaler sees it.
type Want struct {
	// Name is the revision's; it orders the revisions.
	Name string
	// Desired is what its decider wants, before the quota.
	Desired int
	// Held is what it runs now (its last decided count).
	Held int
	// Each is one replica's memory and CPU (PerReplica).
	Each Usage
}

// Grant is what Clip gives one revision.
type Grant struct {
	// Share is the revision's fair share of the quota (see Clip).
	Share int
	// Granted is what it may run now: its share, less what the others
	// hold beyond theirs until they have scaled down, but never less than
	// what it already holds within its share.
	Granted int
	// Reason says why Granted is below Desired; empty when it is not.
	Reason string
}

// Clip shares a namespace's replicas between its revisions, given their
// wants, and returns one Grant per want, in the wants' order. It is
// deterministic: the same wants give the same grants. reserved is what
// the namespace holds besides its revisions (its running job pods): it
// comes off the quota before any share.
//
// Shares are max-min fair by replica count (water filling): every revision
// that wants more gets one more replica per round, while the namespace's
// replicas, memory and CPU all have room for it; a revision whose next
// replica does not fit stops growing, the others go on. So the smallest
// demands are met in full and the rest split what is left evenly; when a
// round cannot go round, its replicas go in revision-name order. A
// revision's min scale gets no precedence: a quota is a hard cap.
//
// Granted keeps the cap true at every instant while revisions are decided
// one at a time: a revision grows into its share only as far as the
// others' current holdings leave room. The caller then scales down the
// revisions that hold more than their share (Over) and decides again.
func Clip(l Limits, reserved Usage, wants []Want) []Grant {
	grants := make([]Grant, len(wants))
	if !l.CapsReplicas() {
		for i, w := range wants {
			grants[i] = Grant{Share: max(w.Desired, 0), Granted: max(w.Desired, 0)}
		}
		return grants
	}
	order := make([]int, len(wants))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return strings.Compare(wants[a].Name, wants[b].Name) })

	shares := fairShares(l, reserved, wants, order)
	total := reserved
	held := reserved
	for i, w := range wants {
		total = total.Plus(w.Each.Times(shares[i]))
		held = held.Plus(w.Each.Times(max(w.Held, 0)))
	}
	for i, w := range wants {
		g := Grant{Share: shares[i], Granted: shares[i]}
		others := held.Plus(w.Each.Times(-max(w.Held, 0)))
		if fits := fitting(l, others, w.Each, g.Share); fits < g.Granted {
			g.Granted = max(fits, min(w.Held, g.Share))
		}
		if g.Granted < w.Desired {
			if g.Granted < g.Share {
				g.Reason = reason(l, others.Plus(w.Each.Times(g.Granted)), w, "the namespace's other revisions scale down first")
			} else {
				g.Reason = reason(l, total, w, "")
			}
		}
		grants[i] = g
	}
	return grants
}

// Over names the revisions that hold more than their share, in name order:
// the ones to scale down so that the others can have theirs.
func Over(wants []Want, grants []Grant) []string {
	var out []string
	for i, w := range wants {
		if w.Held > grants[i].Share {
			out = append(out, w.Name)
		}
	}
	slices.Sort(out)
	return out
}

// fairShares is Clip's water filling. Whole rounds are handed out in bulk,
// so the work grows with the number of revisions, not of replicas.
func fairShares(l Limits, reserved Usage, wants []Want, order []int) []int {
	shares := make([]int, len(wants))
	used := reserved
	for {
		var hungry []int
		round := Usage{}
		least := math.MaxInt
		for _, i := range order {
			w := wants[i]
			if shares[i] >= w.Desired || fitting(l, used, w.Each, 1) < 1 {
				continue
			}
			hungry = append(hungry, i)
			round = round.Plus(w.Each)
			least = min(least, w.Desired-shares[i])
		}
		if len(hungry) == 0 {
			return shares
		}
		if k := min(least, rounds(l, used, round)); k >= 1 {
			for _, i := range hungry {
				shares[i] += k
			}
			used = used.Plus(round.Times(k))
			continue
		}
		// Not a whole round left: one replica each in name order, while
		// each still fits.
		for _, i := range hungry {
			if fitting(l, used, wants[i].Each, 1) == 1 {
				shares[i]++
				used = used.Plus(wants[i].Each)
			}
		}
	}
}

// fitting is how many of up to n replicas of each fit beside used.
func fitting(l Limits, used, each Usage, n int) int {
	return min(n, rounds(l, used, each))
}

// rounds is how many times step fits beside used under every cap.
func rounds(l Limits, used, step Usage) int {
	k := int64(math.MaxInt32)
	for _, c := range []struct{ limit, used, step int64 }{
		{int64(l.Replicas), int64(used.Replicas), int64(step.Replicas)},
		{l.Memory, used.Memory, step.Memory},
		{l.MilliCPU, used.MilliCPU, step.MilliCPU},
	} {
		if c.limit <= 0 || c.step <= 0 {
			continue
		}
		k = min(k, max(c.limit-c.used, 0)/c.step)
	}
	return int(k)
}

// reason names the cap that stops w's next replica, with the namespace's
// use of it, e.g. "clipped by namespace quota: replicas 2 of 2".
func reason(l Limits, used Usage, w Want, why string) string {
	resource, n, limit := ResourceReplicas, int64(used.Replicas), int64(l.Replicas)
	for _, c := range []struct {
		resource          string
		used, step, limit int64
	}{
		{ResourceReplicas, int64(used.Replicas), int64(w.Each.Replicas), int64(l.Replicas)},
		{ResourceMemory, used.Memory, w.Each.Memory, l.Memory},
		{ResourceCPU, used.MilliCPU, w.Each.MilliCPU, l.MilliCPU},
	} {
		if c.limit > 0 && c.used+c.step > c.limit {
			resource, n, limit = c.resource, c.used, c.limit
			break
		}
	}
	s := fmt.Sprintf("clipped by namespace quota: %s %s of %s", resource, Format(resource, n), Format(resource, limit))
	if why != "" {
		s += " (" + why + ")"
	}
	return s
}
