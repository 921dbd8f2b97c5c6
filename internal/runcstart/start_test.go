package runcstart

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/ebbrun/ebb/internal/procstat"
)

// The tests play runc init with a goroutine of the test process: it opens
// the fifo for writing (blocking, as init does), writes what init would,
// and closes it, as init's exec does.

func TestStart(t *testing.T) {
	self := selfProcess(t)
	tests := []struct {
		name     string
		writes   string // what the playing init writes, "" for none
		wantErr  string
		fifoGone bool
	}{
		{name: "init writes and execs", writes: "0", fifoGone: true},
		{name: "init closes without writing", wantErr: "cannot start an already running container"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, fifo := createdContainer(t, "c1", self)
			done := make(chan error, 1)
			go func() { done <- playInit(fifo, tt.writes) }()

			err := Start(root, "c1")

			if tt.wantErr == "" {
				assert.NoError(t, err)
			} else {
				assert.ErrorContains(t, err, tt.wantErr)
			}
			assert.NoError(t, <-done)
			_, statErr := os.Lstat(fifo)
			assert.Equal(t, tt.fifoGone, os.IsNotExist(statErr), "fifo removed")
		})
	}
}

// TestRelease follows a container through Release and the start that
// containerd's shim runs after it, through ebb-runc.
func TestRelease(t *testing.T) {
	self := selfProcess(t)
	tests := []struct {
		name string
		// then runs after a successful Release of container c1 in root.
		then func(t *testing.T, root string)
	}{
		{name: "the shim's start confirms it, once", then: func(t *testing.T, root string) {
			assert.NoError(t, Start(root, "c1"))
			assert.NoFileExists(t, filepath.Join(root, "c1", releasedMarker))
			assert.ErrorIs(t, Start(root, "c1"), ErrUseRunc, "a second start is runc's to refuse")
		}},
		{name: "a second release succeeds and keeps the marker", then: func(t *testing.T, root string) {
			assert.NoError(t, Release(root, "c1"))
			assert.FileExists(t, filepath.Join(root, "c1", releasedMarker))
			assert.NoError(t, Start(root, "c1"))
		}},
		{name: "init died before the shim's start", then: func(t *testing.T, root string) {
			writeState(t, filepath.Join(root, "c1"), deadProcess(t))
			assert.ErrorIs(t, Start(root, "c1"), ErrUseRunc)
			assert.ErrorIs(t, Release(root, "c1"), ErrUseRunc)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, fifo := createdContainer(t, "c1", self)
			done := make(chan error, 1)
			go func() { done <- playInit(fifo, "0") }()

			require.NoError(t, Release(root, "c1"))

			assert.NoError(t, <-done)
			assert.NoFileExists(t, fifo)
			assert.FileExists(t, filepath.Join(root, "c1", releasedMarker))
			assert.True(t, Released(root, "c1"))
			tt.then(t, root)
			assert.False(t, Released(root, "c1"))
		})
	}
}

// TestReleaseRefuses lists the containers Release leaves alone, marker
// and all.
func TestReleaseRefuses(t *testing.T) {
	self := selfProcess(t)
	tests := []struct {
		name    string
		setup   func(t *testing.T, root string) (fifo string)
		writes  string // what the playing init writes; no init plays if fifo is ""
		wantErr string
		useRunc bool
	}{
		{name: "no such container", setup: func(t *testing.T, root string) string { return "" }, useRunc: true},
		{name: "started without Release", setup: func(t *testing.T, root string) string {
			_, fifo := createdContainerIn(t, root, "c1", self)
			require.NoError(t, os.Remove(fifo))
			return ""
		}, useRunc: true},
		{name: "stopped: init is dead", setup: func(t *testing.T, root string) string {
			createdContainerIn(t, root, "c1", deadProcess(t))
			return ""
		}, useRunc: true},
		{name: "init closes without writing", setup: func(t *testing.T, root string) string {
			_, fifo := createdContainerIn(t, root, "c1", self)
			return fifo
		}, wantErr: "cannot start an already running container"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			fifo := tt.setup(t, root)
			done := make(chan error, 1)
			if fifo != "" {
				go func() { done <- playInit(fifo, tt.writes) }()
			} else {
				done <- nil
			}

			err := Release(root, "c1")

			if tt.useRunc {
				assert.ErrorIs(t, err, ErrUseRunc)
			} else {
				assert.ErrorContains(t, err, tt.wantErr)
			}
			assert.NoError(t, <-done)
			assert.NoFileExists(t, filepath.Join(root, "c1", releasedMarker))
			assert.False(t, Released(root, "c1"))
		})
	}
}

// TestStartAfterCutShortRelease: a Release that wrote its marker and went
// no further leaves a created container, which Start starts as usual.
func TestStartAfterCutShortRelease(t *testing.T) {
	root, fifo := createdContainer(t, "c1", selfProcess(t))
	require.NoError(t, os.WriteFile(filepath.Join(root, "c1", releasedMarker), nil, 0o600))
	done := make(chan error, 1)
	go func() { done <- playInit(fifo, "0") }()

	assert.NoError(t, Start(root, "c1"))

	assert.NoError(t, <-done)
	assert.NoFileExists(t, fifo)
	assert.NoFileExists(t, filepath.Join(root, "c1", releasedMarker))
}

