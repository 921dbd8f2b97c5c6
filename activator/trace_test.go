package activator

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/internal/tracing"
	"github.com/ebbrun/ebb/store"
)

// TestHandoffCarriesTheColdStart checks what the activator tells a router
// that observes its requests: a request that waited for a revision at zero
// is cold, with its wait and the start phases from the replica's endpoint
// record; the next one, to a warm replica, is neither.
func TestHandoffCarriesTheColdStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		seen := make(chan tracing.Handoff, 2)
		e := newEnvWith(t, Config{}, envOptions{observed: func(h tracing.Handoff) { seen <- h }})
		b := e.startBackend(0)
		start := time.Now()
		phases := &store.StartPhases{Decided: start.Add(time.Millisecond), Created: start.Add(40 * time.Millisecond), Started: start.Add(50 * time.Millisecond), Ready: start.Add(300 * time.Millisecond)}
		e.sc.onPoke = func(string) {
			go func() {
				time.Sleep(300 * time.Millisecond) // the replica's start, in the bubble's time
				_, err := e.st.Txn(context.Background(), store.PutJSON(store.EndpointKey("fn-00001", "r1"),
					store.Endpoint{Function: "fn", Revision: "fn-00001", Replica: "r1", Addr: b.addr, Limit: 1, Start: phases}, store.AnyVersion))
				assert.NoError(t, err)
			}()
		}
		code, body, _ := e.get(nil)
		require.Equal(t, 200, code, body)
		cold := <-seen
		assert.True(t, cold.Used)
		assert.True(t, cold.Cold)
		assert.Equal(t, "r1", cold.Replica)
		assert.Equal(t, 300*time.Millisecond, cold.Wait())
		assert.Equal(t, tracing.StartPhases{
			Decided: phases.Decided.UnixNano(), Created: phases.Created.UnixNano(),
			Started: phases.Started.UnixNano(), Ready: phases.Ready.UnixNano(),
		}, cold.Phases)

		code, _, _ = e.get(nil)
		require.Equal(t, 200, code)
		warm := <-seen
		assert.True(t, warm.Used)
		assert.False(t, warm.Cold)
		assert.Equal(t, "r1", warm.Replica)
		assert.True(t, warm.QueuedAt.IsZero(), "a free replica: no queue")
		assert.Zero(t, warm.Wait())
	})
}
