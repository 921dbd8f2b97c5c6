package containerd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd"
	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/content"
	"github.com/containerd/containerd/contrib/seccomp"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/leases"
	"github.com/containerd/containerd/mount"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/oci"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sync/singleflight"

	"github.com/ebbrun/ebb/internal/ociimage"
	"github.com/ebbrun/ebb/internal/runcstart"
	"github.com/ebbrun/ebb/nodeagent"
)

var _ nodeagent.Runtime = (*Runtime)(nil)

// Defaults for Config fields left zero.
const (
	DefaultNamespace   = "ebb"
	DefaultSnapshotter = "overlayfs"
	DefaultRuntime     = "io.containerd.runc.v2"
	DefaultFIFODir     = "/run/ebb/fifo"
	cfsPeriod          = 100000 // µs, the kernel's default CFS period
)

// Config says where in containerd the runtime works.
type Config struct {
	// Namespace is the containerd namespace. Default "ebb".
	Namespace string
	// Snapshotter unpacks images and holds root filesystems. Default
	// "overlayfs".
	Snapshotter string
	// Runtime is the containerd shim. Default "io.containerd.runc.v2".
	Runtime string
	// FIFODir holds the fifos that carry process output to the agent; it
	// must survive an agent restart (not a private tmp dir) so a restarted
	// agent can reattach. Default /run/ebb/fifo.
	FIFODir string
	// RuncBinary is the absolute path of the OCI runtime binary the runc
	// shim runs in place of runc, set on each container it creates:
	// cmd/ebb-runc, which starts a pre-created task without starting runc.
	// Empty means runc. It needs the runc shim (Runtime
	// "io.containerd.runc.v2").
	RuncBinary string
	// Launcher is the absolute path of cmd/ebb-launch, a static binary
	// bind-mounted into replicas that have secret environment variables, to
	// set them at start from a tmpfs file instead of the spec. Empty refuses
	// such replicas.
	Launcher string
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.Namespace == "" {
		c.Namespace = DefaultNamespace
	}
	if c.Snapshotter == "" {
		c.Snapshotter = DefaultSnapshotter
	}
	if c.Runtime == "" {
		c.Runtime = DefaultRuntime
	}
	if c.FIFODir == "" {
		c.FIFODir = DefaultFIFODir
	}
	return c
}

// Validate reports the first problem with a defaulted Config.
func (c Config) Validate() error {
	if !filepath.IsAbs(c.FIFODir) {
		return fmt.Errorf("fifo dir %q must be absolute", c.FIFODir)
	}
	if strings.ContainsAny(c.Namespace, "/ ") || c.Namespace == "" {
		return fmt.Errorf("namespace %q is not a containerd namespace", c.Namespace)
	}
	if c.RuncBinary != "" {
		if !filepath.IsAbs(c.RuncBinary) {
			return fmt.Errorf("runc binary %q must be an absolute path", c.RuncBinary)
		}
		if c.Runtime != DefaultRuntime {
			return fmt.Errorf("runc binary %q needs runtime %s, not %s", c.RuncBinary, DefaultRuntime, c.Runtime)
		}
	}
	return nil
}

// Runtime implements nodeagent.Runtime with containerd and runc.
type Runtime struct {
	client *containerd.Client
	cfg    Config

	mu         sync.Mutex
	images     map[string]*imageEntry          // by normalized name
	containers map[string]containerd.Container // created or loaded, by id
	tasks      map[string]*task                // live handles, by container id
	remaps     singleflight.Group              // remapped root filesystems being made, by key
}

// imageEntry caches what creating a container from an image needs, so the
// path of a cold start without a pre-created task reads nothing twice.
type imageEntry struct {
	image   containerd.Image
	config  ocispec.ImageConfig
	chainID string
}

// New returns a Runtime over client, which the caller keeps and closes.
func New(client *containerd.Client, cfg Config) (*Runtime, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Runtime{
		client:     client,
		cfg:        cfg,
		images:     map[string]*imageEntry{},
		containers: map[string]containerd.Container{},
		tasks:      map[string]*task{},
	}, nil
}

