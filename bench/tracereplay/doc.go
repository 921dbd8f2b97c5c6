// Command tracereplay replays an Azure Functions 2019 trace (Shahrad et al.,
// "Serverless in the Wild", USENIX ATC '20) in simulated time through ebb's
// real autoscaler (autoscaler.Scaler: metric windows, KPA decider and the
// hybrid-histogram keep-alive policy), and compares cold starts and idle
// replica-seconds against Knative's defaults and a fixed 10-minute
// keep-alive.
//
//	cd bench && go run ./tracereplay [-trace traces/azure2019/100_inv.csv]
//
// The default trace is the 100-function subset shipped in
// bench/traces/azure2019 (CC-BY 4.0, attribution in its README). It prints
// a markdown table for bench/RESULTS.md and writes the raw figures as JSON
// to bench/results/. The data plane is modelled, not run: a router
// with least-in-flight balancing, an activator that buffers and pokes the
// autoscaler, and a node that starts replicas in the measured 59 ms (11 ms
// from a pre-created task). It must not start containers or touch the
// network, so that a day of traffic replays in seconds.
package main
