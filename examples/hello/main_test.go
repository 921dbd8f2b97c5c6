package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHandler(t *testing.T) {
	env := map[string]string{"EBB_FUNCTION": "hello", "EBB_REVISION": "hello-00001", "EBB_REPLICA": "hello-00001-abcde", "GREETING": "hi"}
	exited := -1
	h := newHandler(func(k string) string { return env[k] }, func(code int) { exited = code })

	tests := []struct {
		name       string
		method     string
		target     string
		body       string
		wantStatus int
		wantBody   []string
	}{
		{name: "root", method: "GET", target: "/", wantStatus: 200,
			wantBody: []string{"hello from ebb", "revision=hello-00001", "replica=hello-00001-abcde", "greeting=hi"}},
		{name: "unknown path", method: "GET", target: "/nope", wantStatus: 404},
		{name: "sleep", method: "GET", target: "/sleep?d=1ms", wantStatus: 200, wantBody: []string{"slept 1ms"}},
		{name: "sleep bad duration", method: "GET", target: "/sleep?d=forever", wantStatus: 400},
		{name: "stream", method: "GET", target: "/stream?n=3", wantStatus: 200, wantBody: []string{"chunk 0\nchunk 1\nchunk 2\n"}},
		{name: "stream bad n", method: "GET", target: "/stream?n=0", wantStatus: 400},
		{name: "echo", method: "POST", target: "/echo", body: "ping", wantStatus: 200, wantBody: []string{"ping"}},
		{name: "env", method: "GET", target: "/env", wantStatus: 200, wantBody: []string{"="}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.target, strings.NewReader(tt.body)))
			assert.Equal(t, tt.wantStatus, rec.Code)
			for _, want := range tt.wantBody {
				assert.Contains(t, rec.Body.String(), want)
			}
		})
	}

	t.Run("crash exits 1", func(t *testing.T) {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/crash", nil))
		assert.Equal(t, 1, exited)
	})
}

// TestGracefulShutdown checks that a cancelled run (SIGTERM in main) finishes
// the request in flight before it returns.
func TestGracefulShutdown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	require.NoError(t, l.Close())

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, func(k string) string {
			if k == "PORT" {
				return port
			}
			return ""
		}, io.Discard)
	}()

	client := &http.Client{Timeout: 10 * time.Second}
	url := "http://127.0.0.1:" + port
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := client.Get(url + "/")
		if err == nil {
			resp.Body.Close()
			break
		}
		require.True(t, time.Now().Before(deadline), "server did not come up: %v", err)
		// run listens on a real loopback socket, which no bubble can
		// hold: poll until the kernel accepts connections on it.
		time.Sleep(time.Millisecond)
	}

	resp, err := client.Get(url + "/sleep?d=300ms&flush=1")
	require.NoError(t, err)
	defer resp.Body.Close()
	// The headers are back, so the handler is running: now signal.
	cancel()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, "slept 300ms\n", string(body))
	require.NoError(t, <-done)
}
