package containerdproc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd"

	"github.com/ebbrun/ebb/internal/procstat"
)

// installHint tells an operator how to get the programs a private containerd needs.
const installHint = "install them with: apt-get install containerd runc"

// Restart backoff after the private containerd dies unexpectedly.
const (
	minRestartDelay = 100 * time.Millisecond
	maxRestartDelay = 5 * time.Second
	// A daemon that ran this long resets the backoff: it was healthy.
	healthyRun = 30 * time.Second
)

// Supervisor connects to an existing containerd or runs a private one.
// Use Start to get an address, then Run to keep a private daemon alive.
// A Supervisor is single use: after Stop it cannot be started again.
type Supervisor struct {
	cfg Config
	log *slog.Logger

	startMu sync.Mutex // serializes Start

	mu       sync.Mutex
	started  bool
	address  string
	managed  bool
	binary   string
	proc     *process // the running private daemon, if any
	lockFile *os.File // flock on DataDir/lock while we own the data dir
	stopping bool
	stopped  chan struct{} // closed when Stop begins
	released chan struct{} // closed when Stop has finished: daemon gone, data dir released
}

// process is one run of the private containerd.
type process struct {
	cmd     *exec.Cmd
	started time.Time
	done    chan struct{} // closed once the process has been reaped
	err     error         // exit status, valid after done
}

// New checks cfg (after defaults) and returns a Supervisor. log may be nil.
func New(cfg Config, log *slog.Logger) (*Supervisor, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Supervisor{cfg: cfg, log: log, stopped: make(chan struct{}), released: make(chan struct{})}, nil
}

// Address is the socket returned by Start, or "" before it.
func (s *Supervisor) Address() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.address
}

// Managed reports whether Start launched a private containerd (true) or
// found one already answering at Config.Address (false).
func (s *Supervisor) Managed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.managed
}

// Probe reports the version of the containerd answering at address, using a
// real client Version call bounded by timeout.
func Probe(ctx context.Context, address string, timeout time.Duration) (string, error) {
	// A missing or non-socket path fails here in microseconds instead of
	// going through a gRPC dial.
	fi, err := os.Stat(address)
	if err != nil {
		return "", err
	}
	if fi.Mode().Type() != os.ModeSocket {
		return "", fmt.Errorf("%s is not a socket", address)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := containerd.New(address, containerd.WithTimeout(timeout))
	if err != nil {
		return "", err
	}
	defer c.Close()
	v, err := c.Version(ctx)
	if err != nil {
		return "", err
	}
	return v.Version, nil
}

// Start returns the address of a containerd that answers. If one answers at
// Config.Address it is used and left alone. Otherwise a private containerd is
// started under Config.DataDir and Start waits, at most StartTimeout, until it
// answers. ctx is the private daemon's lifetime: when ctx ends the daemon is
// stopped, as by Stop. Calling Start again returns the same address.
func (s *Supervisor) Start(ctx context.Context) (string, error) {
	s.startMu.Lock()
	defer s.startMu.Unlock()
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		return "", errors.New("containerd supervisor is stopped")
	}
	if s.started {
		addr := s.address
		s.mu.Unlock()
		return addr, nil
	}
	s.mu.Unlock()

	if s.cfg.Address != "-" {
		v, err := Probe(ctx, s.cfg.Address, s.cfg.ProbeTimeout)
		if err == nil {
			s.log.Info("using existing containerd", "address", s.cfg.Address, "version", v)
			s.mu.Lock()
			s.started, s.address, s.managed = true, s.cfg.Address, false
			s.mu.Unlock()
			return s.cfg.Address, nil
		}
		s.log.Info("no containerd answers; starting a private one", "address", s.cfg.Address, "reason", err, "dataDir", s.cfg.DataDir)
	}

	bin, err := s.prepare()
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	s.binary = bin
	s.mu.Unlock()

	began := time.Now()
	p, v, err := s.launch(ctx)
	if err != nil {
		s.releaseDataDir()
		return "", err
	}
	sock := privateSocket(s.cfg.DataDir)
	s.log.Info("private containerd is ready", "address", sock, "version", v, "pid", p.cmd.Process.Pid, "took", time.Since(began))

	s.mu.Lock()
	s.started, s.address, s.managed = true, sock, true
	s.mu.Unlock()
	go func() {
		select {
		case <-ctx.Done():
			s.Stop()
		case <-s.stopped:
		}
	}()
	return sock, nil
}

