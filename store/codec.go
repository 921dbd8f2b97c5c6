package store

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
)

// GetJSON reads key and decodes it into a T. It returns the key's version.
func GetJSON[T any](ctx context.Context, s Store, key string) (T, int64, error) {
	var v T
	kv, err := s.Get(ctx, key)
	if err != nil {
		return v, 0, err
	}
	if err := json.Unmarshal(kv.Value, &v); err != nil {
		return v, 0, fmt.Errorf("decode %s: %w", key, err)
	}
	return v, kv.Version, nil
}

// Versioned is a decoded record with the version it was read at.
type Versioned[T any] struct {
	Key     string
	Value   T
	Version int64
}

// ListJSON lists the prefix and decodes every value into a T.
func ListJSON[T any](ctx context.Context, s Store, prefix string) ([]Versioned[T], int64, error) {
	kvs, rev, err := s.List(ctx, prefix)
	if err != nil {
		return nil, 0, err
	}
	out := make([]Versioned[T], 0, len(kvs))
	for _, kv := range kvs {
		var v T
		if err := json.Unmarshal(kv.Value, &v); err != nil {
			return nil, 0, fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		out = append(out, Versioned[T]{Key: kv.Key, Value: v, Version: kv.Version})
	}
	return out, rev, nil
}

// PutJSON returns an op writing v as JSON. It panics only if v cannot be
// marshalled, which for the record types here is a programming error.
func PutJSON(key string, v any, version int64) Op {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("store: marshal %T: %v", v, err))
	}
	return Put(key, b, version)
}

func itoa(n int) string { return strconv.Itoa(n) }

func escapeRef(ref string) string { return url.PathEscape(ref) }

// DecodeSnapshot decodes a Mirror snapshot into records keyed by store key,
// reusing those old already holds at the same version: every change under a
// prefix delivers the whole prefix again, and decoding thousands of
// unchanged records each time would cost more than the change. A record
// that does not decode is left out and reported to onBad, when set.
func DecodeSnapshot[T any](snap map[string]KV, old map[string]Versioned[T], onBad func(key string, err error)) map[string]Versioned[T] {
	out := make(map[string]Versioned[T], len(snap))
	for key, kv := range snap {
		if v, ok := old[key]; ok && v.Version == kv.Version {
			out[key] = v
			continue
		}
		var v T
		if err := json.Unmarshal(kv.Value, &v); err != nil {
			if onBad != nil {
				onBad(key, err)
			}
			continue
		}
		out[key] = Versioned[T]{Key: key, Value: v, Version: kv.Version}
	}
	return out
}

// DecodeUpdate is FoldUpdate for records keyed by their store key: it
// folds one MirrorUpdates callback into m, in place, decoding only records
// whose version changed, and returns it (a new map if m is nil).
// Undecodable records are left out and reported to onBad, when set.
func DecodeUpdate[T any](m map[string]Versioned[T], u Update, onBad func(key string, err error)) map[string]Versioned[T] {
	return FoldUpdate(m, u, func(key string) string { return key }, nil, onBad)
}

// FoldUpdate brings m, keyed by nameOf(store key), in line with a mirror
// update and returns it (a new map if m is nil). It works in place and
// decodes only records whose version changed; after a full listing it
// walks the whole snapshot, otherwise only the keys the update changed.
// Names whose key left the snapshot are dropped unless keep (when set)
// says to keep them. Undecodable records are left out and reported to
// onBad, when set.
func FoldUpdate[T any](m map[string]Versioned[T], u Update, nameOf func(key string) string, keep func(name string) bool, onBad func(key string, err error)) map[string]Versioned[T] {
	if m == nil {
		m = make(map[string]Versioned[T], len(u.Snapshot))
	}
	put := func(key string, kv KV) {
		name := nameOf(key)
		if v, ok := m[name]; ok && v.Key == key && v.Version == kv.Version {
			return
		}
		var rec T
		if err := json.Unmarshal(kv.Value, &rec); err != nil {
			if onBad != nil {
				onBad(key, err)
			}
			delete(m, name)
			return
		}
		m[name] = Versioned[T]{Value: rec, Key: key, Version: kv.Version}
	}
	drop := func(name string) {
		if keep == nil || !keep(name) {
			delete(m, name)
		}
	}
	if !u.Full {
		for _, key := range u.Changed {
			if kv, ok := u.Snapshot[key]; ok {
				put(key, kv)
			} else if v, ok := m[nameOf(key)]; ok && v.Key == key {
				drop(nameOf(key))
			}
		}
		return m
	}
	for name, v := range m {
		if _, ok := u.Snapshot[v.Key]; !ok {
			drop(name)
		}
	}
	for key, kv := range u.Snapshot {
		put(key, kv)
	}
	return m
}
