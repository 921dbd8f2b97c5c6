package redis_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/ebbrun/ebb/internal/testenv"
	"github.com/ebbrun/ebb/store"
	"github.com/ebbrun/ebb/store/redis"
	"github.com/ebbrun/ebb/store/storetest"
)

// go test -run '^$' -bench . -benchtime 2s ./store/redis/
// against a local redis-server with appendfsync always.
func BenchmarkStore(b *testing.B) {
	srv := testenv.Redis(b)
	n := 0
	storetest.Bench(b, func(b *testing.B) store.Store {
		n++
		s, err := redis.Open(context.Background(), srv.URL(), redis.Options{Prefix: fmt.Sprintf("b%d:", n)})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = s.Close() })
		return s
	})
}
