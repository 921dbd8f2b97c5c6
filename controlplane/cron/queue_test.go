package cron

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/queue"
	"github.com/ebbrun/ebb/queue/queuetest"
)

// testQueue is a queue (queuetest.Memory unless a test gives a real
// backend) whose Enqueue can be made to fail once, and which the tests
// drive through its whole lifecycle.
type testQueue struct {
	queue.Queue
	mu sync.Mutex
	// fail, when set, is Enqueue's next answer (once).
	fail error
}

func newTestQueue() *testQueue { return &testQueue{Queue: queuetest.NewMemory()} }

func (q *testQueue) Enqueue(ctx context.Context, inv api.Invocation) (api.Invocation, bool, error) {
	q.mu.Lock()
	err := q.fail
	q.fail = nil
	q.mu.Unlock()
	if err != nil {
		return api.Invocation{}, false, err
	}
	return q.Queue.Enqueue(ctx, inv)
}

// all returns function hello's invocations, oldest first.
func (q *testQueue) all(t testing.TB) []api.Invocation {
	t.Helper()
	invs, err := q.List(context.Background(), "hello", 0)
	require.NoError(t, err)
	slices.Reverse(invs)
	return invs
}

// finish delivers every queued invocation with the outcome s, as a
// worker would.
func (q *testQueue) finish(t testing.TB, s api.InvocationStatus) {
	t.Helper()
	ctx := context.Background()
	far := time.Unix(1<<40, 0)
	for {
		inv, err := q.Claim(ctx, "worker", far, time.Minute)
		if errors.Is(err, queue.ErrEmpty) {
			return
		}
		require.NoError(t, err)
		inv.Status, inv.CompletedAt, inv.UpdatedAt = s, far, far
		require.NoError(t, q.Finish(ctx, inv))
	}
}
