// Package nodesim runs many simulated node agents in one process against a
// real Redis store, for the 1,000-node scale measurement (issue 18).
//
// A simulated node does what a real node agent (package nodeagent) does to
// the store, and nothing else: no containers, no network. It
//
//   - renews its liveness lease through store/redis's RenewNodeLease every
//     nodeagent.DefaultLeaseRenewEvery with nodeagent.DefaultLeaseTTL, as
//     the agent's leaseLoop does;
//   - writes its nodes/{node} record once, and again only when what it
//     holds changes (writeNodeRecord);
//   - watches its own assignments and job pods through store.Cache on
//     assignments/{node}/ and jobpods/{node}/, the two caches a real agent
//     runs, each one store watch;
//   - for every replica an assignment asks for, writes the records a real
//     start writes, in the same transactions: port and replica record
//     (allocate), endpoint and ready replica record (publish), then the
//     revision's status for the node (statusLoop);
//   - for replicas no longer wanted, deletes endpoint, replica and port
//     (the agent's stop) and the status when nothing is left.
//
// Every store call goes through store.Store, so the Redis traffic is the
// real protocol: Lua transactions, XADD to the event stream, XREAD BLOCK
// watches that read every entry of the cluster.
package nodesim
