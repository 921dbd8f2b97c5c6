package nodeagent

import (
	"context"
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp/fasthttputil"
	"golang.org/x/net/http2"
)

// serveH2C serves HTTP/2 with prior knowledge only at addr, answering
// status, as a gRPC server answers a plain GET.
func (n *memNet) serveH2C(t *testing.T, addr string, status int) {
	t.Helper()
	l := fasthttputil.NewInmemoryListener()
	n.mu.Lock()
	if n.ls == nil {
		n.ls = map[string]*fasthttputil.InmemoryListener{}
	}
	n.ls[addr] = l
	n.mu.Unlock()
	srv := &http2.Server{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(status) })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go srv.ServeConn(c, &http2.ServeConnOpts{Handler: h})
		}
	}()
	t.Cleanup(func() { _ = l.Close() })
}

func TestProbeH2C(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var n memNet
		n.serveH2C(t, probeAddr, http.StatusUnsupportedMediaType)

		// An HTTP/1.1 probe never sees an h2c-only server ready.
		h1 := newProber(n.dial, probeAddr, "/", false, time.Millisecond, 20*time.Millisecond)
		assert.ErrorIs(t, h1.wait(context.Background(), nil, nil), errProbeTimeout)

		h2 := newProber(n.dial, probeAddr, "/", false, time.Millisecond, 20*time.Millisecond)
		h2.h2c = true
		require.NoError(t, h2.wait(context.Background(), nil, nil), "a 415 from a gRPC server is ready")
	})
	synctest.Test(t, func(t *testing.T) {
		var n memNet
		n.serveH2C(t, probeAddr, http.StatusServiceUnavailable)
		h2 := newProber(n.dial, probeAddr, "/", false, time.Millisecond, 20*time.Millisecond)
		h2.h2c = true
		assert.ErrorIs(t, h2.wait(context.Background(), nil, nil), errProbeTimeout, "5xx is not ready over h2c either")
	})
}
