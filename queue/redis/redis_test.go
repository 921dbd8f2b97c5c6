package redis_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/testenv"
	"github.com/ebbrun/ebb/queue"
	"github.com/ebbrun/ebb/queue/redis"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func inv(fn, id string, created time.Time) api.Invocation {
	return api.Invocation{
		ID: id, Function: fn, MaxAttempts: 3, CreatedAt: created,
		Request: api.InvocationRequest{Method: http.MethodPost, Path: "/", Body: []byte(id)},
	}
}

// TestSharedAcrossNodes is the multi-node case: workers on several ebbd
// processes (one handle each) claim from one line, and no invocation is
// delivered twice while its claim holds.
func TestSharedAcrossNodes(t *testing.T) {
	ctx := context.Background()
	srv := testenv.Redis(t)
	const nodes, perNode, total = 3, 3, 90
	handles := make([]*redis.Queue, nodes)
	for i := range handles {
		handles[i] = open(t, srv.URL(), redis.Options{})
	}
	for i := range total {
		_, _, err := handles[i%nodes].Enqueue(ctx, inv("ns/f", fmt.Sprintf("id-%03d", i), t0.Add(time.Duration(i)*time.Millisecond)))
		require.NoError(t, err)
	}
	now := t0.Add(time.Minute)
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	errs := make(chan error, nodes*perNode)
	for n, h := range handles {
		for w := range perNode {
			worker := fmt.Sprintf("node%d-w%d", n, w)
			wg.Go(func() {
				for {
					c, err := h.Claim(ctx, worker, now, time.Minute)
					if errors.Is(err, queue.ErrEmpty) {
						return
					}
					if err != nil {
						errs <- err
						return
					}
					mu.Lock()
					seen[c.ID]++
					mu.Unlock()
					c.Status, c.CompletedAt, c.UpdatedAt = api.InvocationSucceeded, now, now
					if err := h.Finish(ctx, c); err != nil {
						errs <- err
						return
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Len(t, seen, total)
	for id, n := range seen {
		assert.Equal(t, 1, n, id)
	}
}

// TestSurvivesRedisCrash kills redis-server (SIGKILL) with invocations
// queued, running and finished: with appendfsync always every acknowledged
// step is there after the restart, and the lapsed claim is taken again.
func TestSurvivesRedisCrash(t *testing.T) {
	ctx := context.Background()
	srv := testenv.Redis(t)
	q := open(t, srv.URL(), redis.Options{})
	for i := range 3 {
		_, _, err := q.Enqueue(ctx, inv("ns/f", fmt.Sprintf("id-%d", i), t0.Add(time.Duration(i)*time.Second)))
		require.NoError(t, err)
	}
	done, err := q.Claim(ctx, "w1", t0, time.Minute)
	require.NoError(t, err)
	done.Status, done.CompletedAt, done.UpdatedAt = api.InvocationSucceeded, t0, t0
	require.NoError(t, q.Finish(ctx, done))
	running, err := q.Claim(ctx, "w1", t0.Add(time.Second), time.Minute)
	require.NoError(t, err)

	srv.Restart(t)
	q = open(t, srv.URL(), redis.Options{})
	got, err := q.Get(ctx, "ns/f", done.ID)
	require.NoError(t, err)
	assert.Equal(t, api.InvocationSucceeded, got.Status)
	depth, err := q.Depth(ctx, "ns/f")
	require.NoError(t, err)
	assert.Equal(t, 2, depth)
	next, err := q.Claim(ctx, "w2", t0.Add(2*time.Minute), time.Minute)
	require.NoError(t, err)
	assert.Equal(t, "id-2", next.ID)
	again, err := q.Claim(ctx, "w2", t0.Add(2*time.Minute), time.Minute)
	require.NoError(t, err)
	assert.Equal(t, running.ID, again.ID)
	assert.Equal(t, 2, again.Attempts)
}

// TestIdempotencyKeyTTL checks the key carries the retention as its TTL,
// renewed when its invocation finishes, so it cannot outlive retention
// even if nobody calls Expire.
func TestIdempotencyKeyTTL(t *testing.T) {
	ctx := context.Background()
	srv := testenv.Redis(t)
	q := open(t, srv.URL(), redis.Options{Prefix: "p:", Retention: time.Hour})
	raw := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	defer raw.Close()

	in := inv("ns/f", "id-1", t0)
	in.IdempotencyKey = "k"
	_, _, err := q.Enqueue(ctx, in)
	require.NoError(t, err)
	keys, err := raw.Keys(ctx, "p:idem:*").Result()
	require.NoError(t, err)
	require.Len(t, keys, 1)
	ttl, err := raw.PTTL(ctx, keys[0]).Result()
	require.NoError(t, err)
	assert.True(t, ttl > 59*time.Minute && ttl <= time.Hour, "ttl %s", ttl)

	require.NoError(t, raw.PExpire(ctx, keys[0], time.Minute).Err())
	c, err := q.Claim(ctx, "w", t0, time.Minute)
	require.NoError(t, err)
	c.Status, c.CompletedAt, c.UpdatedAt = api.InvocationFailed, t0, t0
	require.NoError(t, q.Finish(ctx, c))
	ttl, err = raw.PTTL(ctx, keys[0]).Result()
	require.NoError(t, err)
	assert.True(t, ttl > 59*time.Minute, "renewed at Finish: ttl %s", ttl)
}

func TestOpenErrors(t *testing.T) {
	srv := testenv.Redis(t)
	dead := fmt.Sprintf("redis://127.0.0.1:%d/0", testenv.FreePort(t))
	tests := []struct {
		name string
		url  string
		opts redis.Options
	}{
		{"bad scheme", "http://" + srv.Addr, redis.Options{}},
		{"nothing listening", dead, redis.Options{}},
		{"negative retention", srv.URL(), redis.Options{Retention: -time.Second}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			q, err := redis.Open(ctx, tc.url, tc.opts)
			require.Error(t, err)
			require.Nil(t, q)
		})
	}
}
