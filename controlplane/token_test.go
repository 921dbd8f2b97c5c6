package controlplane

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLoadOrCreateToken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "token")
	first, err := LoadOrCreateToken(path)
	require.NoError(t, err)
	assert.Len(t, first, 64)
	info, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), info.Mode().Perm())

	again, err := LoadOrCreateToken(path)
	require.NoError(t, err)
	assert.Equal(t, first, again, "the token survives restarts")

	require.NoError(t, os.Chmod(path, 0o644))
	_, err = LoadOrCreateToken(path)
	assert.ErrorContains(t, err, "chmod 600", "a token others can read is refused")
}
