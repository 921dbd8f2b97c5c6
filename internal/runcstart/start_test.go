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
)

// The tests play runc init with a goroutine of the test process: it opens
// the fifo for writing (blocking, as init does), writes what init would,
// and closes it, as init's exec does.

func TestStart(t *testing.T) {
	self := selfProcess(t)
	tests := []struct {
		name     string
		init     initProcess // what state.json says
		writes   string      // what the playing init writes, "" for none
		noWriter bool        // init never opens the fifo
		wantErr  string
		fifoGone bool
	}{
		{name: "init writes and execs", init: self, writes: "0", fifoGone: true},
		{name: "init closes without writing", init: self, wantErr: "cannot start an already running container"},
		{name: "init is dead", init: deadProcess(t), noWriter: true, wantErr: "container process is already dead"},
		{name: "pid reused by another process", init: initProcess{pid: self.pid, start: self.start + 1}, noWriter: true, wantErr: "container process is already dead"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, fifo := createdContainer(t, "c1", tt.init)
			done := make(chan error, 1)
			if !tt.noWriter {
				go func() { done <- playInit(fifo, tt.writes) }()
			}

			err := Start(root, "c1")

			if tt.wantErr == "" {
				assert.NoError(t, err)
			} else {
				assert.ErrorContains(t, err, tt.wantErr)
			}
			if !tt.noWriter {
				assert.NoError(t, <-done)
			}
			_, statErr := os.Lstat(fifo)
			assert.Equal(t, tt.fifoGone, os.IsNotExist(statErr), "fifo removed")
		})
	}
}

func TestStartNotCreated(t *testing.T) {
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
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			tt.setup(t, filepath.Join(root, "c1"))
			assert.ErrorIs(t, Start(root, "c1"), ErrNotCreated)
		})
	}
}

func TestStartBadState(t *testing.T) {
	tests := []struct {
		name, state, wantErr string
	}{
		{name: "missing", state: "", wantErr: "read container state"},
		{name: "not json", state: "{", wantErr: "parse container state"},
		{name: "no pid", state: `{"id":"c1"}`, wantErr: "names no init process"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			dir := filepath.Join(root, "c1")
			require.NoError(t, os.MkdirAll(dir, 0o700))
			require.NoError(t, unix.Mkfifo(filepath.Join(dir, "exec.fifo"), 0o622))
			if tt.state != "" {
				require.NoError(t, os.WriteFile(filepath.Join(dir, "state.json"), []byte(tt.state), 0o600))
			}
			assert.ErrorContains(t, Start(root, "c1"), tt.wantErr)
		})
	}
}

// createdContainer lays out what runc create leaves in root for id: the
// exec fifo and a state file naming init.
func createdContainer(t *testing.T, id string, init initProcess) (root, fifo string) {
	t.Helper()
	root = t.TempDir()
	dir := filepath.Join(root, id)
	require.NoError(t, os.MkdirAll(dir, 0o700))
	fifo = filepath.Join(dir, "exec.fifo")
	require.NoError(t, unix.Mkfifo(fifo, 0o622))
	state := fmt.Sprintf(`{"id":%q,"init_process_pid":%d,"init_process_start":%d,"config":{}}`, id, init.pid, init.start)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "state.json"), []byte(state), 0o600))
	return root, fifo
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
	data, err := os.ReadFile("/proc/self/stat")
	require.NoError(t, err)
	_, start, ok := parseStat(string(data))
	require.True(t, ok)
	return initProcess{pid: os.Getpid(), start: start}
}

// deadProcess is a process that has exited and been reaped.
func deadProcess(t *testing.T) initProcess {
	t.Helper()
	cmd := exec.Command("true")
	require.NoError(t, cmd.Run())
	return initProcess{pid: cmd.Process.Pid, start: 1}
}
