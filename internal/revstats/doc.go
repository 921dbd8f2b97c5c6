// Package revstats counts the load each revision sees in one data-plane
// component (router or activator) and turns it into the api.RevisionStat
// reports the autoscaler sizes revisions by: time-averaged and peak
// concurrency, request count and buffered requests, once per interval.
// The router's counters also count how requests end (Outcomes: requests,
// 5xx, connection errors and a latency histogram), which the reports carry
// for the rollout analysis; the activator's do not, so that no request is
// counted twice.
//
// The request path only touches atomics on a Counter. A Recorder samples the
// in-flight counts on a short tick (the average is the mean of samples,
// which is unbiased) and tracks the exact peak through the counters.
//
// It must not decide anything about scaling or rollouts, and it must not
// block the request path: it only counts and reports.
package revstats
