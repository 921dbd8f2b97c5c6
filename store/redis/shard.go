package redis

import (
	"fmt"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ebbrun/ebb/store"
)

// Node streams. Every event also goes to the cluster's event stream, but
// the events of a key under one node's assignments or job pods
// (assignments/{node}/…, jobpods/{node}/…) go to that node's own stream
// too, P + "shard:" + "assignments/{node}/", and a watch of such a prefix
// reads only that stream. A node agent's two watches then read their own
// node's few events instead of every event of the cluster: at 1,000 nodes
// the cluster stream is sent 2,000 times over, and the agents' share of
// what Redis sends drops by about the number of nodes.
//
// A shard entry has the same ID as its entry in the cluster stream (so
// the version and the revision mean the same) and carries b, the ID of the
// entry before it in the same shard ("0-0" for the first), kept in the
// hash P + "shardlast". A watch knows it missed nothing when each entry's
// b is the entry it delivered last, or, for its first entry, at or before
// the revision it started from; anything else means MAXLEN trimmed the
// shard past it: store.ErrCompacted, as for the cluster stream.
var shardPrefixes = []string{store.PrefixAssignments, store.PrefixJobPods}

// shardOf is the shard of a key or of a watch's prefix: its sharded
// prefix and the next path segment with its slash ("assignments/n1/"), or
// "" for keys and prefixes that are not within one node's.
func shardOf(key string) string {
	for _, p := range shardPrefixes {
		rest, ok := strings.CutPrefix(key, p)
		if !ok {
			continue
		}
		i := strings.IndexByte(rest, '/')
		if i <= 0 {
			return ""
		}
		return key[:len(p)+i+1]
	}
	return ""
}

// parseShardEntry decodes one shard stream entry: its position, the
// position of the shard entry before it, and its event.
func parseShardEntry(m goredis.XMessage) (pos, before position, ev store.Event, err error) {
	if pos, err = parseID(m.ID); err != nil {
		return pos, before, ev, err
	}
	b, _ := m.Values["b"].(string)
	if before, err = parseID(b); err != nil {
		return pos, before, ev, fmt.Errorf("malformed entry %s: %w", m.ID, err)
	}
	if !before.less(pos) {
		return pos, before, ev, fmt.Errorf("malformed entry %s: before %s", m.ID, b)
	}
	t, _ := m.Values["t"].(string)
	k, okK := m.Values["k"].(string)
	if !okK {
		return pos, before, ev, fmt.Errorf("malformed entry %s: %v", m.ID, m.Values)
	}
	ev = store.Event{KV: store.KV{Key: k, Version: pos.rev}}
	switch t {
	case "p":
		v, _ := m.Values["v"].(string)
		ev.Type, ev.KV.Value = store.EventPut, []byte(v)
	case "d":
		ev.Type = store.EventDelete
	default:
		return pos, before, ev, fmt.Errorf("malformed entry %s: type %q", m.ID, t)
	}
	return pos, before, ev, nil
}

func (p position) less(q position) bool {
	return p.rev < q.rev || (p.rev == q.rev && p.seq < q.seq)
}
