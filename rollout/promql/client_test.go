package promql

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		err  string // substring; "" means valid
	}{
		{name: "http", cfg: Config{URL: "http://127.0.0.1:9090"}},
		{name: "https with a path prefix", cfg: Config{URL: "https://prom.example/prometheus/"}},
		{name: "ipv6", cfg: Config{URL: "http://[::1]:9090"}},
		{name: "basic auth", cfg: Config{URL: "https://u:p@prom.example"}},
		{name: "timeout", cfg: Config{URL: "http://prom", Timeout: 30 * time.Second}},
		{name: "missing", cfg: Config{}, err: "prometheus url is required"},
		{name: "no scheme", cfg: Config{URL: "localhost:9090"}, err: "scheme must be http or https"},
		{name: "bare host", cfg: Config{URL: "prometheus"}, err: "scheme must be http or https"},
		{name: "other scheme", cfg: Config{URL: "ftp://prom"}, err: "scheme must be http or https"},
		{name: "no host", cfg: Config{URL: "http://"}, err: "needs a host"},
		{name: "no host but a path", cfg: Config{URL: "http:///api"}, err: "needs a host"},
		{name: "query", cfg: Config{URL: "http://prom/?x=1"}, err: "no query or fragment"},
		{name: "fragment", cfg: Config{URL: "http://prom/#x"}, err: "no query or fragment"},
		{name: "unparsable", cfg: Config{URL: "http://%zz"}, err: "prometheus url"},
		{name: "password not repeated", cfg: Config{URL: "ftp://u:secret@prom"}, err: "ftp://u:xxxxx@prom"},
		{name: "negative timeout", cfg: Config{URL: "http://prom", Timeout: -time.Second}, err: "timeout -1s is outside"},
		{name: "timeout too long", cfg: Config{URL: "http://prom", Timeout: time.Hour}, err: "timeout 1h0m0s is outside"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.err == "" {
				require.NoError(t, err)
				_, err := New(tt.cfg)
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.err)
			assert.NotContains(t, err.Error(), "secret")
			_, err = New(tt.cfg)
			assert.Error(t, err, "New validates too")
		})
	}
}

// roundTrip is a fake Prometheus HTTP API in process.
type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func reply(status int, body string) roundTrip {
	return func(*http.Request) (*http.Response, error) {
		return &http.Response{
			StatusCode: status,
			Header:     http.Header{"Content-Type": {"application/json"}},
			Body:       io.NopCloser(strings.NewReader(body)),
		}, nil
	}
}

func newTestClient(t *testing.T, rt http.RoundTripper, log *slog.Logger) *Client {
	t.Helper()
	c, err := New(Config{URL: "http://prom.test/prefix", HTTPClient: &http.Client{Transport: rt}, Logger: log})
	require.NoError(t, err)
	return c
}

const query = `sum(rate(x{revision="r-00002"}[10s]))`

