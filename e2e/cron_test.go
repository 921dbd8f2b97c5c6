package e2e

import (
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
)

// putCron creates or replaces trigger name of fn through the API.
func (d *ebbd) putCron(fn, name, spec string) api.CronTrigger {
	d.t.Helper()
	var tr api.CronTrigger
	code := d.apiCall("PUT", "/v1/functions/"+fn+"/crontriggers/"+name, strings.NewReader(spec), &tr)
	require.Contains(d.t, []int{200, 201}, code, "put trigger %s/%s: %+v", fn, name, tr)
	return tr
}

// cron reads trigger name of fn through the API.
func (d *ebbd) cron(fn, name string) api.CronTrigger {
	d.t.Helper()
	var tr api.CronTrigger
	require.Equal(d.t, http.StatusOK, d.apiCall("GET", "/v1/functions/"+fn+"/crontriggers/"+name, nil, &tr))
	return tr
}

// cronDelivery is one cron run as the function saw it.
type cronDelivery struct {
	id        string
	scheduled time.Time
	seen      time.Time
	count     int
}

// cronDeliveries are fn's deliveries carrying a schedule time, by it.
func (d *ebbd) cronDeliveries(fn string) []cronDelivery {
	d.t.Helper()
	var out []cronDelivery
	for id, s := range d.seenBy(fn).Invocations {
		if s.Scheduled == "" {
			continue
		}
		at, err := time.Parse(time.RFC3339, s.Scheduled)
		require.NoError(d.t, err, s.Scheduled)
		out = append(out, cronDelivery{id: id, scheduled: at, seen: s.First, count: s.Count})
	}
	slices.SortFunc(out, func(a, b cronDelivery) int { return a.scheduled.Compare(b.scheduled) })
	return out
}

// quantile is the q-quantile (nearest rank) of sorted ds.
func quantile(sorted []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(sorted))+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func lateness(ds []time.Duration) string {
	s := slices.Clone(ds)
	slices.Sort(s)
	return fmt.Sprintf("p50 %s, p99 %s, max %s over %d runs",
		quantile(s, 0.5).Round(100*time.Microsecond), quantile(s, 0.99).Round(100*time.Microsecond),
		s[len(s)-1].Round(100*time.Microsecond), len(s))
}

// TestCron is issue 20's acceptance of cron triggers on one daemon: a
// "@every 2s" trigger fires within 100 ms of its schedule over 30 runs
// (the lateness is logged), and, at the same time, a Forbid trigger whose
// runs outlast its period skips the overlapping ones. It is not parallel,
// so it runs before the parallel tests start: its lateness is a
// measurement, and the kill test's thousand deliveries on the same two
// cores and disk add up to 100ms to a run.
func TestCron(t *testing.T) {
	const runs = 30
	d := startEbbd(t)
	d.pushHello()
	d.putSpec("ticker", `{"image":"hello:latest","scale":{"min":1,"max":1}}`)
	d.putSpec("slowpoke", `{"image":"hello:latest","timeout":"30s","scale":{"min":1,"max":1}}`)
	d.waitFor("ticker", time.Minute, func(r api.RevisionStatus) bool { return r.Ready == 1 })
	d.waitFor("slowpoke", time.Minute, func(r api.RevisionStatus) bool { return r.Ready == 1 })

	d.putCron("ticker", "every2s", `{"schedule":"@every 2s","request":{"method":"POST","path":"/echo","body":"tick"},"successfulHistory":100}`)
	// Each run sleeps 3s, longer than the 2s period.
	d.putCron("slowpoke", "nooverlap", `{"schedule":"@every 2s","concurrencyPolicy":"Forbid","request":{"method":"GET","path":"/sleep?d=3s"},"successfulHistory":100,"failedHistory":100}`)

	var got []cronDelivery
	for deadline := time.Now().Add(runs*2*time.Second + 30*time.Second); ; {
		got = d.cronDeliveries("ticker")
		if len(got) >= runs {
			break
		}
		require.True(t, time.Now().Before(deadline), "%d of %d runs within the deadline", len(got), runs)
		time.Sleep(200 * time.Millisecond) // polling a real system
	}
	got = got[:runs]
	var late []time.Duration
	for i, g := range got {
		assert.Equal(t, 1, g.count, "run %s delivered once", g.scheduled)
		if i > 0 {
			assert.Equal(t, 2*time.Second, g.scheduled.Sub(got[i-1].scheduled), "no run skipped or doubled")
		}
		late = append(late, g.seen.Sub(g.scheduled))
	}
	t.Logf("every 2s, schedule to the function's receipt: %s", lateness(late))
	// The control plane's own record: schedule to the run's enqueue.
	tr := d.cron("ticker", "every2s")
	var fired []time.Duration
	for _, r := range tr.Status.Runs {
		if !r.FiredAt.IsZero() && !r.Scheduled.After(got[runs-1].scheduled) {
			fired = append(fired, r.FiredAt.Sub(r.Scheduled))
		}
	}
	if len(fired) > 0 {
		t.Logf("every 2s, schedule to firedAt: %s", lateness(fired))
	}
	assert.Zero(t, tr.Status.Missed)
	firedAt := map[time.Time]time.Time{}
	for _, r := range tr.Status.Runs {
		firedAt[r.Scheduled.UTC()] = r.FiredAt
	}
	for i, l := range late {
		assert.GreaterOrEqual(t, l, time.Duration(0), "no run before its time")
		if l > 50*time.Millisecond {
			s := got[i].scheduled
			t.Logf("late run %s: fired +%s, received +%s", s.Format(time.TimeOnly), firedAt[s.UTC()].Sub(s), l)
		}
		assert.LessOrEqual(t, l, 100*time.Millisecond, "every run within 100ms of its schedule")
	}

	t.Run("forbid skips an overlap", func(t *testing.T) {
		tr := d.cron("slowpoke", "nooverlap")
		outcomes := map[api.CronRunOutcome]int{}
		for _, r := range tr.Status.Runs {
			outcomes[r.Outcome]++
		}
		t.Logf("Forbid runs after %d ticker runs: %v", runs, outcomes)
		assert.Positive(t, outcomes[api.CronRunSkipped], "a run due while the previous one sleeps is skipped")
		assert.Positive(t, outcomes[api.CronRunSucceeded])
		// The function never had two runs at once: each started after
		// the previous one's 3s.
		ds := d.cronDeliveries("slowpoke")
		require.GreaterOrEqual(t, len(ds), 2)
		for i := 1; i < len(ds); i++ {
			assert.GreaterOrEqual(t, ds[i].seen.Sub(ds[i-1].seen), 3*time.Second,
				"run %s started %s after run %s", ds[i].scheduled, ds[i].seen.Sub(ds[i-1].seen), ds[i-1].scheduled)
		}
	})
}

