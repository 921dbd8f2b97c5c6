package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/store"
)

// waitTimeout bounds every wait for an event. It is generous because the
// race detector on two shared cores is slow; a passing run never waits it out.
const waitTimeout = 15 * time.Second

// NewFunc creates a fresh, empty backing for a store (a file, a Redis key
// prefix) whose event log keeps about history events (0: the store's
// default), and returns a function opening a handle on it. Every call to
// open returns a new handle on the same data; the suite closes each one.
type NewFunc func(t *testing.T, history int) (open func() (store.Store, error))

// openNew creates a backing and opens one handle, closed at cleanup.
func openNew(t *testing.T, newStore NewFunc, history int) store.Store {
	t.Helper()
	return mustOpen(t, newStore(t, history))
}

func mustOpen(t *testing.T, open func() (store.Store, error)) store.Store {
	t.Helper()
	s, err := open()
	require.NoError(t, err, "open store")
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func mustTxn(t testing.TB, s store.Store, ops ...store.Op) int64 {
	t.Helper()
	rev, err := s.Txn(context.Background(), ops...)
	require.NoError(t, err)
	return rev
}

func mustList(t testing.TB, s store.Store, prefix string) ([]store.KV, int64) {
	t.Helper()
	kvs, rev, err := s.List(context.Background(), prefix)
	require.NoError(t, err)
	return kvs, rev
}

func mustWatch(t testing.TB, ctx context.Context, s store.Store, prefix string, after int64) <-chan store.WatchEvent {
	t.Helper()
	ch, err := s.Watch(ctx, prefix, after)
	require.NoError(t, err)
	return ch
}

// recvEvents receives n events, failing on an error event, a closed
// channel or the timeout.
func recvEvents(t testing.TB, ch <-chan store.WatchEvent, n int) []store.Event {
	t.Helper()
	out := make([]store.Event, 0, n)
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	for len(out) < n {
		select {
		case ev, ok := <-ch:
			require.True(t, ok, "watch closed after %d of %d events", len(out), n)
			require.NoError(t, ev.Err, "watch failed after %d of %d events", len(out), n)
			out = append(out, ev.Event)
		case <-timer.C:
			t.Fatalf("timed out after %d of %d watch events", len(out), n)
		}
	}
	return out
}

// recvTerminal drains ch until its terminal error and checks that the
// channel closes after it. It returns the events before the error.
func recvTerminal(t testing.TB, ch <-chan store.WatchEvent) ([]store.Event, error) {
	t.Helper()
	var events []store.Event
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-ch:
			require.True(t, ok, "watch closed without an error after %d events", len(events))
			if ev.Err == nil {
				events = append(events, ev.Event)
				continue
			}
			requireClosed(t, ch)
			return events, ev.Err
		case <-timer.C:
			t.Fatalf("timed out waiting for a watch error after %d events", len(events))
		}
	}
}

// requireClosed checks that ch delivers nothing more and closes.
func requireClosed(t testing.TB, ch <-chan store.WatchEvent) {
	t.Helper()
	select {
	case ev, ok := <-ch:
		require.False(t, ok, "watch delivered %+v after its end", ev)
	case <-time.After(waitTimeout):
		t.Fatal("watch channel not closed")
	}
}

// watchErr starts a watch expected to fail at once, and returns the error
// whether Watch returns it or delivers it first on the channel.
func watchErr(t testing.TB, s store.Store, prefix string, after int64) error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := s.Watch(ctx, prefix, after)
	if err != nil {
		return err
	}
	events, err := recvTerminal(t, ch)
	require.Empty(t, events, "events delivered before the error")
	return err
}

// marker writes a key under prefix and waits for it on ch, proving that
// nothing else was queued before it.
func marker(t testing.TB, s store.Store, ch <-chan store.WatchEvent, prefix string) {
	t.Helper()
	key := prefix + "zz-marker-" + fmt.Sprint(time.Now().UnixNano())
	rev := mustTxn(t, s, store.Put(key, []byte("m"), store.AnyVersion))
	got := recvEvents(t, ch, 1)
	require.Equal(t, store.Event{Type: store.EventPut, KV: store.KV{Key: key, Value: []byte("m"), Version: rev}}, got[0],
		"expected only the marker, got another event first")
}

func isConflict(err error) bool { return errors.Is(err, store.ErrConflict) }

// kvMap indexes a listing by key.
func kvMap(kvs []store.KV) map[string]store.KV {
	m := make(map[string]store.KV, len(kvs))
	for _, kv := range kvs {
		m[kv.Key] = kv
	}
	return m
}

// normalize makes empty and nil values compare equal: stores may return
// either for an empty value.
func normalize(kv store.KV) store.KV {
	if len(kv.Value) == 0 {
		kv.Value = nil
	}
	return kv
}

func normalizeMap(m map[string]store.KV) map[string]store.KV {
	out := make(map[string]store.KV, len(m))
	for k, kv := range m {
		out[k] = normalize(kv)
	}
	return out
}

// applyEvent folds an event into a key→KV state.
func applyEvent(state map[string]store.KV, ev store.Event) {
	if ev.Type == store.EventDelete {
		delete(state, ev.KV.Key)
		return
	}
	state[ev.KV.Key] = ev.KV
}