// Close stops watching the tasks the runtime knows. It leaves containers
// and tasks running and does not close the client, which the caller owns:
// call Close after the agent's Run has returned and before closing the
// client.
func (r *Runtime) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, h := range r.tasks {
		h.stopWatching()
		delete(r.tasks, id)
	}
}

func (r *Runtime) ns(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, r.cfg.Namespace)
}

func wrapNotFound(err error) error {
	if errdefs.IsNotFound(err) {
		return fmt.Errorf("%w: %v", nodeagent.ErrNotFound, err)
	}
	return err
}

// Image implements nodeagent.Runtime. It reads the image afresh (a name may
// have been pushed again) and unpacks it if the snapshotter lacks it.
func (r *Runtime) Image(ctx context.Context, ref string) (nodeagent.ImageConfig, error) {
	ctx = r.ns(ctx)
	name, err := ociimage.NormalizeName(ref)
	if err != nil {
		return nodeagent.ImageConfig{}, fmt.Errorf("%w: %v", nodeagent.ErrBadImage, err)
	}
	img, err := r.client.GetImage(ctx, name)
	if err != nil {
		return nodeagent.ImageConfig{}, fmt.Errorf("image %s: %w", name, wrapNotFound(err))
	}
	unpacked, err := img.IsUnpacked(ctx, r.cfg.Snapshotter)
	if err != nil {
		return nodeagent.ImageConfig{}, fmt.Errorf("image %s: %w", name, err)
	}
	if !unpacked {
		if err := img.Unpack(ctx, r.cfg.Snapshotter); err != nil {
			return nodeagent.ImageConfig{}, fmt.Errorf("unpack image %s: %w", name, err)
		}
	}
	desc, err := img.Config(ctx)
	if err != nil {
		return nodeagent.ImageConfig{}, fmt.Errorf("image %s config: %w", name, err)
	}
	raw, err := content.ReadBlob(ctx, img.ContentStore(), desc)
	if err != nil {
		return nodeagent.ImageConfig{}, fmt.Errorf("image %s config: %w", name, err)
	}
	var oci ocispec.Image
	if err := json.Unmarshal(raw, &oci); err != nil {
		return nodeagent.ImageConfig{}, fmt.Errorf("%w: image %s config: %v", nodeagent.ErrBadImage, name, err)
	}
	diffIDs, err := img.RootFS(ctx)
	if err != nil {
		return nodeagent.ImageConfig{}, fmt.Errorf("image %s layers: %w", name, err)
	}
	r.mu.Lock()
	r.images[name] = &imageEntry{image: img, config: oci.Config, chainID: identity.ChainID(diffIDs).String()}
	r.mu.Unlock()
	return nodeagent.ImageConfig{
		Ref:        name,
		Digest:     img.Target().Digest.String(),
		Entrypoint: oci.Config.Entrypoint,
		Cmd:        oci.Config.Cmd,
		Env:        oci.Config.Env,
		WorkingDir: oci.Config.WorkingDir,
		User:       oci.Config.User,
	}, nil
}

func (r *Runtime) image(ctx context.Context, ref string) (*imageEntry, error) {
	name, err := ociimage.NormalizeName(ref)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", nodeagent.ErrBadImage, err)
	}
	r.mu.Lock()
	e := r.images[name]
	r.mu.Unlock()
	if e != nil {
		return e, nil
	}
	if _, err := r.Image(ctx, name); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.images[name], nil
}

