// Package autoscaler decides how many replicas each revision runs, from zero
// up, and how long an idle revision stays warm.
//
// The core is pure. Decider implements Knative's KPA algorithm: a stable
// window (60 s) and a panic window (10% of it, at least 1 s) averaged from
// per-second buckets (Metrics), a per-replica target of
// min(target, hard limit) × utilization (100 × 0.7) or, in RPS mode,
// rpsTarget × utilization (200 × 0.7), ceil(observed/target) per window
// bounded by the scale-up (1000×) and scale-down (2×) rates, a panic mode
// entered at 200% that only ratchets up and ends a full stable window after
// the panic window last crossed the threshold, min/max scale, an initial
// scale that is a floor until it has been reached once, an activation scale,
// and a scale-down delay taken as the maximum over a sliding window.
//
// Scale to zero follows ebb's contract rather than Knative's plumbing: a
// revision goes to zero once no request has been seen (arriving, in flight
// or buffered in an activator) for max(grace, retention, keep-alive), and
// never while a request is buffered. Until then a warm revision keeps one
// replica. Knative instead waits for the stable window to drain to zero
// before its grace period even starts; ebb users get the grace they set.
//
// Min scale holds only a revision a route reaches (a traffic percent or a
// tag), as Knative's reachability does: after a deploy moves the traffic,
// the old revision goes to zero a grace period later, whatever its min
// scale, and gets none of the keep-alive policy's warm tiers. The initial
// scale still starts a new revision routed or not; an unrouted one keeps it
// for a grace period at most.
//
// KeepAlive plans beyond Knative: a per-function idle-time histogram after
// Shahrad et al., "Serverless in the Wild" (USENIX ATC '20), sets how long a
// revision stays warm after its last request and when a pre-created task
// (container and task created, process not started) is held ahead of a
// predicted request. Placement is a Kubernetes-style filter and score over
// nodes. Runner is the thin shell: it receives stats and activation pokes,
// ticks every revision (Tick; Run is a loop around it), and writes scales
// and assignments to the store. It also keeps what the keep-alive policy
// learnt at keepalive/{rev} (each revision's last demand and a copy of its
// function's idle-time histogram), rewritten when it changed and at most
// every status refresh, so that a restarted runner holds the same
// pre-created tasks at once instead of after traffic has come back.
//
// Namespace quotas (api.Quota, at namespaces/{ns}) cap the running
// replicas, memory and CPU of a namespace's revisions together. The runner
// clips each decision to the revision's share (internal/quota.Clip:
// max-min fair by replica count between the namespace's revisions, name
// order for an odd replica), writes the decider's count and the reason
// beside the clipped one in scales/{rev}, and counts the clipped
// decisions (ebb_autoscaler_quota_clipped_total{namespace}). A revision
// held below its share by others that hold more than theirs makes them
// come down in the same step, so a newcomer in a full namespace waits for
// no tick. A namespace without a quota pays one map lookup per decision,
// so a saturated namespace never slows another's.
//
// Queued asynchronous invocations are demand too, as in KEDA's queue
// scalers. Once per tick the runner reads each function's queue depth
// (queued or being delivered) through RunnerDeps.Queue, a one-method
// interface queue.Queue satisfies, and gives each revision its traffic
// percent's share of it, rounded up (a tag or a header match gets none:
// the invoker delivers to the function's own host). The decider sees it as
// Observation.Queued: at least ceil(queued / async target) replicas
// (async.target, else the concurrency target capped by the hard limit),
// bounded by max scale; queued work wakes a revision at zero and holds off
// scale to zero like a buffered request, before the invoker's first
// delivery reaches a router. A depth that cannot be read counts as none.
//
// Why there is no target-burst-capacity switch: Knative keeps the activator
// in the request path while spare capacity is below target-burst-capacity,
// because its gateways balance per connection and cannot see how full a pod
// is; only the activator can hold a burst until a pod has room. ebb's router
// already routes every request by replica capacity (least in flight under
// each replica's hard limit) and itself hands a request to the activator
// when no replica has room, so the activator is in the path exactly when it
// is needed, per request, with no switch to flip and no excess-burst-capacity
// figure for the autoscaler to compute.
//
// Two details go beyond Knative. Windows end at the reporters' watermark
// (the time every fresh reporter has reported up to), so a second some
// router has not reported yet is not read as quiet. And requests buffered in
// an activator count in the panic window at once, so a burst at zero is
// sized in one decision rather than one replica per tick.
//
// Wiring (cmd/ebbd): build one Runner with NewRunner(RunnerConfig{},
// RunnerDeps{Store, Logger, Registerer, Queue}) and run it under the errgroup with
// Run(ctx). In process, pass the *Runner itself as router.Deps' StatsSink
// and as the activator's StatsSink and ScaleUpper. Across processes, mount
// NewHandler(runner, HandlerConfig{Token}) on the autoscaler's HTTP server
// (POST /internal/v1/stats, POST /internal/v1/activate/{revision}, and
// GET /internal/v1/status/{revision} for the last step and plan) and give
// routers and activators a NewClient(ClientConfig{BaseURL, Token}), which
// has the same two methods. Reporters send one stat per revision per
// interval; the Runner re-stamps each with its own clock on receipt.
//
// This package must not import other components (router, activator,
// nodeagent, controlplane). Its pure parts (Metrics, Decider, KeepAlive,
// Placement) must stay free of locks, I/O, goroutines and wall-clock reads:
// time only arrives as an argument.
package autoscaler
