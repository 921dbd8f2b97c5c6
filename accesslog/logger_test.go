package accesslog

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/internal/testenv"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"off", Config{}, true},
		{"stdout sampled", Config{Output: OutputStdout, SampleRate: 0.01}, true},
		{"absolute file", Config{Output: "/var/log/ebb/access.log"}, true},
		{"relative file", Config{Output: "access.log"}, false},
		{"rate above one", Config{Output: OutputStdout, SampleRate: 1.5}, false},
		{"negative rate", Config{SampleRate: -0.1}, false},
		{"negative ring", Config{RingLines: -1}, false},
		{"negative size", Config{MaxSizeMB: -1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.ok {
				assert.NoError(t, err)
			} else {
				assert.Error(t, err)
			}
		})
	}
}

func TestSamplingKeepsErrorsAndColdStarts(t *testing.T) {
	var out testenv.Buffer
	l, err := New(Config{Output: OutputStdout, SampleRate: 0.0000001}, &out)
	require.NoError(t, err)
	for range 1000 {
		l.Log(&Record{Function: "hello", Status: 200})
	}
	l.Log(&Record{Function: "hello", Status: 502})
	l.Log(&Record{Function: "hello", Status: 200, Cold: true})
	require.NoError(t, l.Flush())
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	require.Len(t, lines, 2, "the 200s are sampled away (one in ten million)")
	assert.Contains(t, lines[0], `"status":502`)
	assert.Contains(t, lines[1], `"cold":true`)

	// The ring is not sampled.
	var ring bytes.Buffer
	require.NoError(t, l.Read(context.Background(), &ring, Query{Function: "hello"}))
	assert.Equal(t, DefaultRingLines, strings.Count(ring.String(), "\n"))
}

func TestFileOutputIsFlushedAndClosedByRun(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	l, err := New(Config{Output: path}, io.Discard)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	l.Log(&Record{Function: "hello", Status: 200, Time: time.Unix(1, 0)})
	cancel()
	require.NoError(t, <-done)
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var v map[string]any
	require.NoError(t, json.Unmarshal(b, &v))
	assert.Equal(t, "hello", v["function"])
}

func TestRingKeepsTheNewestLines(t *testing.T) {
	l, err := New(Config{RingLines: 3}, nil)
	require.NoError(t, err)
	for i := range 5 {
		l.Log(&Record{Function: "a", Status: 200 + i})
	}
	l.Log(&Record{Function: "b", Status: 404})
	read := func(q Query) []string {
		var b bytes.Buffer
		require.NoError(t, l.Read(context.Background(), &b, q))
		var statuses []string
		sc := bufio.NewScanner(&b)
		for sc.Scan() {
			var v struct{ Status json.Number }
			require.NoError(t, json.Unmarshal(sc.Bytes(), &v))
			statuses = append(statuses, v.Status.String())
		}
		return statuses
	}
	assert.Equal(t, []string{"202", "203", "204"}, read(Query{Function: "a"}))
	assert.Equal(t, []string{"204"}, read(Query{Function: "a", Tail: 1}))
	assert.Equal(t, []string{"404"}, read(Query{Function: "b"}))
	assert.Empty(t, read(Query{Function: "never"}))
}

// lineWriter sends each write to a channel, for a follower's lines.
type lineWriter chan string

func (w lineWriter) Write(p []byte) (int, error) { w <- string(p); return len(p), nil }

func TestFollowStreamsNewLines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, err := New(Config{}, nil)
		require.NoError(t, err)
		l.Log(&Record{Function: "a", Status: 201})
		ctx, cancel := context.WithCancel(context.Background())
		got := make(lineWriter, 10)
		done := make(chan error, 1)
		go func() { done <- l.Read(ctx, got, Query{Function: "a", Follow: true}) }()
		assert.Contains(t, <-got, `"status":201`)
		synctest.Wait() // the follower waits for news
		l.Log(&Record{Function: "other", Status: 500})
		l.Log(&Record{Function: "a", Status: 202})
		assert.Contains(t, <-got, `"status":202`)
		cancel()
		require.NoError(t, <-done)
		assert.Empty(t, got, "only function a's lines")
	})
}

