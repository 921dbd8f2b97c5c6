package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/ebbrun/ebb/internal/boltfile"

	"github.com/ebbrun/ebb/store"
)

// Defaults for Options.
const (
	DefaultHistory     = 100_000
	DefaultLockTimeout = 5 * time.Second
)

// Options configures Open. The zero value is ready to use.
type Options struct {
	// History is how many of the most recent events the store keeps so a
	// watch can resume from an older revision. Whole revisions are dropped,
	// oldest first, only while at least History events remain. Zero means
	// DefaultHistory.
	History int
	// LockTimeout bounds the wait for the file lock while another process
	// has the file open. Zero means DefaultLockTimeout.
	LockTimeout time.Duration
}

// Validate reports whether the options are usable.
func (o Options) Validate() error {
	if o.History < 0 {
		return fmt.Errorf("history %d: must not be negative", o.History)
	}
	if o.LockTimeout < 0 {
		return fmt.Errorf("lock timeout %s: must not be negative", o.LockTimeout)
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.History == 0 {
		o.History = DefaultHistory
	}
	if o.LockTimeout == 0 {
		o.LockTimeout = DefaultLockTimeout
	}
	return o
}

var (
	bucketMeta = []byte("meta")
	bucketKV   = []byte("kv")
	bucketLog  = []byte("log")

	metaRev       = []byte("rev")       // newest revision
	metaCompacted = []byte("compacted") // newest revision dropped from the log
	metaLogEvents = []byte("logEvents") // events currently in the log
)

const formatVersion = "1"

// maxBatch bounds how many waiting transactions share one bbolt commit.
const maxBatch = 256

// Store is the bbolt-backed store.Store.
type Store struct {
	db      *bolt.DB
	history uint64

	txns          chan *txnReq  // to the committer; unbuffered so a sent request is always answered
	done          chan struct{} // closed by Close
	committerDone chan struct{}
	closeOnce     sync.Once
	closeErr      error

	mu        sync.Mutex
	committed chan struct{} // closed, then replaced, after each commit that wrote events
}

var _ store.Store = (*Store)(nil)

type txnReq struct {
	ops  []store.Op
	rev  int64
	err  error
	done chan struct{}
}

// Open opens (creating if needed) the store in the bbolt file at path.
// Only one process may have the file open; another waits LockTimeout.
func Open(path string, opts Options) (*Store, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("embedded store options: %w", err)
	}
	opts = opts.withDefaults()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: opts.LockTimeout,
		// As etcd does: the map freelist stays fast on large files, and not
		// persisting it saves a page write per commit. Data pages are still
		// fsynced on every commit (NoSync stays false).
		FreelistType:   bolt.FreelistMapType,
		NoFreelistSync: true,
		// Statistics cost a global lock at the end of every read.
		NoStatistics: true,
	})
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if err := db.Update(initBuckets); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s := &Store{
		db:            db,
		history:       uint64(opts.History),
		txns:          make(chan *txnReq),
		done:          make(chan struct{}),
		committerDone: make(chan struct{}),
		committed:     make(chan struct{}),
	}
	go s.commitLoop()
	return s, nil
}

func initBuckets(tx *bolt.Tx) error {
	return boltfile.Init(tx, formatVersion, bucketKV, bucketLog)
}

// Close stops the store. Pending watches end with store.ErrClosed; a Txn
// already handed to the committer finishes first.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.done)
		<-s.committerDone
		// bbolt's Close waits for read transactions still open.
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("close store: %w", err)
		}
	})
	return s.closeErr
}

func (s *Store) usable(ctx context.Context) error {
	select {
	case <-s.done:
		return store.ErrClosed
	default:
	}
	return ctx.Err()
}

func (s *Store) mapErr(err error) error {
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return store.ErrClosed
	}
	return err
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, key string) (store.KV, error) {
	if err := s.usable(ctx); err != nil {
		return store.KV{}, err
	}
	var kv store.KV
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketKV).Get([]byte(key))
		if v == nil {
			return store.ErrNotFound
		}
		var err error
		kv, err = decodeKV(key, v)
		return err
	})
	if err != nil {
		return store.KV{}, fmt.Errorf("get %q: %w", key, s.mapErr(err))
	}
	return kv, nil
}

