package idrange

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var small = layout{base: 1 << 31, size: 65536, count: 3}

func TestLayoutValidate(t *testing.T) {
	tests := []struct {
		name    string
		l       layout
		wantErr string
	}{
		{"the defaults", layout{DefaultBase, DefaultSize, DefaultCount}, ""},
		{"one more range than fits", layout{DefaultBase, DefaultSize, DefaultCount + 1}, "past the host's last id"},
		{"from the host's root", layout{0, DefaultSize, 1}, "host's root"},
		{"empty ranges", layout{DefaultBase, 0, 1}, "must not be empty"},
		{"no ranges", layout{DefaultBase, DefaultSize, 0}, "no id ranges"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.l.validate()
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
	assert.Equal(t, uint32(32767), DefaultCount)
}

func TestTableWith(t *testing.T) {
	t0 := table{layout: small, byNS: map[string]uint32{}}
	t1, r, err := t0.with("team-a")
	require.NoError(t, err)
	assert.Equal(t, Range{HostID: 1 << 31, Size: 65536}, r)
	_, ok := t0.lookup("team-a")
	assert.False(t, ok, "the old table is unchanged")
	got, ok := t1.lookup("team-a")
	require.True(t, ok)
	assert.Equal(t, r, got)

	t2, r, err := t1.with("team-b")
	require.NoError(t, err)
	assert.Equal(t, Range{HostID: 1<<31 + 65536, Size: 65536}, r)

	_, _, err = t2.with("team-a")
	require.ErrorContains(t, err, "already has a range")
	_, _, err = t2.with("")
	require.ErrorContains(t, err, "without a name")
	_, _, err = t2.with(strings.Repeat("x", 254))
	require.ErrorContains(t, err, "more than 253")

	t3, r, err := t2.with("team-c")
	require.NoError(t, err)
	assert.Equal(t, Range{HostID: 1<<31 + 2*65536, Size: 65536}, r)
	_, _, err = t3.with("team-d")
	require.ErrorIs(t, err, ErrFull)
}

func TestTableRoundTrip(t *testing.T) {
	tb := table{layout: small, byNS: map[string]uint32{}}
	for _, ns := range []string{"b", "a"} {
		var err error
		tb, _, err = tb.with(ns)
		require.NoError(t, err)
	}
	data := tb.encode()
	assert.JSONEq(t, `{"version":1,"base":2147483648,"size":65536,"next":2,"ranges":{"b":2147483648,"a":2147549184}}`, string(data))
	back, err := decode(data, small)
	require.NoError(t, err)
	assert.Equal(t, tb, back)
	assert.Equal(t, data, back.encode(), "stable")
}

// TestDecode feeds decode stored tables, good and hostile.
func TestDecode(t *testing.T) {
	tests := []struct {
		name    string
		data    string
		want    map[string]uint32 // namespace → index
		next    uint32
		wantErr string
	}{
		{name: "empty table", data: `{"version":1,"base":2147483648,"size":65536,"next":0,"ranges":{}}`, want: map[string]uint32{}},
		{name: "a gap left by a range never handed back", data: `{"version":1,"base":2147483648,"size":65536,"next":3,"ranges":{"a":2147483648,"c":2147614720}}`,
			want: map[string]uint32{"a": 0, "c": 2}, next: 3},
		{name: "not JSON", data: "\x00\x01garbage", wantErr: "corrupt id range table"},
		{name: "empty file", data: "", wantErr: "corrupt id range table"},
		{name: "truncated", data: `{"version":1,"base":2147483648,"si`, wantErr: "corrupt id range table"},
		{name: "two tables", data: `{"version":1,"base":2147483648,"size":65536,"next":0,"ranges":{}}{}`, wantErr: "data after the table"},
		{name: "unknown field", data: `{"version":1,"base":2147483648,"size":65536,"next":0,"ranges":{},"extra":1}`, wantErr: "corrupt id range table"},
		{name: "negative id", data: `{"version":1,"base":2147483648,"size":65536,"next":1,"ranges":{"a":-1}}`, wantErr: "corrupt id range table"},
		{name: "another version", data: `{"version":2,"base":2147483648,"size":65536,"next":0,"ranges":{}}`, wantErr: "version 2"},
		{name: "another base", data: `{"version":1,"base":1073741824,"size":65536,"next":0,"ranges":{}}`, wantErr: "not of 65536 from 2147483648"},
		{name: "another size", data: `{"version":1,"base":2147483648,"size":4096,"next":0,"ranges":{}}`, wantErr: "not of 65536 from 2147483648"},
		{name: "next past the end", data: `{"version":1,"base":2147483648,"size":65536,"next":4,"ranges":{}}`, wantErr: "hands out range 4 of 3"},
		{name: "duplicate range", data: `{"version":1,"base":2147483648,"size":65536,"next":2,"ranges":{"a":2147549184,"b":2147549184}}`,
			wantErr: `namespaces "a" and "b" have the same range`},
		{name: "range not aligned", data: `{"version":1,"base":2147483648,"size":65536,"next":2,"ranges":{"a":2147483649}}`, wantErr: "not the start of a range"},
		{name: "range below the base", data: `{"version":1,"base":2147483648,"size":65536,"next":2,"ranges":{"a":0}}`, wantErr: "not the start of a range"},
		{name: "range at next: it would be handed out again", data: `{"version":1,"base":2147483648,"size":65536,"next":1,"ranges":{"a":2147549184}}`,
			wantErr: "not below the next one"},
		{name: "a namespace twice", data: `{"version":1,"base":2147483648,"size":65536,"next":2,"ranges":{"a":2147483648,"a":2147549184}}`,
			wantErr: `namespace "a" is there twice`},
		{name: "ranges not an object", data: `{"version":1,"base":2147483648,"size":65536,"next":0,"ranges":[]}`, wantErr: "not an object"},
		{name: "ranges null", data: `{"version":1,"base":2147483648,"size":65536,"next":0,"ranges":null}`, wantErr: "not an object"},
		{name: "a host id that is not one", data: `{"version":1,"base":2147483648,"size":65536,"next":1,"ranges":{"a":"x"}}`, wantErr: `namespace "a"`},
		{name: "empty namespace", data: `{"version":1,"base":2147483648,"size":65536,"next":1,"ranges":{"":2147483648}}`, wantErr: "without a name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb, err := decode([]byte(tt.data), small)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, tb.byNS)
			assert.Equal(t, tt.next, tb.next)
		})
	}
}
