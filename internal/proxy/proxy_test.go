package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/valyala/fasthttp"
	"go.uber.org/goleak"

	"github.com/ebbrun/ebb/internal/testenv"
)

// doneRecorder is a Done that remembers every call.
type doneRecorder struct {
	mu     sync.Mutex
	calls  int
	status int
	err    error
	ch     chan struct{}
}

func newDone() *doneRecorder { return &doneRecorder{ch: make(chan struct{}, 16)} }

func (d *doneRecorder) ExchangeDone(status int, err error) {
	d.mu.Lock()
	d.calls++
	d.status, d.err = status, err
	d.mu.Unlock()
	d.ch <- struct{}{}
}

func (d *doneRecorder) wait(t *testing.T) {
	t.Helper()
	select {
	case <-d.ch:
	case <-time.After(5 * time.Second):
		t.Fatal("ExchangeDone was not called")
	}
}

// front is a fasthttp server that forwards everything to one upstream,
// configured the way the router configures its server.
type front struct {
	addr string
	tr   *Transport
	up   *Upstream
	done *doneRecorder
	opts Options
}

func startFront(t *testing.T, backendAddr string, cfg Config, opts Options) *front {
	t.Helper()
	tr, err := NewTransport(cfg)
	require.NoError(t, err)
	f := &front{tr: tr, up: tr.Upstream(backendAddr), done: newDone(), opts: opts}
	srv := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			o := f.opts
			if o.Deadline.IsZero() && ctx.Request.Header.Peek("X-Test-Timeout") != nil {
				d, _ := time.ParseDuration(string(ctx.Request.Header.Peek("X-Test-Timeout")))
				o.Deadline = ctx.Time().Add(d)
			}
			if err := Forward(ctx, f.up, &o, f.done); err != nil {
				ctx.Response.Reset()
				ctx.Error(err.Error(), StatusFor(err))
			}
		},
		StreamRequestBody:            true,
		DisablePreParseMultipartForm: true,
		NoDefaultServerHeader:        true,
		NoDefaultContentType:         true,
		NoDefaultDate:                true,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	f.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = srv.Serve(ln) }()
	go func() { defer wg.Done(); _ = tr.Run(ctx) }()
	t.Cleanup(func() {
		_ = srv.Shutdown()
		cancel()
		wg.Wait()
	})
	return f
}

// httpBackend serves h on loopback and counts the connections it accepts.
func httpBackend(t *testing.T, h http.HandlerFunc) (string, *atomic.Int32) {
	t.Helper()
	var conns atomic.Int32
	srv := &http.Server{Handler: h, ConnState: func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String(), &conns
}

func readHead(br *bufio.Reader) (string, error) {
	var sb strings.Builder
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return sb.String(), err
		}
		sb.WriteString(line)
		if line == "\r\n" {
			return sb.String(), nil
		}
	}
}

func client() *http.Client {
	return &http.Client{Transport: &http.Transport{DisableCompression: true}, Timeout: 30 * time.Second}
}

// fasthttp's worker pool cleaner sleeps up to 10s before it sees Stop.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"))
}

func TestRequestHeaders(t *testing.T) {
	addr, _ := httpBackend(t, func(w http.ResponseWriter, r *http.Request) {
		out := map[string]any{"header": r.Header, "host": r.Host, "uri": r.RequestURI, "te": r.TransferEncoding}
		_ = json.NewEncoder(w).Encode(out)
	})
	f := startFront(t, addr, Config{}, Options{})

	req, err := http.NewRequest("GET", "http://"+f.addr+"/path?q=1", nil)
	require.NoError(t, err)
	req.Host = "hello.localhost:8080"
	for k, v := range map[string]string{
		"Connection":          "keep-alive, X-Hop, x-other",
		"X-Hop":               "secret",
		"X-Other":             "secret",
		"Keep-Alive":          "timeout=5",
		"Te":                  "trailers",
		"Upgrade":             "h2c",
		"Proxy-Authorization": "Basic Zm9vOmJhcg==",
		"Proxy-Connection":    "keep-alive",
		"Ebb-Revision":        "evil-00001",
		"EBB-Internal":        "x",
		"X-Forwarded-For":     "203.0.113.7",
		"X-Forwarded-Proto":   "https",
		"X-Forwarded-Host":    "evil.example",
		"Forwarded":           "for=203.0.113.7",
		"X-Kept":              "yes",
	} {
		req.Header.Set(k, v)
	}
	resp, err := client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	var got struct {
		Header http.Header
		Host   string
		URI    string
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&got))

	assert.Equal(t, "hello.localhost:8080", got.Host)
	assert.Equal(t, "/path?q=1", got.URI)
	for _, k := range []string{"Connection", "X-Hop", "X-Other", "Keep-Alive", "Te", "Upgrade", "Proxy-Authorization", "Proxy-Connection", "Ebb-Revision", "Ebb-Internal"} {
		assert.Empty(t, got.Header.Values(k), k)
	}
	assert.Equal(t, "yes", got.Header.Get("X-Kept"))
	assert.Equal(t, "203.0.113.7, 127.0.0.1", got.Header.Get("X-Forwarded-For"))
	assert.Equal(t, "http", got.Header.Get("X-Forwarded-Proto"))
	assert.Equal(t, "hello.localhost:8080", got.Header.Get("X-Forwarded-Host"))
	assert.Equal(t, `for=203.0.113.7, for=127.0.0.1;host="hello.localhost:8080";proto=http`, got.Header.Get("Forwarded"))
	f.done.wait(t)
}

