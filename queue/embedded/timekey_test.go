package embedded

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// The indexes rely on byte order being time order, across the epoch and at
// the ends UnixNano cannot hold.
func TestTimeKeyOrder(t *testing.T) {
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ordered := []time.Time{
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), // clamped
		time.Unix(-2, 0),
		time.Unix(-1, 999_999_999),
		time.Unix(0, 0),
		time.Unix(0, 1),
		base,
		base.Add(time.Nanosecond),
		base.Add(time.Hour),
		time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), // clamped
	}
	for i := 1; i < len(ordered); i++ {
		a, b := timeKey(ordered[i-1]), timeKey(ordered[i])
		assert.Len(t, b, 8)
		assert.Equal(t, -1, bytes.Compare(a, b), "%s before %s", ordered[i-1], ordered[i])
	}
}
