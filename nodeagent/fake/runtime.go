package fake

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/ebbrun/ebb/nodeagent"
)

var (
	_ nodeagent.Runtime        = (*Runtime)(nil)
	_ nodeagent.RequestCounter = (*Runtime)(nil)
	_ nodeagent.DialFunc       = (*Runtime)(nil).Dial
)

// Behavior says how the processes of an image act.
type Behavior struct {
	// ExitOnStart makes the process exit with this code as soon as it
	// starts, before it listens; 0 means it serves normally.
	ExitOnStart int
	// IgnoreTERM makes the process ignore SIGTERM, so only SIGKILL ends it.
	IgnoreTERM bool
	// BadExec makes CheckExecutable fail with this message.
	BadExec string
}

// Runtime is an in-memory nodeagent.Runtime. The zero value is not usable;
// call New.
type Runtime struct {
	mu     sync.Mutex
	images map[string]nodeagent.ImageConfig
	// remote are the images Pull fetches, pulls what it was asked, and
	// pullGate, when set, holds every Pull until it is closed.
	remote     map[string]nodeagent.ImageConfig
	pulls      []Pull
	pullGate   chan struct{}
	behavior   map[string]Behavior
	containers map[string]*container
	failNext   map[string]error // method name → error for its next call
	calls      []Call
	onStart    func(id string)
	// listeners are the in-memory network: the servers of running tasks,
	// by address.
	listeners map[string]*listener
	// network holds the replicas' namespaces, nil for host networking.
	network *Network
}

// SetNetwork makes tasks in a namespace of n serve on its address.
func (r *Runtime) SetNetwork(n *Network) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.network = n
}

// Call is one call made to the runtime, with the time it was made: in a
// testing/synctest bubble, the bubble's time.
type Call struct {
	At   time.Time
	What string // as Calls reports it
}

type container struct {
	spec nodeagent.ContainerSpec
	task *Task
}

// New returns an empty runtime.
func New() *Runtime {
	return &Runtime{
		images:     map[string]nodeagent.ImageConfig{},
		remote:     map[string]nodeagent.ImageConfig{},
		behavior:   map[string]Behavior{},
		containers: map[string]*container{},
		failNext:   map[string]error{},
		listeners:  map[string]*listener{},
	}
}

// AddImage makes an image available, with how its processes behave.
func (r *Runtime) AddImage(cfg nodeagent.ImageConfig, b Behavior) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.images[cfg.Ref] = cfg
	r.behavior[cfg.Ref] = b
}

// AddRemoteImage makes an image available to Pull only: the node does
// not hold it until it is pulled.
func (r *Runtime) AddRemoteImage(cfg nodeagent.ImageConfig, b Behavior) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.remote[cfg.Ref] = cfg
	r.behavior[cfg.Ref] = b
}

// HoldPulls makes every Pull wait until the returned function is called.
func (r *Runtime) HoldPulls() (release func()) {
	gate := make(chan struct{})
	r.mu.Lock()
	r.pullGate = gate
	r.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { close(gate) }) }
}

// Pull is one call of Runtime.Pull.
type Pull struct {
	Ref    string
	Source nodeagent.PullSource
}

// Pulls returns the pulls asked for so far, in order.
func (r *Runtime) Pulls() []Pull {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.pulls)
}

// OnStart makes every Task.Start call fn first, so a test can look at the
// world as the agent left it before its Start.
func (r *Runtime) OnStart(fn func(id string)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.onStart = fn
}

// FailNext makes the next call of method ("Create", "NewTask", "Release",
// "Start") return err.
func (r *Runtime) FailNext(method string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failNext[method] = err
}

func (r *Runtime) takeFailure(method string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	err := r.failNext[method]
	delete(r.failNext, method)
	return err
}

// Calls returns the calls made so far, such as "start hello-00001-abcde" or
// "signal hello-00001-abcde terminated", in order.
func (r *Runtime) Calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, len(r.calls))
	for i, c := range r.calls {
		out[i] = c.What
	}
	return out
}

// TimedCalls returns the calls made so far with their times, in order.
func (r *Runtime) TimedCalls() []Call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Call(nil), r.calls...)
}

func (r *Runtime) record(format string, args ...any) {
	r.mu.Lock()
	r.calls = append(r.calls, Call{At: time.Now(), What: fmt.Sprintf(format, args...)})
	r.mu.Unlock()
}

