// Package rollouts drives canary rollouts: the thin shell around the pure
// state machine of package rollout. The API starts a rollout when a new
// revision of a function with a rollout policy is written (Begin), and
// takes the actions promote, pause, resume and abort (Act); the Runner
// judges each live rollout every analysis interval and applies its
// decisions.
//
// # Figures
//
// Routers count how each revision's requests end (api.Outcomes) and send
// the counts with their load reports; ebbd hands those reports to the
// Runner's Report beside the autoscaler's. The Runner keeps running sums
// for the revisions of live rollouts only, and an analysis window is the
// difference between two readings of the sums: the canary's and the
// stable revision's over the same span.
//
// # One driver per rollout
//
// A rollout's record carries a lease: the control plane (Config.Owner)
// whose runner drives it, until when. A runner drives only rollouts it
// holds; it takes one that nobody holds or whose lease ran out, and renews
// its own as it writes each step. Every write, of the record and of the
// function's traffic, is a transaction at the versions read, so even two
// runners that both believe they hold a lease never both apply a step: the
// second write fails and its runner re-reads. After a restart a control
// plane finds its own leases and goes on at once; another takes over a
// dead one's rollouts when their leases run out.
//
// # Traffic
//
// A decision's traffic is written with the record in one transaction:
// stable and canary share the percents while the rollout lives, the stable
// revision gets 100% back after a rollback or an abort, and after success
// the function follows its latest revision again (rollout.Traffic). The
// router moves requests between revisions without dropping any: a request
// in flight finishes on the replica it started on.
package rollouts
