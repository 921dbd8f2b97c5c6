package leader_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/internal/leader"
	"github.com/ebbrun/ebb/internal/testenv"
	"github.com/ebbrun/ebb/store"
	"github.com/ebbrun/ebb/store/redis"
)

// severable is a process's view of the leases that can be cut, as a
// SIGKILL or a partition cuts it: the lease is neither renewed nor
// released.
type severable struct {
	leader.Leases
	cut atomic.Bool
}

var errCut = errors.New("cut off")

func (s *severable) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	if s.cut.Load() {
		return false, errCut
	}
	return s.Leases.AcquireLease(ctx, name, holder, ttl)
}

func (s *severable) ReleaseLease(ctx context.Context, name, holder string) error {
	if s.cut.Load() {
		return errCut
	}
	return s.Leases.ReleaseLease(ctx, name, holder)
}

// candidate is one control plane: its elector and what its leader loop did.
type candidate struct {
	name    string
	leases  *severable
	el      *leader.Elector
	fenced  atomic.Pointer[store.Store] // the store of its last term
	decides atomic.Int64                // writes that landed
	cancel  context.CancelFunc
	done    chan error
}

// TestOneLeaderAndFencedTakeover runs two control planes' electors on a
// real Redis. Only one decides; when the leader is cut off without
// releasing (as by SIGKILL), the other leads within the TTL and a poll, and
// a write by the deposed leader after that is refused by the store.
func TestOneLeaderAndFencedTakeover(t *testing.T) {
	srv := testenv.Redis(t)
	ctx := context.Background()
	open := func() *redis.Store {
		s, err := redis.Open(ctx, srv.URL(), redis.Options{Prefix: "ha:"})
		require.NoError(t, err)
		t.Cleanup(func() { s.Close() })
		return s
	}
	var mu sync.Mutex
	var order []string
	start := func(name string) *candidate {
		s := open()
		c := &candidate{name: name, leases: &severable{Leases: s}, done: make(chan error, 1)}
		el, err := leader.New(leader.Config{Holder: name}, c.leases, s, nil)
		require.NoError(t, err)
		c.el = el
		cctx, cancel := context.WithCancel(ctx)
		c.cancel = cancel
		go func() {
			c.done <- el.Run(cctx, func(lctx context.Context, fs store.Store) error {
				c.fenced.Store(&fs)
				mu.Lock()
				order = append(order, name)
				mu.Unlock()
				tick := time.NewTicker(50 * time.Millisecond)
				defer tick.Stop()
				for {
					if _, err := fs.Txn(lctx, store.Put("scales/x", []byte(name), store.AnyVersion)); err == nil {
						c.decides.Add(1)
					}
					select {
					case <-lctx.Done():
						return nil
					case <-tick.C:
					}
				}
			})
		}()
		t.Cleanup(func() { cancel(); <-c.done })
		return c
	}
	a := start("cp-a")
	require.Eventually(t, a.el.Leading, 5*time.Second, 10*time.Millisecond)
	b := start("cp-b")
	require.Eventually(t, func() bool { return b.decides.Load() == 0 && a.decides.Load() > 3 }, 5*time.Second, 10*time.Millisecond)
	assert.False(t, b.el.Leading(), "only one leads")

	killed := time.Now()
	a.leases.cut.Store(true)
	require.Eventually(t, b.el.Leading, 5*time.Second, 5*time.Millisecond, "the other leads within 5 s")
	takeover := time.Since(killed)
	t.Logf("takeover after the leader was cut off: %s", takeover)
	assert.Less(t, takeover, leader.DefaultTTL+2*leader.DefaultRenewEvery)
	require.Eventually(t, func() bool { return !a.el.Leading() }, 5*time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool { return b.decides.Load() > 0 }, 5*time.Second, 5*time.Millisecond)

	// The deposed leader writes after the takeover: refused.
	old := *a.fenced.Load()
	_, err := old.Txn(ctx, store.Put("scales/x", []byte("cp-a late"), store.AnyVersion))
	require.ErrorIs(t, err, store.ErrConflict)
	s := open()
	kv, err := s.Get(ctx, "scales/x")
	require.NoError(t, err)
	assert.Equal(t, "cp-b", string(kv.Value))
	mu.Lock()
	assert.Equal(t, []string{"cp-a", "cp-b"}, order, "one term each, never two at once")
	mu.Unlock()

	// A clean stop gives the lease up: the other takes over at once.
	a.leases.cut.Store(false)
	require.Eventually(t, func() bool { return !a.el.Leading() }, time.Second, 5*time.Millisecond)
	released := time.Now()
	b.cancel()
	require.NoError(t, <-b.done)
	b.done <- nil // for the cleanup
	require.Eventually(t, a.el.Leading, 5*time.Second, 5*time.Millisecond)
	t.Logf("takeover after a clean stop: %s", time.Since(released))
	assert.Less(t, time.Since(released), 2*leader.DefaultRenewEvery+time.Second)
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  leader.Config
		ok   bool
	}{
		{"defaults", leader.Config{Holder: "a"}, true},
		{"no holder", leader.Config{}, false},
		{"renew too slow", leader.Config{Holder: "a", TTL: time.Second, RenewEvery: 600 * time.Millisecond}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.WithDefaults().Validate()
			if tc.ok {
				assert.NoError(t, err)
			} else {
				assert.Error(t, err)
			}
		})
	}
}

func TestTermStore(t *testing.T) {
	srv := testenv.Redis(t)
	ctx := context.Background()
	s, err := redis.Open(ctx, srv.URL(), redis.Options{Prefix: "term:"})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	ts := leader.NewTermStore(s)
	_, err = ts.Txn(ctx, store.Put("a", []byte("1"), store.AnyVersion))
	require.ErrorIs(t, err, leader.ErrNotLeader, "no term yet")
	require.ErrorIs(t, err, store.ErrConflict)

	v, err := s.Txn(ctx, store.Put(leader.RecordKey("x"), []byte("me"), store.AnyVersion))
	require.NoError(t, err)
	ts.Begin(store.Fenced(s, leader.RecordKey("x"), v))
	_, err = ts.Txn(ctx, store.Put("a", []byte("2"), store.AnyVersion))
	require.NoError(t, err, "in a term")
	_, err = s.Txn(ctx, store.Put(leader.RecordKey("x"), []byte("other"), store.AnyVersion))
	require.NoError(t, err)
	_, err = ts.Txn(ctx, store.Put("a", []byte("3"), store.AnyVersion))
	require.ErrorIs(t, err, store.ErrConflict, "fenced after a takeover")
	ts.End()
	_, err = ts.Txn(ctx, store.Put("a", []byte("4"), store.AnyVersion))
	require.ErrorIs(t, err, leader.ErrNotLeader)
	kv, err := ts.Get(ctx, "a")
	require.NoError(t, err, "reads pass through")
	assert.Equal(t, "2", string(kv.Value))
}
