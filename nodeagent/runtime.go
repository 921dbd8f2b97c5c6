package nodeagent

import (
	"context"
	"errors"
	"io"
	"syscall"
	"time"
)

// Errors a Runtime wraps so the agent can tell a bad image from a transient
// failure.
var (
	// ErrNotFound means the container, task or image does not exist.
	ErrNotFound = errors.New("not found")
	// ErrBadImage means the image cannot run at all: no entrypoint, an
	// entrypoint that does not exist or is not executable, or one built for
	// another architecture. Retrying does not help; the revision is Failed.
	ErrBadImage = errors.New("bad image")
	// ErrNoRelease means a Task cannot run its program ahead of Start;
	// nothing was done, and Start does it all.
	ErrNoRelease = errors.New("runtime cannot release a task before its start")
)

// Labels the agent puts on every container, so that a restarted agent can
// find what it owns.
const (
	LabelNode     = "ebb.node"
	LabelFunction = "ebb.function"
	LabelRevision = "ebb.revision"
	LabelReplica  = "ebb.replica"
	LabelPort     = "ebb.port"
	// LabelNetwork says whether the replica has a network namespace of
	// its own ("isolated") or shares the host's ("host").
	LabelNetwork = "ebb.network"
)

// Runtime runs containers. nodeagent/containerd implements it with
// containerd; the agent's unit tests use a fake. Every method is safe for
// concurrent use.
type Runtime interface {
	// Image returns the config of an image the node holds, unpacked and
	// ready to run. It wraps ErrNotFound if the node does not hold it.
	Image(ctx context.Context, ref string) (ImageConfig, error)
	// CheckExecutable verifies that argv0, looked up in the PATH of env when
	// it has no slash, is a program the node can execute inside the image.
	// It wraps ErrBadImage with a message a developer can act on.
	CheckExecutable(ctx context.Context, ref, argv0 string, env []string) error
	// Images lists the image references the node holds.
	Images(ctx context.Context) ([]string, error)
	// Pull fetches an image the node lacks from src and unpacks it, so that
	// Image finds it by ref afterwards. A registry's refusal (401, 404) or
	// a registry that cannot be reached is returned with the registry's
	// message. The agent calls Pull once per image at a time.
	Pull(ctx context.Context, ref string, src PullSource) error
	// Create makes the container and its root filesystem, without a task.
	Create(ctx context.Context, spec ContainerSpec) error
	// NewTask creates the container's task: the process exists but has not
	// run a single instruction of the program, waiting for Task.Start. A
	// previous task that has exited is deleted first.
	NewTask(ctx context.Context, id string, out Output) (Task, error)
	// Attach returns the container's existing task, its output reattached to
	// out. It wraps ErrNotFound if the container has no task.
	Attach(ctx context.Context, id string, out Output) (Task, error)
	// List returns the containers labelled with LabelNode = node.
	List(ctx context.Context, node string) ([]Container, error)
	// Delete kills the container's process if it runs and removes its task,
	// the container and its root filesystem. A missing container is not an
	// error.
	Delete(ctx context.Context, id string) error
}

// Task is a container's process.
type Task interface {
	// Pid is the process id on the host.
	Pid() uint32
	// State reports where the task is in its life.
	State(ctx context.Context) (TaskState, error)
	// Release lets a created task's program run now, ahead of Start, where
	// the runtime can do that without its own bookkeeping, which can cost a
	// cold start as much as the program's own start. Start must follow,
	// and then only records the start. Release wraps ErrNoRelease, having
	// done nothing, where the runtime cannot; on any error Start still
	// does the whole start, or says why it cannot.
	Release(ctx context.Context) error
	// Start runs a created task's program, or records that Release ran
	// it. State reports created until it returns.
	Start(ctx context.Context) error
	// Signal sends sig to the process.
	Signal(ctx context.Context, sig syscall.Signal) error
	// Done is closed once the process has exited.
	Done() <-chan struct{}
	// Exit is how the process ended; valid once Done is closed.
	Exit() Exit
}

