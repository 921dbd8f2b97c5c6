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

// prefixes hands every backing its own key prefix on a shared server.
func prefixes(srv *testenv.RedisServer) storetest.NewFunc {
	n := 0
	return func(t *testing.T, history int) func() (store.Store, error) {
		n++
		opts := redis.Options{Prefix: fmt.Sprintf("t%d:", n), History: history}
		return func() (store.Store, error) { return redis.Open(context.Background(), srv.URL(), opts) }
	}
}

func TestConformance(t *testing.T) {
	srv := testenv.Redis(t)
	storetest.Run(t, prefixes(srv))
}
