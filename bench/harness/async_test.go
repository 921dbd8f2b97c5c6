package harness

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
)

func TestAsyncRoundOf(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 19, 0, 0, 0, time.UTC)
	id := func(i int) string { return string(rune('a'+i)) + "0000000000000000000000000000000" }
	// Submitted out of order (16 at once): the round starts at the
	// earliest submission and its answers end at the latest 202.
	subs := []submission{
		{id: id(0), started: t0.Add(2 * time.Millisecond), took: 3 * time.Millisecond},
		{id: id(1), started: t0, took: 1 * time.Millisecond},
		{id: id(2), started: t0.Add(time.Millisecond), took: 10 * time.Millisecond},
		{id: id(3), started: t0.Add(4 * time.Millisecond), took: 2 * time.Millisecond},
	}
	done := func(i int, at time.Duration, attempts int) api.Invocation {
		return api.Invocation{ID: id(i), Status: api.InvocationSucceeded, Attempts: attempts, CompletedAt: t0.Add(at)}
	}
	invs := []api.Invocation{done(0, 50*time.Millisecond, 1), done(1, 200*time.Millisecond, 2), done(2, 80*time.Millisecond, 1), done(3, 120*time.Millisecond, 1)}

	r, err := asyncRoundOf("bbolt", subs, invs)
	require.NoError(t, err)
	assert.Equal(t, 4, r.N)
	assert.Equal(t, 4, r.Succeeded)
	assert.Equal(t, 1, r.Retried)
	assert.InDelta(t, 11, r.SubmitMs, 1e-9, "first submission to the last 202 (started at 1 ms, took 10 ms)")
	assert.InDelta(t, 200, r.CompleteMs, 1e-9, "first submission to the last CompletedAt")
	assert.InDelta(t, 20, r.PerSec, 1e-9, "4 invocations in 200 ms")
	assert.Equal(t, 4, r.Enqueue.N)
	assert.InDelta(t, 10, r.Enqueue.Max, 1e-9)

	bad := append([]api.Invocation(nil), invs...)
	bad[2].Status, bad[2].LastError = api.InvocationDeadLetter, "503"
	_, err = asyncRoundOf("bbolt", subs, bad)
	assert.ErrorContains(t, err, "DeadLetter")

	swapped := append([]api.Invocation(nil), invs...)
	swapped[0], swapped[1] = swapped[1], swapped[0]
	_, err = asyncRoundOf("bbolt", subs, swapped)
	assert.ErrorContains(t, err, "read back")

	_, err = asyncRoundOf("bbolt", subs, invs[:3])
	assert.ErrorContains(t, err, "4 submissions, 3 invocations")
}

func TestAsyncResultReport(t *testing.T) {
	round := func(store string, perSec, p99 float64, succeeded int) AsyncRound {
		return AsyncRound{Store: store, N: 2000, PerSec: perSec, Succeeded: succeeded, Enqueue: Dist{P50: p99 / 4, P99: p99}}
	}
	r := &AsyncResult{N: 2000, Submitters: 16,
		Bbolt: &AsyncStore{Store: "bbolt", Rounds: []AsyncRound{round("bbolt", 400, 8, 2000), round("bbolt", 500, 12, 2000)}},
		Redis: &AsyncStore{Store: "redis", Rounds: []AsyncRound{round("redis", 800, 4, 2000), round("redis", 1500, 6, 2000)}},
	}
	r.Bbolt.summarize()
	r.Redis.summarize()
	r.RedisRatio = SpreadOf(Ratios([]float64{800, 1500}, []float64{400, 500}))
	assert.InDelta(t, 450, r.Bbolt.PerSec.Median, 1e-9)
	assert.InDelta(t, 10, r.Bbolt.EnqueueP99.Median, 1e-9)
	assert.InDelta(t, 2.5, r.RedisRatio.Median, 1e-9, "2× and 3×, round by round")

	rows := r.Rows()
	require.Len(t, rows, 5)
	assert.Equal(t, "450 (400–500) invocations/s", rows[0].Value)
	assert.Equal(t, "p50 1.25 (1.00–1.50) ms, p99 5.00 (4.00–6.00) ms", rows[3].Value)
	assert.Equal(t, GoalMet, r.Goals()[0].Status)
	assert.Contains(t, r.Markdown(), "| redis | 2 | 1500 |")

	r.Redis.Rounds[1].Succeeded = 1999
	assert.Equal(t, GoalMissed, r.Goals()[0].Status, "one lost invocation misses the goal")
	assert.Equal(t, "7999 of 8000 Succeeded", r.Goals()[0].Value)
}

func TestEverySectionHasATitle(t *testing.T) {
	for _, s := range Sections {
		assert.NotEmpty(t, sectionTitles[s], "section %s has no title in RESULTS.md", s)
	}
}
