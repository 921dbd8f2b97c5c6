// Package echo implements the gRPC echo example's service (echopb.Echo),
// shared by the example's command, the router's tests and the benchmark's
// direct path.
package echo
