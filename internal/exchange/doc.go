// Package exchange is the data plane's one way of sending a request to a
// replica and accounting for it, shared by the router's direct path and
// the activator's release path, which must not import each other.
//
// Forward proxies a request to a replica the caller acquired from a
// revision's replicaset.Set and, through a pooled Done, releases the
// replica, ends the revision's in-flight count, counts the status and
// observes the latency once the exchange is over; where the revision's
// counter counts outcomes (the router's), it counts the request as
// answered, with that status and latency. It follows the one retry
// policy of the data plane: a request is tried on another free replica only
// when no byte of it reached the one it was sent to (proxy.ErrUnavailable),
// at most Policy.MaxRetries times; a request that reached a replica is never
// sent again, since the function may have acted on it. WriteError writes
// the data plane's plain-text error answers.
//
// It must not wait for capacity, queue, route or decide what an error
// means for the client: the router hands off, the activator queues, and
// both pick the answer.
package exchange
