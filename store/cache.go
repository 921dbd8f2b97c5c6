package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Cache keeps a decoded copy of every record under one prefix. A process
// opens one Cache per prefix and hands it to every component that reads
// the prefix, so the store serves one List and one Watch for it however
// many read it.
//
// Run fills the cache and keeps it current. It lists again whenever the
// watch breaks or falls behind compaction, so the copy always converges.
// Readers either take a Snapshot, which costs no lock while nothing has
// changed, or Follow the typed changes as they come.
type Cache[T any] struct {
	st     Store
	prefix string
	decode func(value []byte) (T, error)
	onBad  func(key string, err error)

	running atomic.Bool
	ready   chan struct{} // closed after the first listing
	done    chan struct{} // closed when Run returns
	err     error         // why Run stopped, for Follow; read only after done

	// deliver is held while a batch is applied and handed to the
	// followers, so each follower sees every update once and in order, and
	// a Snapshot taken in a callback is the cache as that update left it.
	deliver   sync.Mutex
	followers []follower[T]
	nextID    int
	listed    bool

	// mu guards live and revision for Snapshot; Run, their only writer,
	// also holds deliver while it writes them. mu is never held across a
	// callback.
	mu       sync.Mutex
	live     map[string]*Versioned[T]
	revision int64
	snap     atomic.Pointer[Snapshot[T]] // nil once live has changed since it was taken
}

type follower[T any] struct {
	id int
	fn func(Update[T])
}

// CacheConfig says how a Cache decodes its records. The zero value decodes
// JSON and drops undecodable records silently.
type CacheConfig[T any] struct {
	// Decode turns a stored value into a record. Default: JSON.
	Decode func(value []byte) (T, error)
	// OnUndecodable hears of every value Decode refused; the cache leaves
	// such a key out, as if it were deleted. Optional. The store never
	// logs, so a process passes its logger's warning here.
	OnUndecodable func(key string, err error)
}

// Update is one batch of changes a Cache hands its followers. Followers
// share it, and must not modify its slice.
type Update[T any] struct {
	// Full says the cache listed the prefix (the first time, or again after
	// its watch broke): Changed holds every record, in key order, and a key
	// a follower holds that is not among them is gone.
	Full bool
	// Changed are the keys put or deleted since the previous update, each
	// once, in the order they first changed, with their records as they are
	// now.
	Changed []Change[T]
	// Revision is a store revision the cache is complete up to: every
	// change under the prefix at or before it is in. A key read from the
	// store at version v and missing from a cache at Revision ≥ v has been
	// deleted since.
	Revision int64
}

// Change is one key of an Update: the record now, or Deleted. A put whose
// value does not decode is delivered as a delete.
type Change[T any] struct {
	Versioned[T]
	Deleted bool
}

// Snapshot is an immutable copy of a Cache: every record it held at one
// moment. Records are shared between snapshots; do not modify them.
type Snapshot[T any] struct {
	// Revision is the store revision the snapshot is complete up to, as
	// Update.Revision.
	Revision int64
	records  map[string]*Versioned[T]
}

// Get returns the record at key.
func (s *Snapshot[T]) Get(key string) (Versioned[T], bool) {
	v, ok := s.records[key]
	if !ok {
		return Versioned[T]{}, false
	}
	return *v, true
}

// Len is the number of records.
func (s *Snapshot[T]) Len() int { return len(s.records) }

// All yields every record, in no particular order.
func (s *Snapshot[T]) All() iter.Seq[Versioned[T]] {
	return func(yield func(Versioned[T]) bool) {
		for _, v := range s.records {
			if !yield(*v) {
				return
			}
		}
	}
}

// NewCache returns a cache of every record under prefix in st. It is empty
// until Run lists the prefix.
func NewCache[T any](st Store, prefix string, cfg CacheConfig[T]) *Cache[T] {
	c := &Cache[T]{
		st:     st,
		prefix: prefix,
		decode: cfg.Decode,
		onBad:  cfg.OnUndecodable,
		ready:  make(chan struct{}),
		done:   make(chan struct{}),
		live:   map[string]*Versioned[T]{},
	}
	if c.decode == nil {
		c.decode = decodeJSON[T]
	}
	c.snap.Store(&Snapshot[T]{})
	return c
}

