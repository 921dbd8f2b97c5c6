package router

import (
	"bufio"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRetries(t *testing.T) {
	t.Run("a replica that refuses connections is skipped", func(t *testing.T) {
		e := newEnv(t, Config{}, Deps{})
		live := startBackend(t, "live", nil)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		dead := ln.Addr().String()
		require.NoError(t, ln.Close())
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
	t.Run("a request that reached the replica is not sent again", func(t *testing.T) {
		e := newEnv(t, Config{}, Deps{})
		var seen atomic.Int32
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		var wg sync.WaitGroup
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer c.Close()
					// Read the request, then die without answering.
					br := bufio.NewReader(c)
					for {
						line, err := br.ReadString('\n')
						if err != nil || line == "\r\n" {
							break
						}
					}
					seen.Add(1)
				}()
			}
		}()
		t.Cleanup(func() { ln.Close(); wg.Wait() })
		e.deploy("fn", []rev{{name: "fn-00001"}}, nil)
		e.endpoint("fn", "fn-00001", "r1", ln.Addr().String(), 0)
		e.waitRoute(host("fn"), 1)
		code, body, _ := e.get(host("fn"), "/", nil)
		assert.Equal(t, 502, code)
		assert.Equal(t, "ebb: function fn failed to answer\n", body)
		assert.Equal(t, int32(1), seen.Load())
		assert.Equal(t, 0.0, e.metric("ebb_router_retries_total"))
	})
}
