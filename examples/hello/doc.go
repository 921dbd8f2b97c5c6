// Command hello is ebb's example function: a small static HTTP server on
// $PORT that answers "hello from ebb" with its revision, and offers a few
// endpoints that tests and benchmarks use to exercise the platform:
//
//	/            hello from ebb, with function, revision and replica
//	/sleep?d=D   waits D (a Go duration, at most 10m) before answering; with
//	             flush=1 it sends the response headers first
//	/stream?n=N  writes N chunks (default 5), flushing each, 10ms apart
//	/echo        answers the request body and echoes request headers as X-Echo-*
//	/env         the process environment, one KEY=VALUE per line (secrets included:
//	             it is a test tool)
//	/discard     reads the request body and answers bytes=N
//	/stats       requests served and the peak of concurrent requests, max_inflight=N
//	/crash       exits with status 1 at once, as a crashing function would
//	/flaky?fail=N  answers 503 to attempts 1-N of an asynchronous invocation
//	             (X-Ebb-Attempt) and 200 after; fail=-1 fails every attempt
//	/seen        JSON of every asynchronous delivery (X-Ebb-Invocation-Id)
//	             the replica got: per id the count, the attempts, the first
//	             arrival and a cron run's X-Ebb-Cron-Scheduled
//
// Two environment variables make / misbehave on purpose, for tests of
// canary rollouts (a changed env makes a new revision):
//
//	HELLO_FAIL_PERCENT=N  N% (0-100) of the requests to / answer 500,
//	                      chosen at random per request
//	HELLO_DELAY=D         / waits D (a Go duration, at most 10m) before it
//	                      answers, failing or not
//
// Neither touches ebb's readiness probe (User-Agent: ebb-probe), so a
// failing revision still starts and takes traffic, as a bad release does.
// A value that does not parse makes hello exit at its start with a message
// naming the variable, so a typo cannot pass for a healthy revision.
//
// On SIGTERM it stops accepting connections and finishes in-flight requests
// before it exits, as the function contract asks. It must stay free of ebb
// imports so that it builds into a tiny static binary for an OCI image.
package main
