package invoker

import (
	"fmt"
	"net/http"
	"time"

	"github.com/ebbrun/ebb/api"
)

// attempt is what one delivery came to: the function's answer, or err
// when there was none (no connection, a timeout).
type attempt struct {
	result *api.InvocationResult
	err    error
}

// retryable says whether an attempt's failure may pass on a later try: no
// answer, a 5xx, or a 429 (the data path or the function asking to slow
// down). Any other answer is final.
func retryable(a attempt) bool {
	if a.err != nil || a.result == nil {
		return true
	}
	return a.result.Status >= 500 || a.result.Status == http.StatusTooManyRequests
}

// backoff is the wait before the retry that follows attempt n (1-based):
// a uniformly random share (jitter in [0,1)) of min(cap, base*2^(n-1)),
// the "full jitter" that keeps retries of many failed invocations from
// arriving together.
func backoff(base, ceiling time.Duration, n int, jitter float64) time.Duration {
	d := base
	for i := 1; i < n && d < ceiling; i++ {
		d *= 2
	}
	d = min(d, ceiling)
	return time.Duration(jitter * float64(d))
}

// outcome is inv, as claimed, after attempt a finished at now: final, or
// queued again for a retry at now plus the backoff. ClaimedBy and Attempts
// stay as claimed: Finish matches them against the stored claim. It is
// pure, so the state machine is tested by tables.
func outcome(inv api.Invocation, a attempt, now time.Time, base, ceiling time.Duration, jitter float64) api.Invocation {
	inv.UpdatedAt = now
	inv.NextAttemptAt = time.Time{}
	if a.result != nil {
		inv.Result = a.result
	}
	switch {
	case a.err != nil:
		inv.LastError = fmt.Sprintf("attempt %d: %v", inv.Attempts, a.err)
	case retryable(a) || a.result.Status >= 400:
		inv.LastError = fmt.Sprintf("attempt %d: the function answered %d", inv.Attempts, a.result.Status)
	default:
		inv.LastError = ""
	}
	switch {
	case !retryable(a) && a.result.Status >= 400:
		inv.Status = api.InvocationFailed
	case !retryable(a):
		inv.Status = api.InvocationSucceeded
	case inv.Attempts >= inv.MaxAttempts:
		inv.Status = api.InvocationDeadLetter
	default:
		inv.Status = api.InvocationQueued
		inv.NextAttemptAt = now.Add(backoff(base, ceiling, inv.Attempts, jitter))
		return inv
	}
	inv.CompletedAt = now
	return inv
}