func TestResponseHopByHop(t *testing.T) {
	addr := testenv.RawServer(t, func(c net.Conn, br *bufio.Reader) {
		for {
			if _, err := readHead(br); err != nil {
				return
			}
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nKeep-Alive: timeout=5\r\n"+
				"Connection: keep-alive, X-Secret\r\nX-Secret: 1\r\nX-Kept: 1\r\nProxy-Connection: x\r\n\r\nok")
		}
	})
	f := startFront(t, addr, Config{}, Options{})
	c, err := net.Dial("tcp", f.addr)
	require.NoError(t, err)
	defer c.Close()
	br := bufio.NewReader(c)
	for i := 0; i < 2; i++ {
		_, err = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		require.NoError(t, err)
		resp, err := http.ReadResponse(br, nil)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		assert.Equal(t, "ok", string(body))
		assert.Equal(t, "1", resp.Header.Get("X-Kept"))
		for _, k := range []string{"Keep-Alive", "Connection", "X-Secret", "Proxy-Connection"} {
			assert.Empty(t, resp.Header.Values(k), k)
		}
		f.done.wait(t)
	}
	assert.Equal(t, 1, f.up.Idle(), "the upstream connection went back to the pool")
}

func TestKeepAliveReuse(t *testing.T) {
	addr, conns := httpBackend(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = w.Write([]byte("ok"))
	})
	f := startFront(t, addr, Config{}, Options{})
	cl := client()
	for i := 0; i < 50; i++ {
		method := "GET"
		var body io.Reader
		if i%2 == 1 {
			method, body = "POST", strings.NewReader(strings.Repeat("x", i*100))
		}
		req, _ := http.NewRequest(method, "http://"+f.addr+"/", body)
		resp, err := cl.Do(req)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, "ok", string(b))
		f.done.wait(t)
	}
	assert.Equal(t, int32(1), conns.Load(), "sequential requests share one upstream connection")
}

func TestBodies(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	addr, _ := httpBackend(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/fixed":
			w.Header().Set("Content-Length", fmt.Sprint(len(big)))
			_, _ = w.Write(big)
		case "/chunked":
			for i := 0; i < len(big); i += 100_000 {
				_, _ = w.Write(big[i:min(i+100_000, len(big))])
				w.(http.Flusher).Flush()
			}
		case "/echo":
			sum := sha256.New()
			n, _ := io.Copy(sum, r.Body)
			fmt.Fprintf(w, "%d %x %v", n, sum.Sum(nil), r.TransferEncoding)
		}
	})
	f := startFront(t, addr, Config{}, Options{})
	cl := client()
	want := sha256.Sum256(big)
	for _, path := range []string{"/fixed", "/chunked"} {
		t.Run(path, func(t *testing.T) {
			resp, err := cl.Get("http://" + f.addr + path)
			require.NoError(t, err)
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			assert.Equal(t, want, sha256.Sum256(b))
			f.done.wait(t)
			assert.NoError(t, f.done.err)
		})
	}
	t.Run("chunked upload", func(t *testing.T) {
		pr, pw := io.Pipe()
		go func() {
			for i := 0; i < len(big); i += 50_000 {
				_, _ = pw.Write(big[i:min(i+50_000, len(big))])
			}
			_ = pw.Close()
		}()
		resp, err := cl.Post("http://"+f.addr+"/echo", "application/octet-stream", pr)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, fmt.Sprintf("%d %x [chunked]", len(big), want), string(b))
		f.done.wait(t)
	})
	t.Run("fixed upload", func(t *testing.T) {
		resp, err := cl.Post("http://"+f.addr+"/echo", "application/octet-stream", bytes.NewReader(big))
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, fmt.Sprintf("%d %x []", len(big), want), string(b))
		f.done.wait(t)
	})
}

