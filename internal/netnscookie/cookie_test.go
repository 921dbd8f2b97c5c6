package netnscookie

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The same namespace always has the same, non-zero cookie (zero is what
// the programs read as "no check").
func TestCurrentIsStable(t *testing.T) {
	a, err := Current()
	require.NoError(t, err)
	b, err := Current()
	require.NoError(t, err)
	assert.NotZero(t, a)
	assert.Equal(t, a, b)
}