// Dial connects to the server a task runs at addr, as a TCP dial to a
// replica would; it is the agent's Deps.Dial, and a test's http.Transport
// DialContext. An address nobody listens on refuses the connection.
func (r *Runtime) Dial(_ context.Context, network, addr string) (net.Conn, error) {
	r.mu.Lock()
	l := r.listeners[addr]
	r.mu.Unlock()
	if l == nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
	}
	return l.Dial()
}

// OpenRequests implements nodeagent.RequestCounter: the requests in
// flight on the task listening on port. The agent's sock_diag view sees
// no in-memory connection, so this is what its drain waits for.
func (r *Runtime) OpenRequests(port uint16) (int, bool, error) {
	r.mu.Lock()
	l := r.listeners[fmt.Sprintf("127.0.0.1:%d", port)]
	r.mu.Unlock()
	if l == nil {
		return 0, false, nil
	}
	return l.task.InFlight(), true, nil
}

// Close ends every task, as a reboot would, so that the goroutines of
// their servers end: a testing/synctest bubble waits for them.
func (r *Runtime) Close() {
	r.mu.Lock()
	var tasks []*Task
	for _, c := range r.containers {
		if c.task != nil {
			tasks = append(tasks, c.task)
		}
	}
	r.mu.Unlock()
	for _, t := range tasks {
		t.kill(137)
	}
}

// listener is a task's server socket on the in-memory network.
type listener struct {
	*fasthttputil.InmemoryListener
	rt   *Runtime
	addr string
	task *Task
}

// listen binds addr for t, failing as a bind would if it is taken.
func (r *Runtime) listen(addr string, t *Task) (*listener, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, taken := r.listeners[addr]; taken {
		return nil, &net.OpError{Op: "listen", Net: "tcp", Err: syscall.EADDRINUSE}
	}
	l := &listener{InmemoryListener: fasthttputil.NewInmemoryListener(), rt: r, addr: addr, task: t}
	r.listeners[addr] = l
	return l, nil
}

// Close unbinds the address and closes the listener.
func (l *listener) Close() error {
	l.rt.mu.Lock()
	if l.rt.listeners[l.addr] == l {
		delete(l.rt.listeners, l.addr)
	}
	l.rt.mu.Unlock()
	return l.InmemoryListener.Close()
}

// Containers returns the specs of the containers that exist, by id.
func (r *Runtime) Containers() map[string]nodeagent.ContainerSpec {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]nodeagent.ContainerSpec, len(r.containers))
	for id, c := range r.containers {
		out[id] = c.spec
	}
	return out
}

// Task returns a container's current task, or nil.
func (r *Runtime) Task(id string) *Task {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c := r.containers[id]; c != nil {
		return c.task
	}
	return nil
}

// Image implements nodeagent.Runtime.
func (r *Runtime) Image(_ context.Context, ref string) (nodeagent.ImageConfig, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	img, ok := r.images[ref]
	if !ok {
		return img, fmt.Errorf("image %s: %w", ref, nodeagent.ErrNotFound)
	}
	return img, nil
}

// Pull implements nodeagent.Runtime: it makes an image added with
// AddRemoteImage the node's, or fails as a registry would for one that
// was not (or as FailNext("Pull", err) says).
func (r *Runtime) Pull(ctx context.Context, ref string, src nodeagent.PullSource) error {
	r.mu.Lock()
	r.pulls = append(r.pulls, Pull{Ref: ref, Source: src})
	gate := r.pullGate
	r.mu.Unlock()
	r.record("pull %s", ref)
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := r.takeFailure("Pull"); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	img, ok := r.remote[ref]
	if !ok {
		return fmt.Errorf("pull %s: %s: not found", ref, ref)
	}
	r.images[ref] = img
	return nil
}

// CheckExecutable implements nodeagent.Runtime.
func (r *Runtime) CheckExecutable(_ context.Context, ref, argv0 string, _ []string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if msg := r.behavior[ref].BadExec; msg != "" {
		return fmt.Errorf("%w: %s: %s", nodeagent.ErrBadImage, argv0, msg)
	}
	return nil
}

// Images implements nodeagent.Runtime.
func (r *Runtime) Images(context.Context) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.images))
	for ref := range r.images {
		out = append(out, ref)
	}
	sort.Strings(out)
	return out, nil
}

