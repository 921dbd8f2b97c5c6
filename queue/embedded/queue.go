package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/ebbrun/ebb/internal/boltfile"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/queue"
	"github.com/ebbrun/ebb/queue/internal/record"
)

// DefaultLockTimeout is Options.LockTimeout when zero.
const DefaultLockTimeout = 5 * time.Second

// Options configures Open. The zero value is ready to use.
type Options struct {
	// LockTimeout bounds the wait for the file lock while another process
	// has the file open. Zero means DefaultLockTimeout.
	LockTimeout time.Duration
}

// Validate reports whether the options are usable.
func (o Options) Validate() error {
	if o.LockTimeout < 0 {
		return fmt.Errorf("lock timeout %s: must not be negative", o.LockTimeout)
	}
	return nil
}

// The buckets beside boltfile's meta bucket. Index keys end in the invocation ID, so equal times sort by
// ID, and times are timeKey's 8 bytes, so byte order is time order.
var (
	bucketInv   = []byte("inv")   // id → the invocation's JSON
	bucketDue   = []byte("due")   // timeKey(due) + id → function: the line, live ones only
	bucketFnDue = []byte("fndue") // function + 0 + timeKey(due) + id: each function's line
	bucketFn    = []byte("fn")    // function + 0 + timeKey(created) + id: List, DeleteFunction
	bucketDone  = []byte("done")  // timeKey(completed) + id: Expire
	bucketIdem  = []byte("idem")  // function + 0 + idempotency key → id
)

const formatVersion = "1"

// maxBatch bounds how many waiting writes share one bbolt commit.
const maxBatch = 256

// expireBatch bounds the invocations one Expire commit deletes, so a large
// backlog does not make one huge transaction.
const expireBatch = 1000

var errClosed = errors.New("queue: closed")

// Queue is the bbolt-backed queue.Queue.
type Queue struct {
	db *bolt.DB

	writes        chan *writeReq // to the committer; unbuffered so a sent request is always answered
	done          chan struct{}  // closed by Close
	committerDone chan struct{}
	closeOnce     sync.Once
	closeErr      error
}

var _ queue.Queue = (*Queue)(nil)

// writeReq is one caller's write. fn runs inside the shared bbolt
// transaction and may run twice (alone, after a batch failed), so it sets
// its caller's results from scratch each time. It returns an error only
// when the transaction must fail; an outcome for the caller (ErrClaimLost,
// a dup) is one of its results, decided before it writes anything.
type writeReq struct {
	fn   func(tx *bolt.Tx) error
	err  error
	done chan struct{}
}

// Open opens (creating if needed) the queue in the bbolt file at path.
// Only one process may have the file open; another waits LockTimeout.
func Open(path string, opts Options) (*Queue, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("embedded queue options: %w", err)
	}
	if opts.LockTimeout == 0 {
		opts.LockTimeout = DefaultLockTimeout
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open queue %s: %w", path, err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: opts.LockTimeout,
		// As store/embedded: the map freelist stays fast on large files and
		// not persisting it saves a page write per commit; data pages are
		// still fsynced on every commit.
		FreelistType:   bolt.FreelistMapType,
		NoFreelistSync: true,
		NoStatistics:   true,
	})
	if err != nil {
		return nil, fmt.Errorf("open queue %s: %w", path, err)
	}
	if err := db.Update(initBuckets); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open queue %s: %w", path, err)
	}
	q := &Queue{
		db:            db,
		writes:        make(chan *writeReq),
		done:          make(chan struct{}),
		committerDone: make(chan struct{}),
	}
	go q.commitLoop()
	return q, nil
}

func initBuckets(tx *bolt.Tx) error {
	return boltfile.Init(tx, formatVersion, bucketInv, bucketDue, bucketFnDue, bucketFn, bucketDone, bucketIdem)
}

// Close closes the file; a write already handed to the committer finishes
// first. Later calls fail.
func (q *Queue) Close() error {
	q.closeOnce.Do(func() {
		close(q.done)
		<-q.committerDone
		if err := q.db.Close(); err != nil {
			q.closeErr = fmt.Errorf("close queue: %w", err)
		}
	})
	return q.closeErr
}

func (q *Queue) usable(ctx context.Context) error {
	select {
	case <-q.done:
		return errClosed
	default:
	}
	return ctx.Err()
}

func mapErr(err error) error {
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return errClosed
	}
	return err
}

// view runs a read transaction.
func (q *Queue) view(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if err := q.usable(ctx); err != nil {
		return err
	}
	return mapErr(q.db.View(fn))
}

