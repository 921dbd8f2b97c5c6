package main

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/queue/queuetest"
)

func TestWakingQueueWakesOnNewInvocations(t *testing.T) {
	ctx := context.Background()
	q := &wakingQueue{Queue: queuetest.NewMemory()}
	inv := api.Invocation{ID: "a1", Function: "hello", MaxAttempts: 1,
		Request: api.InvocationRequest{Method: "POST", Path: "/"}, CreatedAt: time.Now(), IdempotencyKey: "k"}
	// No invoker yet (a control plane only): nothing to wake.
	_, _, err := q.Enqueue(ctx, inv)
	require.NoError(t, err)

	wakes := 0
	q.setWaker(func() { wakes++ })
	inv.ID = "a2"
	inv.IdempotencyKey = ""
	_, dup, err := q.Enqueue(ctx, inv)
	require.NoError(t, err)
	assert.False(t, dup)
	assert.Equal(t, 1, wakes, "a new invocation wakes the invoker")

	inv.ID, inv.IdempotencyKey = "a3", "k"
	stored, dup, err := q.Enqueue(ctx, inv)
	require.NoError(t, err)
	assert.True(t, dup)
	assert.Equal(t, "a1", stored.ID)
	assert.Equal(t, 1, wakes, "a duplicate stores nothing new, so wakes nobody")

	_, _, err = q.Enqueue(ctx, api.Invocation{})
	require.Error(t, err)
	assert.Equal(t, 1, wakes, "a failed enqueue wakes nobody")
}
