package queuetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/queue"
)

// Backend is how the suite opens the queue under test.
type Backend struct {
	// Open returns a queue on test t's backing: empty in a new test, and
	// the same data when called again in the same test (after Close), so
	// that Durable can be checked. The backend closes it at cleanup
	// (Close twice must be harmless).
	Open func(t *testing.T) queue.Queue
	// Durable says the backing outlives Close: a queue opened again sees
	// everything acknowledged before.
	Durable bool
}

// Run runs the conformance suite, each case on its own backing.
func Run(t *testing.T, b Backend) {
	tests := []struct {
		name string
		fn   func(t *testing.T, b Backend)
	}{
		{"EnqueueGet", testEnqueueGet},
		{"EnqueueInvalid", testEnqueueInvalid},
		{"Idempotency", testIdempotency},
		{"ClaimOrder", testClaimOrder},
		{"ClaimNotYetDue", testClaimNotYetDue},
		{"ClaimFilter", testClaimFilter},
		{"ClaimInvalid", testClaimInvalid},
		{"VisibilityExpiry", testVisibilityExpiry},
		{"FinishOutcomes", testFinishOutcomes},
		{"FinishInvalid", testFinishInvalid},
		{"Update", testUpdate},
		{"ConcurrentClaimers", testConcurrentClaimers},
		{"Depth", testDepth},
		{"List", testList},
		{"Expire", testExpire},
		{"DeleteFunction", testDeleteFunction},
		{"Copies", testCopies},
		{"ClosedAndCancelled", testClosedAndCancelled},
		{"Reopen", testReopen},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, b) })
	}
}

// t0 is the suite's clock: every time is an argument, nothing sleeps.
var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

const (
	fnA = "default/a"
	fnB = "default/b"
	fnC = "team-x/c"
	vis = 30 * time.Second
)

func newInv(fn, id string, created time.Time) api.Invocation {
	return api.Invocation{
		ID:       id,
		Function: fn,
		Request: api.InvocationRequest{
			Method: http.MethodPost,
			Path:   "/work",
			Header: http.Header{"Content-Type": {"text/plain"}},
			Body:   []byte("payload " + id),
		},
		MaxAttempts: 3,
		CallbackURL: "http://127.0.0.1:9/cb",
		CreatedAt:   created,
	}
}

// same compares invocations by their JSON, which is what every backend
// stores: times compare by instant, not by monotonic reading.
func same(t *testing.T, want, got api.Invocation, msgAndArgs ...any) {
	t.Helper()
	w, err := json.Marshal(want)
	require.NoError(t, err)
	g, err := json.Marshal(got)
	require.NoError(t, err)
	assert.JSONEq(t, string(w), string(g), msgAndArgs...)
}

func ids(invs []api.Invocation) []string {
	out := make([]string, len(invs))
	for i, inv := range invs {
		out[i] = inv.ID
	}
	return out
}

func enqueue(t *testing.T, q queue.Queue, inv api.Invocation) api.Invocation {
	t.Helper()
	stored, dup, err := q.Enqueue(context.Background(), inv)
	require.NoError(t, err)
	require.False(t, dup, "enqueue %s", inv.ID)
	return stored
}

func claim(t *testing.T, q queue.Queue, worker string, now time.Time, fns ...string) api.Invocation {
	t.Helper()
	inv, err := q.Claim(context.Background(), worker, now, vis, fns...)
	require.NoError(t, err)
	return inv
}

func requireEmpty(t *testing.T, q queue.Queue, now time.Time, fns ...string) {
	t.Helper()
	inv, err := q.Claim(context.Background(), "w-empty", now, vis, fns...)
	require.ErrorIs(t, err, queue.ErrEmpty, "claimed %s", inv.ID)
}

// succeed is a worker's successful outcome for a claimed invocation.
func succeed(inv api.Invocation, at time.Time) api.Invocation {
	inv.Status = api.InvocationSucceeded
	inv.Result = &api.InvocationResult{Status: 200, Header: http.Header{"X-Out": {"1"}}, Body: []byte("ok " + inv.ID)}
	inv.UpdatedAt = at
	inv.CompletedAt = at
	return inv
}

