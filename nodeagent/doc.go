// Package nodeagent is ebb's node agent: one per node, it turns the replicas
// the store assigns to its node into running containers and keeps them so.
//
// The Agent watches assignments/{node}/ and, for each revision, runs the
// desired number of replicas and keeps a pool of pre-created tasks
// (container, snapshot and task created, program not started), so that a
// cold start costs one task start plus a readiness probe polled at a
// sub-millisecond cadence. The moment the probe passes, it writes the
// replica's endpoint to the store, where routers and activators watch for
// it. Scale-down removes the endpoint first, waits for connections to
// drain, then sends SIGTERM and, after a grace period, SIGKILL. A crashed
// replica restarts in place with exponential backoff; after its third
// consecutive crash (crashLoopAfter) the revision reports CrashLoop, and
// before that Scaling, so requests wait for the restart. One that cannot
// start at all (a bad image) reports Failed. After its own restart the agent adopts the containers it finds by
// label, so a crash of the agent loses and doubles nothing. It also
// heartbeats its node record and keeps each replica's output in a bounded
// ring on disk (package logring) that ReadLogs and Handler serve.
//
// The pure parts (planRevision, poolTargets, resolveRevSpec) hold the
// decisions; the Agent's goroutines do the I/O. Each replica's goroutine
// runs its life as named phases (pool, start, serve, crash; see
// runReplica), and a restarted agent's adoption likewise (see adopt).
// The agent reads the time only through package time and reaches replicas
// through Deps.Dial, so its tests run it in a testing/synctest bubble on
// the in-memory network of nodeagent/fake, where backoffs, drains and
// grace periods take no wall time. Containers are reached only
// through the Runtime interface declared here; nodeagent/containerd
// implements it. The agent must not import the router, activator,
// autoscaler or control plane: it talks to them only through the store.
package nodeagent
