package record

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func TestDue(t *testing.T) {
	tests := []struct {
		name string
		inv  api.Invocation
		due  time.Time
		ok   bool
	}{
		{"new", api.Invocation{Status: api.InvocationQueued, CreatedAt: t0}, t0, true},
		{"retry", api.Invocation{Status: api.InvocationQueued, CreatedAt: t0, NextAttemptAt: t0.Add(time.Minute)}, t0.Add(time.Minute), true},
		{"running: just after the claim lapses", api.Invocation{Status: api.InvocationRunning, CreatedAt: t0, ClaimedUntil: t0.Add(time.Second)}, t0.Add(time.Second + time.Nanosecond), true},
		{"succeeded", api.Invocation{Status: api.InvocationSucceeded, CreatedAt: t0}, time.Time{}, false},
		{"failed", api.Invocation{Status: api.InvocationFailed}, time.Time{}, false},
		{"dead letter", api.Invocation{Status: api.InvocationDeadLetter}, time.Time{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			due, ok := Due(tc.inv)
			assert.Equal(t, tc.ok, ok)
			assert.True(t, tc.due.Equal(due), "due %s, want %s", due, tc.due)
		})
	}
}

func TestForFinish(t *testing.T) {
	claimed := Claimed(api.Invocation{ID: "i", Function: "f", Status: api.InvocationQueued, CreatedAt: t0}, "w", t0, time.Minute)
	require.Equal(t, 1, claimed.Attempts)
	tests := []struct {
		name    string
		edit    func(*api.Invocation)
		wantErr bool
	}{
		{"succeeded", func(i *api.Invocation) { i.Status, i.CompletedAt, i.NextAttemptAt = api.InvocationSucceeded, t0, t0 }, false},
		{"retry", func(i *api.Invocation) {
			i.Status, i.NextAttemptAt, i.CompletedAt = api.InvocationQueued, t0.Add(time.Second), t0
		}, false},
		{"final without completedAt", func(i *api.Invocation) { i.Status = api.InvocationDeadLetter }, true},
		{"still running", func(*api.Invocation) {}, true},
		{"unknown status", func(i *api.Invocation) { i.Status = "Paused" }, true},
		{"not claimed", func(i *api.Invocation) { i.Status, i.CompletedAt, i.ClaimedBy = api.InvocationFailed, t0, "" }, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := claimed
			tc.edit(&in)
			out, err := ForFinish(in)
			if tc.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Empty(t, out.ClaimedBy)
			assert.True(t, out.ClaimedUntil.IsZero())
			if out.Status.Final() {
				assert.True(t, out.NextAttemptAt.IsZero(), "a final one has no next attempt")
			} else {
				assert.True(t, out.CompletedAt.IsZero(), "a retry has not completed")
			}
		})
	}
}

func TestForEnqueue(t *testing.T) {
	in := api.Invocation{
		ID: "i", Function: "ns/f", CreatedAt: t0, Status: api.InvocationSucceeded, Attempts: 3,
		ClaimedBy: "w", ClaimedUntil: t0, CompletedAt: t0, Result: &api.InvocationResult{Status: 200}, CallbackStatus: "x",
	}
	out, err := ForEnqueue(in)
	require.NoError(t, err)
	assert.Equal(t, api.Invocation{ID: "i", Function: "ns/f", CreatedAt: t0, UpdatedAt: t0, Status: api.InvocationQueued}, out)
}

func TestUpdateTakesOnlyCallbackFields(t *testing.T) {
	stored := api.Invocation{ID: "i", Status: api.InvocationSucceeded, UpdatedAt: t0, Attempts: 2}
	got, err := Update(stored, api.Invocation{ID: "i", Status: api.InvocationQueued, Attempts: 9, CallbackStatus: "delivered", UpdatedAt: t0.Add(time.Second)})
	require.NoError(t, err)
	assert.Equal(t, api.Invocation{ID: "i", Status: api.InvocationSucceeded, UpdatedAt: t0.Add(time.Second), Attempts: 2, CallbackStatus: "delivered"}, got)
	got, err = Update(stored, api.Invocation{CallbackStatus: "late", UpdatedAt: t0.Add(-time.Second)})
	require.NoError(t, err)
	assert.Equal(t, t0, got.UpdatedAt, "UpdatedAt never goes back")
	_, err = Update(api.Invocation{Status: api.InvocationRunning}, api.Invocation{})
	require.Error(t, err)
}
