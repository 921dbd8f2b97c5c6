// Package record is what every queue backend shares about an invocation's
// life: the checks on what callers hand in, the state a claim writes, and
// the instants the indexes sort by. Keeping it in one place is what makes
// the backends agree on the conformance suite's edge cases; it does no I/O.
package record
