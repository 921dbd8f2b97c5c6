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
// Custom domain mappings (store.Domain, domains/{host}) route a host a
// user owns like its function's own host (domains.go). With Deps.TLS the
// router also terminates TLS on its own port (tls.go): certificates by SNI
// from router/tlsedge, TLS 1.2 at least, ALPN h2 handed to the HTTP/2
// server's hook and http/1.1 served by the same fasthttp server and
// handler as the plain port; plain requests may be redirected to HTTPS
// (308) and TLS responses carry HSTS when configured.
//
// # HTTP/2 and gRPC
//
// The same port serves HTTP/2 (http2.go). internal/h2listen hands a
// connection that opens with the HTTP/2 preface (h2c with prior
// knowledge) to ServeHTTP2 on its first read, so fasthttp, which speaks
// only HTTP/1.x, keeps every other connection untouched; an HTTP/1.1
// request with Upgrade: h2c is answered 101 and its connection hijacked
// onto the same server (h2upgrade.go); and ServeHTTP2 takes a TLS
// connection that negotiated "h2" by ALPN. HTTP/2 is served by
// golang.org/x/net/http2, the implementation inside net/http, because
// its ServeConn serves one connection we already accepted (net/http's own
// server cannot), it speaks h2c upgrade (ServeConnOpts.UpgradeRequest),
// and it carries the hardening against hostile clients that a new
// implementation would have to earn: a bound on concurrent streams and on
// handlers (the rapid-reset fix for CVE-2023-44487), on queued control
// frames and on buffered request bodies. Each stream takes the HTTP/1.1
// path's routing (pick reads headers through the requestHeader
// interface), hard limits (one stream holds one replica slot), timeouts
// (the function's, or a shorter grpc-timeout, which is passed on to the
// replica) and accounting, and is forwarded (h2proxy.go: net/http's reverse proxy cut down),
// streaming both ways and passing trailers (grpc-status), to replicas
// in the protocol their revision declares (spec.protocol: HTTP/1.1, or
// h2c through x/net's transport). A stream that finds no free replica
// waits in the activator through StreamActivator.Acquire. Errors the
// router answers itself reach gRPC clients as a trailers-only response
// with the matching grpc-status (a timeout is DEADLINE_EXCEEDED).
//
// Every HTTP/2 connection, a client's or a replica's, batches its writes
// (h2coalesce.go). x/net flushes a connection whenever its own write
// queue is empty, which on one P is once or twice per stream: in a
// profile of ebbd under the grpc bench those write(2) calls and the
// wake-ups and context switches they cause were a quarter of its CPU, the
// largest single cost. A flusher goroutine per connection yields first,
// so that every stream ready to write adds its frames, and then writes
// them in one write(2), as nginx does with one writev per turn of its
// event loop; ebbd's CPU per proxied HTTP/2 request fell by about 30%.
// What remains is x/net's design: each stream passes between several
// goroutines (frame reader, serve loop, handler, a goroutine per HEADERS
// frame written, the transport's request writer and read loop), each new
// goroutine's stack growing on the way. Removing that means relaying
// frames on the connection's own goroutine, which x/net does not allow.
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
