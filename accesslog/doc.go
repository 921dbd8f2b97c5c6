// Package accesslog records one line per request that went through the
// router: when it arrived, which function, revision and replica served it,
// its status, duration and size, its protocol, whether it waited for a cold
// start (and for how long) and its trace id.
//
// Record holds plain values, so every front end (the fasthttp path and the
// HTTP/2 path) fills one and hands it to Logger.Log at the end of the
// request. AppendJSON encodes a Record without allocating. A Logger writes
// the sampled lines to stdout or to a rotated file (gopkg.in/natefinch/
// lumberjack.v2) through a buffer that Run flushes, and keeps every line in
// a small in-memory Ring per function, which `ebb logs --access` reads and
// follows (Read, and Handler for a control plane on another machine).
//
// Sampling keeps a fraction of the lines written out; errors (status >= 500)
// and cold starts are always written, since they are the lines one looks
// for. The rings are not sampled: they are bounded and cheap.
//
// It must not know about fasthttp, the store or tracing: it encodes, writes
// and remembers what it is given, and never blocks a request on a reader.
package accesslog
