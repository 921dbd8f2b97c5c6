package autoscaler

import (
	"time"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/store"
)

// The keep-alive policy learns from traffic, and what it learnt used to live
// in memory only: after a restart no revision had a last demand to count
// its windows from, so no pre-created task was held until traffic came
// back, and the first cold starts missed the pool. The runner now keeps
// that state at keepalive/{rev}: each revision's Memory and a copy of its
// function's IdleTracker, rewritten when it changed, at most every
// StatusRefresh (or with a scale write that happens anyway), and restored
// when the revision's scaling state is created.

// keptMark is what a keep-alive record was written from, to tell whether it
// needs writing again.
type keptMark struct {
	mem     Memory
	lastEnd time.Time
	hist    uint64 // the tracker's histogram version; 0 when not looked at
}

func (m keptMark) equal(o keptMark) bool {
	return m.mem.LastDemand.Equal(o.mem.LastDemand) && m.mem.DeployedWarm.Equal(o.mem.DeployedWarm) &&
		m.lastEnd.Equal(o.lastEnd) && m.hist == o.hist
}

// keptMarkLocked is what rs's keep-alive record would be written from now.
// Only a routed revision writes its function's history: it is the same in
// every revision's record, and old revisions must not rewrite theirs
// whenever the new one has traffic.
func (r *Runner) keptMarkLocked(rs *revState) keptMark {
	m := keptMark{mem: rs.scaler.Memory()}
	if r.routedLocked(rs) {
		m.lastEnd, m.hist = rs.tracker.LastEnd, rs.tracker.Histogram.Version
	}
	return m
}

// keepAliveWriteLocked is decide's keep-alive phase. It writes the
// revision's record when its state changed since the last write, if that
// write is StatusRefresh old or a scale write is going out anyway; and the
// first record as soon as there is something to remember.
func (r *Runner) keepAliveWriteLocked(w *writes, rs *revState, now time.Time) {
	mark := r.keptMarkLocked(rs)
	prev, exists := r.kept[rs.name]
	if !exists && mark.equal(keptMark{}) {
		return // never called, not deployed warm, no history: nothing to keep
	}
	if exists && mark.equal(rs.keptMark) {
		return
	}
	if exists && w.scale == nil && now.Sub(rs.keptAt) < r.cfg.StatusRefresh {
		return
	}
	rec := keepAliveRecord(rs, now)
	version := store.MustNotExist
	if exists {
		version = prev.Version
	}
	w.ops = append(w.ops, store.PutJSON(store.KeepAliveKey(rs.name), rec, version))
	w.kept, w.keptMark = &rec, mark
}

// keepAliveRecord is the stored form of a revision's keep-alive state.
func keepAliveRecord(rs *revState, now time.Time) store.KeepAlive {
	mem, tracker := rs.scaler.Memory(), rs.tracker
	rec := store.KeepAlive{
		Revision: rs.name, Function: rs.function,
		LastDemand: mem.LastDemand, DeployedWarm: mem.DeployedWarm,
		FunctionLastDemand: tracker.LastEnd,
		LongIdle:           tracker.Histogram.OutOfRange,
		UpdatedAt:          now,
	}
	for i, n := range tracker.Histogram.Bins {
		if n > 0 {
			rec.IdleTimes = append(rec.IdleTimes, store.IdleCount{From: api.D(binLower(i)), Count: n})
		}
	}
	return rec
}

// restoredTracker rebuilds a function's IdleTracker from a stored record.
// Counts are filed by each bin's lower edge, so a record written with other
// bins still lands near where it was.
func restoredTracker(rng time.Duration, rec store.KeepAlive) *IdleTracker {
	t := NewIdleTracker(rng)
	t.LastEnd = rec.FunctionLastDemand
	h := &t.Histogram
	h.OutOfRange = rec.LongIdle
	for _, c := range rec.IdleTimes {
		if c.From.Duration < 0 {
			continue
		}
		if c.From.Duration >= h.Range {
			h.OutOfRange += c.Count
			continue
		}
		h.Bins[binOf(c.From.Duration)] += c.Count
	}
	return t
}

// trackerLocked returns a function's IdleTracker: the one in memory, or one
// restored from the newest of its revisions' records, or a new one.
func (r *Runner) trackerLocked(function string) *IdleTracker {
	if t := r.fns[function]; t != nil {
		return t
	}
	t := NewIdleTracker(r.cfg.KeepAlive.Range)
	if rec, ok := r.newestKeptLocked(function); ok {
		t = restoredTracker(r.cfg.KeepAlive.Range, rec)
	}
	r.fns[function] = t
	return t
}

// newestKeptLocked finds the record holding the newest copy of a
// function's history. The index is built once, from the records there were
// when the runner started: afterwards every function's tracker is in
// memory, and a new function has no history to restore.
func (r *Runner) newestKeptLocked(function string) (store.KeepAlive, bool) {
	if r.keptByFunction == nil {
		r.keptByFunction = map[string]string{}
		for name, rec := range r.kept {
			cur, ok := r.kept[r.keptByFunction[rec.Value.Function]]
			if !ok || rec.Value.FunctionLastDemand.After(cur.Value.FunctionLastDemand) {
				r.keptByFunction[rec.Value.Function] = name
			}
		}
	}
	rec, ok := r.kept[r.keptByFunction[function]]
	if !ok || rec.Value.Function != function {
		return store.KeepAlive{}, false
	}
	return rec.Value, true
}

// keptMemoryLocked is a revision's Memory as last stored.
func (r *Runner) keptMemoryLocked(name, function string) (Memory, bool) {
	rec, ok := r.kept[name]
	if !ok || rec.Value.Function != function {
		return Memory{}, false
	}
	return Memory{LastDemand: rec.Value.LastDemand, DeployedWarm: rec.Value.DeployedWarm}, true
}
