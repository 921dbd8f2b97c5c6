package queue

import (
	"context"
	"errors"
	"time"

	"github.com/ebbrun/ebb/api"
)

var (
	// ErrEmpty is Claim's answer when nothing is due.
	ErrEmpty = errors.New("queue: nothing due")
	// ErrNotFound is Get's answer for an unknown invocation.
	ErrNotFound = errors.New("queue: no such invocation")
	// ErrClaimLost is Finish's answer when the invocation is no longer
	// claimed by this attempt: its claim lapsed and another worker took
	// it, or it was finished already. The caller drops its outcome.
	ErrClaimLost = errors.New("queue: claim lost")
)

// Queue is the durable queue of asynchronous invocations. Every method is
// safe for concurrent use, in one process and across processes sharing
// the backend.
type Queue interface {
	// Enqueue stores inv (ID, Function, Request, MaxAttempts, CreatedAt
	// set by the caller; Status is set to Queued) durably before it
	// returns. When inv has an IdempotencyKey that an invocation of the
	// same function holds within retention, nothing is stored and that
	// invocation comes back with dup true. So does an ID already stored
	// for the same function, which makes retrying an Enqueue whose answer
	// was lost harmless; an ID another function holds is an error, as are
	// an empty ID or Function and a zero CreatedAt. A NextAttemptAt set by
	// the caller delays the first attempt.
	Enqueue(ctx context.Context, inv api.Invocation) (stored api.Invocation, dup bool, err error)
	// Claim takes the oldest due invocation of any function: Queued with
	// NextAttemptAt not after now, or Running with ClaimedUntil before
	// now. It becomes Running, claimed by worker until now+visibility,
	// with Attempts incremented and UpdatedAt now, and is returned.
	// ErrEmpty when none is due. Functions, when non-empty, limits the
	// claim to those functions. "Oldest due" orders by the time each
	// became due (NextAttemptAt, else CreatedAt; ClaimedUntil for a lapsed
	// claim), ties by ID.
	Claim(ctx context.Context, worker string, now time.Time, visibility time.Duration, functions ...string) (api.Invocation, error)
	// Finish records the outcome of a claimed attempt: inv as returned by
	// Claim, with Status set to a final status, or to Queued with
	// NextAttemptAt for a retry, and Result, LastError, UpdatedAt,
	// CompletedAt as they now are (a final status needs CompletedAt; a
	// retry with no NextAttemptAt is due at once). It fails with
	// ErrClaimLost unless the stored invocation is Running under the same
	// worker and Attempts; a claim that lapsed but was not taken again can
	// still be finished.
	Finish(ctx context.Context, inv api.Invocation) error
	// Update rewrites a final invocation's callback fields
	// (CallbackStatus, and UpdatedAt if later) after it was finished; the
	// rest of inv is ignored. ErrNotFound for an unknown invocation, an
	// error for one not final.
	Update(ctx context.Context, inv api.Invocation) error
	// Get returns one invocation of function, or ErrNotFound.
	Get(ctx context.Context, function, id string) (api.Invocation, error)
	// List returns function's invocations, newest first (by CreatedAt),
	// at most limit (0 or less: all).
	List(ctx context.Context, function string, limit int) ([]api.Invocation, error)
	// Depth counts function's invocations that are Queued or Running:
	// the demand the autoscaler sees.
	Depth(ctx context.Context, function string) (int, error)
	// Expire deletes final invocations completed before before, and
	// their idempotency keys; it returns how many went.
	Expire(ctx context.Context, before time.Time) (int, error)
	// DeleteFunction drops every invocation of function (its delete).
	DeleteFunction(ctx context.Context, function string) error
	Close() error
}
