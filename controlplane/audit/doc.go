// Package audit keeps ebb's audit log: one JSON line (api.AuditEvent) per
// mutating API call and per secret read by a node agent, appended to
// <data-dir>/audit/audit.log and rotated by size into
// audit-NNNNNNNNNN.log files (a higher number is newer).
//
// The log is a file, not the store: it must stay readable when the store is
// not, and its volume must not cost the store's watchers anything.
//
// Durability: Record returns only after the line is written and fsync'ed,
// so the middleware answers a mutating call only once its line is on disk.
// A line that cannot be written (a full disk, an I/O error) is kept in
// memory, in order, and written first by the next call that finds the disk
// writable again; until then Ready fails, and the middleware refuses every
// mutating call before it changes anything. So a change is never made
// without its line on disk, in memory awaiting the disk, or (for the one
// call in flight when the disk failed) both in memory and in the error the
// middleware reports to ebbd's log.
//
// Log.Middleware records the mutating calls of an HTTP API. It learns the
// credential from WithActor, which the authenticating middleware calls as
// soon as it knows the credential (before it authorizes, so that 403s are
// recorded too); handlers may refine the line with SetObject, SetVerb and
// SetNamespace.
//
// Readers (Log.Read) open every file under the writer's lock and read
// without it, so a rotation during a read neither hides nor repeats lines.
//
// It must not log, import another component, or ever write a token.
package audit
