package embedded

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/store"
)

func TestEntryRoundTrip(t *testing.T) {
	ops := []store.Op{
		store.Put("a/1", []byte("one"), store.AnyVersion),
		store.Check("a/1", 3),
		store.Delete("a/2", store.AnyVersion),
		store.Delete("a/missing", store.AnyVersion),
		store.Put("b/1", nil, store.MustNotExist),
	}
	exists := []bool{true, true, true, false, false}
	entry := appendEntry(nil, ops, 3, func(i int) bool { return exists[i] })
	n, err := entryCount(entry)
	require.NoError(t, err)
	assert.Equal(t, 3, n)

	tests := []struct {
		prefix string
		want   []store.Event
		copied int
	}{
		{"", []store.Event{
			{Type: store.EventPut, KV: store.KV{Key: "a/1", Value: []byte("one"), Version: 9}},
			{Type: store.EventDelete, KV: store.KV{Key: "a/2", Version: 9}},
			{Type: store.EventPut, KV: store.KV{Key: "b/1", Value: []byte{}, Version: 9}},
		}, 3},
		{"a/", []store.Event{
			{Type: store.EventPut, KV: store.KV{Key: "a/1", Value: []byte("one"), Version: 9}},
			{Type: store.EventDelete, KV: store.KV{Key: "a/2", Version: 9}},
		}, 3},
		{"c", nil, 0},
	}
	for _, tc := range tests {
		got, n, copied, err := decodeEntry(nil, 9, entry, tc.prefix)
		require.NoError(t, err)
		assert.Equal(t, 3, n, "all events are counted, matching or not")
		assert.Equal(t, tc.copied, copied)
		assert.Equal(t, tc.want, got, "prefix %q", tc.prefix)
	}
}

func TestDecodeEntryCorrupt(t *testing.T) {
	good := appendEntry(nil, []store.Op{store.Put("k", []byte("v"), store.AnyVersion)}, 1, func(int) bool { return true })
	tests := map[string][]byte{
		"empty":           {},
		"truncated":       good[:len(good)-1],
		"trailing bytes":  append(append([]byte{}, good...), 0),
		"unknown tag":     {1, 'x', 1, 'k'},
		"count too large": {2, 'd', 1, 'k'},
		"key overruns":    {1, 'd', 9, 'k'},
	}
	for name, entry := range tests {
		_, _, _, err := decodeEntry(nil, 1, entry, "")
		assert.ErrorIs(t, err, errCorrupt, name)
	}
}

func TestKVEncoding(t *testing.T) {
	b := encodeKV(42, []byte("value"))
	assert.Equal(t, int64(42), kvVersion(b))
	kv, err := decodeKV("k", b)
	require.NoError(t, err)
	assert.Equal(t, store.KV{Key: "k", Value: []byte("value"), Version: 42}, kv)
	assert.Zero(t, kvVersion(nil), "absent keys are at version 0")
	_, err = decodeKV("k", []byte{1, 2})
	assert.Error(t, err)
}
