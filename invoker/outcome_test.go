package invoker

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/ebbrun/ebb/api"
)

func TestBackoff(t *testing.T) {
	tests := []struct {
		n      int
		jitter float64
		want   time.Duration
	}{
		{1, 1, time.Second},
		{2, 1, 2 * time.Second},
		{3, 0.5, 2 * time.Second},
		{4, 1, 8 * time.Second},
		{10, 1, 10 * time.Second}, // capped
		{1000, 1, 10 * time.Second},
		{3, 0, 0}, // full jitter reaches zero
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, backoff(time.Second, 10*time.Second, tt.n, tt.jitter), "attempt %d jitter %v", tt.n, tt.jitter)
	}
}

func TestOutcome(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	answer := func(status int) attempt { return attempt{result: &api.InvocationResult{Status: status}} }
	tests := []struct {
		name        string
		attempts    int
		a           attempt
		status      api.InvocationStatus
		next        time.Duration // after now, for a retry
		errContains string
	}{
		{"200 succeeds", 1, answer(200), api.InvocationSucceeded, 0, ""},
		{"302 succeeds", 1, answer(302), api.InvocationSucceeded, 0, ""},
		{"404 fails for good", 1, answer(404), api.InvocationFailed, 0, "answered 404"},
		{"400 on the last attempt still fails", 5, answer(400), api.InvocationFailed, 0, "answered 400"},
		{"503 retried", 1, answer(503), api.InvocationQueued, time.Second, "answered 503"},
		{"429 retried", 2, answer(http.StatusTooManyRequests), api.InvocationQueued, 2 * time.Second, "answered 429"},
		{"connection error retried", 3, attempt{err: errors.New("connection refused")}, api.InvocationQueued, 4 * time.Second, "attempt 3: connection refused"},
		{"504 on the last attempt dead-letters", 5, answer(504), api.InvocationDeadLetter, 0, "attempt 5: the function answered 504"},
		{"timeout on the last attempt dead-letters", 5, attempt{err: errors.New("deadline exceeded")}, api.InvocationDeadLetter, 0, "deadline"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv := api.Invocation{ID: "i", Function: "f", Status: api.InvocationRunning, ClaimedBy: "w", Attempts: tt.attempts, MaxAttempts: 5, LastError: "old"}
			out := outcome(inv, tt.a, now, time.Second, time.Minute, 1)
			assert.Equal(t, tt.status, out.Status)
			assert.Equal(t, now, out.UpdatedAt)
			assert.Equal(t, "w", out.ClaimedBy, "Finish matches the claim")
			assert.Equal(t, tt.attempts, out.Attempts)
			if tt.errContains == "" {
				assert.Empty(t, out.LastError)
			} else {
				assert.Contains(t, out.LastError, tt.errContains)
			}
			if tt.status == api.InvocationQueued {
				assert.Equal(t, now.Add(tt.next), out.NextAttemptAt)
				assert.True(t, out.CompletedAt.IsZero())
			} else {
				assert.True(t, out.NextAttemptAt.IsZero())
				assert.Equal(t, now, out.CompletedAt)
			}
			assert.Equal(t, tt.a.result, out.Result)
		})
	}
}
