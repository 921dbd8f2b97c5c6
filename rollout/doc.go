// Package rollout is the pure state machine of a canary rollout: a new
// revision earns its traffic step by step, judged on the router's own
// figures, and goes back to 0% on the first failed check.
//
// It holds no goroutine, store, clock or network: time is a parameter, a
// State is a value the runner stores, and every function returns the next
// State and a Decision (the canary percent to set now, if it changes, and
// why) for the runner to apply. The runner around it, the API and the CLI
// are elsewhere.
//
// # The machine
//
//	Start ──► Progressing ──(last step passes / Promote)──► Succeeded  (canary 100%)
//	            │   ▲   │
//	      Pause │   │   └──(a check fails / deadline / ──► RolledBack (canary 0%)
//	            ▼   │ Resume    nothing judged in time)
//	           Paused
//	            │
//	            └──(Abort, also from Progressing)────────► Aborted    (canary 0%)
//
// Start gives the canary the first step's percent. The runner then calls
// Step every policy Interval with an Observation of the window just past.
// Succeeded, RolledBack and Aborted are final: an action on them returns an
// error wrapping ErrTransition. Pausing a paused rollout, or resuming a
// progressing one, changes nothing. Resume starts the current step over, so
// a step is always analysed for its full duration and a pause does not
// count toward its deadline. A Paused rollout ignores observations.
//
// # The analysis
//
// Each Step judges one window, the canary and the stable revision over the
// same span, and records the verdict with its figures in the step's record:
//
//   - Error rate: (5xx + connection errors) / requests of the canary. Above
//     maxErrorRate fails (equal passes). A window short of minRequests still
//     fails when its errors alone exceed what a full window may hold, so a
//     canary failing on little traffic is not kept waiting.
//   - Latency: canary p99 / stable p99. Above maxLatencyRatio, with the
//     canary more than latencySlack slower than stable, fails. It is
//     compared only when the stable revision had minRequests in the window
//     (so not at a 100% step, nor before the stable revision takes traffic).
//     While either revision had fewer than MinRequestsForP99 (1000) requests
//     the medians are compared instead: a p99 of 30 requests is the slowest
//     one, which a single scheduling hiccup makes, and a canary slow
//     throughout is slow at its median too.
//   - A canary that cannot serve at all (Observation.CanaryFailed: its
//     replicas cannot start or keep crashing and none is ready) fails at
//     once, whatever its figures.
//   - PromQL: each check's value above its max fails.
//   - Too few canary requests, or a PromQL check with no value, is
//     Inconclusive: the step neither passes nor fails and waits, until the
//     policy's Deadline from the step's start; then it fails.
//
// A failure rolls back in the same Step call, so within one analysis
// interval of the window that showed it. A step advances when it has lasted
// StepDuration and its latest check passed; after the last step the canary
// gets 100% and the rollout has Succeeded. An observation taken before the
// current step began is not judged, as its window may hold the step before.
package rollout