// CheckExecutable implements nodeagent.Runtime: it mounts a read-only view
// of the image and inspects the entrypoint there.
func (r *Runtime) CheckExecutable(ctx context.Context, ref, argv0 string, env []string) error {
	ctx = r.ns(ctx)
	e, err := r.image(ctx, ref)
	if err != nil {
		return err
	}
	// A lease keeps containerd's garbage collector off the view while it
	// exists; removing the lease removes nothing we still need.
	ctx, done, err := r.client.WithLease(ctx, leases.WithRandomID(), leases.WithExpiration(time.Minute))
	if err != nil {
		return fmt.Errorf("check entrypoint: %w", err)
	}
	defer done(context.WithoutCancel(ctx))
	sn := r.client.SnapshotService(r.cfg.Snapshotter)
	key := fmt.Sprintf("ebb-check-%d", time.Now().UnixNano())
	mounts, err := sn.View(ctx, key, e.chainID)
	if err != nil {
		return fmt.Errorf("check entrypoint: view image: %w", err)
	}
	defer sn.Remove(context.WithoutCancel(ctx), key)
	var checkErr error
	if err := mount.WithReadonlyTempMount(ctx, mounts, func(root string) error {
		checkErr = checkExecutable(root, argv0, pathOf(env))
		return nil
	}); err != nil {
		return fmt.Errorf("check entrypoint: mount image: %w", err)
	}
	return checkErr
}

// Images implements nodeagent.Runtime.
func (r *Runtime) Images(ctx context.Context) ([]string, error) {
	imgs, err := r.client.ImageService().List(r.ns(ctx))
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	out := make([]string, 0, len(imgs))
	for _, img := range imgs {
		out = append(out, img.Name)
	}
	sort.Strings(out)
	return out, nil
}

// Create implements nodeagent.Runtime.
func (r *Runtime) Create(ctx context.Context, spec nodeagent.ContainerSpec) error {
	ctx = r.ns(ctx)
	e, err := r.image(ctx, spec.Image)
	if err != nil {
		return err
	}
	if spec.SecretEnvFile != "" && r.cfg.Launcher == "" {
		return fmt.Errorf("create container %s: it has secret environment variables and no ebb-launch is configured to set them", spec.ID)
	}
	snapshot := containerd.WithNewSnapshot(spec.ID, e.image)
	if spec.UserNS != nil {
		if err := validIDMap(*spec.UserNS); err != nil {
			return fmt.Errorf("create container %s: %w", spec.ID, err)
		}
		snapshot = r.withRemappedSnapshot(spec.ID, e, *spec.UserNS)
	}
	c, err := r.client.NewContainer(ctx, spec.ID,
		containerd.WithImageName(e.image.Name()),
		containerd.WithSnapshotter(r.cfg.Snapshotter),
		snapshot,
		containerd.WithRuntime(r.cfg.Runtime, r.runtimeOptions()),
		containerd.WithContainerLabels(spec.Labels),
		containerd.WithNewSpec(specOpts(spec, e.config, r.cfg.Launcher)...),
	)
	if err != nil {
		return fmt.Errorf("create container %s: %w", spec.ID, err)
	}
	r.mu.Lock()
	r.containers[spec.ID] = c
	r.mu.Unlock()
	return nil
}

// runtimeOptions are the shim options of a new container: the runc binary
// to run, when it is not runc.
func (r *Runtime) runtimeOptions() any {
	if r.cfg.RuncBinary == "" {
		return nil
	}
	return &runcoptions.Options{BinaryName: r.cfg.RuncBinary}
}

// RuncBinaries returns the runc binaries other than runc that the shims of
// the namespace's containers run, each with the containers that use it.
// The shim runs the binary it was given for a container's whole life, so a
// container whose binary has gone can be neither stopped nor deleted.
func (r *Runtime) RuncBinaries(ctx context.Context) (map[string][]string, error) {
	ctx = r.ns(ctx)
	cs, err := r.client.Containers(ctx)
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	out := map[string][]string{}
	for _, c := range cs {
		info, err := c.Info(ctx, containerd.WithoutRefreshedMetadata)
		if err != nil {
			continue
		}
		if opts := runcOptions(info); opts != nil && opts.BinaryName != "" {
			out[opts.BinaryName] = append(out[opts.BinaryName], c.ID())
		}
	}
	return out, nil
}

