package cron

import (
	"context"
	"sync"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/queue"
)

// memQueue is the part of a queue cron uses, in memory, with
// idempotency keys as queue.Queue documents them. (queue/queuetest.Memory
// replaces it once it is on main.)
type memQueue struct {
	mu    sync.Mutex
	invs  map[string]api.Invocation // by id
	keys  map[string]string         // function + key → id
	order []string
	// fail, when set, is Enqueue's next answer (once).
	fail error
}

func newMemQueue() *memQueue {
	return &memQueue{invs: map[string]api.Invocation{}, keys: map[string]string{}}
}

func (q *memQueue) Enqueue(_ context.Context, inv api.Invocation) (api.Invocation, bool, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if err := q.fail; err != nil {
		q.fail = nil
		return api.Invocation{}, false, err
	}
	if inv.IdempotencyKey != "" {
		if id, ok := q.keys[inv.Function+"\x00"+inv.IdempotencyKey]; ok {
			return q.invs[id], true, nil
		}
		q.keys[inv.Function+"\x00"+inv.IdempotencyKey] = inv.ID
	}
	inv.Status = api.InvocationQueued
	q.invs[inv.ID] = inv
	q.order = append(q.order, inv.ID)
	return inv, false, nil
}

func (q *memQueue) Get(_ context.Context, function, id string) (api.Invocation, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	inv, ok := q.invs[id]
	if !ok || inv.Function != function {
		return api.Invocation{}, queue.ErrNotFound
	}
	return inv, nil
}

// all returns the invocations in enqueue order.
func (q *memQueue) all() []api.Invocation {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]api.Invocation, 0, len(q.order))
	for _, id := range q.order {
		out = append(out, q.invs[id])
	}
	return out
}

// finish sets every invocation's status to s.
func (q *memQueue) finish(s api.InvocationStatus) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for id, inv := range q.invs {
		inv.Status = s
		q.invs[id] = inv
	}
}
