package router

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
)

// zeros is a body of n zero bytes that costs no memory to produce.
type zeros struct{ n int64 }

func (z *zeros) Read(p []byte) (int, error) {
	if z.n == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > z.n {
		p = p[:z.n]
	}
	clear(p)
	z.n -= int64(len(p))
	return len(p), nil
}

func rssBytes(t *testing.T) uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	require.NoError(t, err)
	f := strings.Fields(string(b))
	pages, err := strconv.ParseUint(f[1], 10, 64)
	require.NoError(t, err)
	return pages * uint64(os.Getpagesize())
}

// A 1 GiB upload streams through the router (and the replica) with memory
// that stays flat: nothing buffers the body whole.
func TestUploadStreamsWithBoundedMemory(t *testing.T) {
	size := int64(1 << 30)
	if testing.Short() || raceEnabled {
		size = 128 << 20
	}
	e, addr := rawRouter(t, Config{})
	sink := startBackend(t, "sink", func(ctx *fasthttp.RequestCtx) {
		n, err := io.Copy(io.Discard, ctx.RequestBodyStream())
		if err != nil {
			ctx.SetStatusCode(500)
		}
		ctx.SetBodyString(strconv.FormatInt(n, 10))
	})
	e.deploy("up", []rev{{name: "up-00001"}}, nil)
	e.endpoint("up", "up-00001", "r1", sink.addr, 0)
	e.waitRoute(host("up"), 1)

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heap0, rss0 := ms.HeapInuse, rssBytes(t)
	var peakHeap, peakRSS uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			peakHeap = max(peakHeap, m.HeapInuse)
			peakRSS = max(peakRSS, rssBytes(t))
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()

	tr := &http.Transport{DisableCompression: true}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest("POST", "http://"+addr+"/upload", &zeros{n: size})
	require.NoError(t, err)
	req.Host = host("up")
	req.ContentLength = size
	start := time.Now()
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	close(stop)
	wg.Wait()

	require.Equal(t, 200, resp.StatusCode, string(body))
	assert.Equal(t, strconv.FormatInt(size, 10), string(bytes.TrimSpace(body)))
	heapGrowth := int64(peakHeap) - int64(heap0)
	rssGrowth := int64(peakRSS) - int64(rss0)
	t.Logf("%d MiB in %v (%.0f MiB/s); heap in use grew by at most %.1f MiB, RSS by %.1f MiB",
		size>>20, took.Round(time.Millisecond), float64(size>>20)/took.Seconds(),
		float64(heapGrowth)/(1<<20), float64(rssGrowth)/(1<<20))
	assert.Less(t, heapGrowth, int64(32<<20), "heap stays far below the body size")
	assert.Less(t, rssGrowth, int64(64<<20), "RSS stays far below the body size")
}
