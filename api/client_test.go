package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const testToken = "s3cret"

// recorded is what the fake API saw of one request.
type recorded struct {
	Method, Path, Query, Auth, UA, ContentType string
	Body                                       []byte
}

// fakeAPI answers every request with status and body, and records the request.
func fakeAPI(t *testing.T, status int, body string) (*Client, *recorded) {
	t.Helper()
	rec := &recorded{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		*rec = recorded{
			Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
			Auth: r.Header.Get("Authorization"), UA: r.Header.Get("User-Agent"),
			ContentType: r.Header.Get("Content-Type"), Body: b,
		}
		if status != http.StatusNoContent {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	c, err := NewClient(srv.URL, testToken, WithHTTPClient(srv.Client()), WithUserAgent("ebb-test/1"))
	require.NoError(t, err)
	return c, rec
}

func TestClientRoutes(t *testing.T) {
	fnJSON := `{"name":"hello","url":"http://hello.localhost:8080","latestRevision":"hello-00001",
		"traffic":[{"revision":"hello-00001","percent":100}],
		"revisions":[{"name":"hello-00001","generation":1,"state":"Ready","ready":1,"desired":1}]}`
	assertHello := func(t *testing.T, fn Function) {
		assert.Equal(t, "hello", fn.Name)
		assert.Equal(t, "hello-00001", fn.LatestRevision)
		require.Len(t, fn.Revisions, 1)
		assert.Equal(t, RevisionReady, fn.Revisions[0].State)
	}
	tests := []struct {
		name       string
		status     int
		body       string
		call       func(t *testing.T, c *Client)
		wantMethod string
		wantPath   string
		wantQuery  string
		wantBody   string
	}{
		{
			name: "list images", status: 200,
			body: `{"images":[{"name":"hello:latest","digest":"sha256:ab","size":42}]}`,
			call: func(t *testing.T, c *Client) {
				imgs, err := c.ListImages(context.Background())
				require.NoError(t, err)
				assert.Equal(t, []Image{{Name: "hello:latest", Digest: "sha256:ab", Size: 42}}, imgs)
			},
			wantMethod: "GET", wantPath: "/v1/images",
		},
		{
			name: "put function created", status: 201, body: fnJSON,
			call: func(t *testing.T, c *Client) {
				fn, created, err := c.PutFunction(context.Background(), "hello", FunctionSpec{Image: "hello:latest", Port: 9000})
				require.NoError(t, err)
				assert.True(t, created)
				assertHello(t, fn)
			},
			wantMethod: "PUT", wantPath: "/v1/functions/hello",
			wantBody: `{"image":"hello:latest","port":9000,"concurrency":{},"scale":{"scaleToZeroGrace":"0s","scaleToZeroRetention":"0s","scaleDownDelay":"0s","stableWindow":"0s"},"resources":{},"timeout":"0s"}`,
		},
		{
			name: "put function updated", status: 200, body: fnJSON,
			call: func(t *testing.T, c *Client) {
				_, created, err := c.PutFunction(context.Background(), "hello", FunctionSpec{Image: "hello:latest"})
				require.NoError(t, err)
				assert.False(t, created)
			},
			wantMethod: "PUT", wantPath: "/v1/functions/hello",
		},
		{
			name: "get function", status: 200, body: fnJSON,
			call: func(t *testing.T, c *Client) {
				fn, err := c.GetFunction(context.Background(), "hello")
				require.NoError(t, err)
				assertHello(t, fn)
			},
			wantMethod: "GET", wantPath: "/v1/functions/hello",
		},
		{
			name: "list functions", status: 200, body: `{"functions":[` + fnJSON + `]}`,
			call: func(t *testing.T, c *Client) {
				fns, err := c.ListFunctions(context.Background())
				require.NoError(t, err)
				require.Len(t, fns, 1)
				assertHello(t, fns[0])
			},
			wantMethod: "GET", wantPath: "/v1/functions",
		},
		{
			name: "delete function", status: 204,
			call: func(t *testing.T, c *Client) {
				require.NoError(t, c.DeleteFunction(context.Background(), "hello"))
			},
			wantMethod: "DELETE", wantPath: "/v1/functions/hello",
		},
		{
			name: "list revisions", status: 200,
			body: `{"revisions":[{"name":"hello-00001","function":"hello","spec":{"image":"a"},"status":{"name":"hello-00001","state":"Idle"}}]}`,
			call: func(t *testing.T, c *Client) {
				revs, err := c.ListRevisions(context.Background(), "hello")
				require.NoError(t, err)
				require.Len(t, revs, 1)
				assert.Equal(t, "a", revs[0].Spec.Image)
				assert.Equal(t, RevisionIdle, revs[0].Status.State)
			},
			wantMethod: "GET", wantPath: "/v1/functions/hello/revisions",
		},
		{
			name: "set traffic", status: 200, body: fnJSON,
			call: func(t *testing.T, c *Client) {
				fn, err := c.SetTraffic(context.Background(), "hello", []TrafficTarget{
					{Revision: "hello-00001", Percent: 90},
					{LatestRevision: true, Percent: 10, Tag: "canary"},
				})
				require.NoError(t, err)
				assertHello(t, fn)
			},
			wantMethod: "PUT", wantPath: "/v1/functions/hello/traffic",
			wantBody: `{"traffic":[{"revision":"hello-00001","percent":90},{"latestRevision":true,"percent":10,"tag":"canary"}]}`,
		},
		{
			name: "list nodes", status: 200,
			body: `{"nodes":[{"name":"n1","cpu":2,"memoryBytes":1024,"ebpf":"attached","heartbeatInterval":"5s","heartbeat":"2025-01-02T03:04:05Z"}]}`,
			call: func(t *testing.T, c *Client) {
				nodes, err := c.ListNodes(context.Background())
				require.NoError(t, err)
				require.Len(t, nodes, 1)
				assert.Equal(t, "n1", nodes[0].Name)
				assert.Equal(t, "attached", nodes[0].EBPF)
				assert.Equal(t, 5*time.Second, nodes[0].HeartbeatInterval.Duration)
			},
			wantMethod: "GET", wantPath: "/v1/nodes",
		},
		{
			name: "logs with every option", status: 200, body: "r1 stdout: hi\n",
			call: func(t *testing.T, c *Client) {
				rc, err := c.Logs(context.Background(), "hello", LogOptions{Follow: true, Tail: 20, Revision: "hello-00002"})
				require.NoError(t, err)
				defer rc.Close()
				b, err := io.ReadAll(rc)
				require.NoError(t, err)
				assert.Equal(t, "r1 stdout: hi\n", string(b))
			},
			wantMethod: "GET", wantPath: "/v1/functions/hello/logs",
			wantQuery: "follow=true&revision=hello-00002&tail=20",
		},
		{
			name: "logs without options", status: 200, body: "",
			call: func(t *testing.T, c *Client) {
				rc, err := c.Logs(context.Background(), "hello", LogOptions{})
				require.NoError(t, err)
				require.NoError(t, rc.Close())
			},
			wantMethod: "GET", wantPath: "/v1/functions/hello/logs",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, rec := fakeAPI(t, tt.status, tt.body)
			tt.call(t, c)
			assert.Equal(t, tt.wantMethod, rec.Method)
			assert.Equal(t, tt.wantPath, rec.Path)
			assert.Equal(t, tt.wantQuery, rec.Query)
			assert.Equal(t, "Bearer "+testToken, rec.Auth)
			assert.Equal(t, "ebb-test/1", rec.UA)
			if tt.wantBody != "" {
				assert.JSONEq(t, tt.wantBody, string(rec.Body))
				assert.Equal(t, "application/json", rec.ContentType)
			}
		})
	}
}

func TestClientErrors(t *testing.T) {
	tests := []struct {
		name        string
		status      int
		body        string
		want        *APIError
		wantMessage string
		notFound    bool
		rejected    bool
		serverError bool
	}{
		{
			name: "not found envelope", status: 404,
			body:        `{"error":{"code":"not_found","message":"function \"nope\" does not exist"}}`,
			want:        &APIError{Status: 404, Code: CodeNotFound, Message: `function "nope" does not exist`},
			wantMessage: `not_found: function "nope" does not exist`,
			notFound:    true, rejected: true,
		},
		{
			name: "invalid envelope", status: 400,
			body:        `{"error":{"code":"invalid","message":"scale.min: must not be negative"}}`,
			want:        &APIError{Status: 400, Code: CodeInvalid, Message: "scale.min: must not be negative"},
			wantMessage: "invalid: scale.min: must not be negative",
			rejected:    true,
		},
		{
			name: "proxy html", status: 502,
			body:        "<html>\n  <body>bad   gateway</body>\n</html>\n",
			want:        &APIError{Status: 502, Message: "HTTP 502 Bad Gateway: <html> <body>bad gateway</body> </html>"},
			wantMessage: "HTTP 502 Bad Gateway: <html> <body>bad gateway</body> </html>",
			serverError: true,
		},
		{
			name: "empty body", status: 503, body: "",
			want:        &APIError{Status: 503, Message: "HTTP 503 Service Unavailable"},
			wantMessage: "HTTP 503 Service Unavailable",
			serverError: true,
		},
		{
			name: "envelope without message", status: 409, body: `{"error":{"code":"conflict"}}`,
			want:        &APIError{Status: 409, Code: CodeConflict, Message: "Conflict"},
			wantMessage: "conflict: Conflict",
			rejected:    true,
		},
		{
			name: "huge body is cut", status: 500, body: strings.Repeat("x", 1<<20),
			want:        &APIError{Status: 500, Message: "HTTP 500 Internal Server Error: " + strings.Repeat("x", 200) + "..."},
			wantMessage: "HTTP 500 Internal Server Error: " + strings.Repeat("x", 200) + "...",
			serverError: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := fakeAPI(t, tt.status, tt.body)
			_, err := c.GetFunction(context.Background(), "nope")
			require.Error(t, err)
			var apiErr *APIError
			require.ErrorAs(t, err, &apiErr)
			assert.Equal(t, tt.want, apiErr)
			assert.Equal(t, tt.wantMessage, err.Error())
			assert.Equal(t, tt.notFound, IsNotFound(err))
			assert.Equal(t, tt.rejected, IsRejected(err))
			assert.Equal(t, tt.serverError, IsServerError(err))
			assert.True(t, errors.Is(fmt.Errorf("wrapped: %w", err), &APIError{Status: tt.status}))
			assert.False(t, errors.Is(err, &APIError{Status: 418}))
			if tt.want.Code != "" {
				assert.True(t, errors.Is(err, &APIError{Code: tt.want.Code}))
			}
		})
	}
}