// finished is what a stored invocation looks like after Finish(out).
func finished(out api.Invocation) api.Invocation {
	out.ClaimedBy = ""
	out.ClaimedUntil = time.Time{}
	return out
}

func testEnqueueGet(t *testing.T, b Backend) {
	ctx := context.Background()
	q := b.Open(t)
	in := newInv(fnA, "id-1", t0)
	in.IdempotencyKey = "k1"
	in.Status = api.InvocationSucceeded // ignored: a new invocation is Queued
	in.Attempts = 7
	stored := enqueue(t, q, in)

	want := in
	want.Status = api.InvocationQueued
	want.Attempts = 0
	want.UpdatedAt = t0
	same(t, want, stored)
	got, err := q.Get(ctx, fnA, "id-1")
	require.NoError(t, err)
	same(t, want, got)

	_, err = q.Get(ctx, fnB, "id-1")
	assert.ErrorIs(t, err, queue.ErrNotFound, "another function's invocation")
	_, err = q.Get(ctx, fnA, "id-unknown")
	assert.ErrorIs(t, err, queue.ErrNotFound)

	// The same ID again (a retried Enqueue) is a dup of the first.
	again := newInv(fnA, "id-1", t0.Add(time.Minute))
	got, dup, err := q.Enqueue(ctx, again)
	require.NoError(t, err)
	assert.True(t, dup)
	same(t, want, got)
	// An ID another function holds is refused.
	_, _, err = q.Enqueue(ctx, newInv(fnB, "id-1", t0))
	require.Error(t, err)
	assert.False(t, errors.Is(err, queue.ErrNotFound))
	list, err := q.List(ctx, fnB, 0)
	require.NoError(t, err)
	assert.Empty(t, list)
}

func testEnqueueInvalid(t *testing.T, b Backend) {
	ctx := context.Background()
	q := b.Open(t)
	tests := []struct {
		name string
		inv  api.Invocation
	}{
		{"no id", newInv(fnA, "", t0)},
		{"no function", newInv("", "id-x", t0)},
		{"NUL in function", newInv("a\x00b", "id-x", t0)},
		{"no createdAt", newInv(fnA, "id-x", time.Time{})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := q.Enqueue(ctx, tc.inv)
			require.Error(t, err)
		})
	}
	requireEmpty(t, q, t0.Add(time.Hour))
}

func testIdempotency(t *testing.T, b Backend) {
	ctx := context.Background()
	q := b.Open(t)
	first := newInv(fnA, "id-1", t0)
	first.IdempotencyKey = "order-42"
	stored := enqueue(t, q, first)

	second := newInv(fnA, "id-2", t0.Add(time.Second))
	second.IdempotencyKey = "order-42"
	got, dup, err := q.Enqueue(ctx, second)
	require.NoError(t, err)
	assert.True(t, dup, "same key, same function")
	same(t, stored, got)
	_, err = q.Get(ctx, fnA, "id-2")
	assert.ErrorIs(t, err, queue.ErrNotFound, "a dup stores nothing")

	// Still a dup once the first is claimed and finished.
	c := claim(t, q, "w1", t0.Add(time.Second))
	require.NoError(t, q.Finish(ctx, succeed(c, t0.Add(2*time.Second))))
	got, dup, err = q.Enqueue(ctx, second)
	require.NoError(t, err)
	assert.True(t, dup)
	assert.Equal(t, "id-1", got.ID)
	assert.Equal(t, api.InvocationSucceeded, got.Status)

	other := newInv(fnB, "id-3", t0)
	other.IdempotencyKey = "order-42"
	got, dup, err = q.Enqueue(ctx, other)
	require.NoError(t, err)
	assert.False(t, dup, "same key, another function")
	assert.Equal(t, "id-3", got.ID)

	// No key: never a dup.
	enqueue(t, q, newInv(fnA, "id-4", t0))
	enqueue(t, q, newInv(fnA, "id-5", t0))
	list, err := q.List(ctx, fnA, 0)
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"id-1", "id-4", "id-5"}, ids(list))
}

