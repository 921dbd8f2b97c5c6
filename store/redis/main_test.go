package redis_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/ebbrun/ebb/store"
	"github.com/ebbrun/ebb/store/redis"
	"github.com/ebbrun/ebb/store/storetest"
)

func TestMain(m *testing.M) {
	if _, ok := storetest.CrashChildArg(); ok {
		os.Exit(storetest.RunCrashChild(func(arg string) (store.Store, error) {
			url, prefix, _ := strings.Cut(arg, " ")
			return redis.Open(context.Background(), url, redis.Options{Prefix: prefix})
		}))
	}
	goleak.VerifyTestMain(m)
}
