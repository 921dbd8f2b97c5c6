package tracing

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseParent(t *testing.T) {
	const (
		tid = "4bf92f3577b34da6a3ce929d0e0e4736"
		sid = "00f067aa0ba902b7"
	)
	for _, tc := range []struct {
		name    string
		header  string
		ok      bool
		sampled bool
	}{
		{"sampled", "00-" + tid + "-" + sid + "-01", true, true},
		{"not sampled", "00-" + tid + "-" + sid + "-00", true, false},
		{"future version with more fields", "cc-" + tid + "-" + sid + "-01-what-the-future-holds", true, true},
		{"future version exact length", "01-" + tid + "-" + sid + "-01", true, true},
		{"empty", "", false, false},
		{"version ff", "ff-" + tid + "-" + sid + "-01", false, false},
		{"version 00 too long", "00-" + tid + "-" + sid + "-01-extra", false, false},
		{"future version without a dash after flags", "cc-" + tid + "-" + sid + "-01x", false, false},
		{"all-zero trace id", "00-00000000000000000000000000000000-" + sid + "-01", false, false},
		{"all-zero span id", "00-" + tid + "-0000000000000000-01", false, false},
		{"upper case", "00-" + strings.ToUpper(tid) + "-" + sid + "-01", false, false},
		{"non-hex", "00-" + tid[:31] + "g-" + sid + "-01", false, false},
		{"non-hex flags", "00-" + tid + "-" + sid + "-0z", false, false},
		{"short trace id", "00-" + tid[:30] + "-" + sid + "-01", false, false},
		{"dashes moved", "00" + tid + "--" + sid + "-01", false, false},
		{"overlong", "00-" + tid + "-" + sid + "-01" + strings.Repeat("a", 8192), false, false},
		{"overlong future version", "01-" + tid + "-" + sid + "-01-" + strings.Repeat("a", 8192), true, true},
		{"garbage", strings.Repeat("-", 55), false, false},
		{"binary", "\x00\xff" + strings.Repeat("\x80", 60), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, ok := ParseParent([]byte(tc.header))
			require.Equal(t, tc.ok, ok)
			if ok {
				assert.Equal(t, tid, p.TraceID.String())
				assert.Equal(t, sid, p.SpanID.String())
				assert.Equal(t, tc.sampled, p.Sampled())
			}
		})
	}
}

func FuzzParseParent(f *testing.F) {
	f.Add([]byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"))
	f.Add([]byte("ff-00000000000000000000000000000000-0000000000000000-00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, ok := ParseParent(b)
		if !ok {
			return
		}
		// Whatever parses round-trips to the same ids.
		again, ok := ParseParent(AppendParent(nil, p.TraceID, p.SpanID, p.Flags))
		require.True(t, ok)
		assert.Equal(t, p, again)
	})
}

func TestNewIDsAreValid(t *testing.T) {
	seen := map[TraceID]bool{}
	for range 1000 {
		id := NewTraceID()
		require.True(t, id.IsValid())
		require.False(t, seen[id])
		seen[id] = true
		require.True(t, NewSpanID().IsValid())
	}
}

func TestAppendParentAllocatesNothing(t *testing.T) {
	buf := make([]byte, 0, 64)
	tid, sid := NewTraceID(), NewSpanID()
	assert.Zero(t, testing.AllocsPerRun(100, func() { buf = AppendParent(buf[:0], tid, sid, FlagSampled) }))
	assert.Len(t, buf, 55)
}

func TestServerTiming(t *testing.T) {
	at := time.Unix(1000, 0)
	ns := func(d time.Duration) int64 { return at.Add(d).UnixNano() }
	for _, tc := range []struct {
		name  string
		h     Handoff
		want  string
		spans []string
	}{
		{
			name: "created from scratch",
			h: Handoff{QueuedAt: at, AcquiredAt: at.Add(900 * time.Millisecond),
				Phases: StartPhases{Decided: ns(10 * time.Millisecond), Created: ns(60 * time.Millisecond), Started: ns(100 * time.Millisecond), Ready: ns(850 * time.Millisecond)}},
			want:  "queue;dur=900, create;dur=50, start;dur=40, ready;dur=750",
			spans: []string{"create", "start", "ready"},
		},
		{
			name: "from the pre-created pool",
			h: Handoff{QueuedAt: at, AcquiredAt: at.Add(100 * time.Millisecond),
				Phases: StartPhases{Decided: ns(0), Started: ns(5 * time.Millisecond), Ready: ns(90*time.Millisecond + 500*time.Microsecond)}},
			want:  "queue;dur=100, start;dur=5, ready;dur=85.5",
			spans: []string{"start", "ready"},
		},
		{
			name: "an older agent told nothing",
			h:    Handoff{QueuedAt: at, AcquiredAt: at.Add(2 * time.Second)},
			want: "queue;dur=2000",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, string(tc.h.AppendServerTiming(nil)))
			var spans []string
			tc.h.Phases.Spans(func(name string, start, end time.Time) {
				assert.False(t, end.Before(start))
				spans = append(spans, name)
			})
			assert.Equal(t, tc.spans, spans)
		})
	}
}