func testClaimOrder(t *testing.T, b Backend) {
	ctx := context.Background()
	q := b.Open(t)
	enqueue(t, q, newInv(fnA, "id-c", t0.Add(2*time.Second)))
	enqueue(t, q, newInv(fnB, "id-a", t0))
	enqueue(t, q, newInv(fnA, "id-b", t0.Add(time.Second)))

	now := t0.Add(10 * time.Second)
	var got []string
	for range 3 {
		inv := claim(t, q, "w1", now)
		got = append(got, inv.ID)
		assert.Equal(t, api.InvocationRunning, inv.Status)
		assert.Equal(t, 1, inv.Attempts)
		assert.Equal(t, "w1", inv.ClaimedBy)
		assert.True(t, inv.ClaimedUntil.Equal(now.Add(vis)), "claimedUntil %s", inv.ClaimedUntil)
		assert.True(t, inv.UpdatedAt.Equal(now), "updatedAt %s", inv.UpdatedAt)
		stored, err := q.Get(ctx, inv.Function, inv.ID)
		require.NoError(t, err)
		same(t, inv, stored)
	}
	assert.Equal(t, []string{"id-a", "id-b", "id-c"}, got, "oldest due first")
	requireEmpty(t, q, now)
}

func testClaimNotYetDue(t *testing.T, b Backend) {
	ctx := context.Background()
	q := b.Open(t)
	later := newInv(fnA, "id-later", t0)
	later.NextAttemptAt = t0.Add(time.Minute)
	enqueue(t, q, later)
	enqueue(t, q, newInv(fnA, "id-future", t0.Add(time.Hour))) // created ahead of now: due then

	requireEmpty(t, q, t0)
	requireEmpty(t, q, t0.Add(time.Minute-time.Millisecond))
	inv := claim(t, q, "w1", t0.Add(time.Minute))
	assert.Equal(t, "id-later", inv.ID, "due at exactly NextAttemptAt")

	// A retry is due at its NextAttemptAt, with the attempt count kept.
	inv.Status = api.InvocationQueued
	inv.LastError = "503 from the function"
	inv.NextAttemptAt = t0.Add(2 * time.Minute)
	inv.UpdatedAt = t0.Add(time.Minute)
	require.NoError(t, q.Finish(ctx, inv))
	stored, err := q.Get(ctx, fnA, "id-later")
	require.NoError(t, err)
	same(t, finished(inv), stored)
	requireEmpty(t, q, t0.Add(2*time.Minute-time.Millisecond))
	again := claim(t, q, "w2", t0.Add(2*time.Minute))
	assert.Equal(t, "id-later", again.ID)
	assert.Equal(t, 2, again.Attempts)
	assert.Equal(t, "503 from the function", again.LastError)
	require.NoError(t, q.Finish(ctx, succeed(again, t0.Add(2*time.Minute))))
	requireEmpty(t, q, t0.Add(time.Hour-time.Millisecond))
	assert.Equal(t, "id-future", claim(t, q, "w1", t0.Add(time.Hour)).ID)
}

func testClaimFilter(t *testing.T, b Backend) {
	q := b.Open(t)
	enqueue(t, q, newInv(fnA, "id-a", t0))
	enqueue(t, q, newInv(fnB, "id-b", t0.Add(time.Second)))
	enqueue(t, q, newInv(fnC, "id-c", t0.Add(2*time.Second)))
	now := t0.Add(time.Minute)

	assert.Equal(t, "id-b", claim(t, q, "w", now, fnC, fnB).ID, "oldest of the named functions")
	requireEmpty(t, q, now, fnB)
	requireEmpty(t, q, now, "default/none")
	assert.Equal(t, "id-c", claim(t, q, "w", now, fnC).ID)
	assert.Equal(t, "id-a", claim(t, q, "w", now).ID)
	requireEmpty(t, q, now)
}

func testClaimInvalid(t *testing.T, b Backend) {
	ctx := context.Background()
	q := b.Open(t)
	enqueue(t, q, newInv(fnA, "id-1", t0))
	_, err := q.Claim(ctx, "", t0, vis)
	require.Error(t, err, "no worker")
	_, err = q.Claim(ctx, "w", t0, 0)
	require.Error(t, err, "no visibility")
	assert.False(t, errors.Is(err, queue.ErrEmpty))
	// Nothing was claimed by the bad calls.
	assert.Equal(t, 1, claim(t, q, "w", t0).Attempts)
}

