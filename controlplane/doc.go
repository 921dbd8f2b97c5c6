// Package controlplane serves ebb's REST API: images, functions, revisions,
// traffic, logs, cron triggers, nodes, namespaces and tokens, as JSON over
// HTTP with a bearer token.
//
// Every route is declared once, with the permission it needs, in the route
// table of controlplane/auth; New refuses a route the table does not list.
// authenticated resolves the token to a principal (401 when none) and
// checks the route's permission in the request's namespace (403 naming
// it) before a handler runs.
//
// It turns requests into store transactions and reads status back from the
// store; it never talks to routers, autoscalers or node agents directly, and
// it maps errors to HTTP statuses only here, at the edge. Every write is one
// compare-and-swap transaction, so a failed request leaves nothing behind.
//
// A namespace's quota (quotas.go) is checked at deploy: a deploy whose min
// or initial scale cannot fit beside the namespace's other functions' min
// scales, or that would pass its function count, gets 403 quota_exceeded
// with the numbers; what runs beyond that under load is the autoscaler's
// to clip.
//
// Objects carry a resourceVersion, their record's store version (also the
// ETag); a PUT or DELETE with If-Match (or a body resourceVersion) that no
// longer matches is 409, checked against the version the write's own
// transaction is conditioned on (preconditions.go). ?dryRun=server checks
// everything and writes nothing. Lists page by name (paging.go), and GET
// .../functions?watch=true streams changes (watch.go). applyFunction,
// applySecret, applyNamespace, applyCronTrigger and removeFunction are the
// writes the PUT and DELETE handlers and the server-side apply share.
//
// Cron triggers (crontriggers.go) are stored here; package
// controlplane/cron fires them, and run-now claims and enqueues a run
// with the same code (Deps.Queue).
package controlplane
