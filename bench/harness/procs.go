package harness

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ebbrun/ebb/internal/mountinfo"
	"github.com/ebbrun/ebb/internal/proctree"
)

// Procs records every process the harness starts, so that all of them are
// stopped by PID at the end, whatever happened in between.
type Procs struct {
	log *slog.Logger

	mu    sync.Mutex
	procs []*Proc
}

// Proc is one started process.
type Proc struct {
	Name string
	Cmd  *exec.Cmd
	done chan struct{}
	err  error // valid after done
}

// NewProcs returns an empty process table.
func NewProcs(log *slog.Logger) *Procs { return &Procs{log: log} }

// Start starts cmd in its own process group (so a terminal's ^C reaches the
// harness only, which then stops things in order) with a parent-death
// SIGKILL (so a harness that dies hard leaves nothing running), and records
// it.
func (ps *Procs) Start(name string, cmd *exec.Cmd) (*Proc, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	p := &Proc{Name: name, Cmd: cmd, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// Pdeathsig fires when the thread that forked the child exits; this
		// thread stays locked and parked in Wait for the child's whole life,
		// so only a real death of the harness sends it.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.err = cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	ps.mu.Lock()
	ps.procs = append(ps.procs, p)
	ps.mu.Unlock()
	ps.log.Debug("started", "proc", name, "pid", cmd.Process.Pid)
	return p, nil
}

// PID is the process id.
func (p *Proc) PID() int { return p.Cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited, and how.
func (p *Proc) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Stop sends sig, waits up to grace, then SIGKILLs the process group and
// waits for the exit.
func (p *Proc) Stop(sig syscall.Signal, grace time.Duration) {
	if ok, _ := p.Exited(); ok {
		return
	}
	_ = syscall.Kill(p.PID(), sig)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return
	case <-t.C:
	}
	_ = syscall.Kill(-p.PID(), syscall.SIGKILL)
	_ = syscall.Kill(p.PID(), syscall.SIGKILL)
	<-p.done
}

// StopAll stops every recorded process that still runs, last started first.
func (ps *Procs) StopAll() {
	ps.mu.Lock()
	procs := append([]*Proc(nil), ps.procs...)
	ps.procs = nil
	ps.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		p := procs[i]
		if ok, _ := p.Exited(); ok {
			continue
		}
		ps.log.Info("stopping", "proc", p.Name, "pid", p.PID())
		p.Stop(syscall.SIGTERM, 30*time.Second)
	}
}

// Forget removes a stopped process from the table.
func (ps *Procs) Forget(p *Proc) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for i, q := range ps.procs {
		if q == p {
			ps.procs = append(ps.procs[:i], ps.procs[i+1:]...)
			return
		}
	}
}

// KillUnder SIGKILLs every process whose command line mentions dir, a
// directory the harness created for one run of ebbd (its private containerd
// and shims carry it in their arguments), and all their descendants (the
// containers' processes under those shims). It is the fallback for a daemon
// that did not stop what it started; it returns what it signalled, as
// "pid command".
func KillUnder(dir string) []string {
	if dir == "" || !strings.HasPrefix(dir, os.TempDir()) {
		return nil // never sweep outside the harness's own temp dirs
	}
	var out []string
	for _, k := range proctree.KillMentioning(dir) {
		out = append(out, fmt.Sprintf("%d %s", k.Pid, oneLine(k.Cmdline, 160)))
	}
	return out
}

// RemoveTree unmounts whatever is still mounted under dir (overlay
// snapshots of a containerd that was killed) and removes it.
func RemoveTree(dir string) error {
	if dir == "" || !strings.HasPrefix(dir, os.TempDir()) {
		return fmt.Errorf("refusing to remove %q outside %s", dir, os.TempDir())
	}
	for range 3 {
		mountinfo.UnmountUnder(dir)
		err := os.RemoveAll(dir)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return os.RemoveAll(dir)
}

// procStatus reads VmRSS and VmHWM of pid in bytes.
func procStatus(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			rss = kb << 10
		case "VmHWM:":
			hwm = kb << 10
		}
	}
	return rss, hwm, nil
}

// resetPeakRSS makes VmHWM start again from the current RSS, so the peak of
// one phase is not the peak of an earlier one (proc(5), clear_refs "5").
func resetPeakRSS(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}