// Create implements nodeagent.Runtime.
func (r *Runtime) Create(_ context.Context, spec nodeagent.ContainerSpec) error {
	if err := r.takeFailure("Create"); err != nil {
		return err
	}
	r.record("create %s", spec.ID)
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.images[spec.Image]; !ok {
		return fmt.Errorf("image %s: %w", spec.Image, nodeagent.ErrNotFound)
	}
	if _, ok := r.containers[spec.ID]; ok {
		return fmt.Errorf("container %s already exists", spec.ID)
	}
	r.containers[spec.ID] = &container{spec: spec}
	return nil
}

// NewTask implements nodeagent.Runtime.
func (r *Runtime) NewTask(_ context.Context, id string, out nodeagent.Output) (nodeagent.Task, error) {
	if err := r.takeFailure("NewTask"); err != nil {
		return nil, err
	}
	r.record("newtask %s", id)
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.containers[id]
	if c == nil {
		return nil, fmt.Errorf("container %s: %w", id, nodeagent.ErrNotFound)
	}
	if c.task != nil {
		select {
		case <-c.task.done:
		default:
			return nil, fmt.Errorf("container %s has a task that has not exited", id)
		}
	}
	c.task = &Task{rt: r, id: id, spec: c.spec, behavior: r.behavior[c.spec.Image], out: out,
		state: nodeagent.TaskCreated, done: make(chan struct{})}
	return c.task, nil
}

// Attach implements nodeagent.Runtime.
func (r *Runtime) Attach(_ context.Context, id string, out nodeagent.Output) (nodeagent.Task, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.containers[id]
	if c == nil || c.task == nil {
		return nil, fmt.Errorf("task of %s: %w", id, nodeagent.ErrNotFound)
	}
	c.task.mu.Lock()
	c.task.out = out
	c.task.mu.Unlock()
	return c.task, nil
}

// List implements nodeagent.Runtime.
func (r *Runtime) List(_ context.Context, node string) ([]nodeagent.Container, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []nodeagent.Container
	for id, c := range r.containers {
		if c.spec.Labels[nodeagent.LabelNode] == node {
			out = append(out, nodeagent.Container{ID: id, Image: c.spec.Image, Labels: c.spec.Labels})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Delete implements nodeagent.Runtime.
func (r *Runtime) Delete(_ context.Context, id string) error {
	r.record("delete %s", id)
	r.mu.Lock()
	c := r.containers[id]
	delete(r.containers, id)
	r.mu.Unlock()
	if c != nil && c.task != nil {
		c.task.kill(137)
	}
	return nil
}

// Task is a fake process: an HTTP server on the container's PORT, on the
// runtime's in-memory network.
type Task struct {
	rt       *Runtime
	id       string
	spec     nodeagent.ContainerSpec
	behavior Behavior

	inFlight atomic.Int32

	mu       sync.Mutex
	out      nodeagent.Output
	state    nodeagent.TaskState
	released bool // Release ran the program; Start only records it
	srv      *http.Server
	exit     nodeagent.Exit
	done     chan struct{}
}

// InFlight is the number of requests being served.
func (t *Task) InFlight() int { return int(t.inFlight.Load()) }

// Pid is the test process's own pid: the agent's socket view of the
// replica then reads the host's network namespace, where no fake
// connection shows, and OpenRequests is what counts.
func (t *Task) Pid() uint32 { return uint32(os.Getpid()) }

// State implements nodeagent.Task.
func (t *Task) State(context.Context) (nodeagent.TaskState, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.state, nil
}

// Release implements nodeagent.Task: the program runs, and the task stays
// created until Start. FailNext("Release", nodeagent.ErrNoRelease) plays a
// runtime that cannot release.
func (t *Task) Release(context.Context) error {
	if err := t.rt.takeFailure("Release"); err != nil {
		return err
	}
	t.rt.record("release %s", t.id)
	t.mu.Lock()
	if t.state != nodeagent.TaskCreated || t.released {
		defer t.mu.Unlock()
		return fmt.Errorf("task %s is %s, not created", t.id, t.state)
	}
	t.released = true
	t.mu.Unlock()
	t.run()
	return nil
}

// Start implements nodeagent.Task: it runs the program, unless Release
// did.
func (t *Task) Start(context.Context) error {
	t.rt.mu.Lock()
	onStart := t.rt.onStart
	t.rt.mu.Unlock()
	if onStart != nil {
		onStart(t.id)
	}
	if err := t.rt.takeFailure("Start"); err != nil {
		return err
	}
	t.rt.record("start %s", t.id)
	t.mu.Lock()
	if t.state != nodeagent.TaskCreated {
		t.mu.Unlock()
		return fmt.Errorf("task %s is %s, not created", t.id, t.state)
	}
	t.state = nodeagent.TaskRunning
	released := t.released
	t.mu.Unlock()
	if !released {
		t.run()
	}
	return nil
}

// run is the process: it exits at once if its image says so, and
// otherwise serves HTTP on $PORT, or, without a PORT, runs until it is
// ended.
func (t *Task) run() {
	if code := t.behavior.ExitOnStart; code != 0 {
		t.write(t.out.Stderr, "fake: failing on start\n")
		go t.kill(code)
		return
	}
	port := envValue(t.spec.Env, "PORT")
	if port == "" {
		// A job pod's program: it serves nothing and runs until the
		// test ends it (Crash) or a signal does.
		t.write(t.out.Stdout, "fake: running as a job\n")
		return
	}
	t.rt.mu.Lock()
	network := t.rt.network
	t.rt.mu.Unlock()
	host, err := network.host(t.spec.NetnsPath)
	var ln *listener
	if err == nil {
		ln, err = t.rt.listen(net.JoinHostPort(host, port), t)
	}
	if err != nil {
		t.write(t.out.Stderr, fmt.Sprintf("listen: %v\n", err))
		go t.kill(1)
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s\n", t.id)
	})
	mux.HandleFunc("/sleep", func(w http.ResponseWriter, r *http.Request) {
		d, _ := time.ParseDuration(r.URL.Query().Get("d"))
		timer := time.NewTimer(d)
		defer timer.Stop()
		select {
		case <-timer.C:
			io.WriteString(w, "slept\n")
		case <-r.Context().Done(): // killed, as a real process's requests die with it
		}
	})
	counted := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.inFlight.Add(1)
		defer t.inFlight.Add(-1)
		mux.ServeHTTP(w, r)
	})
	srv := &http.Server{Handler: counted}
	t.mu.Lock()
	t.srv = srv
	t.mu.Unlock()
	go srv.Serve(ln)
	t.write(t.out.Stdout, "fake: listening on "+port+"\n")
}

