package record

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ebbrun/ebb/api"
)

// ForEnqueue checks inv and returns it as Enqueue stores it: Queued, with no
// attempts, claim, result or completion yet, and UpdatedAt set.
func ForEnqueue(inv api.Invocation) (api.Invocation, error) {
	if inv.ID == "" {
		return api.Invocation{}, errors.New("invocation id is empty")
	}
	if err := CheckFunction(inv.Function); err != nil {
		return api.Invocation{}, err
	}
	if inv.CreatedAt.IsZero() {
		return api.Invocation{}, fmt.Errorf("invocation %s: createdAt is unset", inv.ID)
	}
	inv.Status = api.InvocationQueued
	inv.Attempts = 0
	inv.ClaimedBy = ""
	inv.ClaimedUntil = time.Time{}
	inv.CompletedAt = time.Time{}
	inv.Result = nil
	inv.CallbackStatus = ""
	if inv.UpdatedAt.IsZero() {
		inv.UpdatedAt = inv.CreatedAt
	}
	return inv, nil
}

// CheckFunction rejects names the indexes cannot hold: the backends join a
// function and a key with a NUL byte.
func CheckFunction(fn string) error {
	if fn == "" {
		return errors.New("function is empty")
	}
	if strings.IndexByte(fn, 0) >= 0 {
		return fmt.Errorf("function %q contains a NUL byte", fn)
	}
	return nil
}

// CheckClaim checks Claim's arguments.
func CheckClaim(worker string, visibility time.Duration, functions []string) error {
	if worker == "" {
		return errors.New("claim: worker is empty")
	}
	if visibility <= 0 {
		return fmt.Errorf("claim: visibility %s must be positive", visibility)
	}
	for _, fn := range functions {
		if err := CheckFunction(fn); err != nil {
			return fmt.Errorf("claim: %w", err)
		}
	}
	return nil
}

// Claimed is inv once worker claims it at now.
func Claimed(inv api.Invocation, worker string, now time.Time, visibility time.Duration) api.Invocation {
	inv.Status = api.InvocationRunning
	inv.Attempts++
	inv.ClaimedBy = worker
	inv.ClaimedUntil = now.Add(visibility)
	inv.UpdatedAt = now
	return inv
}

// ForFinish checks the outcome a worker hands to Finish and returns the
// record to store: the claim cleared, and a retry's NextAttemptAt kept.
func ForFinish(inv api.Invocation) (api.Invocation, error) {
	if inv.ID == "" || inv.ClaimedBy == "" {
		return api.Invocation{}, errors.New("finish: not a claimed invocation (id or claimedBy empty)")
	}
	switch {
	case inv.Status == api.InvocationQueued:
		inv.CompletedAt = time.Time{}
	case inv.Status.Final():
		if inv.CompletedAt.IsZero() {
			return api.Invocation{}, fmt.Errorf("finish %s: %s without completedAt", inv.ID, inv.Status)
		}
		inv.NextAttemptAt = time.Time{}
	default:
		return api.Invocation{}, fmt.Errorf("finish %s: status %q is neither final nor Queued", inv.ID, inv.Status)
	}
	inv.ClaimedBy = ""
	inv.ClaimedUntil = time.Time{}
	return inv, nil
}

// Due is when a live invocation may be claimed: a Queued one at
// NextAttemptAt (or CreatedAt when it has none), a Running one just after
// its claim lapses. Final invocations are never due (ok false).
func Due(inv api.Invocation) (due time.Time, ok bool) {
	switch inv.Status {
	case api.InvocationQueued:
		if !inv.NextAttemptAt.IsZero() {
			return inv.NextAttemptAt, true
		}
		return inv.CreatedAt, true
	case api.InvocationRunning:
		return inv.ClaimedUntil.Add(time.Nanosecond), true
	}
	return time.Time{}, false
}

// Marshal and Unmarshal are the stored form of a record.
func Marshal(inv api.Invocation) ([]byte, error) {
	b, err := json.Marshal(inv)
	if err != nil {
		return nil, fmt.Errorf("encode invocation %s: %w", inv.ID, err)
	}
	return b, nil
}

func Unmarshal(b []byte) (api.Invocation, error) {
	var inv api.Invocation
	if err := json.Unmarshal(b, &inv); err != nil {
		return api.Invocation{}, fmt.Errorf("decode invocation: %w", err)
	}
	return inv, nil
}

// Update is stored with its callback fields taken from update: the only
// part of a final invocation that changes after Finish.
func Update(stored, update api.Invocation) (api.Invocation, error) {
	if !stored.Status.Final() {
		return api.Invocation{}, fmt.Errorf("update %s: status %s is not final", stored.ID, stored.Status)
	}
	stored.CallbackStatus = update.CallbackStatus
	if update.UpdatedAt.After(stored.UpdatedAt) {
		stored.UpdatedAt = update.UpdatedAt
	}
	return stored, nil
}
