// Package fake is an in-memory nodeagent.Runtime for the agent's unit
// tests. Its "processes" are in-process HTTP servers on the port the
// container's PORT variable names, so the agent's real readiness probe,
// drain and signal handling run against them. Tests inject failures and
// crashes through its methods.
//
// It is for tests only and must not be used to run functions.
package fake
