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