func TestSlowStreamingResponse(t *testing.T) {
	next := make(chan struct{})
	addr, _ := httpBackend(t, func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < 3; i++ {
			fmt.Fprintf(w, "event %d\n", i)
			w.(http.Flusher).Flush()
			if i < 2 {
				<-next // the next event waits until the client has seen this one
			}
		}
	})
	f := startFront(t, addr, Config{}, Options{})
	resp, err := client().Get("http://" + f.addr + "/")
	require.NoError(t, err)
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for i := 0; i < 3; i++ {
		line, err := br.ReadString('\n')
		require.NoError(t, err)
		assert.Equal(t, fmt.Sprintf("event %d\n", i), line)
		if i < 2 {
			next <- struct{}{}
		}
	}
	f.done.wait(t)
}

func TestTimeout(t *testing.T) {
	release := make(chan struct{})
	addr, _ := httpBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		_, _ = w.Write([]byte("fast"))
	})
	defer close(release)
	f := startFront(t, addr, Config{}, Options{})
	req, _ := http.NewRequest("GET", "http://"+f.addr+"/slow", nil)
	req.Header.Set("X-Test-Timeout", "100ms")
	start := time.Now()
	resp, err := client().Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 504, resp.StatusCode)
	assert.Less(t, time.Since(start), 2*time.Second)

	req, _ = http.NewRequest("GET", "http://"+f.addr+"/fast", nil)
	req.Header.Set("X-Test-Timeout", "5s")
	resp, err = client().Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
}

func TestDialFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	f := startFront(t, addr, Config{}, Options{})
	resp, err := client().Get("http://" + f.addr + "/")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, 502, resp.StatusCode)
	assert.Contains(t, string(body), ErrUnavailable.Error())
}

// A dial that fails for lack of descriptors blames this process, not the
// upstream: ErrOutOfDescriptors, not ErrUnavailable, so no caller marks the
// upstream down for it.
func TestDialOutOfDescriptors(t *testing.T) {
	f := startFront(t, "127.0.0.1:1", Config{Dial: func(string) (net.Conn, error) {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("socket", syscall.EMFILE)}
	}}, Options{})
	resp, err := client().Get("http://" + f.addr + "/")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, 503, resp.StatusCode)
	assert.Contains(t, string(body), ErrOutOfDescriptors.Error())
	assert.NotContains(t, string(body), ErrUnavailable.Error())
}

// A backend that closes idle keep-alive connections right after answering
// must not turn into errors: the probe finds the dead connection.
func TestStalePooledConnection(t *testing.T) {
	var conns atomic.Int32
	addr := testenv.RawServer(t, func(c net.Conn, br *bufio.Reader) {
		conns.Add(1)
		if _, err := readHead(br); err != nil {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		// Close without saying so, as an idle timeout would.
	})
	f := startFront(t, addr, Config{ProbeAfter: time.Nanosecond}, Options{})
	cl := client()
	for i := 0; i < 5; i++ {
		resp, err := cl.Get("http://" + f.addr + "/")
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode, string(b))
		f.done.wait(t)
		// Wait for the close to land before the next request, so the probe
		// has something to find. This polls because the backend is a real
		// socket: the kernel delivers its FIN when it does, and nothing in
		// the test can wait on that.
		require.Eventually(t, func() bool {
			c := f.up.take()
			if c == nil {
				return true
			}
			alive := c.alive()
			f.up.put(c, c.lastUsed.Load())
			return !alive
		}, 5*time.Second, time.Millisecond)
	}
	assert.Equal(t, int32(5), conns.Load())
}

