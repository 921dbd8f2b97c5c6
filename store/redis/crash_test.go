package redis_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/internal/testenv"
	"github.com/ebbrun/ebb/store/redis"
	"github.com/ebbrun/ebb/store/storetest"
)

// TestCrash kills the writing process mid-burst; Redis itself stays up.
// Each script is atomic in Redis, so a dead client cannot leave half a
// transaction behind.
func TestCrash(t *testing.T) {
	srv := testenv.Redis(t)
	const prefix = "crash:"
	var acks []storetest.Ack
	for _, killAfter := range []int{100, 250} {
		child := storetest.StartCrashChild(t, srv.URL()+" "+prefix)
		child.WaitAcks(t, killAfter)
		acks = append(acks, child.Kill(t)...)

		s, err := redis.Open(context.Background(), srv.URL(), redis.Options{Prefix: prefix})
		require.NoError(t, err)
		storetest.VerifyCrash(t, s, acks)
		require.NoError(t, s.Close())
	}
}

// TestCrashServer kills redis-server itself mid-burst and restarts it from
// its AOF (appendfsync always): every transaction the writer saw
// acknowledged must have survived, whole.
func TestCrashServer(t *testing.T) {
	srv := testenv.Redis(t)
	const prefix = "crash:"
	var acks []storetest.Ack
	for round, killAfter := range []int{150, 300} {
		child := storetest.StartCrashChild(t, srv.URL()+" "+prefix)
		child.WaitAcks(t, killAfter)
		srv.Kill()
		// The child's next transaction fails and it exits on its own.
		got := child.Wait(t)
		require.Contains(t, child.Stderr(), "txn", "child should fail on a transaction")
		acks = append(acks, got...)
		t.Logf("round %d: redis-server killed after %d acks", round, len(got))

		srv.Restart(t)
		s, err := redis.Open(context.Background(), srv.URL(), redis.Options{Prefix: prefix})
		require.NoError(t, err)
		storetest.VerifyCrash(t, s, acks)
		require.NoError(t, s.Close())
	}
}
