package testenv

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	containerd "github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/oci"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/internal/imagestore"
	"github.com/ebbrun/ebb/internal/ociimage"
)

// A test that forgets a running container must not leave its shim or its
// process behind once the private containerd stops.
func TestPrivateContainerdStopKillsLeftoverContainers(t *testing.T) {
	var initPid, shimPid int
	var addr string
	t.Run("forgetful test", func(t *testing.T) {
		addr = Containerd(t)
		if addr == SystemContainerd {
			t.Skip("a system containerd answers; only private ones are cleaned up")
		}
		bin := filepath.Join(t.TempDir(), "sleeper")
		build := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./testdata/sleeper")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, err := build.CombinedOutput()
		require.NoError(t, err, "%s", out)
		var archive bytes.Buffer
		_, err = ociimage.BuildFromBinary(&archive, bin, ociimage.BuildOptions{Name: "sleeper"})
		require.NoError(t, err)
		a, err := ociimage.Spool(&archive, t.TempDir(), ociimage.Limits{})
		require.NoError(t, err)

		client, err := containerd.New(addr)
		require.NoError(t, err)
		defer client.Close()
		imp, err := imagestore.New(client, imagestore.Config{Namespace: "leftover"})
		require.NoError(t, err)
		im, err := imp.Import(context.Background(), a.Path)
		require.NoError(t, err)

		ctx := namespaces.WithNamespace(context.Background(), "leftover")
		img, err := client.GetImage(ctx, im.Name)
		require.NoError(t, err)
		c, err := client.NewContainer(ctx, "forgotten", containerd.WithNewSnapshot("forgotten", img),
			containerd.WithNewSpec(oci.WithImageConfig(img)))
		require.NoError(t, err)
		task, err := c.NewTask(ctx, cio.NullIO)
		require.NoError(t, err)
		require.NoError(t, task.Start(ctx))
		initPid = int(task.Pid())
		shimPid = parentOf(t, initPid)
		require.True(t, processAlive(initPid))
		require.True(t, processAlive(shimPid))
		// ... and the test ends without deleting anything.
	})
	if shimPid == 0 {
		return
	}
	assert.False(t, processAlive(initPid), "container process %d survived", initPid)
	// The shim is containerd's process, not the test's: it exits and the
	// kernel reaps it on their time, so poll for it.
	assert.Eventually(t, func() bool { return !processAlive(shimPid) }, 10*time.Second, 10*time.Millisecond, "shim %d survived", shimPid)
	assert.NoDirExists(t, filepath.Dir(addr))
}

func parentOf(t *testing.T, pid int) int {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "PPid:"); ok {
			ppid, err := strconv.Atoi(strings.TrimSpace(v))
			require.NoError(t, err)
			return ppid
		}
	}
	t.Fatalf("no PPid for %d", pid)
	return 0
}