func TestInterimAndHead(t *testing.T) {
	addr := testenv.RawServer(t, func(c net.Conn, br *bufio.Reader) {
		for {
			head, err := readHead(br)
			if err != nil {
				return
			}
			if strings.HasPrefix(head, "HEAD") {
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nX-Head: 1\r\n\r\n")
				continue
			}
			_, _ = io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"+
				"HTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\ndone")
		}
	})
	f := startFront(t, addr, Config{}, Options{})
	cl := client()
	resp, err := cl.Get("http://" + f.addr + "/")
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, 201, resp.StatusCode)
	assert.Equal(t, "done", string(b))
	f.done.wait(t)

	resp, err = cl.Head("http://" + f.addr + "/")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, int64(1000), resp.ContentLength)
	assert.Equal(t, "1", resp.Header.Get("X-Head"))
	f.done.wait(t)
	assert.Equal(t, 1, f.up.Idle())
}

func TestUpstreamConnectionClose(t *testing.T) {
	addr := testenv.RawServer(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := readHead(br); err != nil {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close")
	})
	f := startFront(t, addr, Config{}, Options{})
	c, err := net.Dial("tcp", f.addr)
	require.NoError(t, err)
	defer c.Close()
	br := bufio.NewReader(c)
	for i := 0; i < 2; i++ {
		_, err = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		require.NoError(t, err)
		resp, err := http.ReadResponse(br, nil)
		require.NoError(t, err)
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		assert.Equal(t, "until close", string(b))
		assert.False(t, resp.Close, "the client connection outlives the upstream's")
		f.done.wait(t)
	}
	assert.Equal(t, 0, f.up.Idle())
}

func TestWebSocket(t *testing.T) {
	addr := testenv.RawServer(t, func(c net.Conn, br *bufio.Reader) {
		head, err := readHead(br)
		if err != nil || !strings.Contains(head, "Upgrade: websocket") || !strings.Contains(head, "Connection: Upgrade") {
			_, _ = io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\nhi")
		_, _ = io.Copy(c, br) // echo
	})
	f := startFront(t, addr, Config{}, Options{})
	c, err := net.Dial("tcp", f.addr)
	require.NoError(t, err)
	defer c.Close()
	_, err = io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	require.NoError(t, err)
	br := bufio.NewReader(c)
	head, err := readHead(br)
	require.NoError(t, err)
	assert.Contains(t, head, "101 Switching Protocols")
	assert.Contains(t, head, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
	hi := make([]byte, 2)
	_, err = io.ReadFull(br, hi)
	require.NoError(t, err)
	assert.Equal(t, "hi", string(hi))
	for _, msg := range []string{"ping", "another frame"} {
		_, err = io.WriteString(c, msg)
		require.NoError(t, err)
		got := make([]byte, len(msg))
		_, err = io.ReadFull(br, got)
		require.NoError(t, err)
		assert.Equal(t, msg, string(got))
	}
	assert.Equal(t, 2, f.tr.Tunnels())
	require.NoError(t, c.Close())
	f.done.wait(t)
	assert.Equal(t, 101, f.done.status)
	// The tunnel ends when its copy loops see the hang-up that the kernel
	// delivers on the real sockets, so poll for it.
	require.Eventually(t, func() bool { return f.tr.Tunnels() == 0 }, 5*time.Second, time.Millisecond)
}

func TestStatusFor(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{fmt.Errorf("x: %w", ErrTimeout), 504},
		{fmt.Errorf("x: %w", ErrUnavailable), 502},
		{fmt.Errorf("x: %w", ErrUpstream), 502},
		{fmt.Errorf("x: %w", ErrClientBody), 400},
		{fmt.Errorf("x: %w", ErrOutOfDescriptors), 503},
		{errors.New("other"), 502},
	} {
		assert.Equal(t, tc.want, StatusFor(tc.err), tc.err.Error())
	}
}

func TestAppendTarget(t *testing.T) {
	for in, want := range map[string]string{
		"/a?b":                 "/a?b",
		"*":                    "*",
		"http://h/p?q":         "/p?q",
		"http://h":             "/",
		"http://h?q=1":         "/?q=1",
		"":                     "/",
		"https://h:8080/x/y#z": "/x/y#z",
	} {
		assert.Equal(t, want, string(appendTarget(nil, []byte(in))), in)
	}
}

func TestReadChunkSize(t *testing.T) {
	for in, want := range map[string]int64{
		"a\r\n":                10,
		"FF;ext=1\r\n":         255,
		"0\r\n":                0,
		"10 \r\n":              16,
		"zz\r\n":               -1,
		"\r\n":                 -1,
		"1234567890abcdef\r\n": -1,
	} {
		got, err := readChunkSize(bufio.NewReader(strings.NewReader(in)))
		if want < 0 {
			assert.Error(t, err, in)
			continue
		}
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
}
