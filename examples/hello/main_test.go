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
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHandler(t *testing.T) {
	env := map[string]string{"EBB_FUNCTION": "hello", "EBB_REVISION": "hello-00001", "EBB_REPLICA": "hello-00001-abcde", "GREETING": "hi"}
	exited := -1
	h := newHandler(func(k string) string { return env[k] }, func(code int) { exited = code }, faults{})

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

func TestParseFaults(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    faults
		wantErr string
	}{
		{name: "unset", want: faults{}},
		{name: "fail 30", env: map[string]string{"HELLO_FAIL_PERCENT": "30"}, want: faults{failPercent: 30}},
		{name: "fail 0", env: map[string]string{"HELLO_FAIL_PERCENT": "0"}, want: faults{}},
		{name: "fail 100", env: map[string]string{"HELLO_FAIL_PERCENT": "100"}, want: faults{failPercent: 100}},
		{name: "delay", env: map[string]string{"HELLO_DELAY": "250ms"}, want: faults{delay: 250 * time.Millisecond}},
		{name: "both", env: map[string]string{"HELLO_FAIL_PERCENT": "5", "HELLO_DELAY": "1s"}, want: faults{failPercent: 5, delay: time.Second}},
		{name: "fail above 100", env: map[string]string{"HELLO_FAIL_PERCENT": "101"}, wantErr: `HELLO_FAIL_PERCENT="101": want a whole number from 0 to 100`},
		{name: "fail negative", env: map[string]string{"HELLO_FAIL_PERCENT": "-1"}, wantErr: "HELLO_FAIL_PERCENT"},
		{name: "fail fraction", env: map[string]string{"HELLO_FAIL_PERCENT": "2.5"}, wantErr: "HELLO_FAIL_PERCENT"},
		{name: "fail word", env: map[string]string{"HELLO_FAIL_PERCENT": "half"}, wantErr: "HELLO_FAIL_PERCENT"},
		{name: "delay without unit", env: map[string]string{"HELLO_DELAY": "50"}, wantErr: `HELLO_DELAY="50": want a Go duration from 0 to 10m`},
		{name: "delay negative", env: map[string]string{"HELLO_DELAY": "-1s"}, wantErr: "HELLO_DELAY"},
		{name: "delay too long", env: map[string]string{"HELLO_DELAY": "11m"}, wantErr: "HELLO_DELAY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseFaults(func(k string) string { return tt.env[k] })
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

// TestRunRefusesBadFaults checks that a bad switch stops hello at its
// start, before it listens, with the variable named.
func TestRunRefusesBadFaults(t *testing.T) {
	err := run(context.Background(), func(k string) string {
		return map[string]string{"PORT": "0", "HELLO_DELAY": "soon"}[k]
	}, io.Discard)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `HELLO_DELAY="soon"`)
}

// TestFailPercent drives the per-request roll: with rolls 0-99 in turn,
// exactly failPercent of 100 requests to / answer 500, and other paths
// never fail.
func TestFailPercent(t *testing.T) {
	for _, pct := range []int{0, 1, 30, 100} {
		t.Run(strconv.Itoa(pct), func(t *testing.T) {
			next := 0
			f := faults{failPercent: pct, roll: func(n int) int { v := next % n; next++; return v }}
			env := map[string]string{"EBB_REVISION": "hello-00002"}
			h := newHandler(func(k string) string { return env[k] }, func(int) {}, f)
			failed := 0
			for range 100 {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
				switch rec.Code {
				case http.StatusInternalServerError:
					failed++
					assert.Contains(t, rec.Body.String(), "revision=hello-00002", "a failure still names its revision")
				case http.StatusOK:
					assert.Contains(t, rec.Body.String(), "revision=hello-00002")
				default:
					t.Fatalf("status %d", rec.Code)
				}
			}
			assert.Equal(t, pct, failed)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/stats", nil))
			assert.Equal(t, http.StatusOK, rec.Code, "only / fails")
		})
	}
}

// TestFaultsSpareTheProbe checks that ebb's readiness probe gets a plain
// answer at once whatever the switches say.
func TestFaultsSpareTheProbe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHandler(func(string) string { return "" }, func(int) {}, faults{failPercent: 100, delay: time.Second})
		start := time.Now()
		req := httptest.NewRequest("GET", "/", nil)
		req.Header.Set("User-Agent", "ebb-probe")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		assert.Equal(t, http.StatusOK, rec.Code)
		assert.Equal(t, time.Duration(0), time.Since(start))

		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		assert.Equal(t, http.StatusInternalServerError, rec.Code, "any other client gets the faults")
		assert.Equal(t, time.Second, time.Since(start))
	})
}

// TestFailPercentRandom checks the default roll: 30% over many requests,
// within a bound loose enough never to flake (±5 points over 20,000).
func TestFailPercentRandom(t *testing.T) {
	h := newHandler(func(string) string { return "" }, func(int) {}, faults{failPercent: 30})
	const n = 20000
	failed := 0
	for range n {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		if rec.Code == http.StatusInternalServerError {
			failed++
		}
	}
	assert.InDelta(t, 0.30, float64(failed)/n, 0.05)
}

// TestDelay checks that / waits HELLO_DELAY before it answers, and that a
// client gone meanwhile ends the wait.
func TestDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHandler(func(string) string { return "" }, func(int) {}, faults{delay: 300 * time.Millisecond})
		start := time.Now()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		assert.Equal(t, http.StatusOK, rec.Code)
		assert.Equal(t, 300*time.Millisecond, time.Since(start))

		start = time.Now()
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/stats", nil))
		assert.Equal(t, time.Duration(0), time.Since(start), "only / is slow")

		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start = time.Now()
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil).WithContext(ctx))
		assert.Equal(t, 100*time.Millisecond, time.Since(start), "a gone client ends the wait")
	})
}
