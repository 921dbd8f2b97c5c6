package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/testenv"
)

// TestAccessLogAndTrace checks issue 19's acceptance for access logs and
// tracing: one request to a function at zero yields exactly one access
// line (cold, with its start duration and trace id) and one trace, with
// the routing, queueing, cold-start-phase and proxy spans, at a real
// OTLP/HTTP receiver; the cold response carries Server-Timing; and
// `ebb logs --access` shows the line.
func TestAccessLogAndTrace(t *testing.T) {
	recv := testenv.StartOTLPReceiver(t)
	logFile := filepath.Join(shortTempDir(t), "access.log")
	d := startEbbd(t, "--access-log", logFile, "--otlp-endpoint", recv.URL)
	d.pushHello()
	d.putSpec("traced", `{"image":"hello:latest","scale":{"initial":0}}`)
	d.waitFor("traced", 10*time.Second, func(r api.RevisionStatus) bool { return r.State == api.RevisionIdle })

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	resp, body := d.get("traced", "/", http.Header{"Traceparent": {"00-" + traceID + "-00f067aa0ba902b7-01"}})
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	timing := resp.Header.Get("Server-Timing")
	assert.Contains(t, timing, "queue;dur=")
	assert.Contains(t, timing, "ready;dur=", "the node agent's phases reached the activator")

	// The line is flushed within 200ms.
	var lines []string
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(logFile)
		lines = strings.Split(strings.TrimSpace(string(b)), "\n")
		return err == nil && len(b) > 0
	}, 10*time.Second, 50*time.Millisecond)
	require.Len(t, lines, 1, "one request, one line: %q", lines)
	var line struct {
		Namespace, Function, Revision, Replica, Protocol string
		Status                                           int
		Cold                                             bool
		StartMs                                          float64 `json:"start_ms"`
		DurationMs                                       float64 `json:"duration_ms"`
		TraceID                                          string  `json:"trace_id"`
	}
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &line), lines[0])
	assert.Equal(t, "default", line.Namespace)
	assert.Equal(t, "traced", line.Function)
	assert.Equal(t, "traced-00001", line.Revision)
	assert.NotEmpty(t, line.Replica)
	assert.Equal(t, 200, line.Status)
	assert.Equal(t, "HTTP/1.1", line.Protocol)
	assert.True(t, line.Cold)
	assert.Greater(t, line.StartMs, 0.0)
	assert.GreaterOrEqual(t, line.DurationMs, line.StartMs)
	assert.Equal(t, traceID, line.TraceID)

	// The batch leaves within a second.
	want := []string{"router traced", "route", "activator.queue", "coldstart.start", "coldstart.ready", "proxy"}
	var spans map[string]testenv.Span
	require.Eventually(t, func() bool {
		spans = recv.Trace(traceID)
		for _, name := range want {
			if _, ok := spans[name]; !ok {
				return false
			}
		}
		return true
	}, 10*time.Second, 50*time.Millisecond, "spans %v", spans)
	server := spans["router traced"]
	assert.Equal(t, "00f067aa0ba902b7", server.ParentID, "the caller's span is the parent")
	queue := spans["activator.queue"]
	for _, name := range want[1:] {
		parent := server.SpanID
		if strings.HasPrefix(name, "coldstart.") {
			parent = queue.SpanID
		}
		assert.Equal(t, parent, spans[name].ParentID, name)
	}
	assert.Equal(t, line.Replica, spans["proxy"].Attributes["ebb.replica"])
	routers := 0
	for _, s := range recv.Spans() {
		if strings.HasPrefix(s.Name, "router ") {
			routers++
		}
	}
	assert.Equal(t, 1, routers, "one request, one trace")
	t.Logf("Server-Timing: %s; spans: %v", timing, keys(spans))

	out := d.ebb("logs", "--access", "traced")
	assert.Equal(t, 1, strings.Count(out, "\n"), out)
	assert.Contains(t, out, `"trace_id":"`+traceID+`"`)
	assert.Contains(t, out, `"cold":true`)
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