func TestClientErrorHelpers(t *testing.T) {
	assert.True(t, IsUnauthorized(&APIError{Status: 401}))
	assert.True(t, IsUnauthorized(&APIError{Status: 403}))
	assert.True(t, IsConflict(fmt.Errorf("x: %w", &APIError{Status: 409})))
	for _, f := range []func(error) bool{IsNotFound, IsConflict, IsUnauthorized, IsRejected, IsServerError} {
		assert.False(t, f(errors.New("plain")))
		assert.False(t, f(nil))
	}
}

func TestClientRejectsBadNamesLocally(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { calls.Add(1) }))
	t.Cleanup(srv.Close)
	c, err := NewClient(srv.URL, testToken)
	require.NoError(t, err)
	ctx := context.Background()
	for _, name := range []string{"", "..", "a/b", "Hello", "a?b=c", strings.Repeat("a", 64)} {
		_, err := c.GetFunction(ctx, name)
		assert.True(t, IsValidation(err), "GetFunction(%q): %v", name, err)
		_, _, err = c.PutFunction(ctx, name, FunctionSpec{Image: "x"})
		assert.True(t, IsValidation(err), "PutFunction(%q): %v", name, err)
		assert.True(t, IsValidation(c.DeleteFunction(ctx, name)))
		_, err = c.ListRevisions(ctx, name)
		assert.True(t, IsValidation(err))
		_, err = c.SetTraffic(ctx, name, nil)
		assert.True(t, IsValidation(err))
		_, err = c.Logs(ctx, name, LogOptions{})
		assert.True(t, IsValidation(err))
	}
	assert.Zero(t, calls.Load(), "no request may leave for a bad name")
}