func decodeJSON[T any](value []byte) (T, error) {
	var v T
	err := json.Unmarshal(value, &v)
	return v, err
}

// Prefix is the prefix the cache holds.
func (c *Cache[T]) Prefix() string { return c.prefix }

// Ready is closed once the cache has listed its prefix.
func (c *Cache[T]) Ready() <-chan struct{} { return c.ready }

// Snapshot returns the cache's current records. Between changes every
// call returns the same snapshot without taking a lock; the first call
// after a change copies the index of records (not the records). Called in
// a Follow callback, it is the cache as that update left it.
func (c *Cache[T]) Snapshot() *Snapshot[T] {
	if s := c.snap.Load(); s != nil {
		return s
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.snap.Load(); s != nil {
		return s
	}
	s := &Snapshot[T]{Revision: c.revision, records: maps.Clone(c.live)}
	c.snap.Store(s)
	return s
}

// Followers is how many Follow calls are following the cache now, which
// tells whether every component meant to share it does.
func (c *Cache[T]) Followers() int {
	c.deliver.Lock()
	defer c.deliver.Unlock()
	return len(c.followers)
}

// FollowEnded reports whether Follow's err (with ctx, the follower's
// context) is a shutdown rather than a failure: the follower's context
// ended, or the cache's Run did because its own context was cancelled. A
// shared cache run by the caller can see the shutdown a moment before the
// follower's own context does, so ctx alone would call that a failure.
func FollowEnded(ctx context.Context, err error) bool {
	return ctx.Err() != nil || errors.Is(err, context.Canceled)
}

// Follow calls fn with every update until ctx ends or Run stops, and
// returns why: ctx's error, or why Run stopped (its context's error, or
// one wrapping ErrClosed). If the cache has
// listed already, the first call, a Full update of what it holds, comes at
// once on Follow's goroutine; the rest come on Run's. Calls to one fn never
// overlap, and fn holds up the cache and its other followers while it
// runs, so it should fold the update in and return: changes that arrive
// meanwhile come together in the next update.
func (c *Cache[T]) Follow(ctx context.Context, fn func(Update[T])) error {
	c.deliver.Lock()
	id := c.nextID
	c.nextID++
	c.followers = append(c.followers, follower[T]{id: id, fn: fn})
	if c.listed {
		fn(c.fullLocked())
	}
	c.deliver.Unlock()
	defer func() {
		c.deliver.Lock()
		c.followers = slices.DeleteFunc(c.followers, func(f follower[T]) bool { return f.id == id })
		c.deliver.Unlock()
	}()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return c.err
	}
}

// fullLocked is a Full update of what the cache holds; deliver is held.
func (c *Cache[T]) fullLocked() Update[T] {
	changed := make([]Change[T], 0, len(c.live))
	for _, key := range slices.Sorted(maps.Keys(c.live)) {
		changed = append(changed, Change[T]{Versioned: *c.live[key]})
	}
	return Update[T]{Full: true, Changed: changed, Revision: c.revision}
}

// Run lists the prefix, then follows its watch, until ctx ends or the
// store closes. It returns nil when ctx ends, and an error wrapping
// ErrClosed when the store closed. A failed listing or a broken watch is
// retried after a backoff.
func (c *Cache[T]) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return fmt.Errorf("store: the cache of %s is already running", c.prefix)
	}
	c.err = c.run(ctx)
	close(c.done)
	if ctx.Err() != nil {
		return nil
	}
	return c.err
}