// TaskState is a task's place in its life.
type TaskState string

const (
	TaskCreated TaskState = "created" // exists, program not started
	TaskRunning TaskState = "running"
	TaskStopped TaskState = "stopped" // exited; Exit tells how
	TaskOther   TaskState = "other"   // paused, pausing or unknown
)

// Exit is how a process ended.
type Exit struct {
	// Code is the exit status; 128+n for a death by signal n, as shells report.
	Code int
	At   time.Time
	// Err is set when the runtime lost track of the process and Code is
	// meaningless.
	Err error
}

// Output is where a task's stdout and stderr go.
type Output struct {
	Stdout io.Writer
	Stderr io.Writer
}

// PullSource says where and how a Runtime pulls an image.
type PullSource struct {
	// Mirror, if set, is a registry (host:port) to fetch the image from in
	// place of the one its reference names, with the reference's domain
	// as the first part of the repository: the control plane's registry
	// of uploaded images serves docker.io/library/hello:v1 at
	// /v2/docker.io/library/hello/manifests/v1.
	Mirror string
	// PlainHTTP speaks HTTP rather than HTTPS to the registry.
	PlainHTTP bool
	// Username and Password are the registry's credentials (basic, or for
	// its token service); empty pulls anonymously.
	Username string
	Password string
	// Bearer, if set, is sent as the Authorization on every request: the
	// node credential the control plane's registry takes.
	Bearer string
}

// ImageConfig is what the agent needs from an image's config.
type ImageConfig struct {
	Ref        string
	Digest     string
	Entrypoint []string
	Cmd        []string
	Env        []string
	WorkingDir string
	User       string
}

// Container is a container the runtime holds.
type Container struct {
	ID     string
	Image  string
	Labels map[string]string
}

// ContainerSpec is everything a runtime needs to create one replica's
// container. The agent computes it; the runtime translates it.
type ContainerSpec struct {
	// ID names the container, its snapshot and its task.
	ID     string
	Image  string
	Labels map[string]string
	// Args is the complete argv, Env the complete environment: the image's
	// own config has already been applied. The runtime takes the working
	// directory and user from the image.
	Args []string
	Env  []string
	// CPU is the CFS quota in cores.
	CPU float64
	// MemoryBytes limits memory; PidsLimit the number of tasks.
	MemoryBytes int64
	PidsLimit   int64
	// TmpBytes sizes the writable tmpfs at /tmp; the rootfs is read-only.
	TmpBytes int64
	// SecretsDir, if set, is a host directory on a tmpfs bind-mounted
	// read-only at /run/secrets. The runtime gives it and its files to the
	// container's user (the files stay 0400).
	SecretsDir string
	// SecretEnvFile, if set, is a file on a tmpfs of secret variables
	// (KEY=VALUE, each ended by NUL) that the program gets in its
	// environment at start, without their values entering the spec that
	// containerd persists (cmd/ebb-launch). The runtime gives it to the
	// container's user.
	SecretEnvFile string
	// NetnsPath is the network namespace to join, which the agent's Network
	// prepared; empty means the host's.
	NetnsPath string
	// UserNS, if set, runs the container in a user namespace of its own
	// with this mapping, and its root filesystem owned by the mapped ids.
	// Nil keeps the host's user namespace (--isolation off).
	UserNS *IDMap
	// DefaultUser is the "uid:gid" the container runs as when its image
	// names no USER ("65532:65532"); empty means root. An image's USER is
	// always honoured, "0" included.
	DefaultUser string
}

// IDMap maps the container's user and group ids 0..Size-1 to the host's
// HostID..HostID+Size-1, the same for uids and gids. Ids outside it do
// not exist in the container (they show as the overflow id, 65534).
type IDMap struct {
	HostID uint32
	Size   uint32
}