func TestQueryResults(t *testing.T) {
	ok := func(data string) string { return `{"status":"success","data":` + data + `}` }
	tests := []struct {
		name   string
		status int
		body   string
		want   float64 // NaN means NaN
		err    string  // substring; "" means none
	}{
		{name: "scalar", status: 200, body: ok(`{"resultType":"scalar","result":[1700000000.5,"0.25"]}`), want: 0.25},
		{name: "scalar NaN", status: 200, body: ok(`{"resultType":"scalar","result":[1700000000,"NaN"]}`), want: math.NaN()},
		{name: "scalar +Inf", status: 200, body: ok(`{"resultType":"scalar","result":[1700000000,"+Inf"]}`), want: math.Inf(1)},
		{name: "one sample", status: 200, body: ok(`{"resultType":"vector","result":[{"metric":{"revision":"r-00002"},"value":[1700000000,"7"]}]}`), want: 7},
		{name: "one sample with no labels", status: 200, body: ok(`{"resultType":"vector","result":[{"metric":{},"value":[1700000000,"-3.5"]}]}`), want: -3.5},
		{name: "empty vector", status: 200, body: ok(`{"resultType":"vector","result":[]}`), want: math.NaN()},
		{
			name: "two samples", status: 200,
			body: ok(`{"resultType":"vector","result":[{"metric":{"a":"1"},"value":[1,"1"]},{"metric":{"a":"2"},"value":[1,"2"]}]}`),
			err:  "returned 2 series, a check needs one number",
		},
		{name: "matrix", status: 200, body: ok(`{"resultType":"matrix","result":[{"metric":{},"values":[[1,"1"],[2,"2"]]}]}`), err: "returned a matrix"},
		{name: "string", status: 200, body: ok(`{"resultType":"string","result":[1,"hello"]}`), err: `"string"`},
		{name: "bad query", status: 400, body: `{"status":"error","errorType":"bad_data","error":"parse error: unexpected end of input"}`, err: "parse error: unexpected end of input"},
		{name: "overloaded", status: 503, body: `{"status":"error","errorType":"timeout","error":"query timed out in expression evaluation"}`, err: "503"},
		{name: "not prometheus", status: 404, body: `404 page not found`, err: "404"},
		{name: "garbage", status: 200, body: `{"status":`, err: "query "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestClient(t, reply(tt.status, tt.body), nil)
			got, err := c.Query(t.Context(), query, time.Time{})
			if tt.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.err)
				assert.Contains(t, err.Error(), strconv.Quote(query), "the error names the query")
				assert.True(t, math.IsNaN(got))
				return
			}
			require.NoError(t, err)
			if math.IsNaN(tt.want) {
				assert.True(t, math.IsNaN(got), "got %v", got)
				return
			}
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestQueryRequest(t *testing.T) {
	at := time.Date(2026, 12, 6, 12, 0, 30, 500_000_000, time.UTC)
	tests := []struct {
		name     string
		timeout  time.Duration
		deadline time.Duration // of the caller's context; 0 for none
		want     string        // the timeout parameter
	}{
		{name: "default", want: "5s"},
		{name: "fraction rounded up", timeout: 2500 * time.Millisecond, want: "3s"},
		{name: "under a second", timeout: 100 * time.Millisecond, want: "1s"},
		{name: "minutes", timeout: time.Minute, want: "1m0s"},
		{name: "the caller's nearer deadline", timeout: 30 * time.Second, deadline: 1500 * time.Millisecond, want: "2s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var got *http.Request
				var form string
				c, err := New(Config{URL: "http://prom.test/prefix", Timeout: tt.timeout, HTTPClient: &http.Client{
					Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
						got = r
						b, _ := io.ReadAll(r.Body)
						form = string(b)
						return reply(200, `{"status":"success","data":{"resultType":"scalar","result":[1,"1"]}}`)(r)
					}),
				}})
				require.NoError(t, err)
				ctx := t.Context()
				if tt.deadline > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, tt.deadline)
					defer cancel()
				}

				_, err = c.Query(ctx, query, at)
				require.NoError(t, err)
				require.NotNil(t, got)
				assert.Equal(t, "prom.test", got.URL.Host)
				assert.Equal(t, "/prefix/api/v1/query", got.URL.Path, "the base URL's path prefix is kept")
				vals := got.URL.Query() // on a GET
				if got.Method == http.MethodPost {
					vals, err = url.ParseQuery(form)
					require.NoError(t, err)
				}
				assert.Equal(t, query, vals.Get("query"))
				assert.Equal(t, "1796558430.5", vals.Get("time"), "evaluated at the time asked")
				assert.Equal(t, tt.want, vals.Get("timeout"), "Prometheus stops evaluating when we stop waiting")
			})
		})
	}
}

func TestQueryUnreachable(t *testing.T) {
	c := newTestClient(t, roundTrip(func(*http.Request) (*http.Response, error) {
		return nil, errors.New("connection refused")
	}), nil)
	v, err := c.Query(t.Context(), query, time.Time{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "connection refused")
	assert.Contains(t, err.Error(), strconv.Quote(query))
	assert.True(t, math.IsNaN(v))
}

func TestQueryTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, err := New(Config{
			URL:     "http://prom.test",
			Timeout: 2 * time.Second,
			HTTPClient: &http.Client{Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
				<-r.Context().Done() // a Prometheus that never answers
				return nil, r.Context().Err()
			})},
		})
		require.NoError(t, err)
		start := time.Now()
		v, err := c.Query(t.Context(), query, time.Time{})
		require.Error(t, err)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Contains(t, err.Error(), strconv.Quote(query))
		assert.True(t, math.IsNaN(v))
		assert.Equal(t, 2*time.Second, time.Since(start), "bounded by the configured timeout")
	})
}

func TestQueryCallerCancels(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTestClient(t, roundTrip(func(r *http.Request) (*http.Response, error) {
			<-r.Context().Done()
			return nil, r.Context().Err()
		}), nil)
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		start := time.Now()
		_, err := c.Query(ctx, query, time.Time{})
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, time.Second, time.Since(start), "the caller's shorter deadline wins")
	})
}

func TestQueryWarningsAreLogged(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	c := newTestClient(t, reply(200, `{"status":"success","warnings":["results truncated due to limit"],`+
		`"data":{"resultType":"vector","result":[{"metric":{},"value":[1,"0.5"]}]}}`), log)

	v, err := c.Query(t.Context(), query, time.Time{})
	require.NoError(t, err, "a warning is not an error")
	assert.Equal(t, 0.5, v)
	assert.Contains(t, logs.String(), "results truncated due to limit")
	assert.Contains(t, logs.String(), "level=WARN")
}

func TestQueryErrorCutsHugeQuery(t *testing.T) {
	huge := "sum(" + strings.Repeat("x + ", 1000) + "x)"
	c := newTestClient(t, reply(400, `{"status":"error","errorType":"bad_data","error":"too long"}`), nil)
	_, err := c.Query(t.Context(), huge, time.Time{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), strconv.Quote(huge[:maxShown])+"…")
	assert.Less(t, len(err.Error()), 300)
}
