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
	const maxBackoff = 2 * time.Second
	backoff := 10 * time.Millisecond
	for {
		err := mirrorOnce(ctx, s, prefix, onChange)
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

func mirrorOnce(ctx context.Context, s Store, prefix string, onChange func(map[string]KV)) error {
	kvs, rev, err := s.List(ctx, prefix)
	if err != nil {
		return err
	}
	snapshot := make(map[string]KV, len(kvs))
	for _, kv := range kvs {
		snapshot[kv.Key] = kv
	}
	onChange(snapshot)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, err := s.Watch(ctx, prefix, rev)
	if err != nil {
		return err
	}
	for ev := range events {
		if ev.Err != nil {
			return ev.Err
		}
		apply(snapshot, ev.Event)
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
				apply(snapshot, ev.Event)
			default:
				pending = false
			}
		}
		onChange(snapshot)
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
