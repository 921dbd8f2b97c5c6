package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/store"
)

// DefaultBookmarkInterval is how often a quiet watch sends a BOOKMARK, so
// that proxies do not close it for idleness and a client knows the
// version to resume from.
const DefaultBookmarkInterval = 15 * time.Second

// watchOf reads ?watch: true or 1 watches, false, 0 or absent lists.
func watchOf(r *http.Request) (bool, error) {
	switch v := r.URL.Query().Get("watch"); v {
	case "true", "1":
		return true, nil
	case "", "false", "0":
		return false, nil
	default:
		return false, &api.ValidationError{Field: "watch", Reason: fmt.Sprintf("%q is not true or false", truncateForError(v))}
	}
}

// watchFunctions serves GET .../functions?watch=true: the namespace's
// functions matching sel as a stream of api.WatchEvents, NDJSON or (with
// Accept: text/event-stream) server-sent events.
//
// Without ?resourceVersion it sends every current function as ADDED, then
// every change after that listing. With ?resourceVersion=N (or an SSE
// Last-Event-ID) it sends every change after N, in store order; a
// compacted N is 410 gone.
//
// It follows one store watch of every key, so that one ordered stream
// carries both the function records (spec, labels, traffic: ADDED,
// MODIFIED, DELETED) and what its status is made of (scales, endpoints,
// revision status: MODIFIED with the status as it is then), which is what
// `ebb wait --for ready` waits on. A function entering the selector is
// ADDED and one leaving it DELETED, as in Kubernetes.
func (s *Server) watchFunctions(w http.ResponseWriter, r *http.Request, sel api.Selector) error {
	ctx := r.Context()
	ns := namespaceOf(r)
	sse := strings.Contains(r.Header.Get("Accept"), "text/event-stream")
	from := r.URL.Query().Get("resourceVersion")
	if from == "" && sse {
		from = r.Header.Get("Last-Event-ID")
	}
	var after int64
	if from != "" {
		v, err := ParseResourceVersion("resourceVersion", from)
		if err != nil {
			return err
		}
		after = v
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		return errors.New("watch: the response cannot be streamed")
	}
	kvs, listRev, err := s.deps.Store.List(ctx, store.PrefixFunctions)
	if err != nil {
		return err
	}
	st := &watchState{ns: ns, sel: sel, matched: map[string]bool{}, last: map[string]store.Function{}, emitted: map[string]int64{}, created: map[string]int64{}}
	var initial []api.WatchEvent
	if from == "" {
		// Everything known: a function not listed does not exist.
		st.unknownIsGone = true
		after = listRev
		snap, err := s.readSnapshot(ctx)
		if err != nil {
			return err
		}
		for _, kv := range kvs {
			rec, ok := st.decode(kv)
			if !ok {
				continue
			}
			m := sel.Matches(rec.Spec.Labels)
			st.matched[rec.Name] = m
			if m {
				st.last[rec.Name] = rec
				fn := s.buildStatus(rec, kv.Version, snap)
				initial = append(initial, api.WatchEvent{Type: api.WatchAdded, Object: &fn, ResourceVersion: resourceVersion(kv.Version)})
			}
		}
	} else {
		// A function untouched since N was then as it is now; any other
		// is learned from the events.
		for _, kv := range kvs {
			if rec, ok := st.decode(kv); ok && kv.Version <= after {
				m := sel.Matches(rec.Spec.Labels)
				st.matched[rec.Name] = m
				if m {
					st.last[rec.Name] = rec
				}
			}
		}
	}
	events, err := s.deps.Store.Watch(ctx, "", after)
	if err != nil {
		return err
	}
	// A compacted N is the watch's first item. Every key is watched, so
	// when the store has moved past N an item comes at once: wait for it
	// to answer 410 before the 200 goes out.
	var first *store.WatchEvent
	if after < listRev {
		select {
		case we, ok := <-events:
			if !ok {
				return ctx.Err()
			}
			if errors.Is(we.Err, store.ErrCompacted) {
				return errorf(http.StatusGone, api.CodeGone, "resourceVersion %d has been compacted away; list again and watch from the list's version", after)
			}
			if we.Err != nil {
				return we.Err
			}
			first = &we
		case <-ctx.Done():
			return nil
		}
	}
	if sse {
		w.Header().Set("Content-Type", "text/event-stream")
	} else {
		w.Header().Set("Content-Type", "application/x-ndjson")
	}
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	send := func(ev api.WatchEvent) bool {
		b, err := json.Marshal(ev)
		if err != nil {
			s.deps.Logger.Error("watch: encode event", "err", err)
			return false
		}
		if sse {
			_, err = fmt.Fprintf(w, "event: %s\nid: %s\ndata: %s\n\n", ev.Type, ev.ResourceVersion, b)
		} else {
			_, err = fmt.Fprintf(w, "%s\n", b)
		}
		if err != nil {
			return false // the client went away
		}
		flusher.Flush()
		return true
	}
	for _, ev := range initial {
		if !send(ev) {
			return nil
		}
	}
	flusher.Flush()
	lastRev := after
	handle := func(we store.WatchEvent) bool {
		lastRev = we.KV.Version
		for _, ev := range s.watchEvents(ctx, st, we.Event) {
			if !send(ev) {
				return false
			}
		}
		return true
	}
	if first != nil && !handle(*first) {
		return nil
	}
	ticker := time.NewTicker(s.bookmarkEvery)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
			if !send(api.WatchEvent{Type: api.WatchBookmark, ResourceVersion: resourceVersion(lastRev)}) {
				return nil
			}
		case we, ok := <-events:
			if !ok {
				return nil
			}
			if we.Err != nil {
				// The answer has begun; ending the stream is all there
				// is. The client resumes from its last version and gets
				// 410 if that is gone.
				s.deps.Logger.Warn("watch ended", "namespace", ns, "after", lastRev, "err", we.Err)
				return nil
			}
			if !handle(we) {
				return nil
			}
		}
	}
}

