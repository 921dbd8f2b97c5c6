// Package fake is an in-memory nodeagent.Runtime for the agent's unit
// tests. Its "processes" are in-process HTTP servers on an in-memory
// network, at 127.0.0.1 and the port the container's PORT variable names.
// The agent reaches them through Runtime.Dial (its Deps.Dial) and counts
// their requests in flight through Runtime.OpenRequests (its
// Deps.Requests), so its real readiness probe, drain and signal handling
// run against them. Nothing in it blocks on a socket, so tests can run the
// agent inside a testing/synctest bubble and let the bubble's clock drive
// backoffs, drains and grace periods. Tests inject failures and crashes
// through its methods.
//
// It is for tests only and must not be used to run functions.
package fake
