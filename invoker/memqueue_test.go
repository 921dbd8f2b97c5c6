package invoker

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/queue"
)

// memQueue is a small in-memory queue.Queue for these tests, until
// queue/queuetest's Memory double lands; it keeps the interface's claim
// rules (due, oldest first, the Finish match on worker and attempts).
type memQueue struct {
	mu   sync.Mutex
	invs []api.Invocation
}

var _ queue.Queue = (*memQueue)(nil)

func (q *memQueue) Enqueue(_ context.Context, inv api.Invocation) (api.Invocation, bool, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, o := range q.invs {
		if inv.IdempotencyKey != "" && o.Function == inv.Function && o.IdempotencyKey == inv.IdempotencyKey {
			return o, true, nil
		}
	}
	inv.Status = api.InvocationQueued
	q.invs = append(q.invs, inv)
	return inv, false, nil
}

func (q *memQueue) Claim(_ context.Context, worker string, now time.Time, visibility time.Duration, functions ...string) (api.Invocation, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i, inv := range q.invs {
		if len(functions) > 0 && !slices.Contains(functions, inv.Function) {
			continue
		}
		due := (inv.Status == api.InvocationQueued && !inv.NextAttemptAt.After(now)) ||
			(inv.Status == api.InvocationRunning && inv.ClaimedUntil.Before(now))
		if !due {
			continue
		}
		inv.Status, inv.ClaimedBy, inv.ClaimedUntil = api.InvocationRunning, worker, now.Add(visibility)
		inv.Attempts++
		q.invs[i] = inv
		return inv, nil
	}
	return api.Invocation{}, queue.ErrEmpty
}

func (q *memQueue) Finish(_ context.Context, inv api.Invocation) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i, o := range q.invs {
		if o.ID != inv.ID {
			continue
		}
		if o.Status != api.InvocationRunning || o.ClaimedBy != inv.ClaimedBy || o.Attempts != inv.Attempts {
			return queue.ErrClaimLost
		}
		inv.ClaimedBy, inv.ClaimedUntil = "", time.Time{}
		q.invs[i] = inv
		return nil
	}
	return queue.ErrClaimLost
}

func (q *memQueue) Update(_ context.Context, inv api.Invocation) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i, o := range q.invs {
		if o.ID == inv.ID {
			q.invs[i].CallbackStatus = inv.CallbackStatus
			return nil
		}
	}
	return queue.ErrNotFound
}

func (q *memQueue) Get(_ context.Context, function, id string) (api.Invocation, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, o := range q.invs {
		if o.Function == function && o.ID == id {
			return o, nil
		}
	}
	return api.Invocation{}, queue.ErrNotFound
}

func (q *memQueue) List(_ context.Context, function string, limit int) ([]api.Invocation, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []api.Invocation
	for i := len(q.invs) - 1; i >= 0 && (limit == 0 || len(out) < limit); i-- {
		if q.invs[i].Function == function {
			out = append(out, q.invs[i])
		}
	}
	return out, nil
}

func (q *memQueue) Depth(_ context.Context, function string) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := 0
	for _, o := range q.invs {
		if o.Function == function && !o.Status.Final() {
			n++
		}
	}
	return n, nil
}

func (q *memQueue) Expire(_ context.Context, before time.Time) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := len(q.invs)
	q.invs = slices.DeleteFunc(q.invs, func(o api.Invocation) bool {
		return o.Status.Final() && o.CompletedAt.Before(before)
	})
	return n - len(q.invs), nil
}

func (q *memQueue) DeleteFunction(_ context.Context, function string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.invs = slices.DeleteFunc(q.invs, func(o api.Invocation) bool { return o.Function == function })
	return nil
}

func (q *memQueue) Close() error { return nil }
