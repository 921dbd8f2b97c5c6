// Package invoker delivers asynchronous invocations. A Worker claims the
// next due invocation from the durable queue (package queue), sends it to
// the function through the normal data path, an HTTP request to the
// router with the function's Host, so the activator wakes a function
// scaled to zero, and finishes it with the outcome: below 500 it is final
// (Succeeded, or Failed for a 4xx, which is the caller's mistake); a 5xx,
// a 429, a timeout or a connection error is retried after an exponential
// backoff with full jitter, until MaxAttempts, then it is dead-lettered. A
// final invocation with a callback URL has its result POSTed there, with
// a few retries. The worker also expires finished invocations past their
// retention.
//
// Delivery is at least once: a worker that dies mid-delivery loses its
// claim when the visibility timeout passes, and another delivers again. A
// worker whose claim lapsed drops its outcome (queue.ErrClaimLost).
//
// It must not serve requests, route, or decide scale: the router and the
// activator it sends through do that, and a function's async concurrency
// limit keeps its queued work from arriving faster than the function
// admits.
package invoker
