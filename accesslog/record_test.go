package accesslog

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAppendJSON(t *testing.T) {
	at := time.Date(2026, 12, 6, 19, 52, 54, 123456789, time.UTC)
	tid := [16]byte{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	for _, tc := range []struct {
		name string
		rec  Record
		want string
	}{
		{
			name: "cold request in a namespace",
			rec: Record{Time: at, Function: "hello.team-a", Revision: "hello.team-a-00001", Replica: "r1",
				Status: 200, Duration: 812345 * time.Microsecond, BytesIn: 3, BytesOut: 12, Protocol: "HTTP/1.1",
				Cold: true, StartDuration: 790 * time.Millisecond, TraceID: tid},
			want: `{"time":"2026-12-06T19:52:54.123456Z","namespace":"team-a","function":"hello","revision":"hello.team-a-00001","replica":"r1","status":200,"duration_ms":812.345,"bytes_in":3,"bytes_out":12,"protocol":"HTTP/1.1","cold":true,"start_ms":790,"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}` + "\n",
		},
		{
			name: "default namespace, no replica, no trace",
			rec:  Record{Time: at, Function: "hello", Revision: "hello-00002", Status: 503, Duration: 1500, Protocol: "HTTP/1.0"},
			want: `{"time":"2026-12-06T19:52:54.123456Z","namespace":"default","function":"hello","revision":"hello-00002","replica":"","status":503,"duration_ms":0.001,"bytes_in":0,"bytes_out":0,"protocol":"HTTP/1.0","cold":false,"start_ms":0,"trace_id":""}` + "\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := AppendJSON(nil, &tc.rec)
			assert.Equal(t, tc.want, string(got))
			var v map[string]any
			require.NoError(t, json.Unmarshal(got, &v))
		})
	}
}

// FuzzAppendJSON holds that a line is valid JSON whatever the strings hold.
func FuzzAppendJSON(f *testing.F) {
	f.Add("hello", "rev\"\\\n", "\xff\x00é")
	f.Fuzz(func(t *testing.T, fn, rev, rep string) {
		rec := Record{Time: time.Unix(0, 0), Function: fn, Revision: rev, Replica: rep, Protocol: rep}
		line := AppendJSON(nil, &rec)
		var v map[string]any
		require.NoError(t, json.Unmarshal(line, &v), "%q", line)
		assert.Equal(t, byte('\n'), line[len(line)-1])
	})
}

func TestAppendTimeAndMillisMatchTheLibrary(t *testing.T) {
	for _, at := range []time.Time{
		time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC),
		time.Date(999, 12, 31, 23, 59, 59, 999999999, time.FixedZone("x", 3600)),
		time.Unix(0, 0),
	} {
		assert.Equal(t, at.UTC().Format("2006-01-02T15:04:05.000000Z07:00"), string(appendTime(nil, at)))
	}
	for _, d := range []time.Duration{0, time.Microsecond, 1500 * time.Microsecond, 812345 * time.Microsecond, 20 * time.Millisecond, time.Hour + 10*time.Microsecond, -time.Second} {
		want := strconv.FormatFloat(float64(max(d.Microseconds(), 0))/1000, 'f', -1, 64)
		assert.Equal(t, want, string(appendMillis(nil, d)), d)
	}
}

func TestAppendJSONAllocatesNothing(t *testing.T) {
	rec := Record{Time: time.Now(), Function: "hello.team-a", Revision: "hello.team-a-00001", Replica: "r", Status: 200, Protocol: "HTTP/1.1"}
	buf := make([]byte, 0, 512)
	allocs := testing.AllocsPerRun(100, func() { buf = AppendJSON(buf[:0], &rec) })
	assert.Zero(t, allocs)
}

func BenchmarkAppendJSON(b *testing.B) {
	rec := Record{Time: time.Now(), Function: "hello.team-a", Revision: "hello.team-a-00001", Replica: "hello-00001-abc", Status: 200, Protocol: "HTTP/1.1", TraceID: [16]byte{1}}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendJSON(buf[:0], &rec)
	}
}
