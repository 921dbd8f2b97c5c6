package runcstart

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/ebbrun/ebb/internal/procstat"
)

// ErrUseRunc says Start left the container untouched and runc start should
// have it: the container does not exist, has started or has stopped, or
// Start cannot read its state. runc knows which, and says so in the words
// containerd expects.
var ErrUseRunc = errors.New("start left to runc")

// livenessCheckMillis is how long Start waits on the fifo before checking
// that init is still alive, as runc does.
const livenessCheckMillis = 100

// Start starts the created container id in runc's state directory root,
// the way runc start does: it returns once init has exec'd the user's
// program, and removes the fifo so that runc reports the container as
// running from then on.
func Start(root, id string) error {
	dir := filepath.Join(root, id)
	fifo := filepath.Join(dir, "exec.fifo")
	if fi, err := os.Lstat(fifo); err != nil || fi.Mode()&fs.ModeNamedPipe == 0 {
		return ErrUseRunc
	}
	init, err := readInit(filepath.Join(dir, "state.json"))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUseRunc, err)
	}
	if !init.alive() {
		return ErrUseRunc // stopped: runc says so
	}
	// Non-blocking, so that opening never waits for a writer that may be
	// dead; init's own blocking open for writing returns as soon as this
	// reader exists.
	fd, err := unix.Open(fifo, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("%w: open exec fifo: %v", ErrUseRunc, err) // a start that raced this one removed it
	}
	defer unix.Close(fd)
	n, err := drain(fd, init)
	if err != nil {
		return err
	}
	if n == 0 {
		return errors.New("cannot start an already running container")
	}
	return os.Remove(fifo)
}

// drain reads the fifo until init closes it, which it does by exec'ing the
// user's program, and returns how many bytes init wrote. While the fifo is
// quiet it checks every livenessCheckMillis that init is alive, so a dead
// init fails the start instead of hanging it.
//
// poll(2) on a fifo reader reports a hang-up only after a writer has come
// and gone, so waiting before init opens its end is safe.
func drain(fd int, init initProcess) (int, error) {
	var buf [64]byte
	total := 0
	for {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		ready, err := unix.Poll(fds, livenessCheckMillis)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return total, fmt.Errorf("poll exec fifo: %w", err)
		}
		if ready == 0 {
			if init.alive() {
				continue
			}
			// Init died before it wrote: a write, or its end closing,
			// would have woken poll.
			return total, errors.New("container process is already dead")
		}
		n, err := unix.Read(fd, buf[:])
		switch {
		case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return total, fmt.Errorf("read exec fifo: %w", err)
		case n == 0:
			return total, nil // every writer has closed it
		}
		total += n
	}
}

// initProcess names runc init's process by pid and start time, because a
// pid alone may have been reused.
type initProcess struct {
	pid   int
	start uint64
}

// readInit reads init's identity from runc's state file.
func readInit(path string) (initProcess, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return initProcess{}, fmt.Errorf("read container state: %w", err)
	}
	var state struct {
		Pid   int    `json:"init_process_pid"`
		Start uint64 `json:"init_process_start"`
	}
	if err := json.Unmarshal(data, &state); err != nil {
		return initProcess{}, fmt.Errorf("parse container state %s: %w", path, err)
	}
	if state.Pid <= 0 {
		return initProcess{}, fmt.Errorf("container state %s names no init process", path)
	}
	return initProcess{pid: state.Pid, start: state.Start}, nil
}

// alive reports whether the process still runs: it exists, is not a
// zombie, and started when init did.
func (p initProcess) alive() bool {
	st, err := procstat.Read(p.pid)
	return err == nil && !st.Exited() && st.Start == p.start
}
