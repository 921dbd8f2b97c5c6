// Package router is ebb's data-plane ingress: a fasthttp server that maps
// the Host of each request to a function ({fn}.{domain}) or to one tagged
// revision ({tag}-{fn}.{domain}), picks a revision (on the function's own
// host: a tag header's, else the first header match's, else by traffic
// weight, optionally sticky by cookie or header), and proxies the request to the
// least loaded ready replica that is under its hard concurrency limit. When
// no replica has room it hands the request to the activator. ServeFunction
// does the same for a function named by the caller, whatever the Host: the
// eBPF fallback listener uses it for connects to a cold function VIP.
//
// The route table is built from store watches and swapped atomically, so
// the request path takes no lock and, in steady state, allocates nothing.
// Requests reach replicas through internal/exchange, the activator's path
// too, under one retry policy. Client connections are capped below the
// process's open-file limit (ConnCap), optionally per client address, and
// a shortage of descriptors at accept pauses the listener instead of
// stopping the router.
// Every second the router reports per-revision concurrency and request
// counts for the requests it proxied directly to a StatsSink, with how
// every request of the revision ended (api.Outcomes: answered, 5xx, or a
// connection error the router answered itself, and the latency of those a
// ready replica answered), which rollouts judge canaries on.
//
// With an access log or a span exporter (Deps.AccessLog, Deps.Tracer) the
// router observes each routed request (access.go): it continues a valid
// W3C traceparent or starts a trace, sends the replica a traceparent
// through the proxy, puts a tracing.Handoff in the request for the
// activator to fill, adds Server-Timing to cold responses and, at the end,
// calls endRequest once with plain values: the one place every protocol's
// request ends. With neither, none of this runs.
//
// It must not buffer requests, start replicas or decide scale: waiting for
// capacity is the activator's job, scaling the autoscaler's. It talks to
// them only through the Activator and StatsSink interfaces declared here.
package router