func TestHandler(t *testing.T) {
	l, err := New(Config{}, nil)
	require.NoError(t, err)
	l.Log(&Record{Function: "hello.team-a", Status: 200})
	srv := httptest.NewServer(l.Handler("sekrit"))
	defer srv.Close()
	for _, tc := range []struct {
		name, query, auth string
		status            int
		lines             int
	}{
		{"reads", "function=hello.team-a&tail=5", "Bearer sekrit", 200, 1},
		{"no token", "function=hello.team-a", "", 401, 0},
		{"wrong token", "function=hello.team-a", "Bearer nope", 401, 0},
		{"no function", "", "Bearer sekrit", 400, 0},
		{"bad function", "function=../etc", "Bearer sekrit", 400, 0},
		{"bad tail", "function=hello&tail=-1", "Bearer sekrit", 400, 0},
		{"bad follow", "function=hello&follow=maybe", "Bearer sekrit", 400, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, srv.URL+"?"+tc.query, nil)
			require.NoError(t, err)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := srv.Client().Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			assert.Equal(t, tc.status, resp.StatusCode, "%s", b)
			if tc.status == 200 {
				assert.Equal(t, tc.lines, bytes.Count(b, []byte("\n")))
			}
		})
	}
}

func BenchmarkLog(b *testing.B) {
	l, err := New(Config{Output: OutputStdout}, io.Discard)
	require.NoError(b, err)
	rec := Record{Time: time.Now(), Function: "hello", Revision: "hello-00001", Replica: "hello-00001-abc", Status: 200, Protocol: "HTTP/1.1"}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := rec
		for pb.Next() {
			l.Log(&r)
		}
	})
}

func TestRemoteMergesRoutersAndFollows(t *testing.T) {
	at := time.Date(2026, 12, 6, 20, 0, 0, 0, time.UTC)
	var loggers []*Logger
	var addrs []string
	for range 2 {
		l, err := New(Config{}, nil)
		require.NoError(t, err)
		srv := httptest.NewServer(l.Handler("tok"))
		t.Cleanup(srv.Close)
		loggers = append(loggers, l)
		addrs = append(addrs, strings.TrimPrefix(srv.URL, "http://"))
	}
	// Interleaved in time across the two routers.
	for i := range 6 {
		loggers[i%2].Log(&Record{Function: "hello", Status: 200 + i, Time: at.Add(time.Duration(i) * time.Second)})
	}
	r := &Remote{Addrs: func(context.Context) ([]string, error) { return addrs, nil }, Token: "tok", Client: http.DefaultClient}
	var b bytes.Buffer
	require.NoError(t, r.Read(context.Background(), &b, Query{Function: "hello", Tail: 4}))
	var statuses []int
	for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		var v struct{ Status int }
		require.NoError(t, json.Unmarshal([]byte(line), &v))
		statuses = append(statuses, v.Status)
	}
	assert.Equal(t, []int{202, 203, 204, 205}, statuses, "the newest four of both, in time order")

	ctx, cancel := context.WithCancel(context.Background())
	got := make(lineWriter, 10)
	done := make(chan error, 1)
	go func() { done <- r.Read(ctx, got, Query{Function: "hello", Tail: 1, Follow: true}) }()
	assert.Contains(t, <-got, `"status":205`)
	// The followers attach to both routers; a line to either arrives.
	require.Eventually(t, func() bool {
		return loggers[0].rings.followers.Load() == 1 && loggers[1].rings.followers.Load() == 1
	}, 5*time.Second, time.Millisecond)
	loggers[1].Log(&Record{Function: "hello", Status: 299})
	assert.Contains(t, <-got, `"status":299`)
	cancel()
	require.NoError(t, <-done)
	assert.Empty(t, got, "no line twice")
}
