package cron

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/store"
)

var t0 = time.Unix(1_800_000_000, 0).UTC() // a multiple of 2s and of 60s

func trigger(spec api.CronTriggerSpec, cursor time.Time) store.CronTrigger {
	return store.CronTrigger{Function: "hello", Name: "tick", Spec: spec.WithDefaults(), CreatedAt: t0, LastScheduled: cursor}
}

func TestDecide(t *testing.T) {
	every2 := api.CronTriggerSpec{Schedule: "@every 2s", StartingDeadline: api.D(10 * time.Second)}
	forbid, replace, suspended := every2, every2, every2
	forbid.ConcurrencyPolicy = api.CronForbid
	replace.ConcurrencyPolicy = api.CronReplace
	suspended.Suspend = true
	tests := []struct {
		name    string
		spec    api.CronTriggerSpec
		cursor  time.Time
		now     time.Time
		pending bool
		want    Decision
	}{
		{name: "not yet due", spec: every2, now: t0.Add(1999 * time.Millisecond), want: Decision{}},
		{name: "due on time", spec: every2, now: t0.Add(2 * time.Second), want: Decision{Cursor: t0.Add(2 * time.Second), Run: t0.Add(2 * time.Second)}},
		{name: "handled already", spec: every2, cursor: t0.Add(2 * time.Second), now: t0.Add(3 * time.Second), want: Decision{Cursor: t0.Add(2 * time.Second)}},
		{name: "late within deadline", spec: every2, now: t0.Add(7 * time.Second),
			want: Decision{Cursor: t0.Add(6 * time.Second), Run: t0.Add(6 * time.Second), Missed: 2}},
		{name: "restart inside the deadline fires the newest once", spec: every2, cursor: t0.Add(2 * time.Second), now: t0.Add(31 * time.Second),
			want: Decision{Cursor: t0.Add(30 * time.Second), Run: t0.Add(30 * time.Second), Missed: 13}},
		{name: "restart outside the deadline: all missed", spec: api.CronTriggerSpec{Schedule: "@every 1m", StartingDeadline: api.D(10 * time.Second)},
			cursor: t0, now: t0.Add(3*time.Minute + 11*time.Second), want: Decision{Cursor: t0.Add(3 * time.Minute), Missed: 3}},
		{name: "forbid skips while pending", spec: forbid, now: t0.Add(2 * time.Second), pending: true,
			want: Decision{Cursor: t0.Add(2 * time.Second), Run: t0.Add(2 * time.Second), Skip: true}},
		{name: "forbid fires when nothing pending", spec: forbid, now: t0.Add(2 * time.Second),
			want: Decision{Cursor: t0.Add(2 * time.Second), Run: t0.Add(2 * time.Second)}},
		{name: "replace", spec: replace, now: t0.Add(2 * time.Second), pending: true,
			want: Decision{Cursor: t0.Add(2 * time.Second), Run: t0.Add(2 * time.Second), Replace: true}},
		{name: "allow fires while pending", spec: every2, now: t0.Add(2 * time.Second), pending: true,
			want: Decision{Cursor: t0.Add(2 * time.Second), Run: t0.Add(2 * time.Second)}},
		{name: "suspended moves the cursor only", spec: suspended, now: t0.Add(9 * time.Second), want: Decision{Cursor: t0.Add(8 * time.Second)}},
		{name: "a day down catches up in bounded steps", spec: api.CronTriggerSpec{Schedule: "@every 1s"}, now: t0.Add(48 * time.Hour),
			want: Decision{Cursor: t0.Add(maxCatchUp * time.Second), Missed: maxCatchUp}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := trigger(tt.spec, tt.cursor)
			sched, err := api.ParseCronSchedule(tr.Spec.Schedule, tr.Spec.TimeZone)
			require.NoError(t, err)
			if tt.want.Cursor.IsZero() {
				tt.want.Cursor = tt.cursor
			}
			assert.Equal(t, tt.want, Decide(tt.now, tr, sched, tt.pending))
		})
	}
}

func TestPrune(t *testing.T) {
	run := func(sec int, o api.CronRunOutcome) store.Versioned[store.CronRun] {
		return store.Versioned[store.CronRun]{Key: string(rune('a' + sec)), Value: store.CronRun{CronRun: api.CronRun{Scheduled: t0.Add(time.Duration(sec) * time.Second), Outcome: o}}}
	}
	runs := []store.Versioned[store.CronRun]{
		run(1, api.CronRunSucceeded), run(2, api.CronRunFailed), run(3, api.CronRunSucceeded), run(4, api.CronRunPending),
		run(5, api.CronRunSkipped), run(6, api.CronRunSucceeded), run(7, api.CronRunDeadLetter), run(0, api.CronRunPending),
	}
	one, zero := 1, 0
	drop := Prune(api.CronTriggerSpec{SuccessfulHistory: &one, FailedHistory: &zero}, runs)
	var got []int
	for _, d := range drop {
		got = append(got, int(d.Value.Scheduled.Sub(t0)/time.Second))
	}
	assert.Equal(t, []int{7, 5, 3, 2, 1}, got, "newest success kept, no failure kept, pending never dropped")
	assert.Len(t, Prune(api.CronTriggerSpec{}.WithDefaults(), runs), 2, "defaults keep 3 successes and 1 failure")
}