func TestNewClientBaseURL(t *testing.T) {
	tests := []struct {
		in, want, wantErr string
	}{
		{in: "127.0.0.1:8090", want: "http://127.0.0.1:8090"},
		{in: "http://127.0.0.1:8090/", want: "http://127.0.0.1:8090"},
		{in: " https://api.example:443/ebb/ ", want: "https://api.example:443/ebb"},
		{in: "", wantErr: "empty"},
		{in: "ftp://x", wantErr: "scheme must be http or https"},
		{in: "http://", wantErr: "no host"},
		{in: "http://u:p@h:1", wantErr: "must not carry credentials"},
		{in: "http://h:1/?a=b", wantErr: "must not carry credentials"},
		{in: "http://[::1", wantErr: "missing ']'"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			c, err := NewClient(tt.in, "t")
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, c.BaseURL())
		})
	}
}

func TestClientKeepsPathPrefix(t *testing.T) {
	var path atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path.Store(r.URL.Path)
		_, _ = io.WriteString(w, `{"functions":[]}`)
	}))
	t.Cleanup(srv.Close)
	c, err := NewClient(srv.URL+"/ebb/", testToken)
	require.NoError(t, err)
	_, err = c.ListFunctions(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "/ebb/v1/functions", path.Load())
}

func TestDefaultHTTPClient(t *testing.T) {
	c, err := NewClient("127.0.0.1:1", "t")
	require.NoError(t, err)
	assert.NotSame(t, http.DefaultClient, c.hc)
	assert.Zero(t, c.hc.Timeout, "an overall timeout would cut uploads and followed logs")
	tr, ok := c.hc.Transport.(*http.Transport)
	require.True(t, ok)
	assert.NotSame(t, http.DefaultTransport, tr)
	assert.NotZero(t, tr.TLSHandshakeTimeout)
	assert.Equal(t, DefaultClientTimeout, c.timeout)
}

func TestClientUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.URL
	srv.Close() // nothing listens there any more
	c, err := NewClient(addr, testToken)
	require.NoError(t, err)
	_, err = c.ListFunctions(context.Background())
	require.Error(t, err)
	var apiErr *APIError
	assert.False(t, errors.As(err, &apiErr), "a transport failure is not an API answer")
	assert.Contains(t, err.Error(), "connect")
}

func TestClientTimeoutBoundsUnaryCalls(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // answer only when the client gives up
	}))
	t.Cleanup(srv.Close)
	c, err := NewClient(srv.URL, testToken, WithTimeout(50*time.Millisecond))
	require.NoError(t, err)
	_, err = c.ListFunctions(context.Background())
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

// TestLogsFollowOutlivesTimeout shows that the unary timeout does not apply
// to a followed log: lines written after it has passed still arrive, and the
// stream ends when the caller's context does.
func TestLogsFollowOutlivesTimeout(t *testing.T) {
	next := make(chan string)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush() // a follower gets its answer before the first line
		for {
			select {
			case line := <-next:
				_, _ = io.WriteString(w, line+"\n")
				w.(http.Flusher).Flush()
			case <-r.Context().Done():
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	c, err := NewClient(srv.URL, testToken, WithTimeout(20*time.Millisecond))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rc, err := c.Logs(ctx, "hello", LogOptions{Follow: true})
	require.NoError(t, err)
	defer rc.Close()
	br := bufio.NewReader(rc)
	next <- "r1 stdout: one"
	line, err := br.ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "r1 stdout: one\n", line)

	// Outlast the unary timeout without sleeping: a timer on a channel.
	<-time.After(60 * time.Millisecond)
	next <- "r1 stderr: two"
	line, err = br.ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "r1 stderr: two\n", line)

	cancel()
	_, err = br.ReadString('\n')
	require.Error(t, err)
}

func TestLogsErrorAnswer(t *testing.T) {
	c, _ := fakeAPI(t, 404, `{"error":{"code":"not_found","message":"no such function"}}`)
	rc, err := c.Logs(context.Background(), "hello", LogOptions{})
	assert.Nil(t, rc)
	assert.True(t, IsNotFound(err))
}

