// Package activator holds requests for revisions that have no free
// capacity, above all revisions at zero, and releases them first in, first
// out as replicas become ready or free up. The first buffered request of a
// revision pokes the autoscaler at once through ScaleUpper; buffered
// requests count as demand in the stats reported to StatsSink.
//
// Waiting happens inside the fasthttp handler (fasthttp forbids keeping a
// RequestCtx after it returns). Queues are bounded (503 with Retry-After
// when full); a request still waiting at its deadline gets a 504; a client
// that hangs up leaves the queue at once; and a revision whose replicas
// fail to start fails its waiting requests fast with a 502 and the node
// agent's message.
//
// Capacity comes from the shared internal/replicaset tracker, so a
// replica's hard limit holds across the router's direct path and the
// activator together, and a released request goes to its replica through
// the same internal/exchange as the router's, under the same retry policy.
// The router calls the activator in process, through Serve.
//
// A request the router observes carries a tracing.Handoff; the activator
// notes in it whether the request was cold, how long it queued, which
// replica took it and that replica's start phases from its endpoint
// record, for the router's access log line, spans and Server-Timing.
//
// It must not route by host, split traffic or decide scale, and it must not
// start or stop replicas: it only waits, asks, and forwards.
package activator