// runcOptions are the runc shim options a container was created with, nil
// when it has none (the shim's defaults) or they are not the runc shim's.
func runcOptions(info containers.Container) *runcoptions.Options {
	if info.Runtime.Options == nil {
		return nil
	}
	v, err := typeurl.UnmarshalAny(info.Runtime.Options)
	if err != nil {
		return nil
	}
	opts, _ := v.(*runcoptions.Options)
	return opts
}

// specOpts is the OCI spec of a replica: the image's working directory and
// user (or spec.DefaultUser when the image names none), the agent's argv
// and environment, and the isolation ebb promises: read-only rootfs with a
// tmpfs /tmp, no new privileges, containerd's default seccomp profile, the
// small capability set of replicaCaps, runc's masked and read-only paths,
// and, with spec.UserNS, a user namespace of its own; with its limits.
// Secret variables stay out of it: launcher sets them at start from
// spec.SecretEnvFile.
func specOpts(spec nodeagent.ContainerSpec, img ocispec.ImageConfig, launcher string) []oci.SpecOpts {
	cwd := img.WorkingDir
	if cwd == "" {
		cwd = "/"
	}
	args := spec.Args
	if spec.SecretEnvFile != "" {
		args = append([]string{launcherPath, secretEnvPath}, args...)
	}
	user := img.User
	if user == "" {
		user = spec.DefaultUser
	}
	opts := []oci.SpecOpts{
		oci.WithProcessArgs(args...),
		withExactEnv(spec.Env),
		oci.WithProcessCwd(cwd),
		withUser(user),
		oci.WithRootFSReadonly(),
		oci.WithNoNewPrivileges,
		withMaskedPaths,
		oci.WithMounts([]specs.Mount{{
			Destination: "/tmp", Type: "tmpfs", Source: "tmpfs",
			Options: []string{"nosuid", "nodev", "mode=1777", "size=" + strconv.FormatInt(spec.TmpBytes, 10)},
		}}),
		oci.WithMemoryLimit(uint64(spec.MemoryBytes)),
		oci.WithPidsLimit(spec.PidsLimit),
		oci.WithCPUCFS(int64(spec.CPU*cfsPeriod), cfsPeriod),
	}
	if spec.NetnsPath == "" {
		opts = append(opts, oci.WithHostNamespace(specs.NetworkNamespace), oci.WithHostHostsFile, oci.WithHostResolvconf)
	} else {
		opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: spec.NetnsPath}))
	}
	if spec.UserNS != nil {
		m := []specs.LinuxIDMapping{{ContainerID: 0, HostID: spec.UserNS.HostID, Size: spec.UserNS.Size}}
		opts = append(opts, oci.WithUserNamespace(m, m), withEmptySys)
	}
	if spec.SecretsDir != "" {
		opts = append(opts, oci.WithMounts([]specs.Mount{{
			Destination: "/run/secrets", Type: "bind", Source: spec.SecretsDir,
			Options: []string{"rbind", "ro", "nosuid", "nodev", "noexec"},
		}}))
	}
	if spec.SecretEnvFile != "" {
		opts = append(opts, oci.WithMounts([]specs.Mount{
			{Destination: launcherPath, Type: "bind", Source: launcher, Options: []string{"rbind", "ro", "nosuid", "nodev"}},
			{Destination: secretEnvPath, Type: "bind", Source: spec.SecretEnvFile, Options: []string{"rbind", "ro", "nosuid", "nodev", "noexec"}},
		}))
	}
	// Last, once the user is known: the capabilities depend on it, the
	// seccomp profile on the capabilities.
	return append(opts,
		withMappedUser(spec.UserNS),
		withCapabilities,
		seccomp.WithDefaultProfile(),
		withSecretsOwner(spec.SecretsDir, spec.SecretEnvFile, spec.UserNS),
	)
}