// TestPushImageStreams proves the upload is not buffered: the server sees the
// first chunk while the second has not been written yet.
func TestPushImageStreams(t *testing.T) {
	first := []byte(strings.Repeat("a", 64<<10))
	second := []byte(strings.Repeat("b", 64<<10))
	gotFirst := make(chan struct{})
	var req recorded
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, len(first))
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		close(gotFirst)
		rest, _ := io.ReadAll(r.Body)
		req = recorded{Method: r.Method, Path: r.URL.Path, ContentType: r.Header.Get("Content-Type"), Body: append(buf, rest...)}
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"name":"hello:latest","digest":"sha256:cafe","size":131072}`)
	}))
	t.Cleanup(srv.Close)
	c, err := NewClient(srv.URL, testToken)
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pr, pw := io.Pipe()
	writeErr := make(chan error, 1)
	go func() {
		if _, err := pw.Write(first); err != nil {
			writeErr <- err
			return
		}
		select {
		case <-gotFirst:
		case <-ctx.Done():
			pw.CloseWithError(errors.New("server never saw the first chunk: the body was buffered"))
			writeErr <- ctx.Err()
			return
		}
		_, err := pw.Write(second)
		pw.CloseWithError(err)
		writeErr <- err
	}()
	img, err := c.PushImage(ctx, pr)
	_ = pr.Close()
	require.NoError(t, err)
	require.NoError(t, <-writeErr)
	assert.Equal(t, Image{Name: "hello:latest", Digest: "sha256:cafe", Size: 131072}, img)
	assert.Equal(t, "POST", req.Method)
	assert.Equal(t, "/v1/images", req.Path)
	assert.Equal(t, "application/x-tar", req.ContentType)
	assert.Equal(t, string(first)+string(second), string(req.Body))
}

func TestPushImageFileHasLength(t *testing.T) {
	var gotLen atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotLen.Store(r.ContentLength)
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"name":"x","digest":"sha256:1","size":5}`)
	}))
	t.Cleanup(srv.Close)
	c, err := NewClient(srv.URL, testToken)
	require.NoError(t, err)

	path := filepath.Join(t.TempDir(), "image.tar")
	require.NoError(t, os.WriteFile(path, []byte("0123456789"), 0o600))
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	_, err = f.Seek(5, io.SeekStart) // only what is left is sent
	require.NoError(t, err)
	_, err = c.PushImage(context.Background(), f)
	require.NoError(t, err)
	assert.Equal(t, int64(5), gotLen.Load())
	// PushImage leaves the file to its owner.
	_, err = f.Seek(0, io.SeekStart)
	assert.NoError(t, err, "the file must still be open")
}

func TestPushImageRejected(t *testing.T) {
	c, _ := fakeAPI(t, 400, `{"error":{"code":"invalid_archive","message":"entry \"../x\" escapes the archive"}}`)
	_, err := c.PushImage(context.Background(), strings.NewReader("not a tar"))
	require.Error(t, err)
	assert.True(t, errors.Is(err, &APIError{Code: CodeInvalidArchive}))
	assert.True(t, IsRejected(err))
}

// The client must decode what the server writes; decoding a Function we
// marshal ourselves guards against a tag drifting on one side only.
func TestFunctionRoundTrip(t *testing.T) {
	initial := 2
	want := Function{
		Name: "hello", URL: "http://hello.localhost:8080", LatestRevision: "hello-00002",
		Spec:      FunctionSpec{Image: "hello:latest", Scale: Scale{Initial: &initial}, Timeout: D(time.Minute)},
		Traffic:   []TrafficTarget{{Revision: "hello-00002", Percent: 100, Tag: "v2", URL: "http://v2-hello.localhost:8080"}},
		Revisions: []RevisionStatus{{Name: "hello-00002", Generation: 2, Desired: 2, Ready: 1, State: RevisionScaling}},
	}
	b, err := json.Marshal(want)
	require.NoError(t, err)
	c, _ := fakeAPI(t, 200, string(b))
	got, err := c.GetFunction(context.Background(), "hello")
	require.NoError(t, err)
	assert.Equal(t, want, got)
}
