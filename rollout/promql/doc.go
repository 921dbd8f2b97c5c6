// Package promql runs the PromQL checks of a rollout's analysis
// (api.PromCheck: a query and the highest value it may return), as
// Flagger's metric templates do: Expand fills a check's template
// variables with the rollout's names, Client runs it as an instant query
// against a Prometheus, and Checker turns a policy's checks into the
// values of rollout.Observation.PromQL, in the policy's order.
//
// A check is written as in Flagger, for example the canary's 5xx ratio
// from ebb's own router metrics:
//
//	sum(rate(ebb_router_requests_total{revision="{{canary}}",code=~"5.."}[{{interval}}]))
//	  / sum(rate(ebb_router_requests_total{revision="{{canary}}"}[{{interval}}]))
//
// and must come to one number: a scalar or a vector of one sample. No
// sample at all (the series does not exist yet), or a NaN value such as
// 0/0 when the canary had no requests, is no value. Several samples, a
// range vector or a string are errors: a check must aggregate its series.
//
// It is a shell beside the pure rollout core: it does I/O (HTTP to
// Prometheus) but decides nothing. A query with no value, or one that
// failed, is NaN, which the core treats as Inconclusive: the step waits,
// up to its deadline, instead of passing or failing on a number nobody
// measured. It imports no component (router, activator, autoscaler, node
// agent, control plane); the control plane's rollout runner calls it.
//
// The HTTP API is spoken through the maintained client of the Prometheus
// project (github.com/prometheus/client_golang/api/prometheus/v1), already
// a dependency for ebb's own metrics, rather than a hand-written one: it
// follows the API's envelope (status, errorType, warnings), its POST with
// GET fallback and its result types (scalar, vector, matrix, string) as
// Prometheus changes them, which a copy here would have to track by hand.
package promql
