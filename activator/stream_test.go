package activator

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/internal/replicaset"
)

// acquireAsync calls Acquire in a goroutine; the result comes on the channel.
type acquired struct {
	rep  *replicaset.Replica
	done func(int)
	err  error
}

func (e *env) acquireAsync(ctx context.Context, timeout time.Duration) <-chan acquired {
	out := make(chan acquired, 1)
	go func() {
		rep, done, err := e.act.Acquire(ctx, "fn", "fn-00001", time.Now().Add(timeout))
		out <- acquired{rep, done, err}
	}()
	return out
}

func refusal(t *testing.T, err error) *Refusal {
	t.Helper()
	var r *Refusal
	require.ErrorAs(t, err, &r)
	return r
}

// A stream for a function at zero waits for its first replica, which it
// then holds under the hard limit until done; the autoscaler is asked once.
func TestAcquireWaitsForAReplica(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, Config{})
		first := e.acquireAsync(context.Background(), 10*time.Second)
		second := e.acquireAsync(context.Background(), 10*time.Second)
		synctest.Wait()
		require.Equal(t, 2, e.waiting())
		assert.Equal(t, 1, e.sc.count(), "one activation for the queue")

		b := e.startBackend(0)
		e.endpoint("r1", b.addr, 1) // hard limit 1: one stream at a time
		// Which goroutine queued first is up to the scheduler.
		var a acquired
		var other <-chan acquired
		select {
		case a = <-first:
			other = second
		case a = <-second:
			other = first
		}
		require.NoError(t, a.err)
		assert.Equal(t, b.addr, a.rep.Addr)
		synctest.Wait()
		assert.Equal(t, 1, e.waiting(), "the other waits for the first's slot")
		a.done(200)
		s := <-other
		require.NoError(t, s.err)
		assert.Equal(t, a.rep, s.rep)
		s.done(200)
		assert.Equal(t, 0, s.rep.InFlight())
	})
}

func TestAcquireRefusals(t *testing.T) {
	t.Run("deadline", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e := newEnv(t, Config{})
			start := time.Now()
			r := refusal(t, (<-e.acquireAsync(context.Background(), 150*time.Millisecond)).err)
			assert.Equal(t, 504, r.HTTPStatus())
			assert.Equal(t, "deadline", r.Reason)
			assert.Equal(t, 150*time.Millisecond, time.Since(start))
			assert.Equal(t, 0, e.waiting())
		})
	})
	t.Run("a context deadline is a deadline", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e := newEnv(t, Config{})
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			r := refusal(t, (<-e.acquireAsync(ctx, 10*time.Second)).err)
			assert.Equal(t, "deadline", r.Reason)
			assert.Equal(t, 504, r.Status)
		})
	})
	t.Run("client gone", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e := newEnv(t, Config{})
			ctx, cancel := context.WithCancel(context.Background())
			res := e.acquireAsync(ctx, 10*time.Second)
			synctest.Wait()
			require.Equal(t, 1, e.waiting())
			cancel()
			r := refusal(t, (<-res).err)
			assert.Equal(t, "client_gone", r.Reason)
			assert.Equal(t, 499, r.Status)
			assert.Equal(t, 0, e.waiting(), "a stream reset leaves the queue")
		})
	})
	t.Run("queue full", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e := newEnv(t, Config{MaxQueue: 1, RetryAfter: 2 * time.Second})
			ctx, cancel := context.WithCancel(context.Background())
			waiting := e.acquireAsync(ctx, 10*time.Second)
			synctest.Wait()
			r := refusal(t, (<-e.acquireAsync(context.Background(), 10*time.Second)).err)
			assert.Equal(t, 503, r.Status)
			assert.Equal(t, 2, r.RetryAfter)
			cancel()
			<-waiting
		})
	})
	t.Run("failed revision", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e := newEnv(t, Config{})
			e.status("node-a", "Failed", "pull: not found", 0)
			synctest.Wait()
			r := refusal(t, (<-e.acquireAsync(context.Background(), 10*time.Second)).err)
			assert.Equal(t, 502, r.Status)
			assert.Contains(t, r.Msg, "not found")
		})
	})
}
