// Package queue is the durable queue of asynchronous invocations: the
// Queue interface, and its two backends, bbolt on one machine
// (queue/embedded) and Redis on many (queue/redis, a line of due-time
// sorted sets; its doc says why not Streams), held to one conformance
// suite (queue/queuetest), which also offers an in-memory test double
// (queuetest.Memory) for the unit tests of the packages that use a queue.
//
// A queue holds each invocation's record (api.Invocation) and its place
// in line. Workers Claim the next due invocation for a visibility timeout
// and Finish it with its outcome; one that dies mid-delivery loses its
// claim when the timeout passes, and the invocation is claimed again
// (at-least-once delivery). Time is an argument (Claim's now), never read
// from a clock inside the queue, so callers and tests drive it.
package queue
