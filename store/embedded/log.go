package embedded

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/ebbrun/ebb/store"
)

// The on-disk encodings. They are pure functions so they can be tested
// without a database.
//
//	kv bucket:  key → version (8 bytes, big endian) ‖ value
//	log bucket: revision (8 bytes, big endian) → entry
//	entry:      uvarint(event count) ‖ event…
//	event:      type (1 byte: 'p' or 'd') ‖ uvarint(len key) ‖ key
//	            ‖ for puts: uvarint(len value) ‖ value

const (
	tagPut    = 'p'
	tagDelete = 'd'
)

var errCorrupt = errors.New("corrupt log entry")

func revKey(rev int64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(rev))
	return b[:]
}

func parseRevKey(b []byte) int64 { return int64(binary.BigEndian.Uint64(b)) }

// encodeKV returns version ‖ value in a fresh slice: bbolt keeps a reference
// to what it is given until the transaction commits.
func encodeKV(version int64, value []byte) []byte {
	b := make([]byte, 8+len(value))
	binary.BigEndian.PutUint64(b, uint64(version))
	copy(b[8:], value)
	return b
}

// kvVersion returns the version of an encoded kv value; 0 means absent.
func kvVersion(b []byte) int64 {
	if len(b) < 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(b))
}

// decodeKV copies an encoded kv value out of bbolt's memory, which is only
// valid inside the transaction.
func decodeKV(key string, b []byte) (store.KV, error) {
	if len(b) < 8 {
		return store.KV{}, fmt.Errorf("key %q: short value (%d bytes)", key, len(b))
	}
	return store.KV{Key: key, Value: append([]byte{}, b[8:]...), Version: kvVersion(b)}, nil
}

// appendEntry appends the log entry for the writes among ops; n is the
// number of events it holds. exists reports whether a delete removes a key,
// because deleting a missing key is not an event.
func appendEntry(dst []byte, ops []store.Op, n int, exists func(i int) bool) []byte {
	dst = binary.AppendUvarint(dst, uint64(n))
	for i, op := range ops {
		switch {
		case op.Kind == store.OpPut:
			dst = append(dst, tagPut)
			dst = binary.AppendUvarint(dst, uint64(len(op.Key)))
			dst = append(dst, op.Key...)
			dst = binary.AppendUvarint(dst, uint64(len(op.Value)))
			dst = append(dst, op.Value...)
		case op.Kind == store.OpDelete && exists(i):
			dst = append(dst, tagDelete)
			dst = binary.AppendUvarint(dst, uint64(len(op.Key)))
			dst = append(dst, op.Key...)
		}
	}
	return dst
}

// entryCount returns the number of events in an entry.
func entryCount(entry []byte) (int, error) {
	n, w := binary.Uvarint(entry)
	if w <= 0 {
		return 0, errCorrupt
	}
	return int(n), nil
}

// decodeEntry appends to dst the events of the entry at rev whose key has
// prefix, copying keys and values out of entry. It returns the number of
// events in the entry (matching or not) and the bytes of values copied.
func decodeEntry(dst []store.Event, rev int64, entry []byte, prefix string) ([]store.Event, int, int, error) {
	n, w := binary.Uvarint(entry)
	if w <= 0 {
		return dst, 0, 0, errCorrupt
	}
	b := entry[w:]
	copied := 0
	for i := uint64(0); i < n; i++ {
		if len(b) < 1 {
			return dst, 0, 0, errCorrupt
		}
		tag := b[0]
		b = b[1:]
		key, rest, ok := lenPrefixed(b)
		if !ok {
			return dst, 0, 0, errCorrupt
		}
		b = rest
		var value []byte
		switch tag {
		case tagPut:
			if value, b, ok = lenPrefixed(b); !ok {
				return dst, 0, 0, errCorrupt
			}
		case tagDelete:
		default:
			return dst, 0, 0, errCorrupt
		}
		if !strings.HasPrefix(string(key), prefix) { // no allocation: the conversion does not escape
			continue
		}
		ev := store.Event{Type: store.EventPut, KV: store.KV{Key: string(key), Version: rev}}
		if tag == tagDelete {
			ev.Type = store.EventDelete
		} else {
			ev.KV.Value = append([]byte{}, value...)
			copied += len(value)
		}
		dst = append(dst, ev)
	}
	if len(b) != 0 {
		return dst, 0, 0, errCorrupt
	}
	return dst, int(n), copied, nil
}

func lenPrefixed(b []byte) (field, rest []byte, ok bool) {
	l, w := binary.Uvarint(b)
	if w <= 0 || uint64(len(b)-w) < l {
		return nil, nil, false
	}
	return b[w : w+int(l)], b[w+int(l):], true
}
