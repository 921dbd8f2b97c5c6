package redis

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ebbrun/ebb/store"
)

const (
	watchChanSize = 64
	// watchBatch is the XREAD COUNT: the most entries a watch holds besides
	// its channel buffer.
	watchBatch = 256
	// watchBlock bounds one XREAD BLOCK, so a connection that died silently
	// is noticed and replaced.
	watchBlock    = 5 * time.Second
	watchRetryMin = 10 * time.Millisecond
	watchRetryMax = 500 * time.Millisecond
)

// position is a stream entry ID: revision and event index within it.
type position struct{ rev, seq int64 }

func parseID(id string) (position, error) {
	r, q, ok := strings.Cut(id, "-")
	if !ok {
		return position{}, fmt.Errorf("bad stream id %q", id)
	}
	rev, err1 := strconv.ParseInt(r, 10, 64)
	seq, err2 := strconv.ParseInt(q, 10, 64)
	if err1 != nil || err2 != nil {
		return position{}, fmt.Errorf("bad stream id %q", id)
	}
	return position{rev, seq}, nil
}

// next is the entry that must follow p, given its revision has n events.
func (p position) next(n int64) position {
	if p.seq+1 < n {
		return position{p.rev, p.seq + 1}
	}
	return position{p.rev + 1, 0}
}

// Watch implements store.Store. Each watch reads the event stream with
// XREAD BLOCK on a connection of its own, which it closes to stop at once
// when ctx ends or the store closes. After a connection error it reconnects
// with backoff and reads on from the last entry it delivered. Every entry
// must be the exact successor of the previous one; a gap means the stream
// was trimmed past the watch, which then ends with store.ErrCompacted. A
// prefix within one node's assignments or job pods reads that node's
// stream instead of the cluster's (shard.go).
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

func (s *Store) watch(parent context.Context, prefix string, after int64, out chan<- store.WatchEvent) {
	defer close(out)
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	stopOnClose := context.AfterFunc(s.ctx, cancel)
	defer stopOnClose()

	conn := s.target.NewClient(1)
	defer conn.Close()
	// Closing the client interrupts a blocking XREAD; go-redis does not
	// abandon a read when its context is cancelled.
	stopInterrupt := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stopInterrupt()

	fail := func(err error) {
		if s.ctx.Err() != nil {
			err = store.ErrClosed
		}
		select {
		case out <- store.WatchEvent{Err: err}:
		case <-parent.Done():
		}
	}
	stopped := func() bool {
		if s.ctx.Err() != nil {
			fail(store.ErrClosed)
			return true
		}
		return ctx.Err() != nil
	}

	want := position{after + 1, 0}
	lastID := strconv.FormatInt(after, 10) + "-" + strconv.FormatUint(math.MaxUint64, 10)
	delivered := after // the last revision fully or partly delivered
	// A prefix within one node's keys reads that node's stream (shard.go):
	// last is the shard entry delivered last, none yet at first.
	stream, shard := s.keyEvents, shardOf(prefix)
	if shard != "" {
		stream = s.keyShards + shard
	}
	var last *position
	retry := time.Duration(0)
	for {
		if retry > 0 {
			t := time.NewTimer(retry)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
			if stopped() {
				return
			}
			// The data may have been replaced while we were away (a Redis
			// restarted without its AOF): if the revision went backwards,
			// our position means nothing any more.
			if cur, err := conn.Get(ctx, s.keyRev).Int64(); err == nil || errors.Is(err, goredis.Nil) {
				if cur < delivered {
					fail(fmt.Errorf("watch: store revision %d is behind delivered revision %d: %w", cur, delivered, store.ErrCompacted))
					return
				}
			}
		}
		streams, err := conn.XRead(ctx, &goredis.XReadArgs{
			Streams: []string{stream, lastID},
			Count:   watchBatch,
			Block:   watchBlock,
		}).Result()
		if stopped() {
			return
		}
		if errors.Is(err, goredis.Nil) { // the block timed out
			retry = 0
			continue
		}
		if err != nil {
			retry = min(max(2*retry, watchRetryMin), watchRetryMax)
			continue
		}
		retry = 0
		for _, st := range streams {
			for _, m := range st.Messages {
				var ev store.Event
				if shard == "" {
					pos, n, e, err := parseEntry(m)
					if err != nil {
						fail(fmt.Errorf("watch: %w", err))
						return
					}
					if pos != want {
						fail(fmt.Errorf("watch: next event is %d-%d, want %d-%d: %w", pos.rev, pos.seq, want.rev, want.seq, store.ErrCompacted))
						return
					}
					ev, want, lastID, delivered = e, pos.next(n), m.ID, pos.rev
				} else {
					pos, before, e, err := parseShardEntry(m)
					if err != nil {
						fail(fmt.Errorf("watch %s: %w", shard, err))
						return
					}
					if (last != nil && before != *last) || (last == nil && before.rev > after) {
						fail(fmt.Errorf("watch %s: entry %d-%d follows %d-%d, which this watch never saw: %w", shard, pos.rev, pos.seq, before.rev, before.seq, store.ErrCompacted))
						return
					}
					ev, last, lastID, delivered = e, &pos, m.ID, pos.rev
				}
				if !strings.HasPrefix(ev.KV.Key, prefix) {
					continue
				}
				select {
				case out <- store.WatchEvent{Event: ev}:
				case <-ctx.Done():
					stopped()
					return
				}
			}
		}
	}
}

// parseEntry decodes one stream entry written by txnScript.
func parseEntry(m goredis.XMessage) (position, int64, store.Event, error) {
	pos, err := parseID(m.ID)
	if err != nil {
		return pos, 0, store.Event{}, err
	}
	t, _ := m.Values["t"].(string)
	k, okK := m.Values["k"].(string)
	ns, _ := m.Values["n"].(string)
	n, err := strconv.ParseInt(ns, 10, 64)
	if !okK || err != nil || n <= pos.seq {
		return pos, 0, store.Event{}, fmt.Errorf("malformed entry %s: %v", m.ID, m.Values)
	}
	ev := store.Event{KV: store.KV{Key: k, Version: pos.rev}}
	switch t {
	case "p":
		v, _ := m.Values["v"].(string)
		ev.Type, ev.KV.Value = store.EventPut, []byte(v)
	case "d":
		ev.Type = store.EventDelete
	default:
		return pos, 0, store.Event{}, fmt.Errorf("malformed entry %s: type %q", m.ID, t)
	}
	return pos, n, ev, nil
}
