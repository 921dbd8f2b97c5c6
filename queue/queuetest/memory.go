package queuetest

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/queue"
	"github.com/ebbrun/ebb/queue/internal/record"
)

// Memory is an in-memory queue.Queue: a test double for the unit tests of
// the packages that use a queue (workers, the router, cron). It keeps the
// whole contract, checks included, and passes the conformance suite, but
// nothing survives the process and every method scans all invocations, so
// it is for tests only.
type Memory struct {
	mu     sync.Mutex
	recs   map[string]api.Invocation // deep copies: callers never share memory with the queue
	idem   map[idemKey]string
	closed bool
}

type idemKey struct{ function, key string }

var _ queue.Queue = (*Memory)(nil)

// NewMemory returns an empty Memory.
func NewMemory() *Memory {
	return &Memory{recs: map[string]api.Invocation{}, idem: map[idemKey]string{}}
}

var errClosed = errors.New("queue: memory queue closed")

func (m *Memory) lock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return errClosed
	}
	return nil
}

func (m *Memory) get(id string) (api.Invocation, bool) {
	inv, ok := m.recs[id]
	return clone(inv), ok
}

func (m *Memory) put(inv api.Invocation) error {
	m.recs[inv.ID] = clone(inv)
	return nil
}

func clone(inv api.Invocation) api.Invocation {
	inv.Request.Header = inv.Request.Header.Clone()
	inv.Request.Body = bytes.Clone(inv.Request.Body)
	if inv.Result != nil {
		r := *inv.Result
		r.Header = r.Header.Clone()
		r.Body = bytes.Clone(r.Body)
		inv.Result = &r
	}
	return inv
}

// Enqueue implements queue.Queue.
func (m *Memory) Enqueue(ctx context.Context, inv api.Invocation) (api.Invocation, bool, error) {
	inv, err := record.ForEnqueue(inv)
	if err != nil {
		return api.Invocation{}, false, fmt.Errorf("enqueue: %w", err)
	}
	if err := m.lock(ctx); err != nil {
		return api.Invocation{}, false, err
	}
	defer m.mu.Unlock()
	ik := idemKey{inv.Function, inv.IdempotencyKey}
	if inv.IdempotencyKey != "" {
		if id, ok := m.idem[ik]; ok {
			if old, ok := m.get(id); ok {
				return old, true, nil
			}
		}
	}
	if old, ok := m.get(inv.ID); ok {
		if old.Function != inv.Function {
			return api.Invocation{}, false, fmt.Errorf("enqueue %s: id taken by function %s", inv.ID, old.Function)
		}
		return old, true, nil
	}
	if err := m.put(inv); err != nil {
		return api.Invocation{}, false, err
	}
	if inv.IdempotencyKey != "" {
		m.idem[ik] = inv.ID
	}
	return inv, false, nil
}

// Claim implements queue.Queue.
func (m *Memory) Claim(ctx context.Context, worker string, now time.Time, visibility time.Duration, functions ...string) (api.Invocation, error) {
	if err := record.CheckClaim(worker, visibility, functions); err != nil {
		return api.Invocation{}, err
	}
	if err := m.lock(ctx); err != nil {
		return api.Invocation{}, err
	}
	defer m.mu.Unlock()
	var best api.Invocation
	var bestDue time.Time
	found := false
	for _, inv := range m.recs {
		due, ok := record.Due(inv)
		if !ok || due.After(now) || (len(functions) > 0 && !slices.Contains(functions, inv.Function)) {
			continue
		}
		if !found || due.Before(bestDue) || (due.Equal(bestDue) && inv.ID < best.ID) {
			best, bestDue, found = inv, due, true
		}
	}
	if !found {
		return api.Invocation{}, queue.ErrEmpty
	}
	best = record.Claimed(best, worker, now, visibility)
	if err := m.put(best); err != nil {
		return api.Invocation{}, err
	}
	return best, nil
}

// Finish implements queue.Queue.
func (m *Memory) Finish(ctx context.Context, inv api.Invocation) error {
	worker, attempts := inv.ClaimedBy, inv.Attempts
	inv, err := record.ForFinish(inv)
	if err != nil {
		return err
	}
	if err := m.lock(ctx); err != nil {
		return err
	}
	defer m.mu.Unlock()
	old, ok := m.get(inv.ID)
	if !ok || old.Function != inv.Function || old.Status != api.InvocationRunning || old.ClaimedBy != worker || old.Attempts != attempts {
		return fmt.Errorf("finish %s: %w", inv.ID, queue.ErrClaimLost)
	}
	return m.put(inv)
}

// Update implements queue.Queue.
func (m *Memory) Update(ctx context.Context, inv api.Invocation) error {
	if err := m.lock(ctx); err != nil {
		return err
	}
	defer m.mu.Unlock()
	old, ok := m.get(inv.ID)
	if !ok || old.Function != inv.Function {
		return fmt.Errorf("update %s: %w", inv.ID, queue.ErrNotFound)
	}
	upd, err := record.Update(old, inv)
	if err != nil {
		return err
	}
	return m.put(upd)
}

// Get implements queue.Queue.
func (m *Memory) Get(ctx context.Context, function, id string) (api.Invocation, error) {
	if err := m.lock(ctx); err != nil {
		return api.Invocation{}, err
	}
	defer m.mu.Unlock()
	inv, ok := m.get(id)
	if !ok || inv.Function != function {
		return api.Invocation{}, fmt.Errorf("get %s: %w", id, queue.ErrNotFound)
	}
	return inv, nil
}

// List implements queue.Queue.
func (m *Memory) List(ctx context.Context, function string, limit int) ([]api.Invocation, error) {
	if err := m.lock(ctx); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	var out []api.Invocation
	for _, inv := range m.recs {
		if inv.Function == function {
			out = append(out, clone(inv))
		}
	}
	slices.SortFunc(out, func(a, b api.Invocation) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return cmp.Compare(b.ID, a.ID)
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// Depth implements queue.Queue.
func (m *Memory) Depth(ctx context.Context, function string) (int, error) {
	if err := m.lock(ctx); err != nil {
		return 0, err
	}
	defer m.mu.Unlock()
	n := 0
	for _, inv := range m.recs {
		if inv.Function == function && !inv.Status.Final() {
			n++
		}
	}
	return n, nil
}

// Expire implements queue.Queue.
func (m *Memory) Expire(ctx context.Context, before time.Time) (int, error) {
	if err := m.lock(ctx); err != nil {
		return 0, err
	}
	defer m.mu.Unlock()
	n := 0
	for _, inv := range m.recs {
		if inv.Status.Final() && inv.CompletedAt.Before(before) {
			m.drop(inv)
			n++
		}
	}
	return n, nil
}

// DeleteFunction implements queue.Queue.
func (m *Memory) DeleteFunction(ctx context.Context, function string) error {
	if err := m.lock(ctx); err != nil {
		return err
	}
	defer m.mu.Unlock()
	for _, inv := range m.recs {
		if inv.Function == function {
			m.drop(inv)
		}
	}
	return nil
}

func (m *Memory) drop(inv api.Invocation) {
	delete(m.recs, inv.ID)
	ik := idemKey{inv.Function, inv.IdempotencyKey}
	if inv.IdempotencyKey != "" && m.idem[ik] == inv.ID {
		delete(m.idem, ik)
	}
}

// Close implements queue.Queue; later calls fail.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}