// Run keeps a private containerd running, restarting it with backoff when it
// dies, until ctx ends or Stop is called; then it stops the daemon and returns
// nil. It calls Start first if needed. For an existing containerd it only
// waits, since that daemon belongs to someone else.
func (s *Supervisor) Run(ctx context.Context) error {
	if _, err := s.Start(ctx); err != nil {
		return err
	}
	defer s.Stop()
	if !s.Managed() {
		select {
		case <-ctx.Done():
		case <-s.stopped:
		}
		return nil
	}
	delay := minRestartDelay
	for {
		s.mu.Lock()
		p := s.proc
		s.mu.Unlock()
		if p != nil {
			select {
			case <-ctx.Done():
				return nil
			case <-s.stopped:
				return nil
			case <-p.done:
			}
			if s.isStopping() {
				return nil
			}
			ran := time.Since(p.started)
			if ran > healthyRun {
				delay = minRestartDelay
			}
			s.log.Warn("private containerd exited; restarting", "err", p.err, "ran", ran, "in", delay, "log", s.logTail())
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.stopped:
			return nil
		case <-time.After(delay):
		}
		delay = min(delay*2, maxRestartDelay)
		if _, _, err := s.launch(ctx); err != nil {
			if s.isStopping() || ctx.Err() != nil {
				return nil
			}
			s.log.Error("restart private containerd", "err", err)
			s.mu.Lock()
			s.proc = nil
			s.mu.Unlock()
			continue
		}
		s.log.Info("private containerd restarted", "address", privateSocket(s.cfg.DataDir))
	}
}

// Stop stops a private containerd with SIGTERM, then SIGKILL after StopGrace,
// and waits for it to exit. Containers keep running in their shims. Stop is
// idempotent and does nothing to a containerd that Start found running.
// Every call returns only once the stop is complete, whichever call did it:
// Start's context watcher and Run both stop, and Run's caller must find the
// data dir released when Run returns.
func (s *Supervisor) Stop() {
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		<-s.released
		return
	}
	s.stopping = true
	close(s.stopped)
	p := s.proc
	s.mu.Unlock()
	if p != nil {
		s.terminate(p)
	}
	s.releaseDataDir()
	close(s.released)
}

func (s *Supervisor) isStopping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopping
}

// prepare finds the programs, takes the data dir and clears what a previous
// run of ours left behind. It returns the containerd binary path.
func (s *Supervisor) prepare() (string, error) {
	bin, err := exec.LookPath(s.cfg.Binary)
	if err != nil {
		return "", fmt.Errorf("no containerd answers at %s and the containerd binary %q was not found (%v); %s", s.cfg.Address, s.cfg.Binary, err, installHint)
	}
	// containerd itself starts without these, but every container start
	// would fail later with a far less obvious error.
	for _, prog := range []string{"containerd-shim-runc-v2", "runc"} {
		if _, err := exec.LookPath(prog); err != nil {
			return "", fmt.Errorf("a private containerd needs %s on PATH: %v; %s", prog, err, installHint)
		}
	}
	if err := os.MkdirAll(s.cfg.DataDir, 0o711); err != nil {
		return "", fmt.Errorf("create containerd data dir: %w", err)
	}
	lf, err := os.OpenFile(filepath.Join(s.cfg.DataDir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return "", fmt.Errorf("open containerd data dir lock: %w", err)
	}
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lf.Close()
		return "", fmt.Errorf("containerd data dir %s is in use by another process (another ebbd?): %w", s.cfg.DataDir, err)
	}
	s.mu.Lock()
	s.lockFile = lf
	s.mu.Unlock()
	// We hold the lock, so a containerd recorded in the pid file was started
	// by an earlier run of ours that did not stop it: it is stale.
	if err := s.killStale(); err != nil {
		s.releaseDataDir()
		return "", err
	}
	if err := os.WriteFile(s.configPath(), []byte(renderConfig(s.cfg.DataDir)), 0o600); err != nil {
		s.releaseDataDir()
		return "", fmt.Errorf("write containerd config: %w", err)
	}
	return bin, nil
}

func (s *Supervisor) configPath() string { return filepath.Join(s.cfg.DataDir, "config.toml") }
func (s *Supervisor) pidPath() string    { return filepath.Join(s.cfg.DataDir, "containerd.pid") }
func (s *Supervisor) logPath() string    { return filepath.Join(s.cfg.DataDir, "containerd.log") }

func (s *Supervisor) releaseDataDir() {
	s.mu.Lock()
	lf := s.lockFile
	s.lockFile = nil
	s.mu.Unlock()
	if lf != nil {
		_ = os.Remove(s.pidPath())
		_ = lf.Close() // closing drops the flock
	}
}

