package nodeagent

import (
	"sort"
	"time"
)

// phase is where a replica is, as the planner counts it.
type phase int

const (
	// phaseCreating: its container and task are being created. It is a pool
	// entry unless a start was requested, in which case it starts as soon as
	// it is created.
	phaseCreating phase = iota
	// phasePooled: a pre-created task, waiting for a start.
	phasePooled
	// phaseStarting: started, not yet ready.
	phaseStarting
	// phaseReady: ready and published as an endpoint.
	phaseReady
	// phaseBackoff: crashed, waiting to be restarted.
	phaseBackoff
	// phaseStopping: being drained and removed. The planner ignores it.
	phaseStopping
)

func (p phase) String() string {
	switch p {
	case phaseCreating:
		return "creating"
	case phasePooled:
		return "pooled"
	case phaseStarting:
		return "starting"
	case phaseReady:
		return "ready"
	case phaseBackoff:
		return "backoff"
	case phaseStopping:
		return "stopping"
	}
	return "unknown"
}

// replicaView is what the planner knows of a replica.
type replicaView struct {
	ID             string
	Phase          phase
	StartRequested bool // for phaseCreating: start once created
	Since          time.Time
	// Crashes is the replica's consecutive crashes as of its last one; in
	// phaseBackoff, how many times in a row it has crashed so far.
	Crashes int
}

// active reports whether the replica counts towards the desired replicas.
func (v replicaView) active() bool {
	switch v.Phase {
	case phaseStarting, phaseReady, phaseBackoff:
		return true
	case phaseCreating:
		return v.StartRequested
	}
	return false
}

// pooled reports whether the replica is, or is becoming, a pre-created task.
func (v replicaView) pooled() bool {
	return v.Phase == phasePooled || (v.Phase == phaseCreating && !v.StartRequested)
}

// revInput is one revision's desired and observed state.
type revInput struct {
	// Want is the desired number of running replicas.
	Want int
	// WantPool is the desired number of pre-created tasks.
	WantPool int
	// CanCreate is false while the revision is not prepared or is backing
	// off after failures; existing replicas are still started and stopped.
	CanCreate bool
	Replicas  []replicaView
}

type actionKind int

const (
	// actStart starts a pooled (or still creating) replica.
	actStart actionKind = iota
	// actCreateStarted creates a replica and starts it: a pool miss.
	actCreateStarted
	// actCreatePool creates a pre-created task.
	actCreatePool
	// actStop drains and removes a replica.
	actStop
)

type action struct {
	Kind actionKind
	ID   string // empty for creates
}

// planRevision decides how to move one revision towards its desired state.
// It is pure: the agent executes the actions.
//
// Scale-up takes pre-created tasks first, oldest first, then tasks still
// being created (they start the moment they exist, usually sooner than a
// fresh one would), and only then creates new ones. Scale-down stops what
// serves nothing first (crashed, starting), then the newest ready replicas.
func planRevision(in revInput) []action {
	var active, pooledReady, pooledCreating []replicaView
	for _, r := range in.Replicas {
		switch {
		case r.active():
			active = append(active, r)
		case r.Phase == phasePooled:
			pooledReady = append(pooledReady, r)
		case r.pooled():
			pooledCreating = append(pooledCreating, r)
		}
	}
	byAge := func(rs []replicaView) {
		sort.SliceStable(rs, func(i, j int) bool {
			if !rs[i].Since.Equal(rs[j].Since) {
				return rs[i].Since.Before(rs[j].Since)
			}
			return rs[i].ID < rs[j].ID
		})
	}
	byAge(pooledReady)
	byAge(pooledCreating)

	var out []action
	switch need := in.Want - len(active); {
	case need > 0:
		for len(pooledReady) > 0 && need > 0 {
			out = append(out, action{Kind: actStart, ID: pooledReady[0].ID})
			pooledReady = pooledReady[1:]
			need--
		}
		for len(pooledCreating) > 0 && need > 0 {
			out = append(out, action{Kind: actStart, ID: pooledCreating[0].ID})
			pooledCreating = pooledCreating[1:]
			need--
		}
		if in.CanCreate {
			for ; need > 0; need-- {
				out = append(out, action{Kind: actCreateStarted})
			}
		}
	case need < 0:
		sort.SliceStable(active, func(i, j int) bool {
			ri, rj := stopRank(active[i]), stopRank(active[j])
			if ri != rj {
				return ri < rj
			}
			if !active[i].Since.Equal(active[j].Since) {
				return active[i].Since.After(active[j].Since) // newest first
			}
			return active[i].ID > active[j].ID
		})
		for _, r := range active[:-need] {
			out = append(out, action{Kind: actStop, ID: r.ID})
		}
	}

	pool := len(pooledReady) + len(pooledCreating)
	switch {
	case pool < in.WantPool && in.CanCreate:
		for i := pool; i < in.WantPool; i++ {
			out = append(out, action{Kind: actCreatePool})
		}
	case pool > in.WantPool:
		// Drop creations first (they are furthest from useful), then the
		// newest pre-created tasks.
		extra := append(pooledCreating, reversed(pooledReady)...)
		for _, r := range extra[:pool-in.WantPool] {
			out = append(out, action{Kind: actStop, ID: r.ID})
		}
	}
	return out
}

// stopRank orders scale-down victims: the ones serving nothing first.
func stopRank(r replicaView) int {
	switch r.Phase {
	case phaseBackoff:
		return 0
	case phaseCreating:
		return 1
	case phaseStarting:
		return 2
	}
	return 3
}

func reversed(rs []replicaView) []replicaView {
	out := make([]replicaView, len(rs))
	for i, r := range rs {
		out[len(rs)-1-i] = r
	}
	return out
}

// poolPolicy is the pre-created task policy from Config.
type poolPolicy struct {
	PerRevision  int
	Window       time.Duration
	MemoryBudget int64
	EntryMemory  int64
}

// capacity is how many pre-created tasks the memory budget allows.
func (p poolPolicy) capacity() int { return int(p.MemoryBudget / p.EntryMemory) }

// poolCandidate is a revision that may hold pre-created tasks.
type poolCandidate struct {
	Rev string
	// Explicit is what the store's assignment asks for.
	Explicit int
	// LastUsed is when the revision last wanted or ran a replica here.
	LastUsed time.Time
}

// poolTargets decides how many pre-created tasks each revision gets: the
// larger of its explicit request and the policy's PerRevision if it was used
// within Window, within the memory budget. Explicit requests are served
// first, then the most recently used revisions.
func poolTargets(p poolPolicy, now time.Time, cands []poolCandidate) map[string]int {
	type want struct {
		rev      string
		explicit bool
		n        int
		lastUsed time.Time
	}
	var wants []want
	for _, c := range cands {
		n := c.Explicit
		if p.PerRevision > n && !c.LastUsed.IsZero() && now.Sub(c.LastUsed) <= p.Window {
			n = p.PerRevision
		}
		if n > 0 {
			wants = append(wants, want{rev: c.Rev, explicit: c.Explicit > 0, n: n, lastUsed: c.LastUsed})
		}
	}
	sort.SliceStable(wants, func(i, j int) bool {
		if wants[i].explicit != wants[j].explicit {
			return wants[i].explicit
		}
		if !wants[i].lastUsed.Equal(wants[j].lastUsed) {
			return wants[i].lastUsed.After(wants[j].lastUsed)
		}
		return wants[i].rev < wants[j].rev
	})
	out := make(map[string]int, len(wants))
	left := p.capacity()
	for _, w := range wants {
		n := min(w.n, left)
		if n > 0 {
			out[w.rev] = n
			left -= n
		}
	}
	return out
}