func testVisibilityExpiry(t *testing.T, b Backend) {
	ctx := context.Background()
	q := b.Open(t)
	enqueue(t, q, newInv(fnA, "id-1", t0))
	first := claim(t, q, "w1", t0)
	requireEmpty(t, q, t0.Add(vis)) // the claim holds through ClaimedUntil

	second := claim(t, q, "w2", t0.Add(vis+time.Millisecond))
	assert.Equal(t, "id-1", second.ID)
	assert.Equal(t, 2, second.Attempts)
	assert.Equal(t, "w2", second.ClaimedBy)

	err := q.Finish(ctx, succeed(first, t0.Add(vis+time.Second)))
	require.ErrorIs(t, err, queue.ErrClaimLost, "the first worker's claim lapsed")
	// The same worker claiming again does not revive an older attempt.
	third := claim(t, q, "w2", t0.Add(2*vis+time.Second))
	assert.Equal(t, 3, third.Attempts)
	require.ErrorIs(t, q.Finish(ctx, succeed(second, t0.Add(2*vis+time.Second))), queue.ErrClaimLost)

	out := succeed(third, t0.Add(2*vis+2*time.Second))
	require.NoError(t, q.Finish(ctx, out))
	require.ErrorIs(t, q.Finish(ctx, out), queue.ErrClaimLost, "finished already")
	stored, err := q.Get(ctx, fnA, "id-1")
	require.NoError(t, err)
	same(t, finished(out), stored)
	requireEmpty(t, q, t0.Add(time.Hour))
}

func testFinishOutcomes(t *testing.T, b Backend) {
	ctx := context.Background()
	done := t0.Add(5 * time.Second)
	tests := []struct {
		name    string
		outcome func(api.Invocation) api.Invocation
		depth   int
	}{
		{"succeeded", func(inv api.Invocation) api.Invocation { return succeed(inv, done) }, 0},
		{"failed", func(inv api.Invocation) api.Invocation {
			inv.Status = api.InvocationFailed
			inv.Result = &api.InvocationResult{Status: 400, Body: []byte("bad"), Truncated: true}
			inv.CompletedAt, inv.UpdatedAt = done, done
			return inv
		}, 0},
		{"dead letter", func(inv api.Invocation) api.Invocation {
			inv.Status = api.InvocationDeadLetter
			inv.LastError = "dial tcp: connection refused"
			inv.CompletedAt, inv.UpdatedAt = done, done
			return inv
		}, 0},
		{"retry", func(inv api.Invocation) api.Invocation {
			inv.Status = api.InvocationQueued
			inv.LastError = "timeout"
			inv.NextAttemptAt = done.Add(time.Second)
			inv.UpdatedAt = done
			return inv
		}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := b.Open(t)
			enqueue(t, q, newInv(fnA, "id-1", t0))
			out := tc.outcome(claim(t, q, "w1", t0))
			require.NoError(t, q.Finish(ctx, out))
			stored, err := q.Get(ctx, fnA, "id-1")
			require.NoError(t, err)
			same(t, finished(out), stored)
			depth, err := q.Depth(ctx, fnA)
			require.NoError(t, err)
			assert.Equal(t, tc.depth, depth)
			if tc.depth == 0 {
				requireEmpty(t, q, t0.Add(time.Hour))
			}
		})
	}
}

func testFinishInvalid(t *testing.T, b Backend) {
	ctx := context.Background()
	q := b.Open(t)
	queued := enqueue(t, q, newInv(fnA, "id-0", t0))
	queued.ClaimedBy = "w1"
	queued.Attempts = 1
	require.ErrorIs(t, q.Finish(ctx, succeed(queued, t0)), queue.ErrClaimLost, "never claimed")
	ghost := succeed(newInv(fnA, "id-ghost", t0), t0)
	ghost.ClaimedBy, ghost.Attempts = "w1", 1
	require.ErrorIs(t, q.Finish(ctx, ghost), queue.ErrClaimLost, "unknown invocation")

	inv := claim(t, q, "w1", t0)
	running := inv // status still Running: not an outcome
	err := q.Finish(ctx, running)
	require.Error(t, err)
	assert.False(t, errors.Is(err, queue.ErrClaimLost))
	noCompletion := inv
	noCompletion.Status = api.InvocationSucceeded
	require.Error(t, q.Finish(ctx, noCompletion), "final without completedAt")
	wrongFn := succeed(inv, t0)
	wrongFn.Function = fnB
	require.ErrorIs(t, q.Finish(ctx, wrongFn), queue.ErrClaimLost, "another function's invocation")

	// The claim survived the bad calls.
	require.NoError(t, q.Finish(ctx, succeed(inv, t0.Add(time.Second))))
}