// List implements store.Store. The listing and the revision come from one
// read transaction, so they agree.
func (s *Store) List(ctx context.Context, prefix string) ([]store.KV, int64, error) {
	if err := s.usable(ctx); err != nil {
		return nil, 0, err
	}
	var (
		kvs []store.KV
		rev int64
	)
	err := s.db.View(func(tx *bolt.Tx) error {
		rev = metaInt(tx.Bucket(bucketMeta), metaRev)
		p := []byte(prefix)
		c := tx.Bucket(bucketKV).Cursor()
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			kv, err := decodeKV(string(k), v)
			if err != nil {
				return err
			}
			kvs = append(kvs, kv)
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("list %q: %w", prefix, s.mapErr(err))
	}
	return kvs, rev, nil
}

// Txn implements store.Store. Concurrent transactions are committed in
// groups by one goroutine, each with its own revision, so they share an
// fsync; none returns before the fsync covering it.
func (s *Store) Txn(ctx context.Context, ops ...store.Op) (int64, error) {
	if err := s.usable(ctx); err != nil {
		return 0, err
	}
	if err := store.ValidateOps(ops, bolt.MaxKeySize); err != nil {
		return 0, fmt.Errorf("txn: %w", err)
	}
	r := &txnReq{ops: ops, done: make(chan struct{})}
	select {
	case s.txns <- r:
	case <-s.done:
		return 0, store.ErrClosed
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	// Once handed over the transaction is committed or refused promptly;
	// abandoning it on ctx would leave its outcome unknown to the caller.
	<-r.done
	if r.err != nil {
		return 0, fmt.Errorf("txn: %w", r.err)
	}
	return r.rev, nil
}

func (s *Store) commitLoop() {
	defer close(s.committerDone)
	boltfile.GroupCommit(s.done, s.txns, maxBatch, s.commit)
}

// commit applies the batch in one bbolt transaction, in order, so each
// request sees the writes of those before it. A request whose check fails
// writes nothing and does not disturb the others. If the bbolt transaction
// itself fails, each request is retried alone so one cannot sink the rest.
func (s *Store) commit(batch []*txnReq) {
	wrote := false
	err := s.db.Update(func(tx *bolt.Tx) error {
		w := newWriter(tx, s.history)
		var err error
		for _, r := range batch {
			r.rev, r.err, err = w.apply(r.ops)
			if err != nil {
				return err
			}
		}
		wrote = w.changed
		return w.finish()
	})
	if err != nil {
		if len(batch) > 1 {
			for _, r := range batch {
				s.commit([]*txnReq{r})
			}
			return
		}
		batch[0].rev, batch[0].err = 0, fmt.Errorf("commit: %w", s.mapErr(err))
	}
	if err == nil && wrote {
		s.mu.Lock()
		close(s.committed)
		s.committed = make(chan struct{})
		s.mu.Unlock()
	}
	for _, r := range batch {
		close(r.done)
	}
}

// committedChan returns a channel closed at the next commit that writes.
func (s *Store) committedChan() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.committed
}

// writer applies transactions inside one bbolt write transaction.
type writer struct {
	meta, kv, log *bolt.Bucket
	history       uint64
	rev           int64
	compacted     int64
	logEvents     uint64
	changed       bool
	exists        []bool
}

func newWriter(tx *bolt.Tx, history uint64) *writer {
	w := &writer{
		meta:    tx.Bucket(bucketMeta),
		kv:      tx.Bucket(bucketKV),
		log:     tx.Bucket(bucketLog),
		history: history,
	}
	w.rev = metaInt(w.meta, metaRev)
	w.compacted = metaInt(w.meta, metaCompacted)
	w.logEvents = uint64(metaInt(w.meta, metaLogEvents))
	return w
}

// apply runs one transaction. conflict is a failed check (nothing written);
// err is a failure of bbolt itself, which aborts the whole batch.
func (w *writer) apply(ops []store.Op) (rev int64, conflict, err error) {
	w.exists = w.exists[:0]
	events := 0
	for _, op := range ops {
		cur := w.kv.Get([]byte(op.Key))
		have := kvVersion(cur)
		if op.Version != store.AnyVersion && have != op.Version {
			return 0, store.ConflictError(op, have), nil
		}
		w.exists = append(w.exists, cur != nil)
		if op.Kind == store.OpPut || (op.Kind == store.OpDelete && cur != nil) {
			events++
		}
	}
	if events == 0 {
		return w.rev, nil, nil
	}
	rev = w.rev + 1
	for i, op := range ops {
		switch {
		case op.Kind == store.OpPut:
			err = w.kv.Put([]byte(op.Key), encodeKV(rev, op.Value))
		case op.Kind == store.OpDelete && w.exists[i]:
			err = w.kv.Delete([]byte(op.Key))
		}
		if err != nil {
			return 0, nil, fmt.Errorf("%s %q: %w", op.Kind, op.Key, err)
		}
	}
	entry := appendEntry(nil, ops, events, func(i int) bool { return w.exists[i] })
	if err := w.log.Put(revKey(rev), entry); err != nil {
		return 0, nil, fmt.Errorf("append log: %w", err)
	}
	w.rev = rev
	w.logEvents += uint64(events)
	w.changed = true
	return rev, nil, nil
}

// finish drops the oldest revisions from the log while at least history
// events would remain, and records the counters.
func (w *writer) finish() error {
	if !w.changed {
		return nil
	}
	c := w.log.Cursor()
	for k, v := c.First(); k != nil; k, v = c.First() {
		n, err := entryCount(v)
		if err != nil {
			return fmt.Errorf("compact revision %d: %w", parseRevKey(k), err)
		}
		if w.logEvents-uint64(n) < w.history {
			break
		}
		rev := parseRevKey(k)
		if err := c.Delete(); err != nil {
			return fmt.Errorf("compact revision %d: %w", rev, err)
		}
		w.logEvents -= uint64(n)
		w.compacted = rev
	}
	for _, m := range []struct {
		key []byte
		val int64
	}{{metaRev, w.rev}, {metaCompacted, w.compacted}, {metaLogEvents, int64(w.logEvents)}} {
		if err := w.meta.Put(m.key, revKey(m.val)); err != nil {
			return fmt.Errorf("write meta %s: %w", m.key, err)
		}
	}
	return nil
}

func metaInt(meta *bolt.Bucket, key []byte) int64 {
	v := meta.Get(key)
	if len(v) != 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(v))
}