func (c *Cache[T]) run(ctx context.Context) error {
	const minBackoff, maxBackoff = 10 * time.Millisecond, 2 * time.Second
	backoff := minBackoff
	for {
		listed, err := c.once(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, ErrClosed) {
			return fmt.Errorf("watch %s: %w", c.prefix, err)
		}
		if listed {
			// The store answered: a watch that broke after a listing is
			// not a store that keeps failing.
			backoff = minBackoff
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// once lists the prefix and follows one watch from there, until the watch
// breaks. It says whether the listing succeeded.
func (c *Cache[T]) once(ctx context.Context) (listed bool, err error) {
	kvs, rev, err := c.st.List(ctx, c.prefix)
	if err != nil {
		return false, err
	}
	// Run is live's only writer, so it reads live without a lock. A record
	// at the version the cache already holds is not decoded again: after a
	// broken watch, almost all are.
	live := make(map[string]*Versioned[T], len(kvs))
	full := Update[T]{Full: true, Changed: make([]Change[T], 0, len(kvs)), Revision: rev}
	for _, kv := range kvs {
		v := c.live[kv.Key]
		if v == nil || v.Version != kv.Version {
			if v = c.decodeKV(kv); v == nil {
				continue
			}
		}
		live[kv.Key] = v
		full.Changed = append(full.Changed, Change[T]{Versioned: *v})
	}
	c.publish(full, func() { c.live = live })

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, err := c.st.Watch(ctx, c.prefix, rev)
	if err != nil {
		return true, err
	}
	b := batch[T]{index: map[string]int{}, revision: rev}
	for ev := range events {
		if ev.Err != nil {
			return true, ev.Err
		}
		b.add(ev.Event, c.decodeKV)
		// Fold whatever else is already queued into the same update, so a
		// burst of writes costs one update downstream, not one per event.
		for pending := true; pending; {
			select {
			case ev, ok := <-events:
				if !ok {
					return true, ctx.Err()
				}
				if ev.Err != nil {
					return true, ev.Err
				}
				b.add(ev.Event, c.decodeKV)
			default:
				pending = false
			}
		}
		c.publish(Update[T]{Changed: b.changed, Revision: b.revision}, func() {
			for _, ch := range b.changed {
				if ch.Deleted {
					delete(c.live, ch.Key)
				} else {
					v := ch.Versioned
					c.live[ch.Key] = &v
				}
			}
		})
		b.reset()
	}
	return true, ctx.Err()
}

// decodeKV decodes one stored value, or reports it and returns nil.
func (c *Cache[T]) decodeKV(kv KV) *Versioned[T] {
	v, err := c.decode(kv.Value)
	if err != nil {
		if c.onBad != nil {
			c.onBad(kv.Key, err)
		}
		return nil
	}
	return &Versioned[T]{Key: kv.Key, Value: v, Version: kv.Version}
}

// publish applies an update to the cache and hands it to the followers.
func (c *Cache[T]) publish(u Update[T], apply func()) {
	c.deliver.Lock()
	defer c.deliver.Unlock()
	c.mu.Lock()
	apply()
	c.revision = u.Revision
	c.snap.Store(nil)
	c.mu.Unlock()
	if u.Full && !c.listed {
		c.listed = true
		close(c.ready)
	}
	for _, f := range c.followers {
		f.fn(u)
	}
}

// batch gathers the watch events of one update, one change per key.
type batch[T any] struct {
	changed  []Change[T]
	index    map[string]int // key → its position in changed
	revision int64
}

func (b *batch[T]) add(ev Event, decode func(KV) *Versioned[T]) {
	b.revision = max(b.revision, ev.KV.Version)
	ch := Change[T]{Versioned: Versioned[T]{Key: ev.KV.Key, Version: ev.KV.Version}, Deleted: true}
	if ev.Type == EventPut {
		if v := decode(ev.KV); v != nil {
			ch = Change[T]{Versioned: *v}
		}
	}
	if i, ok := b.index[ch.Key]; ok {
		b.changed[i] = ch
		return
	}
	b.index[ch.Key] = len(b.changed)
	b.changed = append(b.changed, ch)
}

// reset empties the batch for the next update; the followers may keep the
// last one's slice, so it is not reused.
func (b *batch[T]) reset() {
	b.changed = nil
	clear(b.index)
}