func testUpdate(t *testing.T, b Backend) {
	ctx := context.Background()
	q := b.Open(t)
	enqueue(t, q, newInv(fnA, "id-1", t0))
	inv := claim(t, q, "w1", t0)
	require.Error(t, q.Update(ctx, inv), "not final yet")
	out := succeed(inv, t0.Add(time.Second))
	require.NoError(t, q.Finish(ctx, out))

	upd := finished(out)
	upd.CallbackStatus = "delivered: 204"
	upd.UpdatedAt = t0.Add(2 * time.Second)
	tampered := upd
	tampered.Status = api.InvocationQueued // only the callback fields change
	tampered.Attempts = 99
	require.NoError(t, q.Update(ctx, tampered))
	stored, err := q.Get(ctx, fnA, "id-1")
	require.NoError(t, err)
	same(t, upd, stored)
	requireEmpty(t, q, t0.Add(time.Hour))

	require.ErrorIs(t, q.Update(ctx, newInv(fnA, "id-unknown", t0)), queue.ErrNotFound)
	other := upd
	other.Function = fnB
	require.ErrorIs(t, q.Update(ctx, other), queue.ErrNotFound)
}

func testConcurrentClaimers(t *testing.T, b Backend) {
	ctx := context.Background()
	q := b.Open(t)
	const n, workers = 60, 8
	for i := range n {
		enqueue(t, q, newInv(fnA, fmt.Sprintf("id-%03d", i), t0.Add(time.Duration(i)*time.Millisecond)))
	}
	now := t0.Add(time.Minute)
	var mu sync.Mutex
	claimed := map[string][]string{}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		worker := fmt.Sprintf("w%d", w)
		wg.Go(func() {
			for {
				inv, err := q.Claim(ctx, worker, now, vis)
				if errors.Is(err, queue.ErrEmpty) {
					return
				}
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				claimed[inv.ID] = append(claimed[inv.ID], worker)
				mu.Unlock()
				if err := q.Finish(ctx, succeed(inv, now)); err != nil {
					errs <- fmt.Errorf("finish %s by %s: %w", inv.ID, worker, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	assert.Len(t, claimed, n)
	for id, by := range claimed {
		assert.Len(t, by, 1, "%s claimed by %v", id, by)
	}
	depth, err := q.Depth(ctx, fnA)
	require.NoError(t, err)
	assert.Zero(t, depth)
}

func testDepth(t *testing.T, b Backend) {
	ctx := context.Background()
	q := b.Open(t)
	depth := func(fn string) int {
		t.Helper()
		n, err := q.Depth(ctx, fn)
		require.NoError(t, err)
		return n
	}
	assert.Zero(t, depth(fnA))
	for i := range 3 {
		enqueue(t, q, newInv(fnA, fmt.Sprintf("id-a%d", i), t0.Add(time.Duration(i)*time.Second)))
	}
	enqueue(t, q, newInv(fnB, "id-b", t0))
	assert.Equal(t, 3, depth(fnA))
	inv := claim(t, q, "w", t0.Add(time.Minute), fnA)
	assert.Equal(t, 3, depth(fnA), "Running counts")
	require.NoError(t, q.Finish(ctx, succeed(inv, t0.Add(time.Minute))))
	assert.Equal(t, 2, depth(fnA), "final does not")
	assert.Equal(t, 1, depth(fnB))
	assert.Zero(t, depth("default/none"))
}

func testList(t *testing.T, b Backend) {
	ctx := context.Background()
	q := b.Open(t)
	for _, i := range []int{2, 0, 4, 1, 3} {
		enqueue(t, q, newInv(fnA, fmt.Sprintf("id-%d", i), t0.Add(time.Duration(i)*time.Second)))
	}
	enqueue(t, q, newInv(fnB, "id-b", t0.Add(time.Hour)))
	inv := claim(t, q, "w", t0.Add(time.Minute), fnA)
	require.NoError(t, q.Finish(ctx, succeed(inv, t0.Add(time.Minute))))

	all, err := q.List(ctx, fnA, 0)
	require.NoError(t, err)
	assert.Equal(t, []string{"id-4", "id-3", "id-2", "id-1", "id-0"}, ids(all), "newest first")
	assert.Equal(t, api.InvocationSucceeded, all[4].Status, "records as they are now")
	two, err := q.List(ctx, fnA, 2)
	require.NoError(t, err)
	assert.Equal(t, []string{"id-4", "id-3"}, ids(two))
	many, err := q.List(ctx, fnA, 100)
	require.NoError(t, err)
	assert.Len(t, many, 5)
	negative, err := q.List(ctx, fnA, -1)
	require.NoError(t, err)
	assert.Len(t, negative, 5, "a negative limit is no limit")
	none, err := q.List(ctx, "default/none", 0)
	require.NoError(t, err)
	assert.Empty(t, none)
}

func testExpire(t *testing.T, b Backend) {
	ctx := context.Background()
	q := b.Open(t)
	for i, key := range []string{"k0", "k1", "k2"} {
		inv := newInv(fnA, fmt.Sprintf("id-%d", i), t0.Add(time.Duration(i)*time.Second))
		inv.IdempotencyKey = key
		enqueue(t, q, inv)
	}
	// id-0 completes at t0+1m, id-1 at t0+2m, id-2 stays Queued.
	for i := range 2 {
		inv := claim(t, q, "w", t0.Add(time.Duration(i+1)*time.Minute))
		require.NoError(t, q.Finish(ctx, succeed(inv, t0.Add(time.Duration(i+1)*time.Minute))))
	}

	n, err := q.Expire(ctx, t0.Add(time.Minute))
	require.NoError(t, err)
	assert.Zero(t, n, "completed exactly at before stays")
	n, err = q.Expire(ctx, t0.Add(time.Minute+time.Millisecond))
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	_, err = q.Get(ctx, fnA, "id-0")
	require.ErrorIs(t, err, queue.ErrNotFound)
	_, err = q.Get(ctx, fnA, "id-1")
	require.NoError(t, err)

	// The expired one's idempotency key is free again; the others are not.
	reuse := newInv(fnA, "id-new", t0.Add(time.Hour))
	reuse.IdempotencyKey = "k0"
	enqueue(t, q, reuse)
	kept := newInv(fnA, "id-other", t0.Add(time.Hour))
	kept.IdempotencyKey = "k1"
	got, dup, err := q.Enqueue(ctx, kept)
	require.NoError(t, err)
	assert.True(t, dup)
	assert.Equal(t, "id-1", got.ID)

	n, err = q.Expire(ctx, t0.Add(24*time.Hour))
	require.NoError(t, err)
	assert.Equal(t, 1, n, "live invocations never expire")
	list, err := q.List(ctx, fnA, 0)
	require.NoError(t, err)
	assert.Equal(t, []string{"id-new", "id-2"}, ids(list))
	depth, err := q.Depth(ctx, fnA)
	require.NoError(t, err)
	assert.Equal(t, 2, depth)
}

func testDeleteFunction(t *testing.T, b Backend) {
	ctx := context.Background()
	q := b.Open(t)
	for i := range 3 {
		inv := newInv(fnA, fmt.Sprintf("id-a%d", i), t0.Add(time.Duration(i)*time.Second))
		inv.IdempotencyKey = fmt.Sprintf("k%d", i)
		enqueue(t, q, inv)
	}
	enqueue(t, q, newInv(fnB, "id-b", t0.Add(time.Hour)))
	done := claim(t, q, "w", t0.Add(time.Minute))
	require.NoError(t, q.Finish(ctx, succeed(done, t0.Add(time.Minute))))
	running := claim(t, q, "w", t0.Add(time.Minute)) // a1, mid-delivery

	require.NoError(t, q.DeleteFunction(ctx, fnA))
	list, err := q.List(ctx, fnA, 0)
	require.NoError(t, err)
	assert.Empty(t, list)
	depth, err := q.Depth(ctx, fnA)
	require.NoError(t, err)
	assert.Zero(t, depth)
	_, err = q.Get(ctx, fnA, "id-a2")
	require.ErrorIs(t, err, queue.ErrNotFound)
	require.ErrorIs(t, q.Finish(ctx, succeed(running, t0.Add(time.Minute))), queue.ErrClaimLost)
	assert.Equal(t, "id-b", claim(t, q, "w", t0.Add(2*time.Hour)).ID, "other functions untouched")
	requireEmpty(t, q, t0.Add(2*time.Hour))

	// Its idempotency keys went with it.
	again := newInv(fnA, "id-again", t0.Add(time.Hour))
	again.IdempotencyKey = "k0"
	enqueue(t, q, again)
	require.NoError(t, q.DeleteFunction(ctx, "default/none"))
}

func testCopies(t *testing.T, b Backend) {
	ctx := context.Background()
	q := b.Open(t)
	in := newInv(fnA, "id-1", t0)
	stored := enqueue(t, q, in)
	in.Request.Body[0] = 'X'
	in.Request.Header.Set("Content-Type", "changed")
	stored.Request.Body[1] = 'Y'
	got, err := q.Get(ctx, fnA, "id-1")
	require.NoError(t, err)
	assert.Equal(t, "payload id-1", string(got.Request.Body))
	assert.Equal(t, "text/plain", got.Request.Header.Get("Content-Type"))
}

func testClosedAndCancelled(t *testing.T, b Backend) {
	q := b.Open(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err := q.Enqueue(ctx, newInv(fnA, "id-1", t0))
	require.Error(t, err)
	_, err = q.Claim(ctx, "w", t0, vis)
	require.Error(t, err)
	assert.False(t, errors.Is(err, queue.ErrEmpty))

	enqueue(t, q, newInv(fnA, "id-2", t0))
	require.NoError(t, q.Close())
	_, err = q.Get(context.Background(), fnA, "id-2")
	require.Error(t, err)
	_, err = q.Claim(context.Background(), "w", t0, vis)
	require.Error(t, err)
	assert.False(t, errors.Is(err, queue.ErrEmpty))
	_, _, err = q.Enqueue(context.Background(), newInv(fnA, "id-3", t0))
	require.Error(t, err)
}

func testReopen(t *testing.T, b Backend) {
	if !b.Durable {
		t.Skip("the backend does not persist")
	}
	ctx := context.Background()
	q := b.Open(t)
	for i := range 4 {
		inv := newInv(fnA, fmt.Sprintf("id-%d", i), t0.Add(time.Duration(i)*time.Second))
		inv.IdempotencyKey = fmt.Sprintf("k%d", i)
		enqueue(t, q, inv)
	}
	out := succeed(claim(t, q, "w1", t0.Add(time.Minute)), t0.Add(time.Minute))
	require.NoError(t, q.Finish(ctx, out))
	running := claim(t, q, "w1", t0.Add(time.Minute)) // id-1: the worker dies with ebbd
	before, err := q.List(ctx, fnA, 0)
	require.NoError(t, err)
	require.NoError(t, q.Close())

	q = b.Open(t)
	after, err := q.List(ctx, fnA, 0)
	require.NoError(t, err)
	require.Len(t, after, len(before))
	for i := range before {
		same(t, before[i], after[i])
	}
	depth, err := q.Depth(ctx, fnA)
	require.NoError(t, err)
	assert.Equal(t, 3, depth)
	dup := newInv(fnA, "id-dup", t0)
	dup.IdempotencyKey = "k0"
	got, isDup, err := q.Enqueue(ctx, dup)
	require.NoError(t, err)
	assert.True(t, isDup)
	assert.Equal(t, "id-0", got.ID)

	// The lapsed claim is taken again, after the ones due before it.
	now := t0.Add(time.Hour)
	assert.Equal(t, "id-2", claim(t, q, "w2", now).ID)
	assert.Equal(t, "id-3", claim(t, q, "w2", now).ID)
	again := claim(t, q, "w2", now)
	assert.Equal(t, "id-1", again.ID)
	assert.Equal(t, 2, again.Attempts)
	require.ErrorIs(t, q.Finish(ctx, succeed(running, now)), queue.ErrClaimLost)
}
