// Package queue is the durable queue of asynchronous invocations: the
// Queue interface, and its two backends, bbolt on one machine
// (queue/embedded) and Redis Streams with consumer groups on many
// (queue/redis), held to one conformance suite (queue/queuetest).
//
// A queue holds each invocation's record (api.Invocation) and its place
// in line. Workers Claim the next due invocation for a visibility timeout
// and Finish it with its outcome; one that dies mid-delivery loses its
// claim when the timeout passes, and the invocation is claimed again
// (at-least-once delivery).
package queue
