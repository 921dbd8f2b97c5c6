package redis

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestLexRange(t *testing.T) {
	tests := []struct {
		prefix, lo, hi string
	}{
		{"", "-", "+"},
		{"a", "[a", "(b"},
		{"functions/", "[functions/", "(functions0"},
		{"a\xff", "[a\xff", "(b"},
		{"a\xff\xff", "[a\xff\xff", "(b"},
		{"\xff", "[\xff", "+"},
		{"\xff\xff", "[\xff\xff", "+"},
	}
	for _, tc := range tests {
		lo, hi := lexRange(tc.prefix)
		assert.Equal(t, tc.lo, lo, "prefix %q", tc.prefix)
		assert.Equal(t, tc.hi, hi, "prefix %q", tc.prefix)
	}
}

func TestPositionNext(t *testing.T) {
	tests := []struct {
		p    position
		n    int64
		want position
	}{
		{position{5, 0}, 1, position{6, 0}},
		{position{5, 0}, 3, position{5, 1}},
		{position{5, 2}, 3, position{6, 0}},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, tc.p.next(tc.n))
	}
	p, err := parseID("12-3")
	assert.NoError(t, err)
	assert.Equal(t, position{12, 3}, p)
	for _, bad := range []string{"12", "x-1", "1-y", ""} {
		_, err := parseID(bad)
		assert.Error(t, err, bad)
	}
}