// write hands fn to the committer and waits until its commit is on disk.
func (q *Queue) write(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if err := q.usable(ctx); err != nil {
		return err
	}
	r := &writeReq{fn: fn, done: make(chan struct{})}
	select {
	case q.writes <- r:
	case <-q.done:
		return errClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	// Once handed over the write is committed or refused promptly;
	// abandoning it on ctx would leave its outcome unknown to the caller.
	<-r.done
	return r.err
}

// commitLoop commits waiting writes in groups, so concurrent callers share
// an fsync, without waiting for company: a lone write commits at once.
func (q *Queue) commitLoop() {
	defer close(q.committerDone)
	boltfile.GroupCommit(q.done, q.writes, maxBatch, q.commit)
}

// commit applies the batch in one bbolt transaction, in order, so each
// write sees those before it. If the transaction fails, each write is
// retried alone so one cannot sink the rest.
func (q *Queue) commit(batch []*writeReq) {
	err := q.db.Update(func(tx *bolt.Tx) error {
		for _, r := range batch {
			if err := r.fn(tx); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil && len(batch) > 1 {
		for _, r := range batch {
			q.commit([]*writeReq{r})
		}
		return
	}
	if err != nil {
		batch[0].err = fmt.Errorf("commit: %w", mapErr(err))
	}
	for _, r := range batch {
		close(r.done)
	}
}

// timeKey encodes t so byte order is time order (nanoseconds, sign bit
// flipped; clamped to the range UnixNano can hold).
func timeKey(t time.Time) []byte {
	var ns int64
	switch {
	case t.Unix() <= math.MinInt64/int64(time.Second):
		ns = math.MinInt64
	case t.Unix() >= math.MaxInt64/int64(time.Second):
		ns = math.MaxInt64
	default:
		ns = t.UnixNano()
	}
	return binary.BigEndian.AppendUint64(nil, uint64(ns)^(1<<63))
}

func fnPrefix(fn string) []byte { return append([]byte(fn), 0) }

func join(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// buckets is one transaction's view of the buckets.
type buckets struct {
	inv, due, fnDue, fn, done, idem *bolt.Bucket
}

func open(tx *bolt.Tx) buckets {
	return buckets{
		inv:   tx.Bucket(bucketInv),
		due:   tx.Bucket(bucketDue),
		fnDue: tx.Bucket(bucketFnDue),
		fn:    tx.Bucket(bucketFn),
		done:  tx.Bucket(bucketDone),
		idem:  tx.Bucket(bucketIdem),
	}
}

func (b buckets) get(id string) (api.Invocation, bool, error) {
	v := b.inv.Get([]byte(id))
	if v == nil {
		return api.Invocation{}, false, nil
	}
	inv, err := record.Unmarshal(v)
	if err != nil {
		return api.Invocation{}, false, fmt.Errorf("invocation %s: %w", id, err)
	}
	return inv, true, nil
}

// indexKeys are the index entries a record has, derived from the record
// alone, so rewriting a record removes exactly the entries it had.
type indexKeys struct {
	due, fnDue, fn, done []byte
}

func keysOf(inv api.Invocation) indexKeys {
	id := []byte(inv.ID)
	k := indexKeys{fn: join(fnPrefix(inv.Function), timeKey(inv.CreatedAt), id)}
	if due, ok := record.Due(inv); ok {
		k.due = join(timeKey(due), id)
		k.fnDue = join(fnPrefix(inv.Function), k.due)
	}
	if inv.Status.Final() {
		k.done = join(timeKey(inv.CompletedAt), id)
	}
	return k
}

// put writes inv and its index entries, replacing old's (nil: new).
func (b buckets) put(old *api.Invocation, inv api.Invocation) error {
	v, err := record.Marshal(inv)
	if err != nil {
		return err
	}
	if old != nil {
		if err := b.unindex(*old); err != nil {
			return err
		}
	}
	k := keysOf(inv)
	fn := []byte(inv.Function)
	if err := b.fn.Put(k.fn, nil); err != nil {
		return err
	}
	if k.due != nil {
		if err := b.due.Put(k.due, fn); err != nil {
			return err
		}
		if err := b.fnDue.Put(k.fnDue, nil); err != nil {
			return err
		}
	}
	if k.done != nil {
		if err := b.done.Put(k.done, nil); err != nil {
			return err
		}
	}
	return b.inv.Put([]byte(inv.ID), v)
}

func (b buckets) unindex(inv api.Invocation) error {
	k := keysOf(inv)
	for _, e := range []struct {
		b   *bolt.Bucket
		key []byte
	}{{b.fn, k.fn}, {b.due, k.due}, {b.fnDue, k.fnDue}, {b.done, k.done}} {
		if e.key != nil {
			if err := e.b.Delete(e.key); err != nil {
				return err
			}
		}
	}
	return nil
}

// drop deletes inv, its index entries and its idempotency key.
func (b buckets) drop(inv api.Invocation) error {
	if err := b.unindex(inv); err != nil {
		return err
	}
	if inv.IdempotencyKey != "" {
		ik := idemKey(inv.Function, inv.IdempotencyKey)
		if string(b.idem.Get(ik)) == inv.ID {
			if err := b.idem.Delete(ik); err != nil {
				return err
			}
		}
	}
	return b.inv.Delete([]byte(inv.ID))
}

func idemKey(fn, key string) []byte { return append(fnPrefix(fn), key...) }

// Enqueue implements queue.Queue.
func (q *Queue) Enqueue(ctx context.Context, inv api.Invocation) (api.Invocation, bool, error) {
	inv, err := record.ForEnqueue(inv)
	if err != nil {
		return api.Invocation{}, false, fmt.Errorf("enqueue: %w", err)
	}
	var (
		stored api.Invocation
		dup    bool
		refuse error
	)
	err = q.write(ctx, func(tx *bolt.Tx) error {
		stored, dup, refuse = inv, false, nil
		b := open(tx)
		var ik []byte
		if inv.IdempotencyKey != "" {
			ik = idemKey(inv.Function, inv.IdempotencyKey)
			if id := b.idem.Get(ik); id != nil {
				old, ok, err := b.get(string(id))
				if err != nil {
					return err
				}
				if ok {
					stored, dup = old, true
					return nil
				}
			}
		}
		old, ok, err := b.get(inv.ID)
		if err != nil {
			return err
		}
		if ok {
			if old.Function != inv.Function {
				refuse = fmt.Errorf("enqueue %s: id taken by function %s", inv.ID, old.Function)
				return nil
			}
			stored, dup = old, true
			return nil
		}
		if ik != nil {
			if err := b.idem.Put(ik, []byte(inv.ID)); err != nil {
				return err
			}
		}
		return b.put(nil, inv)
	})
	if err != nil {
		return api.Invocation{}, false, fmt.Errorf("enqueue %s: %w", inv.ID, err)
	}
	if refuse != nil {
		return api.Invocation{}, false, refuse
	}
	return stored, dup, nil
}

// next finds the oldest due entry (timeKey(due) + id) among functions (all
// when empty); nil when none is due at now.
func next(b buckets, now time.Time, functions []string) []byte {
	limit := timeKey(now)
	var best []byte
	consider := func(k []byte) {
		if k != nil && bytes.Compare(k[:8], limit) <= 0 && (best == nil || bytes.Compare(k, best) < 0) {
			best = slices.Clone(k)
		}
	}
	if len(functions) == 0 {
		k, _ := b.due.Cursor().First()
		consider(k)
		return best
	}
	c := b.fnDue.Cursor()
	for _, fn := range functions {
		p := fnPrefix(fn)
		if k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p) {
			consider(k[len(p):])
		}
	}
	return best
}

// Claim implements queue.Queue. Workers poll, so an empty line is found
// with a read transaction: only a claim costs a commit.
func (q *Queue) Claim(ctx context.Context, worker string, now time.Time, visibility time.Duration, functions ...string) (api.Invocation, error) {
	if err := record.CheckClaim(worker, visibility, functions); err != nil {
		return api.Invocation{}, err
	}
	var due bool
	if err := q.view(ctx, func(tx *bolt.Tx) error {
		due = next(open(tx), now, functions) != nil
		return nil
	}); err != nil {
		return api.Invocation{}, fmt.Errorf("claim: %w", err)
	}
	if !due {
		return api.Invocation{}, queue.ErrEmpty
	}
	var (
		claimed api.Invocation
		found   bool
	)
	err := q.write(ctx, func(tx *bolt.Tx) error {
		found = false
		b := open(tx)
		k := next(b, now, functions)
		if k == nil {
			return nil
		}
		id := string(k[8:])
		old, ok, err := b.get(id)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("index names missing invocation %s", id)
		}
		claimed, found = record.Claimed(old, worker, now, visibility), true
		return b.put(&old, claimed)
	})
	if err != nil {
		return api.Invocation{}, fmt.Errorf("claim: %w", err)
	}
	if !found {
		return api.Invocation{}, queue.ErrEmpty
	}
	return claimed, nil
}

// Finish implements queue.Queue.
func (q *Queue) Finish(ctx context.Context, inv api.Invocation) error {
	worker, attempts := inv.ClaimedBy, inv.Attempts
	inv, err := record.ForFinish(inv)
	if err != nil {
		return err
	}
	lost := false
	err = q.write(ctx, func(tx *bolt.Tx) error {
		b := open(tx)
		old, ok, err := b.get(inv.ID)
		if err != nil {
			return err
		}
		lost = !ok || old.Function != inv.Function || old.Status != api.InvocationRunning || old.ClaimedBy != worker || old.Attempts != attempts
		if lost {
			return nil
		}
		return b.put(&old, inv)
	})
	if err != nil {
		return fmt.Errorf("finish %s: %w", inv.ID, err)
	}
	if lost {
		return fmt.Errorf("finish %s: %w", inv.ID, queue.ErrClaimLost)
	}
	return nil
}

// Update implements queue.Queue.
func (q *Queue) Update(ctx context.Context, inv api.Invocation) error {
	var refuse error
	err := q.write(ctx, func(tx *bolt.Tx) error {
		refuse = nil
		b := open(tx)
		old, ok, err := b.get(inv.ID)
		if err != nil {
			return err
		}
		if !ok || old.Function != inv.Function {
			refuse = fmt.Errorf("update %s: %w", inv.ID, queue.ErrNotFound)
			return nil
		}
		upd, err := record.Update(old, inv)
		if err != nil {
			refuse = err
			return nil
		}
		return b.put(&old, upd)
	})
	if err != nil {
		return fmt.Errorf("update %s: %w", inv.ID, err)
	}
	return refuse
}

// Get implements queue.Queue.
func (q *Queue) Get(ctx context.Context, function, id string) (api.Invocation, error) {
	var (
		inv api.Invocation
		ok  bool
	)
	err := q.view(ctx, func(tx *bolt.Tx) error {
		var err error
		inv, ok, err = open(tx).get(id)
		return err
	})
	if err != nil {
		return api.Invocation{}, fmt.Errorf("get %s: %w", id, err)
	}
	if !ok || inv.Function != function {
		return api.Invocation{}, fmt.Errorf("get %s: %w", id, queue.ErrNotFound)
	}
	return inv, nil
}

// List implements queue.Queue.
func (q *Queue) List(ctx context.Context, function string, limit int) ([]api.Invocation, error) {
	var out []api.Invocation
	err := q.view(ctx, func(tx *bolt.Tx) error {
		out = nil
		b := open(tx)
		p := fnPrefix(function)
		c := b.fn.Cursor()
		// Walk the function's entries backwards, newest first, from the
		// first key past them (function + 1: names hold no NUL).
		k, _ := c.Seek(append([]byte(function), 1))
		if k == nil {
			k, _ = c.Last()
		} else {
			k, _ = c.Prev()
		}
		for ; k != nil && bytes.HasPrefix(k, p); k, _ = c.Prev() {
			if limit > 0 && len(out) == limit {
				break
			}
			id := string(k[len(p)+8:])
			inv, ok, err := b.get(id)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("index names missing invocation %s", id)
			}
			out = append(out, inv)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", function, err)
	}
	return out, nil
}

// Depth implements queue.Queue: it counts the function's line.
func (q *Queue) Depth(ctx context.Context, function string) (int, error) {
	n := 0
	err := q.view(ctx, func(tx *bolt.Tx) error {
		p := fnPrefix(function)
		c := open(tx).fnDue.Cursor()
		for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("depth %s: %w", function, err)
	}
	return n, nil
}

// Expire implements queue.Queue, in commits of at most expireBatch.
func (q *Queue) Expire(ctx context.Context, before time.Time) (int, error) {
	limit := timeKey(before)
	total := 0
	for {
		n := 0
		err := q.write(ctx, func(tx *bolt.Tx) error {
			n = 0
			b := open(tx)
			var ids []string
			c := b.done.Cursor()
			for k, _ := c.First(); k != nil && bytes.Compare(k[:8], limit) < 0 && len(ids) < expireBatch; k, _ = c.Next() {
				ids = append(ids, string(k[8:]))
			}
			for _, id := range ids {
				if err := b.dropID(id); err != nil {
					return err
				}
			}
			n = len(ids)
			return nil
		})
		total += n
		if err != nil {
			return total, fmt.Errorf("expire: %w", err)
		}
		if n < expireBatch {
			return total, nil
		}
	}
}

func (b buckets) dropID(id string) error {
	inv, ok, err := b.get(id)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("index names missing invocation %s", id)
	}
	return b.drop(inv)
}

// DeleteFunction implements queue.Queue, in commits of at most
// expireBatch.
func (q *Queue) DeleteFunction(ctx context.Context, function string) error {
	p := fnPrefix(function)
	for {
		n := 0
		err := q.write(ctx, func(tx *bolt.Tx) error {
			b := open(tx)
			var ids []string
			c := b.fn.Cursor()
			for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p) && len(ids) < expireBatch; k, _ = c.Next() {
				ids = append(ids, string(k[len(p)+8:]))
			}
			for _, id := range ids {
				if err := b.dropID(id); err != nil {
					return err
				}
			}
			n = len(ids)
			return nil
		})
		if err != nil {
			return fmt.Errorf("delete function %s: %w", function, err)
		}
		if n < expireBatch {
			return nil
		}
	}
}
