// Package otlp exports the data plane's request traces (tracing.Request)
// over OTLP/HTTP with the OpenTelemetry Go SDK. Each request becomes a
// server span with children for routing, the activator's queue (and, under
// it, the phases of the cold start it waited for) and the proxied call, all
// with the explicit timestamps the router recorded. The server and proxy
// spans keep the ids the router chose on the request path (the replica saw
// the proxy span's id in its traceparent), through an IDGenerator that
// takes them from the context.
//
// Nothing here runs unless an endpoint is configured: the router holds a
// nil *Exporter then and never calls the SDK. It must not be called on the
// request path before the response is ready.
package otlp