// replicaCaps bound what any replica's process can ever hold: what a plain
// HTTP server (and an image whose USER is root and drops to another user,
// or chowns its files) needs, and nothing else. Not NET_RAW (raw and
// packet sockets: sniffing), MKNOD, DAC_OVERRIDE, SYS_CHROOT, SETFCAP,
// SETPCAP or AUDIT_WRITE, which containerd's default set has.
// NET_BIND_SERVICE lets root bind ports below 1024; in a replica's own
// network namespace, whose unprivileged port start is 0, nobody needs it.
var replicaCaps = []string{
	"CAP_CHOWN", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_NET_BIND_SERVICE",
}

// withCapabilities bounds the process to replicaCaps, and gives them to it
// (effective and permitted) only when it runs as uid 0: another user gets
// none, as a non-root process of the host would, and no ambient
// capabilities survive its exec.
func withCapabilities(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
	var held []string
	if s.Process.User.UID == 0 {
		held = replicaCaps
	}
	s.Process.Capabilities = &specs.LinuxCapabilities{
		Bounding:  append([]string(nil), replicaCaps...),
		Effective: append([]string(nil), held...),
		Permitted: append([]string(nil), held...),
	}
	return nil
}

// withMaskedPaths states runc's default masked and read-only paths (those
// of `runc spec`, which containerd's defaults happen to hold today, plus
// its /sys/devices/virtual/powercap), so that a change of containerd's
// defaults cannot silently unmask them: /proc/kcore and the like read as
// empty, /proc/sys cannot be written.
func withMaskedPaths(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
	s.Linux.MaskedPaths = []string{
		"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
		"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
		"/sys/firmware", "/sys/devices/virtual/powercap",
	}
	s.Linux.ReadonlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
	return nil
}

// Where a replica sees ebb-launch and its secret variables.
const (
	launcherPath  = "/run/ebb/launch"
	secretEnvPath = "/run/ebb/secret-env"
)

// withSecretsOwner gives the secret files, which the node agent writes
// 0400 (their directory 0500) and root's, to the user the container runs
// as, so that it and no other user of the host can read them: in a user
// namespace of its own, to the host ids that user maps to. Every replica
// of a revision runs as the same user, so doing it again for each is
// harmless.
func withSecretsOwner(dir, envFile string, userNS *nodeagent.IDMap) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
		if dir == "" && envFile == "" {
			return nil
		}
		uid, gid, err := hostIDs(s.Process.User.UID, s.Process.User.GID, userNS)
		if err != nil {
			return fmt.Errorf("give secrets to the container's user: %w", err)
		}
		var paths []string
		if dir != "" {
			entries, err := os.ReadDir(dir)
			if err != nil {
				return fmt.Errorf("secrets dir: %w", err)
			}
			paths = append(paths, dir)
			for _, e := range entries {
				paths = append(paths, filepath.Join(dir, e.Name()))
			}
		}
		if envFile != "" {
			paths = append(paths, envFile)
		}
		for _, p := range paths {
			if err := os.Lchown(p, int(uid), int(gid)); err != nil {
				return fmt.Errorf("give secrets to the container's user: %w", err)
			}
		}
		return nil
	}
}

// withMappedUser refuses a user the user namespace does not map, which
// runc could not start.
func withMappedUser(userNS *nodeagent.IDMap) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
		_, _, err := hostIDs(s.Process.User.UID, s.Process.User.GID, userNS)
		return err
	}
}

// hostIDs are the host's ids of the container's uid and gid: the same
// without a user namespace, shifted into its range with one. An id the
// namespace does not map is an error: no host id would let that user read
// its files.
func hostIDs(uid, gid uint32, userNS *nodeagent.IDMap) (hostUID, hostGID uint32, err error) {
	if userNS == nil {
		return uid, gid, nil
	}
	if uid >= userNS.Size || gid >= userNS.Size {
		return 0, 0, fmt.Errorf("user %d:%d is outside the user namespace's %d ids", uid, gid, userNS.Size)
	}
	return userNS.HostID + uid, userNS.HostID + gid, nil
}

