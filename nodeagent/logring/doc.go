// Package logring keeps each replica's stdout and stderr in a bounded ring of
// two files on disk and reads them back: the last lines of a crashed replica
// for its status, and the lines of a function's replicas for
// GET /v1/functions/{name}/logs, tailed and followed.
//
// A ring is two segments, {replica}.log and {replica}.log.1; when the first
// fills up to half the ring's size it replaces the second, so a replica never
// holds more than its MaxBytes however much it writes. Each record is one
// line, "{unix-nanos} {stream} {text}", so readers can merge replicas in time
// order.
//
// It knows nothing about containers or the store: the node agent hands it
// the writers that a runtime copies process output into. It must not block a
// writer on a reader; followers read the files, never the writers' buffers.
package logring
