// Package tracing holds what the data plane knows about one request's
// trace as plain values: the W3C traceparent it continues or starts
// (ParseParent, AppendParent), the ids of the spans it will record, and the
// timeline of the request (Request), including the activator's Handoff and
// the node agent's StartPhases of a cold start. The router fills a Request
// on its path without calling any tracing SDK; at the end of the request
// an exporter (tracing/otlp) turns it into spans with explicit timestamps,
// and only when one is configured.
//
// It must not import an SDK, the store or fasthttp: it is the vocabulary
// the router, the activator and the replica registry share.
package tracing
