package store

import (
	"context"
	"errors"
)

// Sentinel errors. Implementations wrap them, so test with errors.Is.
var (
	// ErrNotFound means the key does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict means a transaction's version check failed; nothing was written.
	ErrConflict = errors.New("version conflict")
	// ErrCompacted means a watch asked to resume from a revision the store no
	// longer keeps events for. List again and watch from the new revision.
	ErrCompacted = errors.New("revision compacted")
	// ErrClosed means the store was closed.
	ErrClosed = errors.New("store closed")
)

// KV is one stored key. Version is the store revision of the transaction
// that last wrote it (etcd's mod_revision); it is what Op.Version checks.
type KV struct {
	Key     string
	Value   []byte
	Version int64
}

// OpKind says what an Op does.
type OpKind int

const (
	// OpPut writes Value at Key.
	OpPut OpKind = iota
	// OpDelete removes Key. Deleting a missing key with AnyVersion is a no-op.
	OpDelete
	// OpCheck writes nothing; it only asserts Version.
	OpCheck
)

// Version expectations for Op.Version besides an exact version.
const (
	// MustNotExist (0) makes the op fail unless the key is absent.
	MustNotExist int64 = 0
	// AnyVersion skips the version check.
	AnyVersion int64 = -1
)

// Op is one step of a transaction. Version is the key's expected current
// version: an exact version, MustNotExist or AnyVersion.
type Op struct {
	Kind    OpKind
	Key     string
	Value   []byte
	Version int64
}

// Put returns an op writing value at key if the key is at version.
func Put(key string, value []byte, version int64) Op {
	return Op{Kind: OpPut, Key: key, Value: value, Version: version}
}

// Delete returns an op deleting key if it is at version.
func Delete(key string, version int64) Op {
	return Op{Kind: OpDelete, Key: key, Version: version}
}

// Check returns an op asserting key is at version.
func Check(key string, version int64) Op {
	return Op{Kind: OpCheck, Key: key, Version: version}
}

// EventType says whether an event wrote or removed a key.
type EventType int

const (
	EventPut EventType = iota
	EventDelete
)

func (t EventType) String() string {
	if t == EventDelete {
		return "delete"
	}
	return "put"
}

// Event is one key change. KV.Version is the revision of the change; for a
// delete, KV.Value is nil.
type Event struct {
	Type EventType
	KV   KV
}

// WatchEvent is what a watch channel delivers: an event, or a terminal error
// (ErrCompacted, ErrClosed) after which the channel is closed.
type WatchEvent struct {
	Event
	Err error
}

// Store is ebb's state store. Every method is safe for concurrent use.
type Store interface {
	// Get returns the key, or ErrNotFound.
	Get(ctx context.Context, key string) (KV, error)
	// List returns every key with the prefix in key order, and the store
	// revision the listing reflects, to pass to Watch.
	List(ctx context.Context, prefix string) ([]KV, int64, error)
	// Txn applies ops atomically: either every version check holds and every
	// write lands under one new revision, which it returns, or nothing is
	// written and the error wraps ErrConflict. An acknowledged Txn is durable.
	Txn(ctx context.Context, ops ...Op) (int64, error)
	// Watch delivers, in revision order, every change to keys with the prefix
	// made after revision afterRev. The channel closes when ctx ends or after
	// a WatchEvent carrying an error. Implementations reconnect on their own
	// and resume where they stopped, without gaps or repeats.
	Watch(ctx context.Context, prefix string, afterRev int64) (<-chan WatchEvent, error)
	// Close releases the store. Watches end with ErrClosed.
	Close() error
}