func withExactEnv(env []string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
		s.Process.Env = append([]string(nil), env...)
		return nil
	}
}

// withUser sets a numeric user directly; only a user name needs the image's
// /etc/passwd, which means mounting the root filesystem.
func withUser(user string) oci.SpecOpts {
	if user == "" {
		return oci.WithUIDGID(0, 0)
	}
	uidStr, gidStr, hasGID := strings.Cut(user, ":")
	uid, err1 := strconv.ParseUint(uidStr, 10, 32)
	gid, err2 := strconv.ParseUint(gidStr, 10, 32)
	switch {
	case err1 == nil && !hasGID:
		return oci.WithUserID(uint32(uid))
	case err1 == nil && err2 == nil:
		return oci.WithUIDGID(uint32(uid), uint32(gid))
	}
	return oci.WithUser(user)
}

func (r *Runtime) container(ctx context.Context, id string) (containerd.Container, error) {
	r.mu.Lock()
	c := r.containers[id]
	r.mu.Unlock()
	if c != nil {
		return c, nil
	}
	c, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", id, wrapNotFound(err))
	}
	r.mu.Lock()
	r.containers[id] = c
	r.mu.Unlock()
	return c, nil
}

// NewTask implements nodeagent.Runtime.
func (r *Runtime) NewTask(ctx context.Context, id string, out nodeagent.Output) (nodeagent.Task, error) {
	ctx = r.ns(ctx)
	c, err := r.container(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := r.deleteTask(ctx, c, false); err != nil {
		return nil, err
	}
	creator := cio.NewCreator(cio.WithStreams(nil, out.Stdout, out.Stderr), cio.WithFIFODir(r.cfg.FIFODir))
	t, err := c.NewTask(ctx, creator)
	if err != nil {
		return nil, fmt.Errorf("create task %s: %w", id, err)
	}
	h, err := r.watch(t, r.releaseRoot(ctx, c))
	if err != nil {
		_, _ = t.Delete(ctx, containerd.WithProcessKill)
		return nil, err
	}
	return h, nil
}

// Attach implements nodeagent.Runtime.
func (r *Runtime) Attach(ctx context.Context, id string, out nodeagent.Output) (nodeagent.Task, error) {
	ctx = r.ns(ctx)
	c, err := r.container(ctx, id)
	if err != nil {
		return nil, err
	}
	t, err := c.Task(ctx, cio.NewAttach(cio.WithStreams(nil, out.Stdout, out.Stderr)))
	if err != nil && !errdefs.IsNotFound(err) {
		// The fifos are gone (a reboot of /run, say): keep the process,
		// lose its output until its next restart.
		t, err = c.Task(ctx, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("task of %s: %w", id, wrapNotFound(err))
	}
	h, err := r.watch(t, r.releaseRoot(ctx, c))
	if err != nil {
		return nil, err
	}
	// An agent that released the task and stopped before its Start leaves
	// a running program that containerd calls created: finish the start,
	// so the task is what it is.
	if h.releaseRoot != "" && runcstart.Released(h.releaseRoot, id) {
		if err := h.Start(ctx); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// releaseRoot is runc's state root for c's namespace when c's shim runs
// ebb-runc (Config.RuncBinary), which can complete a start that
// runcstart.Release began; "" otherwise, and then its task cannot be
// released.
func (r *Runtime) releaseRoot(ctx context.Context, c containerd.Container) string {
	if r.cfg.RuncBinary == "" {
		return ""
	}
	info, err := c.Info(ctx, containerd.WithoutRefreshedMetadata)
	if err != nil || info.Runtime.Name != DefaultRuntime {
		return ""
	}
	opts := runcOptions(info)
	if opts == nil || opts.BinaryName != r.cfg.RuncBinary {
		return ""
	}
	root := opts.Root
	if root == "" {
		root = runcstart.ShimRoot
	}
	return filepath.Join(root, r.cfg.Namespace)
}

// List implements nodeagent.Runtime.
func (r *Runtime) List(ctx context.Context, node string) ([]nodeagent.Container, error) {
	ctx = r.ns(ctx)
	cs, err := r.client.Containers(ctx, fmt.Sprintf("labels.%q==%q", nodeagent.LabelNode, node))
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	out := make([]nodeagent.Container, 0, len(cs))
	for _, c := range cs {
		info, err := c.Info(ctx, containerd.WithoutRefreshedMetadata)
		if err != nil {
			return nil, fmt.Errorf("container %s: %w", c.ID(), err)
		}
		out = append(out, nodeagent.Container{ID: c.ID(), Image: info.Image, Labels: info.Labels})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Delete implements nodeagent.Runtime.
func (r *Runtime) Delete(ctx context.Context, id string) error {
	ctx = r.ns(ctx)
	c, err := r.container(ctx, id)
	if errors.Is(err, nodeagent.ErrNotFound) {
		r.forget(id)
		return nil
	}
	if err != nil {
		return err
	}
	if err := r.deleteTask(ctx, c, true); err != nil {
		return err
	}
	if err := c.Delete(ctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("delete container %s: %w", id, err)
	}
	r.forget(id)
	return nil
}

func (r *Runtime) forget(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.containers, id)
	if h := r.tasks[id]; h != nil {
		h.stopWatching()
		delete(r.tasks, id)
	}
}

// deleteTask removes the container's task, through our handle when there is
// one so its output is flushed and its fifos removed. A running task is
// killed only when kill is set; otherwise it is an error.
func (r *Runtime) deleteTask(ctx context.Context, c containerd.Container, kill bool) error {
	r.mu.Lock()
	h := r.tasks[c.ID()]
	delete(r.tasks, c.ID())
	r.mu.Unlock()
	var t containerd.Task
	if h != nil {
		t = h.t
		defer h.stopWatching()
	} else {
		var err error
		if t, err = c.Task(ctx, nil); errdefs.IsNotFound(err) {
			return nil
		} else if err != nil {
			return fmt.Errorf("task of %s: %w", c.ID(), err)
		}
	}
	st, err := t.Status(ctx)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("task of %s: %w", c.ID(), err)
	}
	var opts []containerd.ProcessDeleteOpts
	if st.Status != containerd.Stopped {
		if !kill {
			return fmt.Errorf("container %s still has a %s task", c.ID(), st.Status)
		}
		opts = append(opts, containerd.WithProcessKill)
	}
	if _, err := t.Delete(ctx, opts...); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("delete task of %s: %w", c.ID(), err)
	}
	return nil
}

// watch wraps t in a handle that learns of the process's exit.
// releaseRoot is runc's state root for a task that Release can start, ""
// for one it cannot.
func (r *Runtime) watch(t containerd.Task, releaseRoot string) (*task, error) {
	wctx, cancel := context.WithCancel(r.ns(context.Background()))
	exitc, err := t.Wait(wctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("wait on task %s: %w", t.ID(), err)
	}
	h := &task{t: t, ns: r.ns, releaseRoot: releaseRoot, cancel: cancel, done: make(chan struct{})}
	go h.await(wctx, exitc)
	r.mu.Lock()
	if old := r.tasks[t.ID()]; old != nil && old != h {
		old.stopWatching()
	}
	r.tasks[t.ID()] = h
	r.mu.Unlock()
	return h, nil
}

// task is a nodeagent.Task over a containerd task.
type task struct {
	t  containerd.Task
	ns func(context.Context) context.Context
	// releaseRoot is runc's state root when the task's shim runs ebb-runc,
	// "" when Release cannot start it.
	releaseRoot string
	cancel      context.CancelFunc
	done        chan struct{}
	exit        nodeagent.Exit // written before done is closed
}

// await waits for the exit. If the wait breaks without one (containerd
// restarted) it waits again, and reports the process lost only when its
// task is gone or containerd stays away.
func (h *task) await(ctx context.Context, exitc <-chan containerd.ExitStatus) {
	for attempt := 0; ; attempt++ {
		if exitc != nil {
			var st containerd.ExitStatus
			select {
			case st = <-exitc:
			case <-ctx.Done():
				return
			}
			code, at, err := st.Result()
			if err == nil {
				h.exit = nodeagent.Exit{Code: int(code), At: at}
				close(h.done)
				return
			}
		}
		if ctx.Err() != nil {
			return
		}
		t := time.NewTimer(min(time.Duration(attempt+1)*100*time.Millisecond, 2*time.Second))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		var err error
		if exitc, err = h.t.Wait(ctx); err != nil {
			if errdefs.IsNotFound(err) || attempt >= 60 {
				h.exit = nodeagent.Exit{Code: -1, At: time.Now(), Err: err}
				close(h.done)
				return
			}
			exitc = nil
		}
	}
}

func (h *task) stopWatching() { h.cancel() }

func (h *task) Pid() uint32 { return h.t.Pid() }

func (h *task) State(ctx context.Context) (nodeagent.TaskState, error) {
	st, err := h.t.Status(h.ns(ctx))
	if err != nil {
		return nodeagent.TaskOther, wrapNotFound(err)
	}
	switch st.Status {
	case containerd.Created:
		return nodeagent.TaskCreated, nil
	case containerd.Running:
		return nodeagent.TaskRunning, nil
	case containerd.Stopped:
		return nodeagent.TaskStopped, nil
	}
	return nodeagent.TaskOther, nil
}

// Release opens the task's exec fifo itself, as ebb-runc would, so that
// the program runs before containerd's shim is even asked. The shim's
// start, through ebb-runc, then finds runcstart's marker and succeeds.
func (h *task) Release(ctx context.Context) error {
	if h.releaseRoot == "" {
		return nodeagent.ErrNoRelease
	}
	if err := runcstart.Release(h.releaseRoot, h.t.ID()); err != nil {
		if errors.Is(err, runcstart.ErrUseRunc) {
			return fmt.Errorf("%w: %v", nodeagent.ErrNoRelease, err)
		}
		return fmt.Errorf("release task %s: %w", h.t.ID(), err)
	}
	return nil
}

func (h *task) Start(ctx context.Context) error {
	if err := h.t.Start(h.ns(ctx)); err != nil {
		return fmt.Errorf("start task %s: %w", h.t.ID(), err)
	}
	return nil
}

func (h *task) Signal(ctx context.Context, sig syscall.Signal) error {
	if err := h.t.Kill(h.ns(ctx), sig); err != nil {
		return fmt.Errorf("signal task %s: %w", h.t.ID(), wrapNotFound(err))
	}
	return nil
}

func (h *task) Done() <-chan struct{} { return h.done }

func (h *task) Exit() nodeagent.Exit {
	select {
	case <-h.done:
		return h.exit
	default:
		return nodeagent.Exit{Code: -1, Err: errors.New("process has not exited")}
	}
}

// withEmptySys mounts an empty read-only tmpfs at /sys in place of a
// sysfs. The kernel lets a process mount a sysfs only with CAP_SYS_ADMIN
// in the user namespace that owns its network namespace, and a replica's
// network namespace (or the host's) is made by the node agent, outside
// the replica's user namespace: runc 1.1 then fails the container's start
// with "mount sysfs: operation not permitted". Docker and Podman bind the
// host's /sys there instead, which would show a replica the host's
// devices and network interfaces; a plain HTTP server needs no /sys at
// all, so it gets an empty one.
func withEmptySys(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
	for i, m := range s.Mounts {
		if m.Destination == "/sys" {
			s.Mounts[i] = specs.Mount{
				Destination: "/sys", Type: "tmpfs", Source: "tmpfs",
				Options: []string{"nosuid", "noexec", "nodev", "ro", "mode=555", "size=4k"},
			}
		}
	}
	return nil
}
