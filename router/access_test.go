package router

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/ebbrun/ebb/accesslog"
	"github.com/ebbrun/ebb/internal/tracing"
)

// recordLog is an AccessLogger that keeps copies of its records.
type recordLog struct {
	mu   sync.Mutex
	recs []accesslog.Record
}

func (l *recordLog) Log(r *accesslog.Record) {
	l.mu.Lock()
	l.recs = append(l.recs, *r)
	l.mu.Unlock()
}

func (l *recordLog) all() []accesslog.Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]accesslog.Record(nil), l.recs...)
}

// recordSpans is a SpanExporter that keeps copies of the timelines.
type recordSpans struct {
	mu   sync.Mutex
	reqs []tracing.Request
}

func (s *recordSpans) Export(r *tracing.Request) {
	s.mu.Lock()
	c := *r
	if r.Handoff != nil {
		h := *r.Handoff
		c.Handoff = &h
	}
	s.reqs = append(s.reqs, c)
	s.mu.Unlock()
}

func (s *recordSpans) all() []tracing.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]tracing.Request(nil), s.reqs...)
}

// echoTraceparent answers with the traceparent the replica got.
func echoTraceparent(ctx *fasthttp.RequestCtx) {
	ctx.SetBody(ctx.Request.Header.Peek(tracing.HeaderTraceparent))
}

const validParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// TestHostileTraceparent sends traceparent headers of every broken kind:
// each request is served, gets exactly one access record, and the replica
// gets a valid traceparent, of a new trace unless the header was valid.
func TestHostileTraceparent(t *testing.T) {
	for _, traced := range []bool{false, true} {
		name := "access log only"
		if traced {
			name = "access log and tracing"
		}
		t.Run(name, func(t *testing.T) {
			logs, spans := &recordLog{}, &recordSpans{}
			deps := Deps{AccessLog: logs}
			if traced {
				deps.Tracer = spans
			}
			e := newEnv(t, Config{}, deps)
			b := startBackend(t, "a", echoTraceparent)
			e.deploy("hello", []rev{{name: "hello-00001"}}, nil)
			e.endpoint("hello", "hello-00001", "r1", b.addr, 0)
			e.waitRoute(host("hello"), 1)
			for i, tc := range []struct {
				name, header string
				continued    bool
			}{
				{"valid", validParent, true},
				{"none", "", false},
				{"malformed", "00-nothex-00f067aa0ba902b7-01", false},
				{"all-zero trace id", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", false},
				{"all-zero span id", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false},
				{"version ff", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false},
				{"overlong", validParent + strings.Repeat("0", 4000), false},
				{"upper case", strings.ToUpper(validParent), false},
				{"high bytes", "00-" + strings.Repeat("\xc3\xa9", 30), false},
			} {
				t.Run(tc.name, func(t *testing.T) {
					hdr := map[string]string{}
					if tc.header != "" {
						hdr[tracing.HeaderTraceparent] = tc.header
					}
					code, body, _ := e.get(host("hello"), "/", hdr)
					require.Equal(t, 200, code)
					got, ok := tracing.ParseParent([]byte(body))
					require.True(t, ok, "the replica got a valid traceparent: %q", body)
					recs := logs.all()
					require.Len(t, recs, i+1, "one record per request")
					rec := recs[i]
					assert.Equal(t, got.TraceID, tracing.TraceID(rec.TraceID), "the log names the replica's trace")
					assert.Equal(t, "hello", rec.Function)
					assert.Equal(t, "hello-00001", rec.Revision)
					assert.Equal(t, "r1", rec.Replica)
					assert.Equal(t, 200, rec.Status)
					assert.Equal(t, "HTTP/1.1", rec.Protocol)
					assert.Equal(t, int64(len(body)), rec.BytesOut)
					assert.False(t, rec.Cold)
					if tc.continued {
						assert.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", got.TraceID.String())
					} else {
						assert.NotEqual(t, "4bf92f3577b34da6a3ce929d0e0e4736", got.TraceID.String())
					}
					switch {
					case traced:
						// The replica's parent is the router's proxy span.
						reqs := spans.all()
						require.Len(t, reqs, i+1)
						tr := reqs[i]
						assert.Equal(t, got.SpanID, tr.Proxy)
						assert.Equal(t, got.TraceID, tr.TraceID)
						assert.Equal(t, tc.continued, tr.Parent.IsValid())
						assert.False(t, tr.ProxyStart.Before(tr.Start))
						assert.False(t, tr.End.Before(tr.ProxyStart))
					case tc.continued:
						assert.Equal(t, tc.header, body, "passed through untouched without spans of ours")
					}
				})
			}
		})
	}
}

// handoffActivator fills the router's Handoff as the activator does for a
// request that waited for a cold start.
type handoffActivator struct{ at time.Time }

func (a handoffActivator) Serve(ctx *fasthttp.RequestCtx, _, _ string, _ time.Time) {
	if h, ok := ctx.UserValue(tracing.HandoffKey).(*tracing.Handoff); ok {
		ns := func(d time.Duration) int64 { return a.at.Add(d).UnixNano() }
		h.Used, h.Cold, h.Replica = true, true, "r-cold"
		h.QueuedAt, h.AcquiredAt = a.at, a.at.Add(800*time.Millisecond)
		h.Phases = tracing.StartPhases{Decided: ns(10 * time.Millisecond), Created: ns(50 * time.Millisecond), Started: ns(70 * time.Millisecond), Ready: ns(790 * time.Millisecond)}
	}
	ctx.SetBodyString("warm now")
}

func TestColdRequestIsLoggedWithItsStart(t *testing.T) {
	logs, spans := &recordLog{}, &recordSpans{}
	e := newEnv(t, Config{}, Deps{AccessLog: logs, Tracer: spans, Activator: handoffActivator{at: time.Now()}})
	e.deploy("hello", []rev{{name: "hello-00001"}}, nil)
	e.waitRoute(host("hello"), 0)
	code, body, h := e.get(host("hello"), "/", nil)
	require.Equal(t, 200, code)
	assert.Equal(t, "warm now", body)
	assert.Equal(t, "queue;dur=800, create;dur=40, start;dur=20, ready;dur=720", string(h.Peek("Server-Timing")))
	recs := logs.all()
	require.Len(t, recs, 1)
	assert.True(t, recs[0].Cold)
	assert.Equal(t, 800*time.Millisecond, recs[0].StartDuration)
	assert.Equal(t, "r-cold", recs[0].Replica)
	reqs := spans.all()
	require.Len(t, reqs, 1)
	require.NotNil(t, reqs[0].Handoff)
	assert.Equal(t, reqs[0].Handoff.AcquiredAt, reqs[0].ProxyStart, "the proxied call starts when a replica was had")
}

func TestNoObserverNoHeaders(t *testing.T) {
	e := newEnv(t, Config{}, Deps{Activator: handoffActivator{at: time.Now()}})
	b := startBackend(t, "a", echoTraceparent)
	e.deploy("hello", []rev{{name: "hello-00001"}}, nil)
	e.deploy("cold", []rev{{name: "cold-00001"}}, nil)
	e.endpoint("hello", "hello-00001", "r1", b.addr, 0)
	e.waitRoute(host("hello"), 1)
	e.waitRoute(host("cold"), 0)
	_, body, _ := e.get(host("hello"), "/", nil)
	assert.Empty(t, body, "no traceparent is made up when nothing observes")
	_, _, h := e.get(host("cold"), "/", nil)
	assert.Empty(t, h.Peek("Server-Timing"), "the activator found no handoff to fill")
}

// TestAccessLogEndToEnd runs the real accesslog.Logger behind the router
// and reads the line back from the function's ring.
func TestAccessLogEndToEnd(t *testing.T) {
	var out bytes.Buffer
	l, err := accesslog.New(accesslog.Config{}, &out)
	require.NoError(t, err)
	e := newEnv(t, Config{}, Deps{AccessLog: l})
	b := startBackend(t, "a", nil)
	e.deploy("hello.team-a", []rev{{name: "hello.team-a-00001"}}, nil)
	e.endpoint("hello.team-a", "hello.team-a-00001", "r1", b.addr, 0)
	e.waitRoute(host("hello.team-a"), 1)
	code, _, _ := e.get(host("hello.team-a"), "/", map[string]string{tracing.HeaderTraceparent: validParent})
	require.Equal(t, 200, code)
	var ring bytes.Buffer
	require.NoError(t, l.Read(t.Context(), &ring, accesslog.Query{Function: "hello.team-a"}))
	var line map[string]any
	require.NoError(t, json.Unmarshal(ring.Bytes(), &line))
	assert.Equal(t, "team-a", line["namespace"])
	assert.Equal(t, "hello", line["function"])
	assert.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", line["trace_id"])
	assert.Equal(t, float64(200), line["status"])
}

// An HTTP/2 request ends in the same place as an HTTP/1.1 one: one access
// record, with its protocol, and the replica gets the trace's traceparent.
func TestHTTP2AccessLog(t *testing.T) {
	logs := &recordLog{}
	e := newEnv(t, Config{}, Deps{AccessLog: logs})
	b := startBackend(t, "a", echoTraceparent)
	e.deploy("hello", []rev{{name: "hello-00001"}}, nil)
	e.endpoint("hello", "hello-00001", "r1", b.addr, 0)
	e.waitRoute(host("hello"), 1)

	req, err := http.NewRequest("GET", "http://"+host("hello")+"/", nil)
	require.NoError(t, err)
	req.Header.Set(tracing.HeaderTraceparent, validParent)
	resp, err := e.h2Client().Do(req)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, validParent, string(body), "a valid traceparent passes through untouched when no spans are exported")

	recs := logs.all()
	require.Len(t, recs, 1, "one record per stream")
	rec := recs[0]
	assert.Equal(t, "HTTP/2.0", rec.Protocol)
	assert.Equal(t, "hello-00001", rec.Revision)
	assert.Equal(t, "r1", rec.Replica)
	assert.Equal(t, 200, rec.Status)
	assert.Equal(t, int64(len(body)), rec.BytesOut)
	assert.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", tracing.TraceID(rec.TraceID).String())
}
