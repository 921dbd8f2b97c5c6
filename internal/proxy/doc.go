// Package proxy is the HTTP/1.1 forwarding engine shared by the router and
// the activator: keep-alive connection pools per upstream (Transport,
// Upstream) and Forward, which relays one fasthttp request to one upstream
// and puts the answer in the fasthttp response, streaming bodies that are
// large or open-ended and tunnelling upgraded connections.
//
// Forward is the request hot path: it takes no lock and, in steady state,
// allocates nothing. It rewrites headers the way a correct intermediary must
// (hop-by-hop removal including fields named in Connection, Ebb-* removal,
// X-Forwarded-* and Forwarded), and it frames bodies itself rather than
// trusting the client's framing.
//
// It must not know about functions, revisions, routing or capacity: callers
// pick the upstream, account for the exchange through Done, and map
// Forward's errors to responses (StatusFor helps).
package proxy
