// Command ebb is the command-line client of ebb's control-plane API: it
// deploys functions (from an image, an image archive or a static binary),
// lists and inspects them, splits traffic, pushes images, follows logs,
// manages namespaces and shows node status. A revision's lifecycle:
// `ebb deploy --tag NAME --no-traffic` (reachable only at its tag URL),
// `ebb traffic FN --untag NAME`, `ebb rollback FN [REV]` (100% to the
// previous ready or the named revision, in one If-Match write) and `ebb
// revisions delete FN REV...` (refused while routed or latest). A canary
// rollout (a function with a rollout policy whose spec changed) is followed
// with `ebb rollout status FN [ID] [--watch]` (exit 7 when it is rolled
// back or aborted) and steered with `ebb rollout promote|pause|resume|abort`.
// `ebb cron create|list|get|delete|run-now FN NAME` manages a function's
// cron triggers: each run is an asynchronous invocation, and `ebb cron
// get` lists the kept runs with their invocation ids and outcomes. `ebb
// invocations submit FN` queues an asynchronous invocation and prints its
// id; `ebb invocations list FN` and `ebb invocations get FN ID [--wait]`
// read their status and results.
//
// Declaratively, `ebb apply -f FILE|DIR|-` applies manifests (ebb's own
// apiVersion ebb.dev/v1 kinds Function, Secret, Namespace, CronTrigger and Job, or Knative
// serving.knative.dev/v1 Services, parsed by package manifest): it parses
// and checks them here, reads secret values from the files and variables
// the Secrets name, and sends the resolved stream to the server's POST
// .../apply, which applies each document on its own. `ebb diff -f` shows
// the unified diff of live and desired manifests (exit 0 none, 1 changes,
// 2 or more an error), `ebb delete -f` deletes what manifests name,
// `ebb export FN` writes a function's manifest, which applies back
// unchanged, and `ebb wait FN --for ready|idle` follows the watch stream.
//
// Configuration comes from $XDG_CONFIG_HOME/ebb/config.yaml, falling back to
// ~/.config/ebb/config.yaml (another file with --config or EBB_CONFIG), with
// three keys:
//
//	api: http://127.0.0.1:8090
//	token: <contents of <data-dir>/token>
//	namespace: default
//
// EBB_API, EBB_TOKEN and EBB_NAMESPACE override the file; --api, --token and
// -n/--namespace override both. Function commands act in that namespace.
//
// Output is aligned tables for people, or the API's own JSON with -o json
// (the same document as YAML with -o yaml).
// Progress goes to stderr and results to stdout. A failure prints one line,
// "ebb: <reason>", on stderr and exits with a code scripts can branch on:
//
//	0  success
//	1  any other failure
//	2  usage error: bad flags, arguments or configuration
//	3  not found: the function or revision does not exist
//	4  the API rejected the input (a 4xx answer other than 404)
//	5  the API could not be reached, or it failed (a 5xx answer)
//	6  deploy was applied, but the revision failed or was not ready within --wait-timeout
//	7  rollout status --watch: the rollout was rolled back or aborted
//
// It talks to the control plane only through api.Client: it must not import
// the store or any component, and it holds no state of its own beyond the
// config file it reads.
package main
