package idrange_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/nodeagent/idrange"
)

func TestAllocator(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "idranges.json")
	a, err := idrange.Open(path, idrange.DefaultBase, idrange.DefaultSize, 3)
	require.NoError(t, err)
	_, err = os.Stat(path)
	require.ErrorIs(t, err, os.ErrNotExist, "opening writes nothing")

	ra, err := a.For("team-a")
	require.NoError(t, err)
	assert.Equal(t, idrange.Range{HostID: 1 << 31, Size: 65536}, ra)
	again, err := a.For("team-a")
	require.NoError(t, err)
	assert.Equal(t, ra, again, "a namespace keeps its range")
	rb, err := a.For("team-b")
	require.NoError(t, err)
	assert.Equal(t, idrange.Range{HostID: 1<<31 + 65536, Size: 65536}, rb)

	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "no temporary file left")

	t.Run("a reopened table gives the same ranges and hands out the next", func(t *testing.T) {
		b, err := idrange.Open(path, idrange.DefaultBase, idrange.DefaultSize, 3)
		require.NoError(t, err)
		got, err := b.For("team-b")
		require.NoError(t, err)
		assert.Equal(t, rb, got)
		rc, err := b.For("team-c")
		require.NoError(t, err)
		assert.Equal(t, idrange.Range{HostID: 1<<31 + 2*65536, Size: 65536}, rc)
		_, err = b.For("team-d")
		require.ErrorIs(t, err, idrange.ErrFull)
		require.ErrorContains(t, err, `namespace "team-d"`)
	})

	t.Run("another layout is refused", func(t *testing.T) {
		_, err := idrange.Open(path, idrange.DefaultBase, 4096, 3)
		require.ErrorContains(t, err, "changing them would give namespaces ids another one had")
	})

	t.Run("a corrupt file is an error, not a fresh start", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "idranges.json")
		require.NoError(t, os.WriteFile(bad, []byte("{not json"), 0o600))
		_, err := idrange.Open(bad, idrange.DefaultBase, idrange.DefaultSize, 3)
		require.ErrorContains(t, err, "corrupt id range table")
		require.ErrorContains(t, err, bad)
	})

	t.Run("an unreadable path is an error", func(t *testing.T) {
		_, err := idrange.Open(t.TempDir(), idrange.DefaultBase, idrange.DefaultSize, 3)
		require.ErrorContains(t, err, "read id range table")
	})

	t.Run("a table that cannot be written hands nothing out", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "gone", "idranges.json")
		a, err := idrange.Open(p, idrange.DefaultBase, idrange.DefaultSize, 3)
		require.NoError(t, err)
		_, err = a.For("team-a")
		require.ErrorContains(t, err, "write id range table")
		require.NoError(t, os.Mkdir(filepath.Dir(p), 0o700))
		r, err := a.For("team-x")
		require.NoError(t, err)
		assert.Equal(t, uint32(1<<31), r.HostID, "the failed range was never handed out")
	})

	t.Run("a bad layout", func(t *testing.T) {
		_, err := idrange.Open(path, idrange.DefaultBase, idrange.DefaultSize, idrange.DefaultCount+1)
		require.ErrorContains(t, err, "past the host's last id")
	})
}

// TestAllocatorConcurrent hands out ranges from many goroutines: every
// namespace gets one, no two the same, and the file says so.
func TestAllocatorConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "idranges.json")
	a, err := idrange.Open(path, idrange.DefaultBase, idrange.DefaultSize, idrange.DefaultCount)
	require.NoError(t, err)
	const n = 32
	got := make([]idrange.Range, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r, err := a.For(fmt.Sprintf("ns-%d", i))
			assert.NoError(t, err)
			got[i] = r
		})
	}
	wg.Wait()
	seen := map[uint32]bool{}
	for _, r := range got {
		assert.False(t, seen[r.HostID], "range %d handed out twice", r.HostID)
		seen[r.HostID] = true
	}
	b, err := idrange.Open(path, idrange.DefaultBase, idrange.DefaultSize, idrange.DefaultCount)
	require.NoError(t, err)
	for i, r := range got {
		again, err := b.For(fmt.Sprintf("ns-%d", i))
		require.NoError(t, err)
		assert.Equal(t, r, again)
	}
}
