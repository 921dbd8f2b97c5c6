package cron

import (
	"slices"
	"time"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/store"
)

// maxCatchUp bounds the schedule times one Decide walks past: a trigger
// down for longer (a day of @every 1s) catches up over several ticks,
// counting each run it passes as missed.
const maxCatchUp = 100_000

// Decision is what a trigger does at now: a plan the Runner writes.
type Decision struct {
	// Cursor is the trigger's new LastScheduled; unchanged when nothing
	// came due.
	Cursor time.Time
	// Missed counts the runs passed over: every due run but the newest,
	// and the newest too when it is later than the starting deadline.
	Missed int
	// Run is the schedule time to claim (fired or skipped); zero for none.
	Run time.Time
	// Skip records Run as Skipped instead of firing it (Forbid while a
	// run is pending).
	Skip bool
	// Replace marks the pending runs Replaced (Replace while a run is
	// pending).
	Replace bool
}

// Changed reports whether the decision writes anything.
func (d Decision) Changed(tr store.CronTrigger) bool {
	return !d.Cursor.Equal(tr.LastScheduled) || d.Missed > 0 || !d.Run.IsZero()
}

// Decide is the firing rule, pure: of the schedule times after the
// trigger's cursor and not after now, the newest is claimed when it is
// within the starting deadline and the older ones are missed. pending says
// whether an earlier run's invocation is not final yet, for the
// concurrency policy. A suspended trigger moves its cursor and fires and
// counts nothing.
func Decide(now time.Time, tr store.CronTrigger, sched api.CronSchedule, pending bool) Decision {
	from := tr.LastScheduled
	if from.IsZero() {
		from = tr.CreatedAt
	}
	d := Decision{Cursor: tr.LastScheduled}
	var last time.Time
	due := 0
	for t := sched.Next(from); !t.IsZero() && !t.After(now) && due < maxCatchUp; t = sched.Next(t) {
		last = t
		due++
	}
	if due == 0 {
		return d
	}
	d.Cursor = last
	if tr.Spec.Suspend {
		return d
	}
	d.Missed = due - 1
	if now.Sub(last) > tr.Spec.StartingDeadline.Duration {
		d.Missed++
		return d
	}
	d.Run = last
	if pending {
		switch tr.Spec.ConcurrencyPolicy {
		case api.CronForbid:
			d.Skip = true
		case api.CronReplace:
			d.Replace = true
		}
	}
	return d
}

// Prune returns the finished runs past the trigger's history limits:
// the oldest successful runs beyond SuccessfulHistory and the oldest
// others beyond FailedHistory. Pending runs are always kept.
func Prune(spec api.CronTriggerSpec, runs []store.Versioned[store.CronRun]) []store.Versioned[store.CronRun] {
	keepOK, keepFailed := api.DefaultCronSuccessful, api.DefaultCronFailed
	if spec.SuccessfulHistory != nil {
		keepOK = *spec.SuccessfulHistory
	}
	if spec.FailedHistory != nil {
		keepFailed = *spec.FailedHistory
	}
	newestFirst := slices.Clone(runs)
	slices.SortFunc(newestFirst, func(a, b store.Versioned[store.CronRun]) int {
		return b.Value.Scheduled.Compare(a.Value.Scheduled)
	})
	var drop []store.Versioned[store.CronRun]
	for _, r := range newestFirst {
		o := r.Value.Outcome
		switch {
		case !o.Final():
		case o.Succeeded():
			if keepOK > 0 {
				keepOK--
			} else {
				drop = append(drop, r)
			}
		default:
			if keepFailed > 0 {
				keepFailed--
			} else {
				drop = append(drop, r)
			}
		}
	}
	return drop
}

// Outcome maps a final invocation status to its run's outcome.
func Outcome(s api.InvocationStatus) api.CronRunOutcome {
	switch s {
	case api.InvocationSucceeded:
		return api.CronRunSucceeded
	case api.InvocationFailed:
		return api.CronRunFailed
	case api.InvocationDeadLetter:
		return api.CronRunDeadLetter
	}
	return api.CronRunPending
}