// launch starts one private containerd and waits until it answers.
func (s *Supervisor) launch(ctx context.Context) (*process, string, error) {
	p, err := s.spawn()
	if err != nil {
		return nil, "", err
	}
	v, err := s.waitReady(ctx, p)
	if err != nil {
		s.terminate(p)
		return nil, "", err
	}
	return p, v, nil
}

// spawn starts the daemon and records it as s.proc, unless Stop came first.
func (s *Supervisor) spawn() (*process, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return nil, errors.New("containerd supervisor is stopped")
	}
	sock := privateSocket(s.cfg.DataDir)
	// We own the data dir, so a socket file here is a leftover.
	_ = os.Remove(sock)
	_ = os.Remove(sock + ".ttrpc")
	_ = os.Rename(s.logPath(), s.logPath()+".1")
	logf, err := os.OpenFile(s.logPath(), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open containerd log: %w", err)
	}
	defer logf.Close() // the child keeps its own copy

	cmd := exec.Command(s.binary, "--config", s.configPath())
	cmd.Dir = s.cfg.DataDir
	cmd.Stdout, cmd.Stderr = logf, logf // files, not pipes: Wait must not wait on shims holding them
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Its own process group, so a terminal's ^C reaches only us and we
		// stop containerd in order.
		Setpgid: true,
		// If we die without stopping it, the kernel kills it: a private
		// containerd must not outlive its supervisor.
		Pdeathsig: syscall.SIGKILL,
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	startErr := make(chan error, 1)
	go func() {
		// Pdeathsig fires when the *thread* that forked the child exits, and
		// Go ends threads whose goroutine exits while locked (netns code does
		// that on purpose). Forking from a locked thread that stays parked in
		// Wait for the daemon's whole life keeps the signal for real deaths.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			startErr <- err
			return
		}
		p.started = time.Now()
		startErr <- nil
		p.err = cmd.Wait()
		close(p.done)
	}()
	if err := <-startErr; err != nil {
		return nil, fmt.Errorf("start %s: %w", s.binary, err)
	}
	if err := os.WriteFile(s.pidPath(), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o600); err != nil {
		s.log.Warn("write containerd pid file", "err", err)
	}
	s.proc = p
	return p, nil
}

func (s *Supervisor) waitReady(ctx context.Context, p *process) (string, error) {
	sock := privateSocket(s.cfg.DataDir)
	deadline := time.NewTimer(s.cfg.StartTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		v, err := Probe(ctx, sock, time.Second)
		if err == nil {
			return v, nil
		}
		lastErr = err
		select {
		case <-p.done:
			return "", fmt.Errorf("private containerd exited during start (%v); log %s:\n%s", p.err, s.logPath(), s.logTail())
		case <-ctx.Done():
			return "", fmt.Errorf("wait for private containerd: %w", ctx.Err())
		case <-deadline.C:
			return "", fmt.Errorf("private containerd did not answer at %s within %s (%v); log %s:\n%s", sock, s.cfg.StartTimeout, lastErr, s.logPath(), s.logTail())
		case <-tick.C:
		}
	}
}

// terminate stops p with SIGTERM, then SIGKILL after the grace, and waits.
func (s *Supervisor) terminate(p *process) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(s.cfg.StopGrace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		s.log.Warn("private containerd ignored SIGTERM; killing it", "pid", p.cmd.Process.Pid, "grace", s.cfg.StopGrace)
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	s.mu.Lock()
	if s.proc == p {
		s.proc = nil
	}
	s.mu.Unlock()
}

// killStale stops a containerd left running by an earlier supervisor of this
// data dir. It checks the command line so a recycled pid is never signalled.
func (s *Supervisor) killStale() error {
	b, err := os.ReadFile(s.pidPath())
	if err != nil {
		return nil
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return nil
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Contains(cmdline, []byte(s.configPath())) {
		return nil
	}
	s.log.Warn("stopping a stale private containerd", "pid", pid)
	_ = syscall.Kill(pid, syscall.SIGTERM)
	if waitGone(pid, s.cfg.StopGrace) {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	if waitGone(pid, 5*time.Second) {
		return nil
	}
	return fmt.Errorf("stale containerd pid %d in %s does not exit", pid, s.cfg.DataDir)
}

// waitGone polls until pid has exited (or is a zombie) or d has passed. The
// process is not our child, so there is nothing to wait on but /proc.
func waitGone(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if st, err := procstat.Read(pid); err != nil || st.Exited() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond) // polling a foreign process; no channel exists
	}
}

// logTail returns the last lines of the daemon's log for error messages.
func (s *Supervisor) logTail() string {
	b, err := os.ReadFile(s.logPath())
	if err != nil {
		return ""
	}
	const max = 2048
	if len(b) > max {
		b = b[len(b)-max:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return strings.TrimRight(string(b), "\n")
}
