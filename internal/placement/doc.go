// Package placement is the filter and score that place work on nodes: a
// function's replicas (the autoscaler's Place) and a job's pods (the job
// controller). Both must judge a node the same way, so the rule lives
// here once. It is pure: it sees a node's capacity and allocation as
// numbers and returns a verdict or a score; which nodes are up, sticky
// placement, scale-down order and tie-breaking stay with the callers.
package placement
