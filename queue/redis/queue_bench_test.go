package redis_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/ebbrun/ebb/internal/testenv"
	"github.com/ebbrun/ebb/queue"
	"github.com/ebbrun/ebb/queue/queuetest"
	"github.com/ebbrun/ebb/queue/redis"
)

// BenchmarkQueue runs against a redis-server with appendfsync always, as
// production should: every acknowledged write is on disk.
func BenchmarkQueue(b *testing.B) {
	srv := testenv.Redis(b)
	n := 0
	queuetest.Bench(b, func(b *testing.B) queue.Queue {
		n++
		q, err := redis.Open(context.Background(), srv.URL(), redis.Options{Prefix: fmt.Sprintf("bench%d:", n)})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = q.Close() })
		return q
	})
}
