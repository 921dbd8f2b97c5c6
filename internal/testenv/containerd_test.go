package testenv

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/internal/containerdproc"
)

// This package has no TestMain, so Containerd uses its reference-counted
// mode: the private daemon lives while at least one test uses it.
func TestContainerdIsSharedAndStopped(t *testing.T) {
	var addr string
	t.Run("user", func(t *testing.T) {
		addr = Containerd(t)
		_, err := containerdproc.Probe(context.Background(), addr, 2*time.Second)
		require.NoError(t, err)
		t.Run("nested user", func(t *testing.T) {
			assert.Equal(t, addr, Containerd(t), "one containerd is shared")
		})
		_, err = containerdproc.Probe(context.Background(), addr, 2*time.Second)
		require.NoError(t, err, "still running while the outer test uses it")
	})
	if addr == SystemContainerd {
		t.Skip("a system containerd answers; there is no private one to check")
	}
	assert.NoDirExists(t, filepath.Dir(addr), "private dir removed when the last user ended")
	_, err := containerdproc.Probe(context.Background(), addr, time.Second)
	assert.Error(t, err, "private containerd stopped when the last user ended")
	assert.Less(t, len(addr)+len(".ttrpc"), 108, "socket path fits sun_path")
}

func TestSweepStalePrivateRemovesDeadBinariesDirs(t *testing.T) {
	RequireRoot(t)
	// A pid that was used and is now free stands for a test binary that died.
	cmd := exec.Command("true")
	require.NoError(t, cmd.Run())
	dead := cmd.Process.Pid
	stale, err := os.MkdirTemp("/tmp", privatePrefix+strconv.Itoa(dead)+"-")
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(filepath.Join(stale, "root", "x"), 0o700))
	live, err := os.MkdirTemp("/tmp", privatePrefix+strconv.Itoa(os.Getppid())+"-")
	require.NoError(t, err)
	defer os.RemoveAll(live)

	sweepStalePrivate()
	assert.NoDirExists(t, stale)
	assert.DirExists(t, live, "a live process's dir is left alone")
}
