package procstat

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name      string
		stat      string
		wantState byte
		wantStart uint64
		ok        bool
	}{
		{
			name:      "plain",
			stat:      "42 (hello) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 3 0 2606236 1000 10 18446744073709551615",
			wantState: 'S', wantStart: 2606236, ok: true,
		},
		{
			name:      "name with spaces and parentheses",
			stat:      "7 (a) b (c) Z 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 99 0 0",
			wantState: 'Z', wantStart: 99, ok: true,
		},
		{name: "truncated", stat: "7 (x) S 1 2 3"},
		{name: "no name", stat: "garbage"},
		{name: "start not a number", stat: "7 (x) S 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 soon 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, ok := Parse(tt.stat)
			assert.Equal(t, tt.ok, ok)
			assert.Equal(t, tt.wantState, st.State)
			assert.Equal(t, tt.wantStart, st.Start)
		})
	}
}
