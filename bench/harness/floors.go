package harness

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd"
	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/oci"
	"github.com/containerd/containerd/plugin"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ebbrun/ebb/internal/containerdproc"
	"github.com/ebbrun/ebb/internal/imagestore"
	"github.com/ebbrun/ebb/internal/mountinfo"
	"github.com/ebbrun/ebb/internal/ociimage"
	"github.com/ebbrun/ebb/internal/runcstart"
)

// floorNamespace keeps the floors' containers apart from anything ebbd
// runs: ebbd has its own private containerd, and this one is the
// harness's.
const floorNamespace = "ebbbench"

// probeInterval is the readiness probe's cadence for every floor, below the
// node agent's 500 µs so the floors are the best the machine can do.
const probeInterval = 200 * time.Microsecond

// Floors measures the floors of a cold start the same way each time: the
// start of bin/hello until it answers HTTP on loopback.
type Floors struct {
	hello   string
	ebbRunc string // bin/ebb-runc, for StartReleased
	log     *slog.Logger
	sup     *containerdproc.Supervisor
	client  *containerd.Client
	image   containerd.Image
	seq     int
}

// NewFloors starts a private containerd under dir and imports bin/hello as
// an image into it. ebbRunc is bin/ebb-runc.
func NewFloors(ctx context.Context, dir, hello, ebbRunc string, log *slog.Logger) (*Floors, error) {
	f := &Floors{hello: hello, ebbRunc: ebbRunc, log: log}
	sup, err := containerdproc.New(containerdproc.Config{
		// A socket that cannot answer, so the floors always run on a
		// containerd of their own that nothing else touches.
		Address: filepath.Join(dir, "unused.sock"),
		DataDir: filepath.Join(dir, "containerd"),
	}, log.With("component", "floor-containerd"))
	if err != nil {
		return nil, err
	}
	// Start ties the daemon's life to its context; Close stops it, after
	// deleting the containers, also when the run was cancelled.
	addr, err := sup.Start(context.WithoutCancel(ctx))
	if err != nil {
		return nil, fmt.Errorf("floors: %w", err)
	}
	f.sup = sup
	client, err := containerd.New(addr, containerd.WithTimeout(10*time.Second))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("floors: connect containerd: %w", err)
	}
	f.client = client
	archive := filepath.Join(dir, "hello-floor.tar")
	out, err := os.Create(archive)
	if err != nil {
		f.Close()
		return nil, err
	}
	_, err = ociimage.BuildFromBinary(out, hello, ociimage.BuildOptions{Name: "ebbbench/hello:floor"})
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("floors: build image: %w", err)
	}
	imp, err := imagestore.New(client, imagestore.Config{Namespace: floorNamespace})
	if err != nil {
		f.Close()
		return nil, err
	}
	img, err := imp.Import(ctx, archive)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("floors: import image: %w", err)
	}
	f.image, err = client.GetImage(f.ns(ctx), img.Name)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("floors: get image: %w", err)
	}
	return f, nil
}

func (f *Floors) ns(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, floorNamespace)
}

// Close deletes the floors' containers and stops their containerd.
func (f *Floors) Close() {
	if f.client != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cs, _ := f.client.Containers(f.ns(ctx))
		for _, c := range cs {
			deleteContainer(f.ns(ctx), c)
		}
		cancel()
		f.client.Close()
	}
	if f.sup != nil {
		f.sup.Stop()
	}
	// runc made the namespace's cgroup as the parent of the containers'.
	mountinfo.RemoveEmptyCgroup(floorNamespace)
}

// Exec is the process floor: fork and exec of bin/hello until it answers.
func (f *Floors) Exec(ctx context.Context) (time.Duration, error) {
	port, err := freePort()
	if err != nil {
		return 0, err
	}
	cmd := exec.Command(f.hello)
	cmd.Env = []string{"PORT=" + strconv.Itoa(port)}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("exec floor: %w", err)
	}
	err = waitHTTP(ctx, loopback(port), probeInterval, 10*time.Second)
	d := time.Since(start)
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	return d, err
}

