// Package cron fires functions' cron triggers: the control plane's loop
// that turns each due run into an asynchronous invocation in the queue, so
// delivery, retries and results are the invoker's, as for any async call.
//
// # Exactly one fire per run
//
// A trigger's record (store.CronTrigger) carries a cursor, the newest
// schedule time handled. A runner that finds a run due writes, in one
// transaction, the trigger at the version it read (cursor moved on, missed
// count) and the run's record at cronruns/{fn}/{name}/{unix} with
// store.MustNotExist. Of several control planes only one such transaction
// can succeed; the others conflict, re-read and find nothing due. The
// winner then enqueues the run with idempotency key cron/{name}/{unix} and
// marks the record enqueued. A control plane that dies between the claim
// and the mark leaves an unmarked run, which the next loop (its own or
// another's) enqueues again: the key makes that the same invocation.
//
// # Missed runs
//
// Of the schedule times after the cursor, only the newest may fire, and
// only when it is no later than the starting deadline; the older ones,
// and the newest too when it is later, are counted as missed. So a control
// plane back from downtime fires the run it missed once, not a burst.
//
// # Concurrency policy
//
// A run is pending while its invocation is not final (queue Get). With
// Forbid a run due while another is pending is recorded as Skipped; with
// Replace it fires and the pending ones are marked Replaced. The queue
// cannot call back a delivery in flight, so a replaced invocation still
// runs to its end: Replace only stops waiting for it.
//
// Schedules are parsed by robfig/cron/v3 through api.ParseCronSchedule
// (api's doc says why); this package uses only Schedule.Next, never that
// library's scheduler, so time is the Runner's injected clock.
//
// Decide and Prune are pure; the Runner is the shell that reads the
// store and the queue and writes their plans. It must not deliver
// anything itself, and it holds no state between ticks but the store's.
package cron
