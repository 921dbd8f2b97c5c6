// Package harness is ebb's benchmark harness: it measures every headline
// figure of shared/BENCHMARKS.md side by side with its baseline in one run
// (cold start against the process and containerd floors, the router
// against HAProxy, nginx and a direct connection, activator bursts, a step
// load through the autoscaler, trace replay, 10,000 functions, eBPF on and
// off, how fast a bad canary is rolled back, what header-match rules cost
// the router), prints one summary table, writes JSON and PNG plots to
// bench/results/ and rewrites its own sections of bench/RESULTS.md.
//
// It drives real programs only: bin/ebbd and bin/hello built by make build,
// containerd and runc, wrk, HAProxy and nginx from Debian's packages, and
// its own Go client for cold starts, bursts and the step load. Everything it
// starts it records by PID and stops at the end, on failure or on Ctrl-C
// too. Every byte of traffic goes to 127.0.0.1 or, with isolation on (the
// default), to replica addresses inside the network namespaces its own
// ebbds create: each ebbd gets a network slot of its own (bridge ebbb<k>,
// 10.212.4k.0/22, replica ports 10000+1000k), apart from make run's ebb0
// and the e2e daemons' ebbt<w>, and when it stops the harness runs
// `ebbd teardown-network` and fails the run if anything is left.
//
// It must not import the components (router, activator, autoscaler,
// nodeagent): it measures ebbd from the outside, through the API, the
// routed URLs and /metrics, the way an operator would. The one exception is
// replicanet's Leftovers and Config, which check a slot's network is gone
// and valid, as the e2e tests do.
package harness