// TestStartInitDiesWhileWaiting holds the fifo's write end open without
// writing, as an init that has opened it and not yet written, and kills
// init: Start notices at its next liveness check.
func TestStartInitDiesWhileWaiting(t *testing.T) {
	cmd := exec.Command("sleep", "600")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	st, err := procstat.Read(cmd.Process.Pid)
	require.NoError(t, err)
	root, fifo := createdContainer(t, "c1", initProcess{pid: cmd.Process.Pid, start: st.Start})

	opened := make(chan int, 1)
	go func() {
		fd, err := unix.Open(fifo, unix.O_WRONLY|unix.O_CLOEXEC, 0) // returns once Start reads
		assert.NoError(t, err)
		assert.NoError(t, cmd.Process.Kill())
		opened <- fd
	}()

	err = Start(root, "c1")

	assert.ErrorContains(t, err, "container process is already dead")
	assert.NoError(t, unix.Close(<-opened))
	assert.FileExists(t, fifo)
}

// TestStartLeavesToRunc lists what Start does not touch, so that runc
// start says what is wrong.
func TestStartLeavesToRunc(t *testing.T) {
	self := selfProcess(t)
	dead := deadProcess(t)
	withFifo := func(t *testing.T, dir string) {
		require.NoError(t, os.MkdirAll(dir, 0o700))
		require.NoError(t, unix.Mkfifo(filepath.Join(dir, "exec.fifo"), 0o622))
	}
	withState := func(state string) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			withFifo(t, dir)
			require.NoError(t, os.WriteFile(filepath.Join(dir, "state.json"), []byte(state), 0o600))
		}
	}
	stateOf := func(p initProcess) string {
		return fmt.Sprintf(`{"init_process_pid":%d,"init_process_start":%d}`, p.pid, p.start)
	}
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
	}{
		{name: "no such container", setup: func(t *testing.T, dir string) {}},
		{name: "already started: no fifo", setup: func(t *testing.T, dir string) {
			require.NoError(t, os.MkdirAll(dir, 0o700))
		}},
		{name: "fifo is a plain file", setup: func(t *testing.T, dir string) {
			require.NoError(t, os.MkdirAll(dir, 0o700))
			require.NoError(t, os.WriteFile(filepath.Join(dir, "exec.fifo"), []byte("0"), 0o600))
		}},
		{name: "state missing", setup: withFifo},
		{name: "state not json", setup: withState("{")},
		{name: "state names no init", setup: withState(`{"id":"c1"}`)},
		{name: "stopped: init is dead", setup: withState(stateOf(dead))},
		{name: "stopped: init's pid is another process's now", setup: withState(stateOf(initProcess{pid: self.pid, start: self.start + 1}))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			tt.setup(t, filepath.Join(root, "c1"))
			assert.ErrorIs(t, Start(root, "c1"), ErrUseRunc)
		})
	}
}

// createdContainer lays out what runc create leaves in root for id: the
// exec fifo and a state file naming init.
func createdContainer(t *testing.T, id string, init initProcess) (root, fifo string) {
	t.Helper()
	return createdContainerIn(t, t.TempDir(), id, init)
}

// createdContainerIn is createdContainer in a given root.
func createdContainerIn(t *testing.T, root, id string, init initProcess) (string, string) {
	t.Helper()
	dir := filepath.Join(root, id)
	require.NoError(t, os.MkdirAll(dir, 0o700))
	fifo := filepath.Join(dir, "exec.fifo")
	require.NoError(t, unix.Mkfifo(fifo, 0o622))
	writeState(t, dir, init)
	return root, fifo
}

// writeState writes runc's state file for the container in dir, naming
// its init.
func writeState(t *testing.T, dir string, init initProcess) {
	t.Helper()
	state := fmt.Sprintf(`{"id":%q,"init_process_pid":%d,"init_process_start":%d,"config":{}}`, filepath.Base(dir), init.pid, init.start)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "state.json"), []byte(state), 0o600))
}

// playInit does what runc init does with the fifo.
func playInit(fifo, writes string) error {
	fd, err := unix.Open(fifo, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	if writes != "" {
		if _, err := unix.Write(fd, []byte(writes)); err != nil {
			unix.Close(fd)
			return err
		}
	}
	return unix.Close(fd)
}

func selfProcess(t *testing.T) initProcess {
	t.Helper()
	st, err := procstat.Read(os.Getpid())
	require.NoError(t, err)
	return initProcess{pid: os.Getpid(), start: st.Start}
}

// deadProcess is a process that has exited and been reaped.
func deadProcess(t *testing.T) initProcess {
	t.Helper()
	cmd := exec.Command("true")
	require.NoError(t, cmd.Run())
	return initProcess{pid: cmd.Process.Pid, start: 1}
}
