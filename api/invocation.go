package api

import (
	"net/http"
	"time"
)

// InvocationStatus is where an asynchronous invocation is in its life.
type InvocationStatus string

// The statuses. Succeeded, Failed and DeadLetter are final.
const (
	// InvocationQueued waits for a worker: new, or between attempts
	// (NextAttemptAt says when it is due).
	InvocationQueued InvocationStatus = "Queued"
	// InvocationRunning is claimed by a worker until ClaimedUntil; past
	// that it is due again (the worker died mid-delivery).
	InvocationRunning InvocationStatus = "Running"
	// InvocationSucceeded: the function answered (any status below 500).
	InvocationSucceeded InvocationStatus = "Succeeded"
	// InvocationFailed: the function answered with an error that is not
	// retried (a 4xx is the caller's mistake, not the function's).
	InvocationFailed InvocationStatus = "Failed"
	// InvocationDeadLetter: every attempt failed (5xx, timeout, no
	// connection) up to MaxAttempts.
	InvocationDeadLetter InvocationStatus = "DeadLetter"
)

// Final reports whether no worker will touch an invocation again.
func (s InvocationStatus) Final() bool {
	return s == InvocationSucceeded || s == InvocationFailed || s == InvocationDeadLetter
}

// Asynchronous invocation limits and defaults.
const (
	// MaxInvocationBody bounds a request's and a kept result's body.
	MaxInvocationBody = 1 << 20
	// DefaultInvocationAttempts is MaxAttempts when a request names none.
	DefaultInvocationAttempts = 5
	MaxInvocationAttempts     = 100
	// DefaultInvocationRetention is how long a finished invocation (and
	// its idempotency key) is kept.
	DefaultInvocationRetention = 24 * time.Hour
)

// HeaderInvoke = "async" on a request to a function's URL queues it
// instead of serving it; HeaderCallbackURL names where to POST the
// result; HeaderIdempotencyKey de-duplicates submissions; HeaderMaxAttempts
// overrides the attempts. The 202 answer carries HeaderInvocationID and a
// Location to poll.
const (
	HeaderInvoke         = "Ebb-Invoke"
	HeaderCallbackURL    = "Ebb-Callback-Url"
	HeaderIdempotencyKey = "Idempotency-Key"
	HeaderMaxAttempts    = "Ebb-Max-Attempts"
	HeaderInvocationID   = "Ebb-Invocation-Id"
)

// Invocation is one asynchronous call of a function: what was asked, how
// delivery went, and the result. GET
// /v1/namespaces/{ns}/functions/{fn}/invocations/{id} shows it.
type Invocation struct {
	// ID is unique in the cluster (a random 128-bit hex string).
	ID string `json:"id"`
	// Function is the qualified function name (api.QualifiedName) inside
	// ebb; the API shows the bare name with Namespace.
	Function  string `json:"function"`
	Namespace string `json:"namespace,omitempty"`

	Status      InvocationStatus  `json:"status"`
	Request     InvocationRequest `json:"request"`
	Attempts    int               `json:"attempts"`
	MaxAttempts int               `json:"maxAttempts"`
	// IdempotencyKey, when set, makes a second submission with the same
	// key (for the same function, within retention) return this one.
	IdempotencyKey string `json:"idempotencyKey,omitempty"`
	// CallbackURL, when set, gets the result POSTed once it is final.
	CallbackURL    string `json:"callbackURL,omitempty"`
	CallbackStatus string `json:"callbackStatus,omitempty"`

	Result    *InvocationResult `json:"result,omitempty"`
	LastError string            `json:"lastError,omitempty"`

	CreatedAt     time.Time `json:"createdAt"`
	UpdatedAt     time.Time `json:"updatedAt"`
	NextAttemptAt time.Time `json:"nextAttemptAt,omitzero"`
	// ClaimedBy and ClaimedUntil name the worker delivering a Running
	// invocation and when its claim lapses.
	ClaimedBy    string    `json:"claimedBy,omitempty"`
	ClaimedUntil time.Time `json:"claimedUntil,omitzero"`
	CompletedAt  time.Time `json:"completedAt,omitzero"`
}

// InvocationRequest is the HTTP request to deliver.
type InvocationRequest struct {
	Method string      `json:"method"`
	Path   string      `json:"path"`
	Header http.Header `json:"header,omitempty"`
	Body   []byte      `json:"body,omitempty"`
}

// InvocationResult is the function's answer to the last attempt.
type InvocationResult struct {
	Status int         `json:"status"`
	Header http.Header `json:"header,omitempty"`
	// Body is at most MaxInvocationBody bytes; Truncated says more came.
	Body      []byte `json:"body,omitempty"`
	Truncated bool   `json:"truncated,omitempty"`
}

// InvocationList is GET .../invocations: newest first.
type InvocationList struct {
	Items []Invocation `json:"items"`
}
