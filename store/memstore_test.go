package store_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/ebbrun/ebb/store"
)

// memStore is an in-memory store.Store for tests that run in a
// testing/synctest bubble, where the real stores' file and network I/O
// cannot. Tests script its failures with failLists and breakWatches
// (with store.ErrCompacted for a watch that fell behind compaction).
type memStore struct {
	mu       sync.Mutex
	kv       map[string]store.KV
	log      []store.Event
	rev      int64
	wake     chan struct{} // closed and replaced on every change
	closed   bool
	listErrs []error // returned by the next Lists, one each
	breakErr error   // ends the watches started before breakGen
	breakGen int
	lists    int
	watches  map[string]int // prefix → watches opened
	buffer   int            // watch channel capacity
}

func newMemStore() *memStore {
	return &memStore{kv: map[string]store.KV{}, wake: make(chan struct{}), watches: map[string]int{}, buffer: 64}
}

// notifyLocked wakes every watch.
func (m *memStore) notifyLocked() {
	close(m.wake)
	m.wake = make(chan struct{})
}

func (m *memStore) Get(_ context.Context, key string) (store.KV, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return store.KV{}, store.ErrClosed
	}
	kv, ok := m.kv[key]
	if !ok {
		return store.KV{}, store.ErrNotFound
	}
	return kv, nil
}

func (m *memStore) List(_ context.Context, prefix string) ([]store.KV, int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lists++
	if m.closed {
		return nil, 0, store.ErrClosed
	}
	if len(m.listErrs) > 0 {
		err := m.listErrs[0]
		m.listErrs = m.listErrs[1:]
		return nil, 0, err
	}
	var out []store.KV
	for _, key := range slices.Sorted(maps.Keys(m.kv)) {
		if strings.HasPrefix(key, prefix) {
			out = append(out, m.kv[key])
		}
	}
	return out, m.rev, nil
}

// Txn applies puts and deletes without version checks, which these tests
// do not need.
func (m *memStore) Txn(_ context.Context, ops ...store.Op) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, store.ErrClosed
	}
	m.rev++
	for _, op := range ops {
		kv := store.KV{Key: op.Key, Value: op.Value, Version: m.rev}
		switch op.Kind {
		case store.OpPut:
			m.kv[op.Key] = kv
			m.log = append(m.log, store.Event{Type: store.EventPut, KV: kv})
		case store.OpDelete:
			delete(m.kv, op.Key)
			kv.Value = nil
			m.log = append(m.log, store.Event{Type: store.EventDelete, KV: kv})
		}
	}
	m.notifyLocked()
	return m.rev, nil
}

func (m *memStore) Watch(ctx context.Context, prefix string, after int64) (<-chan store.WatchEvent, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, store.ErrClosed
	}
	m.watches[prefix]++
	ch := make(chan store.WatchEvent, m.buffer)
	go m.watch(ctx, prefix, after, m.breakGen, ch)
	return ch, nil
}

func (m *memStore) watch(ctx context.Context, prefix string, pos int64, gen int, ch chan<- store.WatchEvent) {
	defer close(ch)
	end := func(err error) {
		select {
		case ch <- store.WatchEvent{Err: err}:
		case <-ctx.Done():
		}
	}
	for {
		m.mu.Lock()
		var err error
		switch {
		case m.closed:
			err = store.ErrClosed
		case m.breakGen != gen:
			err = m.breakErr
		}
		var evs []store.Event
		for _, ev := range m.log {
			if ev.KV.Version > pos && strings.HasPrefix(ev.KV.Key, prefix) {
				evs = append(evs, ev)
			}
		}
		pos = m.rev
		wake := m.wake
		m.mu.Unlock()
		if err != nil {
			end(err)
			return
		}
		for _, ev := range evs {
			select {
			case ch <- store.WatchEvent{Event: ev}:
			case <-ctx.Done():
				return
			}
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return
		}
	}
}

func (m *memStore) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	m.notifyLocked()
	return nil
}

// failLists makes the next n Lists fail.
func (m *memStore) failLists(n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for range n {
		m.listErrs = append(m.listErrs, fmt.Errorf("connection lost"))
	}
}

// breakWatches ends every open watch with err.
func (m *memStore) breakWatches(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.breakErr = err
	m.breakGen++
	m.notifyLocked()
}

func (m *memStore) counts() (lists int, watches map[string]int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lists, maps.Clone(m.watches)
}
