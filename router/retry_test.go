package router

import (
	"bufio"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp/fasthttputil"
)

func TestRetries(t *testing.T) {
	t.Run("a replica that refuses connections is skipped", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e := newBubbleEnv(t, Config{}, Deps{})
			live := e.startMemBackend("live", nil)
			dead := "dead" // no listener: connections are refused
			e.deploy("fn", []rev{{name: "fn-00001"}}, nil)
			e.endpoint("fn", "fn-00001", "dead", dead, 0)
			e.endpoint("fn", "fn-00001", "live", live.addr, 0)
			e.waitRoute(host("fn"), 2)
			for i := 0; i < 50; i++ {
				code, body, _ := e.get(host("fn"), "/", nil)
				require.Equal(t, 200, code)
				require.Equal(t, "live", body)
			}
			assert.Greater(t, e.metric("ebb_router_retries_total"), 0.0)
		})
	})
	t.Run("a request that reached the replica is not sent again", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e := newBubbleEnv(t, Config{}, Deps{})
			var seen atomic.Int32
			// A replica that reads the request, then dies without answering.
			ln := fasthttputil.NewInmemoryListener()
			e.mu.Lock()
			e.backends["dies"] = ln
			e.mu.Unlock()
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					br := bufio.NewReader(c)
					for {
						line, err := br.ReadString('\n')
						if err != nil || line == "\r\n" {
							break
						}
					}
					seen.Add(1)
					c.Close()
				}
			}()
			t.Cleanup(func() { ln.Close() })
			e.deploy("fn", []rev{{name: "fn-00001"}}, nil)
			e.endpoint("fn", "fn-00001", "r1", "dies", 0)
			e.waitRoute(host("fn"), 1)
			code, body, _ := e.get(host("fn"), "/", nil)
			assert.Equal(t, 502, code)
			assert.Equal(t, "ebb: function fn failed to answer\n", body)
			assert.Equal(t, int32(1), seen.Load())
			assert.Equal(t, 0.0, e.metric("ebb_router_retries_total"))
		})
	})
}

// A replica that just crashed is still in the table for a few milliseconds
// and refuses connections. With no other replica, the request, of which no
// byte reached a replica, goes to the activator, which holds it until the
// restarted replica answers; without an activator it gets a 502
// (issue 13, bug 1).
func TestARefusedRequestGoesToTheActivator(t *testing.T) {
	for _, tt := range []struct {
		name     string
		act      *fakeActivator
		wantCode int
		wantBody string
	}{
		{name: "handed off", act: &fakeActivator{}, wantCode: 299, wantBody: "activated"},
		{name: "no activator", wantCode: 502, wantBody: "ebb: function fn failed to answer\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				deps := Deps{}
				if tt.act != nil {
					deps.Activator = tt.act
				}
				e := newBubbleEnv(t, Config{}, deps)
				e.deploy("fn", []rev{{name: "fn-00001"}}, nil)
				e.endpoint("fn", "fn-00001", "r1", "crashed", 0) // no listener: refused
				e.waitRoute(host("fn"), 1)
				code, body, _ := e.get(host("fn"), "/", nil)
				assert.Equal(t, tt.wantCode, code)
				assert.Equal(t, tt.wantBody, body)
				if tt.act != nil {
					assert.Equal(t, []string{"fn/fn-00001"}, tt.act.calls)
				}
			})
		})
	}
}