// watchState is what one watch knows of the functions it follows.
type watchState struct {
	ns  string
	sel api.Selector
	// matched says, per function (qualified name), whether the client has
	// it (true) or it is known absent or outside the selector (false).
	// A function missing is unknown: a resumed watch learns it from its
	// first event.
	matched map[string]bool
	// unknownIsGone says a function missing from matched does not exist
	// (a watch that began with a listing).
	unknownIsGone bool
	// last is each matched function's newest record, for its DELETED.
	last map[string]store.Function
	// emitted is the store revision of each function's last event, so a
	// transaction that writes several keys of one function is one event.
	emitted map[string]int64
	// created is the revision at which each function's first revision was
	// written: the record written in the same transaction is a creation.
	created map[string]int64
}

// decode reads a function record of the watched namespace.
func (st *watchState) decode(kv store.KV) (store.Function, bool) {
	name := strings.TrimPrefix(kv.Key, store.PrefixFunctions)
	if ns, _ := api.SplitQualifiedName(name); ns != st.ns {
		return store.Function{}, false
	}
	var rec store.Function
	if err := json.Unmarshal(kv.Value, &rec); err != nil {
		return store.Function{}, false
	}
	return rec, true
}

// watchEvents turns one store event into the watch's events (zero or one).
func (s *Server) watchEvents(ctx context.Context, st *watchState, ev store.Event) []api.WatchEvent {
	key, rev := ev.KV.Key, ev.KV.Version
	rv := resourceVersion(rev)
	switch {
	case strings.HasPrefix(key, store.PrefixFunctions):
		name := strings.TrimPrefix(key, store.PrefixFunctions)
		if ns, _ := api.SplitQualifiedName(name); ns != st.ns {
			return nil
		}
		prev, known := st.matched[name]
		if ev.Type == store.EventDelete {
			if !known {
				prev = !st.unknownIsGone // a resumed watch cannot tell: say it went
			}
			rec, had := st.last[name]
			st.matched[name] = false
			delete(st.last, name)
			if !prev {
				return nil
			}
			if !had {
				rec = store.Function{Name: name}
			}
			fn := s.buildStatus(rec, rev, newSnapshot())
			st.emitted[name] = rev
			return []api.WatchEvent{{Type: api.WatchDeleted, Object: &fn, ResourceVersion: rv}}
		}
		rec, ok := st.decode(ev.KV)
		if !ok {
			return nil
		}
		m := st.sel.Matches(rec.Spec.Labels)
		isNew := st.created[name] == rev
		delete(st.created, name)
		switch {
		case isNew:
			prev = false
		case !known && st.unknownIsGone:
			prev = false
		case !known:
			prev = m // changed after N: the client had it if it matches now
		}
		st.matched[name] = m
		var typ string
		switch {
		case m && prev:
			typ = api.WatchModified
		case m:
			typ = api.WatchAdded
		case prev:
			typ = api.WatchDeleted
		default:
			delete(st.last, name)
			return nil
		}
		st.emitted[name] = rev
		if typ == api.WatchDeleted {
			delete(st.last, name)
			fn := s.buildStatus(rec, rev, newSnapshot())
			return []api.WatchEvent{{Type: typ, Object: &fn, ResourceVersion: rv}}
		}
		st.last[name] = rec
		fn, err := s.statusOf(ctx, rec, rev, nil)
		if err != nil {
			fn = s.buildStatus(rec, rev, newSnapshot())
		}
		return []api.WatchEvent{{Type: typ, Object: &fn, ResourceVersion: rv}}
	case strings.HasPrefix(key, store.PrefixRevisions):
		// revisions/{fn}/{rev}: a function's first revision marks its
		// creation; any revision comes with its function's record, which
		// makes the event.
		name, revName, _ := strings.Cut(strings.TrimPrefix(key, store.PrefixRevisions), "/")
		if ev.Type == store.EventPut && revName == api.RevisionName(name, 1) {
			st.created[name] = rev
		}
		return nil
	}
	// What a status is made of, written by the autoscaler and node agents.
	var revName string
	switch {
	case strings.HasPrefix(key, store.PrefixScales):
		revName = strings.TrimPrefix(key, store.PrefixScales)
	case strings.HasPrefix(key, store.PrefixEndpoints):
		revName, _, _ = strings.Cut(strings.TrimPrefix(key, store.PrefixEndpoints), "/")
	case strings.HasPrefix(key, store.PrefixRevStatus):
		revName, _, _ = strings.Cut(strings.TrimPrefix(key, store.PrefixRevStatus), "/")
	default:
		return nil
	}
	name := functionOfRevision(revName)
	if !st.matched[name] || st.emitted[name] == rev {
		return nil
	}
	fn, err := s.functionStatus(ctx, name)
	if err != nil {
		return nil // deleted meanwhile: its DELETED follows
	}
	st.emitted[name] = rev
	// fn.ResourceVersion stays the record's (what If-Match takes); the
	// event's is the stream position.
	return []api.WatchEvent{{Type: api.WatchModified, Object: &fn, ResourceVersion: rv}}
}

// functionOfRevision is the function of a revision name {fn}-NNNNN.
func functionOfRevision(rev string) string {
	i := strings.LastIndexByte(rev, '-')
	if i <= 0 {
		return ""
	}
	return rev[:i]
}
