// Package testenv gives tests the real parts they need (root, redis-server,
// prometheus, containerd, eBPF) or skips them with a reason. With EBB_REQUIRE_PRIVILEGED=1,
// as CI sets, a skip becomes a failure, so CI cannot pass by skipping.
//
// It is imported only by tests.
package testenv