// TestCronMissedRunAfterRestart: runs that fall due while the control
// plane is down are fired once after its restart, inside the starting
// deadline: the newest missed run fires, the older is counted missed.
func TestCronMissedRunAfterRestart(t *testing.T) {
	t.Parallel()
	const period = 4 * time.Second
	d := startEbbd(t)
	d.pushHello()
	d.putSpec("nightly", `{"image":"hello:latest","scale":{"min":1,"max":1}}`)
	d.waitFor("nightly", time.Minute, func(r api.RevisionStatus) bool { return r.Ready == 1 })
	d.putCron("nightly", "backup", `{"schedule":"@every 4s","startingDeadline":"30s","request":{"path":"/echo","body":"backup"},"successfulHistory":100}`)

	// One run on schedule first.
	var first api.CronTrigger
	for deadline := time.Now().Add(30 * time.Second); ; {
		first = d.cron("nightly", "backup")
		if len(first.Status.Runs) > 0 && first.Status.Runs[0].Outcome == api.CronRunSucceeded {
			break
		}
		require.True(t, time.Now().Before(deadline), "no run within 30s: %+v", first.Status)
		time.Sleep(100 * time.Millisecond) // polling a real system
	}
	// Down before the next run, up again after the one after it.
	next := first.Status.NextScheduleTime
	require.False(t, next.IsZero())
	require.True(t, time.Until(next) > 500*time.Millisecond, "the stop comes before %s", next)
	d.stop(syscall.SIGTERM)
	missed, newest := next, next.Add(period)
	for time.Now().Before(newest.Add(500 * time.Millisecond)) {
		time.Sleep(50 * time.Millisecond) // waiting out the downtime the test is about
	}
	d.start()
	restarted := time.Now()
	t.Logf("down from before %s to after %s; restarted %s after the newest missed run", missed.Format(time.TimeOnly), newest.Format(time.TimeOnly), restarted.Sub(newest).Round(time.Millisecond))

	// The newest missed run fires, once, at the restart.
	var tr api.CronTrigger
	for deadline := time.Now().Add(30 * time.Second); ; {
		tr = d.cron("nightly", "backup")
		if i := slices.IndexFunc(tr.Status.Runs, func(r api.CronRun) bool { return r.Scheduled.Equal(newest) }); i >= 0 && tr.Status.Runs[i].Outcome.Final() {
			break
		}
		require.True(t, time.Now().Before(deadline), "the missed run %s did not fire: %+v", newest, tr.Status)
		time.Sleep(100 * time.Millisecond) // polling a real system
	}
	var byTime []string
	count := map[time.Time]int{}
	for _, r := range tr.Status.Runs {
		count[r.Scheduled.UTC()]++
		byTime = append(byTime, fmt.Sprintf("%s %s fired %s", r.Scheduled.Format(time.TimeOnly), r.Outcome, r.FiredAt.Format(time.TimeOnly+".000")))
	}
	sort.Strings(byTime)
	t.Logf("runs: %v; missed %d", byTime, tr.Status.Missed)
	assert.Equal(t, 1, count[newest.UTC()], "the newest missed run fires once")
	assert.Zero(t, count[missed.UTC()], "the older missed run does not fire")
	assert.Equal(t, 1, tr.Status.Missed, "the older missed run is counted")
	i := slices.IndexFunc(tr.Status.Runs, func(r api.CronRun) bool { return r.Scheduled.Equal(newest) })
	run := tr.Status.Runs[i]
	assert.Equal(t, api.CronRunSucceeded, run.Outcome)
	assert.False(t, run.FiredAt.Before(restarted.Add(-time.Second)), "fired after the restart: %s", run.FiredAt)
	inv := d.invocation("nightly", run.InvocationID)
	assert.Equal(t, 1, inv.Attempts)
	// By the function's record too, if its replica outlived the restart.
	for _, g := range d.cronDeliveries("nightly") {
		assert.NotEqual(t, missed, g.scheduled, "the older missed run never reached the function")
		if g.scheduled.Equal(newest) {
			assert.Equal(t, 1, g.count)
		}
	}
}
