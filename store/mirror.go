package store

import (
	"context"
	"errors"
	"time"
)

// Mirror keeps a local copy of every key under prefix and calls onChange
// with it: once after the initial listing, then after each batch of watch
// events. It lists again when the watch falls behind compaction or breaks,
// so the copy always converges. It returns when ctx ends.
//
// onChange runs on Mirror's goroutine and must not keep or modify the map
// after it returns: build what you need from it.
func Mirror(ctx context.Context, s Store, prefix string, onChange func(snapshot map[string]KV)) error {
	return MirrorUpdates(ctx, s, prefix, func(u Update) { onChange(u.Snapshot) })
}

// Update is one MirrorUpdates callback: the whole copy, and which keys it
// changed since the previous callback, so that a consumer with thousands of
// records can fold in only those.
type Update struct {
	Snapshot map[string]KV
	// Full is set after a listing (the first, or a relist after the watch
	// broke): Changed is empty and anything may differ from before.
	Full bool
	// Changed are the keys put or deleted since the previous callback, each
	// once; whether one was deleted is whether Snapshot still has it.
	Changed []string
	// Revision is a store revision the copy is complete up to: every change
	// under the prefix at or before it is in Snapshot. A key read from the
	// store at version v and missing from a Snapshot with Revision ≥ v has
	// been deleted since.
	Revision int64
}

// MirrorUpdates is Mirror for consumers that fold changes in: the same
// callbacks, with what changed. The same rules hold for the Update's map
// and slice as for Mirror's snapshot.
func MirrorUpdates(ctx context.Context, s Store, prefix string, onUpdate func(Update)) error {
	const maxBackoff = 2 * time.Second
	backoff := 10 * time.Millisecond
	for {
		err := mirrorOnce(ctx, s, prefix, onUpdate)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, ErrClosed) {
			return err
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

func mirrorOnce(ctx context.Context, s Store, prefix string, onUpdate func(Update)) error {
	kvs, rev, err := s.List(ctx, prefix)
	if err != nil {
		return err
	}
	snapshot := make(map[string]KV, len(kvs))
	for _, kv := range kvs {
		snapshot[kv.Key] = kv
	}
	onUpdate(Update{Snapshot: snapshot, Full: true, Revision: rev})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, err := s.Watch(ctx, prefix, rev)
	if err != nil {
		return err
	}
	var changed []string
	seen := map[string]bool{}
	revision := rev
	note := func(ev Event) {
		apply(snapshot, ev)
		revision = max(revision, ev.KV.Version)
		if !seen[ev.KV.Key] {
			seen[ev.KV.Key] = true
			changed = append(changed, ev.KV.Key)
		}
	}
	for ev := range events {
		if ev.Err != nil {
			return ev.Err
		}
		note(ev.Event)
		// Fold whatever else is already queued into the same callback, so a
		// burst of writes costs one rebuild downstream, not one per event.
		for pending := true; pending; {
			select {
			case ev, ok := <-events:
				if !ok {
					return ctx.Err()
				}
				if ev.Err != nil {
					return ev.Err
				}
				note(ev.Event)
			default:
				pending = false
			}
		}
		onUpdate(Update{Snapshot: snapshot, Changed: changed, Revision: revision})
		changed = changed[:0]
		clear(seen)
	}
	return ctx.Err()
}

func apply(snapshot map[string]KV, ev Event) {
	if ev.Type == EventDelete {
		delete(snapshot, ev.KV.Key)
		return
	}
	snapshot[ev.KV.Key] = ev.KV
}