// Create is the containerd floor without a pool: NewContainer (with its
// snapshot) + NewTask (shim, runc create) + Start, host network, until the
// process answers.
func (f *Floors) Create(ctx context.Context) (time.Duration, error) {
	ctx = f.ns(ctx)
	port, err := freePort()
	if err != nil {
		return 0, err
	}
	start := time.Now()
	c, task, err := f.newTask(ctx, port, nil)
	if err != nil {
		return 0, err
	}
	defer deleteContainer(ctx, c)
	if err := task.Start(ctx); err != nil {
		return 0, fmt.Errorf("create floor: start: %w", err)
	}
	err = waitHTTP(ctx, loopback(port), probeInterval, 10*time.Second)
	return time.Since(start), err
}

// Start is the floor with a pre-created task: container and task are made
// first, untimed, and only task.Start until the process answers is timed.
func (f *Floors) Start(ctx context.Context) (time.Duration, error) {
	ctx = f.ns(ctx)
	port, err := freePort()
	if err != nil {
		return 0, err
	}
	c, task, err := f.newTask(ctx, port, nil)
	if err != nil {
		return 0, err
	}
	defer deleteContainer(ctx, c)
	start := time.Now()
	if err := task.Start(ctx); err != nil {
		return 0, fmt.Errorf("start floor: %w", err)
	}
	err = waitHTTP(ctx, loopback(port), probeInterval, 10*time.Second)
	return time.Since(start), err
}

// StartReleased is Start the way the node agent starts a pre-created
// task: the shim runs ebb-runc, runcstart.Release lets the program go by
// opening its exec fifo, and containerd's task.Start follows once the
// program answers, untimed.
func (f *Floors) StartReleased(ctx context.Context) (time.Duration, error) {
	ctx = f.ns(ctx)
	port, err := freePort()
	if err != nil {
		return 0, err
	}
	c, task, err := f.newTask(ctx, port, &runcoptions.Options{BinaryName: f.ebbRunc})
	if err != nil {
		return 0, err
	}
	defer deleteContainer(ctx, c)
	start := time.Now()
	if err := runcstart.Release(filepath.Join(runcstart.ShimRoot, floorNamespace), c.ID()); err != nil {
		return 0, fmt.Errorf("released floor: %w", err)
	}
	err = waitHTTP(ctx, loopback(port), probeInterval, 10*time.Second)
	d := time.Since(start)
	if err != nil {
		return 0, err
	}
	if err := task.Start(ctx); err != nil {
		return 0, fmt.Errorf("released floor: containerd's start: %w", err)
	}
	return d, nil
}

// newTask creates a container and its task; runtimeOptions are the runc
// shim's, nil for its defaults.
func (f *Floors) newTask(ctx context.Context, port int, runtimeOptions any) (containerd.Container, containerd.Task, error) {
	f.seq++
	id := fmt.Sprintf("floor-%d-%d", os.Getpid(), f.seq)
	c, err := f.client.NewContainer(ctx, id,
		containerd.WithRuntime(plugin.RuntimeRuncV2, runtimeOptions),
		containerd.WithImage(f.image),
		containerd.WithSnapshotter(imagestore.DefaultSnapshotter),
		containerd.WithNewSnapshot(id, f.image),
		containerd.WithNewSpec(
			oci.WithImageConfig(f.image),
			oci.WithHostNamespace(specs.NetworkNamespace),
			oci.WithHostHostsFile,
			oci.WithHostResolvconf,
			oci.WithEnv([]string{"PORT=" + strconv.Itoa(port)}),
		))
	if err != nil {
		return nil, nil, fmt.Errorf("new container: %w", err)
	}
	task, err := c.NewTask(ctx, cio.NullIO)
	if err != nil {
		deleteContainer(ctx, c)
		return nil, nil, fmt.Errorf("new task: %w", err)
	}
	return c, task, nil
}

// deleteContainer kills and deletes the task, then the container and its
// snapshot. It is cleanup: errors only mean there was less to delete.
func deleteContainer(ctx context.Context, c containerd.Container) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if task, err := c.Task(ctx, nil); err == nil {
		exited, werr := task.Wait(ctx)
		if err := task.Kill(ctx, syscall.SIGKILL); err == nil && werr == nil {
			select {
			case <-exited:
			case <-ctx.Done():
			}
		}
		_, _ = task.Delete(ctx, containerd.WithProcessKill)
	}
	_ = c.Delete(ctx, containerd.WithSnapshotCleanup)
}

// freePort asks the kernel for a free loopback port. It is outside the node
// agent's replica range (20000-29999) because the kernel hands out
// ephemeral ports (32768 and up by default).
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
