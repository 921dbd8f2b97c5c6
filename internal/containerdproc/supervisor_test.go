package containerdproc_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/internal/containerdproc"
	"github.com/ebbrun/ebb/internal/procstat"
	"github.com/ebbrun/ebb/internal/testenv"
)

// shortDir is a temp dir with a short path: the socket lives in it and unix
// socket paths are limited to 108 bytes, which t.TempDir can exceed.
func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "ctdp")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(d) })
	return d
}

func requireContainerd(t *testing.T) {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireBinary(t, "containerd")
	testenv.RequireBinary(t, "runc")
}

func daemonPid(t *testing.T, dataDir string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dataDir, "containerd.pid"))
	require.NoError(t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	require.NoError(t, err)
	return pid
}

func alive(pid int) bool {
	st, err := procstat.Read(pid)
	return err == nil && !st.Exited()
}

// eventually polls because what it waits for is a real containerd (and
// its shims) starting or exiting, which no test clock can move.
func eventually(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	require.Eventually(t, cond, d, 10*time.Millisecond, what)
}

func TestPrivateContainerdLifecycle(t *testing.T) {
	requireContainerd(t)
	dir := shortDir(t)
	sup, err := containerdproc.New(containerdproc.Config{
		Address:   filepath.Join(dir, "absent.sock"),
		DataDir:   filepath.Join(dir, "c"),
		StopGrace: 5 * time.Second,
	}, nil)
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	began := time.Now()
	addr, err := sup.Start(ctx)
	require.NoError(t, err)
	t.Logf("private containerd answered %s after start", time.Since(began))
	assert.Equal(t, filepath.Join(dir, "c", "containerd.sock"), addr)
	assert.True(t, sup.Managed())
	_, err = containerdproc.Probe(ctx, addr, time.Second)
	require.NoError(t, err)

	again, err := sup.Start(ctx)
	require.NoError(t, err)
	assert.Equal(t, addr, again, "Start is idempotent")

	runErr := make(chan error, 1)
	go func() { runErr <- sup.Run(ctx) }()

	// Crash it: Run must bring a new one up on the same socket.
	first := daemonPid(t, filepath.Join(dir, "c"))
	require.NoError(t, syscall.Kill(first, syscall.SIGKILL))
	eventually(t, "a restarted containerd answers", 20*time.Second, func() bool {
		b, err := os.ReadFile(filepath.Join(dir, "c", "containerd.pid"))
		if err != nil || strings.TrimSpace(string(b)) == strconv.Itoa(first) {
			return false
		}
		_, err = containerdproc.Probe(ctx, addr, time.Second)
		return err == nil
	})
	second := daemonPid(t, filepath.Join(dir, "c"))
	assert.NotEqual(t, first, second)

	cancel()
	select {
	case err := <-runErr:
		require.NoError(t, err)
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after ctx ended")
	}
	assert.False(t, alive(second), "containerd still running after Run returned")
	assert.NoFileExists(t, filepath.Join(dir, "c", "containerd.pid"))
}

func TestUsesExistingContainerd(t *testing.T) {
	requireContainerd(t)
	dir := shortDir(t)
	owner, err := containerdproc.New(containerdproc.Config{Address: "-", DataDir: filepath.Join(dir, "a")}, nil)
	require.NoError(t, err)
	addr, err := owner.Start(context.Background())
	require.NoError(t, err)
	defer owner.Stop()
	pid := daemonPid(t, filepath.Join(dir, "a"))

	user, err := containerdproc.New(containerdproc.Config{Address: addr, DataDir: filepath.Join(dir, "b")}, nil)
	require.NoError(t, err)
	got, err := user.Start(context.Background())
	require.NoError(t, err)
	assert.Equal(t, addr, got)
	assert.False(t, user.Managed())
	assert.NoDirExists(t, filepath.Join(dir, "b"), "nothing is created for an existing containerd")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- user.Run(ctx) }()
	cancel()
	require.NoError(t, <-done)
	user.Stop()
	assert.True(t, alive(pid), "stopping a supervisor must not stop a containerd it did not start")
	_, err = containerdproc.Probe(context.Background(), addr, time.Second)
	assert.NoError(t, err)
}

func TestDataDirIsExclusive(t *testing.T) {
	requireContainerd(t)
	dir := shortDir(t)
	cfg := containerdproc.Config{Address: "-", DataDir: filepath.Join(dir, "c")}
	a, err := containerdproc.New(cfg, nil)
	require.NoError(t, err)
	_, err = a.Start(context.Background())
	require.NoError(t, err)
	defer a.Stop()

	b, err := containerdproc.New(cfg, nil)
	require.NoError(t, err)
	_, err = b.Start(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "in use by another process")
}

func TestStopsStaleDaemon(t *testing.T) {
	requireContainerd(t)
	dir := shortDir(t)
	dataDir := filepath.Join(dir, "c")
	cfg := containerdproc.Config{Address: "-", DataDir: dataDir}

	// A first run writes config.toml; then a containerd started outside any
	// supervisor, recorded in the pid file, plays an orphan of a crashed ebbd.
	first, err := containerdproc.New(cfg, nil)
	require.NoError(t, err)
	_, err = first.Start(context.Background())
	require.NoError(t, err)
	first.Stop()
	orphan := exec.Command("containerd", "--config", filepath.Join(dataDir, "config.toml"))
	require.NoError(t, orphan.Start())
	exited := make(chan struct{})
	go func() { _ = orphan.Wait(); close(exited) }()
	defer func() { _ = orphan.Process.Kill() }()
	require.NoError(t, os.WriteFile(filepath.Join(dataDir, "containerd.pid"), []byte(strconv.Itoa(orphan.Process.Pid)), 0o600))

	sup, err := containerdproc.New(cfg, nil)
	require.NoError(t, err)
	addr, err := sup.Start(context.Background())
	require.NoError(t, err)
	defer sup.Stop()
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("stale containerd was not stopped")
	}
	assert.NotEqual(t, orphan.Process.Pid, daemonPid(t, dataDir))
	_, err = containerdproc.Probe(context.Background(), addr, time.Second)
	assert.NoError(t, err)
}

func TestMissingBinarySaysHowToInstall(t *testing.T) {
	dir := shortDir(t)
	sup, err := containerdproc.New(containerdproc.Config{
		Address: filepath.Join(dir, "absent.sock"),
		DataDir: filepath.Join(dir, "c"),
		Binary:  filepath.Join(dir, "no-such-containerd"),
	}, nil)
	require.NoError(t, err)
	_, err = sup.Start(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "apt-get install containerd runc")
}

func TestProbeFailsFastWithoutDaemon(t *testing.T) {
	dir := shortDir(t)
	tests := []struct {
		name string
		path string
		prep func(path string)
	}{
		{name: "missing", path: filepath.Join(dir, "missing.sock")},
		{name: "regular file", path: filepath.Join(dir, "file"), prep: func(p string) { require.NoError(t, os.WriteFile(p, nil, 0o600)) }},
		{name: "dead socket", path: filepath.Join(dir, "dead.sock"), prep: func(p string) {
			fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
			require.NoError(t, err)
			require.NoError(t, syscall.Bind(fd, &syscall.SockaddrUnix{Name: p}))
			require.NoError(t, syscall.Close(fd)) // bound, never listening: connect is refused
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.prep != nil {
				tt.prep(tt.path)
			}
			began := time.Now()
			_, err := containerdproc.Probe(context.Background(), tt.path, 2*time.Second)
			require.Error(t, err)
			assert.Less(t, time.Since(began), time.Second)
		})
	}
}
