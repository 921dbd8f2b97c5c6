package otlp

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/ebbrun/ebb/internal/testenv"
	"github.com/ebbrun/ebb/internal/tracing"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		endpoint string
		ok       bool
	}{
		{"http://127.0.0.1:4318", true},
		{"https://collector.example.com/custom/path", true},
		{"127.0.0.1:4318", false},
		{"grpc://127.0.0.1:4317", false},
		{"http://", false},
		{"", false},
		{"http://[::1", false},
	} {
		t.Run(tc.endpoint, func(t *testing.T) {
			err := Config{Endpoint: tc.endpoint}.Validate()
			if tc.ok {
				assert.NoError(t, err)
			} else {
				assert.Error(t, err)
			}
		})
	}
}

// TestExportColdRequest sends one cold request's timeline to a real
// OTLP/HTTP receiver and checks the tree of spans it gets: ids as the
// router chose them, the caller's span as the parent, and the cold-start
// phases under the activator's queue span with the agent's timestamps.
func TestExportColdRequest(t *testing.T) {
	recv := testenv.StartOTLPReceiver(t)
	exp, err := New(context.Background(), Config{Endpoint: recv.URL, BatchTimeout: 10 * time.Millisecond})
	require.NoError(t, err)

	at := time.Now().Add(-time.Second).Truncate(time.Microsecond)
	ns := func(d time.Duration) int64 { return at.Add(d).UnixNano() }
	caller, ok := tracing.ParseParent([]byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"))
	require.True(t, ok)
	h := &tracing.Handoff{Used: true, Cold: true, Replica: "hello-00001-x",
		QueuedAt: at.Add(time.Millisecond), AcquiredAt: at.Add(800 * time.Millisecond),
		Phases: tracing.StartPhases{Decided: ns(20 * time.Millisecond), Created: ns(100 * time.Millisecond), Started: ns(150 * time.Millisecond), Ready: ns(700 * time.Millisecond)}}
	req := &tracing.Request{
		TraceID: caller.TraceID, Parent: caller.SpanID, Sampled: true,
		Server: tracing.NewSpanID(), Proxy: tracing.NewSpanID(),
		Function: "hello", Revision: "hello-00001", Replica: "hello-00001-x", Protocol: "HTTP/1.1", Status: 200,
		Start: at, Routed: at.Add(time.Millisecond), ProxyStart: h.AcquiredAt, End: at.Add(810 * time.Millisecond),
		Handoff: h,
	}
	exp.Export(req)
	require.NoError(t, exp.Shutdown(context.Background()))

	spans := recv.Trace(caller.TraceID.String())
	require.Len(t, spans, 7, "%v", spans)
	server := spans["router hello"]
	assert.Equal(t, req.Server.String(), server.SpanID)
	assert.Equal(t, caller.SpanID.String(), server.ParentID)
	assert.Equal(t, tracepb.Span_SPAN_KIND_SERVER, server.Kind)
	assert.Equal(t, "200", server.Attributes["http.response.status_code"])
	assert.Equal(t, DefaultServiceName, server.Service)
	assert.True(t, server.Start.Equal(at))

	proxy := spans["proxy"]
	assert.Equal(t, req.Proxy.String(), proxy.SpanID, "the id the replica's traceparent names")
	assert.Equal(t, server.SpanID, proxy.ParentID)
	assert.Equal(t, tracepb.Span_SPAN_KIND_CLIENT, proxy.Kind)

	assert.Equal(t, server.SpanID, spans["route"].ParentID)
	queue := spans["activator.queue"]
	assert.Equal(t, server.SpanID, queue.ParentID)
	assert.Equal(t, 799*time.Millisecond, queue.End.Sub(queue.Start))
	for name, want := range map[string]time.Duration{
		"coldstart.create": 80 * time.Millisecond,
		"coldstart.start":  50 * time.Millisecond,
		"coldstart.ready":  550 * time.Millisecond,
	} {
		s, ok := spans[name]
		require.True(t, ok, name)
		assert.Equal(t, queue.SpanID, s.ParentID, name)
		assert.Equal(t, want, s.End.Sub(s.Start), name)
	}
}

func TestExportNewTraceHasNoParent(t *testing.T) {
	recv := testenv.StartOTLPReceiver(t)
	exp, err := New(context.Background(), Config{Endpoint: recv.URL + "/v1/traces"})
	require.NoError(t, err)
	at := time.Now()
	req := &tracing.Request{TraceID: tracing.NewTraceID(), Sampled: true, Server: tracing.NewSpanID(), Proxy: tracing.NewSpanID(),
		Function: "hello", Status: 502, Start: at, Routed: at, ProxyStart: at, End: at.Add(time.Millisecond)}
	exp.Export(req)
	require.NoError(t, exp.Shutdown(context.Background()))
	spans := recv.Trace(req.TraceID.String())
	require.Len(t, spans, 3, "router, route and proxy: no queue without a handoff")
	assert.Empty(t, spans["router hello"].ParentID)
}
