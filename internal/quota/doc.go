// Package quota is the pure core of per-namespace quotas (api.Quota): what
// a namespace holds (Usage), whether a change fits (Admit, for the API),
// and how a capped namespace's replicas are shared between its revisions
// (Clip, for the autoscaler). It does no I/O and keeps no state, so the
// control plane and the autoscaler, which may not import each other, both
// use it and agree on the numbers.
//
// CPU is counted in millicores and memory in bytes, both int64, so sums
// compare exactly; every bound in api keeps them far from overflowing.
package quota
