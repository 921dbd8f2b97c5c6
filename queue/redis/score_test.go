package redis

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// Scores must never make an invocation due early or expire it early: a
// due time rounds up to the microsecond, now and bounds round down.
func TestScores(t *testing.T) {
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	us := base.UnixMicro()
	tests := []struct {
		name        string
		t           time.Time
		floor, ceil int64
	}{
		{"on a microsecond", base, us, us},
		{"a nanosecond after", base.Add(time.Nanosecond), us, us + 1},
		{"a nanosecond before", base.Add(-time.Nanosecond), us - 1, us},
		{"before 1970", time.Unix(-1, 500), -1_000_000, -999_999},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.floor, floorMicro(tc.t))
			assert.Equal(t, tc.ceil, ceilMicro(tc.t))
		})
	}
}
