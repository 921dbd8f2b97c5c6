package embedded

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/ebbrun/ebb/store"
)

// Watch buffering. A watcher holds at most one read batch plus its channel
// buffer, whatever the write rate; if it lags past the log's history it ends
// with store.ErrCompacted instead of growing.
const (
	watchChanSize    = 64
	watchBatchEvents = 256     // events scanned per read transaction
	watchBatchBytes  = 4 << 20 // value bytes copied per read transaction
)

// Watch implements store.Store. Each watch runs one goroutine that reads the
// event log from its own position, so it never holds up writers: they only
// wake it. A revision the log no longer holds yields store.ErrCompacted on
// the channel.
func (s *Store) Watch(ctx context.Context, prefix string, afterRev int64) (<-chan store.WatchEvent, error) {
	if err := s.usable(ctx); err != nil {
		return nil, err
	}
	if afterRev < 0 {
		return nil, fmt.Errorf("watch %q: negative revision %d", prefix, afterRev)
	}
	out := make(chan store.WatchEvent, watchChanSize)
	go s.watch(ctx, prefix, afterRev, out)
	return out, nil
}

func (s *Store) watch(ctx context.Context, prefix string, after int64, out chan<- store.WatchEvent) {
	defer close(out)
	var batch []store.Event
	for {
		// Take the wake-up channel before reading, so a commit landing
		// between the read and the wait is not missed.
		wake := s.committedChan()
		var (
			more bool
			err  error
		)
		batch, after, more, err = s.readLog(batch[:0], prefix, after)
		if err != nil {
			s.fail(ctx, out, err)
			return
		}
		for _, ev := range batch {
			select {
			case out <- store.WatchEvent{Event: ev}:
			case <-ctx.Done():
				return
			case <-s.done:
				s.fail(ctx, out, store.ErrClosed)
				return
			}
		}
		clear(batch) // drop references to delivered values
		if more {
			continue
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return
		case <-s.done:
			s.fail(ctx, out, store.ErrClosed)
			return
		}
	}
}

// fail delivers the terminal error unless the watcher has gone away.
func (s *Store) fail(ctx context.Context, out chan<- store.WatchEvent, err error) {
	select {
	case <-s.done:
		err = store.ErrClosed
	default:
	}
	select {
	case out <- store.WatchEvent{Err: err}:
	case <-ctx.Done():
	}
}

// readLog appends the events after revision after that match prefix, up to
// the batch limits. It returns the last revision it read past (matching or
// not) and whether more entries remain.
func (s *Store) readLog(dst []store.Event, prefix string, after int64) ([]store.Event, int64, bool, error) {
	more := false
	err := s.db.View(func(tx *bolt.Tx) error {
		if compacted := metaInt(tx.Bucket(bucketMeta), metaCompacted); after < compacted {
			return fmt.Errorf("watch after revision %d, log starts after %d: %w", after, compacted, store.ErrCompacted)
		}
		scanned, copied := 0, 0
		c := tx.Bucket(bucketLog).Cursor()
		for k, v := c.Seek(revKey(after + 1)); k != nil; k, v = c.Next() {
			if scanned >= watchBatchEvents || copied >= watchBatchBytes {
				more = true
				return nil
			}
			rev := parseRevKey(k)
			var n, m int
			var err error
			dst, n, m, err = decodeEntry(dst, rev, v, prefix)
			if err != nil {
				return fmt.Errorf("revision %d: %w", rev, err)
			}
			scanned += n
			copied += m
			after = rev
		}
		return nil
	})
	if err != nil {
		return dst, after, false, s.mapErr(err)
	}
	return dst, after, more, nil
}
