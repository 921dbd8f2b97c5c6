package secrethash

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestHashAndMatches(t *testing.T) {
	h := Hash("s3cret")
	assert.Len(t, h, 64)
	assert.True(t, Matches(h, "s3cret"))
	assert.False(t, Matches(h, "s3cre"))
	assert.False(t, Matches("", "s3cret"))
}

func TestIsHex(t *testing.T) {
	for _, tc := range []struct {
		s    string
		n    int
		want bool
	}{
		{"00ff", 4, true},
		{"00FF", 4, false},
		{"00f", 4, false},
		{"00fg", 4, false},
		{"", 0, true},
	} {
		assert.Equal(t, tc.want, IsHex(tc.s, tc.n), "%q", tc.s)
	}
}
