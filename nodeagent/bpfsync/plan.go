package bpfsync

import (
	"net/netip"
	"slices"
	"sort"

	"github.com/ebbrun/ebb/bpf"
	"github.com/ebbrun/ebb/store"
)

// target is one revision of a function's main traffic split.
type target struct {
	revision string
	percent  int
}

// routedTargets is a function's main split as the router routes it: the
// resolved targets that take a share, or, with no traffic block at all, the
// latest revision alone.
func routedTargets(fn store.Function) []target {
	var out []target
	for _, t := range store.ResolveTraffic(fn) {
		if t.Revision != "" && t.Percent > 0 {
			out = append(out, target{revision: t.Revision, percent: t.Percent})
		}
	}
	if len(out) == 0 && len(fn.Traffic) == 0 && fn.LatestRevision != "" {
		out = []target{{revision: fn.LatestRevision, percent: 100}}
	}
	return out
}

// weightScale keeps integer weights fine-grained: a revision's percent is
// shared among its replicas as percent*weightScale/replicas.
const weightScale = 1000

// vipBackends spreads a function's split over its ready replicas: each
// replica of a revision weighs the revision's percent divided by how many
// ready replicas it has, so a 90/10 split stays 90/10 whatever the replica
// counts. Revisions with no ready replica get nothing (their share goes to
// the others). The result is sorted by address so that equal inputs give
// equal outputs, and holds at most bpf.VIPSlots backends, the heaviest.
func vipBackends(targets []target, ready map[string][]netip.AddrPort) []bpf.Backend {
	var out []bpf.Backend
	for _, t := range targets {
		addrs := ready[t.revision]
		if len(addrs) == 0 {
			continue
		}
		w := uint32(t.percent * weightScale / len(addrs))
		if w == 0 {
			w = 1 // every ready replica stays reachable
		}
		for _, a := range addrs {
			out = append(out, bpf.Backend{Addr: a, Weight: w})
		}
	}
	byAddr := func(a, b bpf.Backend) int { return a.Addr.Compare(b.Addr) }
	if len(out) > bpf.VIPSlots {
		slices.SortStableFunc(out, func(a, b bpf.Backend) int {
			if a.Weight != b.Weight {
				return int(b.Weight) - int(a.Weight)
			}
			return byAddr(a, b)
		})
		out = out[:bpf.VIPSlots]
	}
	slices.SortFunc(out, byAddr)
	return out
}

// pickRevision chooses a target by weight: x is a uniformly random
// non-negative number, taken modulo the percents' sum.
func pickRevision(targets []target, x int) string {
	total := 0
	for _, t := range targets {
		total += t.percent
	}
	if total == 0 {
		return ""
	}
	x = x % total
	for _, t := range targets {
		if x < t.percent {
			return t.revision
		}
		x -= t.percent
	}
	return targets[len(targets)-1].revision
}

// lowestFree returns the n lowest indexes below limit that used does not
// hold, in increasing order; fewer if the range runs out.
func lowestFree(used map[uint32]bool, n int, limit uint32) []uint32 {
	taken := make([]uint32, 0, len(used))
	for i := range used {
		taken = append(taken, i)
	}
	sort.Slice(taken, func(a, b int) bool { return taken[a] < taken[b] })
	out := make([]uint32, 0, n)
	next := uint32(0)
	for _, u := range taken {
		for ; next < u && next < limit && len(out) < n; next++ {
			out = append(out, next)
		}
		if u >= next {
			next = u + 1
		}
	}
	for ; next < limit && len(out) < n; next++ {
		out = append(out, next)
	}
	return out
}