func (t *Task) write(w io.Writer, s string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if w != nil {
		io.WriteString(w, s)
	}
}

// Signal implements nodeagent.Task: SIGTERM shuts the server down
// gracefully (unless the image ignores it), SIGKILL at once.
func (t *Task) Signal(_ context.Context, sig syscall.Signal) error {
	t.rt.record("signal %s %s", t.id, sig)
	switch sig {
	case syscall.SIGKILL:
		go t.kill(128 + int(sig))
	case syscall.SIGTERM:
		if t.behavior.IgnoreTERM {
			return nil
		}
		go func() {
			t.mu.Lock()
			srv := t.srv
			t.mu.Unlock()
			if srv != nil {
				// The process finishes what it serves, unless a SIGKILL
				// (or a crash) ends it first.
				ctx, cancel := context.WithCancel(context.Background())
				go func() {
					select {
					case <-t.done:
						cancel()
					case <-ctx.Done():
					}
				}()
				_ = srv.Shutdown(ctx)
				cancel()
			}
			t.exitWith(0)
		}()
	default:
		return fmt.Errorf("fake: signal %s not supported", sig)
	}
	return nil
}

// Crash makes the process exit with code at once, as if it crashed.
func (t *Task) Crash(code int) {
	t.write(t.out.Stderr, fmt.Sprintf("fake: crashing with %d\n", code))
	t.kill(code)
}

func (t *Task) kill(code int) {
	t.mu.Lock()
	srv := t.srv
	t.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
	t.exitWith(code)
}

func (t *Task) exitWith(code int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	select {
	case <-t.done:
		return
	default:
	}
	t.state = nodeagent.TaskStopped
	t.exit = nodeagent.Exit{Code: code, At: time.Now()}
	close(t.done)
}

// Done implements nodeagent.Task.
func (t *Task) Done() <-chan struct{} { return t.done }

// Exit implements nodeagent.Task.
func (t *Task) Exit() nodeagent.Exit {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.exit
}

func envValue(env []string, key string) string {
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// ErrInjected is a handy error for FailNext.
var ErrInjected = errors.New("injected failure")
