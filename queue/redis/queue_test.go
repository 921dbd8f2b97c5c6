package redis_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/internal/testenv"
	"github.com/ebbrun/ebb/queue"
	"github.com/ebbrun/ebb/queue/queuetest"
	"github.com/ebbrun/ebb/queue/redis"
)

// prefixes opens each test's queue under a prefix named after the test, on
// one shared server: the same test reopens the same data.
func prefixes(srv *testenv.RedisServer) func(t *testing.T) queue.Queue {
	return func(t *testing.T) queue.Queue {
		return open(t, srv.URL(), redis.Options{Prefix: t.Name() + ":"})
	}
}

func open(t *testing.T, url string, opts redis.Options) *redis.Queue {
	t.Helper()
	q, err := redis.Open(context.Background(), url, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = q.Close() })
	return q
}

func TestConformance(t *testing.T) {
	srv := testenv.Redis(t)
	queuetest.Run(t, queuetest.Backend{Open: prefixes(srv), Durable: true})
}
