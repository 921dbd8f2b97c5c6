package e2e

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
)

// waitJob polls job name until it is finished, or fails the test after
// limit.
func (d *ebbd) waitJob(name string, limit time.Duration) api.Job {
	d.t.Helper()
	deadline := time.Now().Add(limit)
	var job api.Job
	for {
		require.Equal(d.t, http.StatusOK, d.apiCall("GET", "/v1/jobs/"+name, nil, &job))
		if job.Status.Finished() {
			return job
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("job %s did not finish within %s: %+v", name, limit, job.Status)
		}
		time.Sleep(50 * time.Millisecond) // polling a real system
	}
}

// maxOverlap is the most attempts that ran at one instant, by the times
// the node agent reported.
func maxOverlap(attempts []api.JobAttempt) int {
	type edge struct {
		at    time.Time
		delta int
	}
	var edges []edge
	for _, a := range attempts {
		edges = append(edges, edge{a.StartedAt, 1}, edge{a.FinishedAt, -1})
	}
	// Ends before starts at the same instant: touching is not overlapping.
	slices.SortFunc(edges, func(x, y edge) int {
		if c := x.at.Compare(y.at); c != 0 {
			return c
		}
		return x.delta - y.delta
	})
	most, now := 0, 0
	for _, e := range edges {
		now += e.delta
		most = max(most, now)
	}
	return most
}

// TestJobs runs jobs in real containers: five completions two at a time,
// a job that fails past its backoff limit, and one its active deadline
// kills.
func TestJobs(t *testing.T) {
	d := startEbbd(t)
	d.pushBinary(binaries.jobber, "jobber:latest")

	t.Run("completions and parallelism", func(t *testing.T) {
		d.ebb("jobs", "create", "batch", "--image", "jobber:latest", "--completions", "5", "--parallelism", "2",
			"--env", "SLEEP=300ms")
		job := d.waitJob("batch", 2*time.Minute)
		require.Equal(t, api.JobComplete, job.Status.Phase, "%+v", job.Status)
		assert.Equal(t, 5, job.Status.Succeeded)
		assert.Equal(t, 0, job.Status.Failed)
		require.Len(t, job.Status.Attempts, 5)
		for _, a := range job.Status.Attempts {
			require.NotNil(t, a.ExitCode, "attempt %d", a.Index)
			assert.Equal(t, 0, *a.ExitCode)
		}
		overlap := maxOverlap(job.Status.Attempts)
		t.Logf("at most %d attempts ran at once", overlap)
		assert.LessOrEqual(t, overlap, 2, "never more than parallelism at once")

		logs := d.ebb("jobs", "logs", "batch")
		for i := range 5 {
			assert.Contains(t, logs, fmt.Sprintf("stdout: jobber: job batch attempt %d", i))
		}
		assert.Contains(t, logs, "ebb: exited with code 0")
		out := d.ebb("jobs", "get", "batch")
		assert.Contains(t, out, "Completions:  5/5")
	})

	t.Run("backoff limit", func(t *testing.T) {
		d.ebb("jobs", "create", "flaky", "--image", "jobber:latest", "--env", "EXIT_CODE=7", "--backoff-limit", "1")
		job := d.waitJob("flaky", 2*time.Minute)
		require.Equal(t, api.JobFailed, job.Status.Phase)
		assert.Equal(t, api.JobReasonBackoffLimit, job.Status.Reason)
		assert.Equal(t, 2, job.Status.Failed, "backoffLimit 1: the second failure fails the job")
		require.Len(t, job.Status.Attempts, 2)
		for _, a := range job.Status.Attempts {
			require.NotNil(t, a.ExitCode)
			assert.Equal(t, 7, *a.ExitCode)
		}
	})

	t.Run("active deadline kills", func(t *testing.T) {
		running := func() []string {
			var ids []string
			for _, c := range runcContainersUnder(d.dataDir) {
				if strings.HasPrefix(c.id, "slow-") {
					ids = append(ids, c.id)
				}
			}
			return ids
		}
		start := time.Now()
		d.ebb("jobs", "create", "slow", "--image", "jobber:latest", "--env", "SLEEP=1h", "--active-deadline", "2s")
		for wait := time.Now().Add(10 * time.Second); len(running()) == 0 && time.Now().Before(wait); {
			time.Sleep(20 * time.Millisecond) // polling a real system
		}
		require.Len(t, running(), 1, "the job pod runs in a container")
		job := d.waitJob("slow", time.Minute)
		took := time.Since(start)
		require.Equal(t, api.JobFailed, job.Status.Phase)
		assert.Equal(t, api.JobReasonDeadlineExceeded, job.Status.Reason)
		assert.Less(t, took, 30*time.Second)
		require.Len(t, job.Status.Attempts, 1)
		assert.Equal(t, api.AttemptReasonKilled, job.Status.Attempts[0].Reason)
		// The killed container is removed, and its program never exited
		// on its own.
		for wait := time.Now().Add(20 * time.Second); len(running()) > 0 && time.Now().Before(wait); {
			time.Sleep(50 * time.Millisecond) // polling a real system
		}
		assert.Empty(t, running(), "the job pod's container is gone")
		logs := d.ebb("jobs", "logs", "slow")
		assert.Contains(t, logs, "jobber: job slow attempt 0")
		assert.NotContains(t, logs, "exiting with")

		d.ebb("jobs", "delete", "slow")
		_, errOut, code := d.ebbExit("jobs", "get", "slow")
		assert.NotEqual(t, 0, code)
		assert.True(t, strings.Contains(errOut, "does not exist"), errOut)
	})

	t.Run("survives an ebbd restart", func(t *testing.T) {
		d.ebb("jobs", "create", "durable", "--image", "jobber:latest", "--env", "SLEEP=5s", "--env", "EXIT_CODE=5", "--backoff-limit", "0")
		// Restart once the program runs (a start the restart cuts short
		// is a lost attempt).
		for wait := time.Now().Add(time.Minute); !strings.Contains(d.ebb("jobs", "logs", "durable"), "jobber: job durable attempt 0"); {
			require.True(t, time.Now().Before(wait), "the job pod did not start")
			time.Sleep(50 * time.Millisecond) // polling a real system
		}
		d.restart()
		job := d.waitJob("durable", time.Minute)
		require.Len(t, job.Status.Attempts, 1, "run once, never twice: %+v", job.Status)
		a := job.Status.Attempts[0]
		require.NotNil(t, a.ExitCode, "%+v\n%s", a, d.log)
		assert.Equal(t, 5, *a.ExitCode, "the program's own exit, seen by the restarted agent")
		assert.Empty(t, a.Reason)
		logs := d.ebb("jobs", "logs", "durable")
		assert.Contains(t, logs, "adopted by a restarted node agent")
		assert.Contains(t, logs, "jobber: exiting with 5")
	})
}
