// Package redisconn turns the Redis URL an operator gives ebbd into go-redis
// clients, one way for every user of Redis: the store, the queue and the
// leases.
//
// Two forms are accepted:
//
//	redis://[user:password@]host:port[/db]     (also rediss:// and unix://)
//	redis-sentinel://[user:password@]s1:26379[,s2:26379...]/master[/db]
//
// The second asks Redis Sentinel which server is the primary of the named
// master, follows it across failovers (go-redis's failover client), and
// reconnects to the new primary when Sentinel promotes a replica. The user
// and password are the primary's; a Sentinel that wants its own password
// takes it as ?sentinel_password=.
//
// Either form takes ?wait_replicas=N (and ?wait_timeout=, default 100ms):
// after each write the caller that asks for it runs WAIT on the same
// connection, so an acknowledged write is on N replicas as well as the
// primary, and a failover to one of them cannot lose it. Without it,
// replication is asynchronous and a failover can lose the writes of the
// last moments before it (see docs/architecture.md).
//
// Every client is made with retries off: a script retried after a lost
// reply could apply twice, so callers see the error and decide.
//
// The password CHANGE-ME, the placeholder the shipped configs carry, is
// refused: a cluster must not run with a password everyone knows.
package redisconn
