// Package liveness tells which nodes are alive: a node is alive while its
// lease holds. Node agents renew their lease about every second; routers,
// activators and the autoscaler each run a Watcher that polls the live set
// (one cheap call, a single integer when nothing changed) and act the
// moment a lease lapses, without waiting for any store record to change.
//
// Leases are kept outside the store: in Redis beside the store's keys
// (store/redis), or in memory (Memory) when one process is the whole
// cluster. Memory also holds named leases, such as the control plane's
// leadership (internal/leader), for that one process.
//
// It must not write store records: cleaning up after a dead node is the
// leader's (controlplane/nodeloss).
package liveness
