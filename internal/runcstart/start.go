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

// ShimRoot is where containerd's runc shim keeps runc's state when its
// Root option is empty (containerd's process.RuncRoot). The state of
// container id in containerd namespace ns is in ShimRoot/ns/id, so the
// root to pass Start and Release is ShimRoot/ns.
const ShimRoot = "/run/containerd/runc"

// livenessCheckMillis is how long Start waits on the fifo before checking
// that init is still alive, as runc does.
const livenessCheckMillis = 100

// releasedMarker is the file Release leaves in a container's state
// directory. It tells the start that containerd's shim runs later, through
// ebb-runc, that the program already runs because the node agent let it,
// so that start only has to succeed.
const releasedMarker = "ebb-released"

// Start starts the created container id in runc's state directory root,
// the way runc start does: it returns once init has exec'd the user's
// program, and removes the fifo so that runc reports the container as
// running from then on. A container that Release has let go is started
// already: Start succeeds while its init lives.
func Start(root, id string) error {
	dir := filepath.Join(root, id)
	if !hasFifo(dir) {
		return confirmRelease(dir)
	}
	if err := start(dir); err != nil {
		return err
	}
	// A Release cut short before it opened the fifo leaves its marker.
	if err := os.Remove(filepath.Join(dir, releasedMarker)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove release marker: %w", err)
	}
	return nil
}

// Release lets the created container id run its program now, ahead of the
// start that containerd's shim will run later through ebb-runc: it does
// what Start does, after leaving the marker that makes that later start
// succeed without touching the program. containerd calls the task created
// until then, which is why only the node agent, which sends that start as
// soon as the program serves, should call Release. Releasing a container
// that Release already let go succeeds while its init lives.
//
// It fails with ErrUseRunc wrapped when the container is missing, stopped,
// or started by someone else; the shim's own start then says which.
func Release(root, id string) error {
	dir := filepath.Join(root, id)
	marker := filepath.Join(dir, releasedMarker)
	if !hasFifo(dir) {
		return releasedAndAlive(dir)
	}
	if err := os.WriteFile(marker, nil, 0o600); err != nil {
		return fmt.Errorf("%w: write release marker: %v", ErrUseRunc, err)
	}
	if err := start(dir); err != nil {
		_ = os.Remove(marker)
		return err
	}
	return nil
}

// Released reports whether Release let the container id go and the start
// that confirms it has not come yet.
func Released(root, id string) bool {
	dir := filepath.Join(root, id)
	return !hasFifo(dir) && releasedAndAlive(dir) == nil
}

// confirmRelease is the start of a container without an exec fifo: good
// when Release let it go and its init still runs, and runc's to judge
// otherwise. The marker is removed, so the confirmation happens once.
func confirmRelease(dir string) error {
	if err := releasedAndAlive(dir); err != nil {
		return err
	}
	return os.Remove(filepath.Join(dir, releasedMarker))
}

// releasedAndAlive checks that Release let the container in dir go and
// that its init, now the user's program, still runs. Anything else is
// runc's to judge: a container never created, started without Release, or
// stopped.
func releasedAndAlive(dir string) error {
	if _, err := os.Lstat(filepath.Join(dir, releasedMarker)); err != nil {
		return ErrUseRunc
	}
	_, err := liveInit(dir)
	return err
}

// liveInit reads the container's init process from its state file and
// checks that it still runs; when it does not, or the state cannot be
// read, runc is the one to say so.
func liveInit(dir string) (initProcess, error) {
	init, err := readInit(filepath.Join(dir, "state.json"))
	if err != nil {
		return initProcess{}, fmt.Errorf("%w: %v", ErrUseRunc, err)
	}
	if !init.alive() {
		return initProcess{}, ErrUseRunc // stopped
	}
	return init, nil
}

// hasFifo reports whether the container in dir still has its exec fifo,
// which runc create makes and a start removes.
func hasFifo(dir string) bool {
	fi, err := os.Lstat(filepath.Join(dir, "exec.fifo"))
	return err == nil && fi.Mode()&fs.ModeNamedPipe != 0
}

// start does runc start's handshake on the created container in dir.
func start(dir string) error {
	fifo := filepath.Join(dir, "exec.fifo")
	init, err := liveInit(dir)
	if err != nil {
		return err
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
//
// It takes no context on purpose: once the fifo is open for reading,
// init's open returns and it execs the program whether or not anyone
// reads, so a start abandoned halfway would leave a running program that
// runc calls created.
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
