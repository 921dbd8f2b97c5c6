// Command ebbd is the ebb daemon. One binary runs every role: "all" (the
// default on one machine), or "controlplane", "router" and "nodeagent" for
// several nodes sharing a Redis store. main only parses configuration and
// composes the components with errgroup; the components do the work.
package main
