package containerd_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/internal/ociimage"
	"github.com/ebbrun/ebb/internal/testenv"
	"github.com/ebbrun/ebb/nodeagent"
	ctrd "github.com/ebbrun/ebb/nodeagent/containerd"
)

// waitDone waits for the task to exit and returns how it ended.
func waitDone(t testing.TB, task nodeagent.Task) nodeagent.Exit {
	t.Helper()
	select {
	case <-task.Done():
		return task.Exit()
	case <-time.After(10 * time.Second):
		t.Fatal("task did not exit")
	}
	return nodeagent.Exit{}
}

// TestRuntimeLifecycle runs a replica's whole life under runc, and under
// ebb-runc, which the shim runs in runc's place and which starts a created
// task itself.
func TestRuntimeLifecycle(t *testing.T) {
	tests := []struct {
		name       string
		runcBinary func(t testing.TB) string
	}{
		{name: "runc", runcBinary: func(testing.TB) string { return "" }},
		{name: "ebb-runc", runcBinary: ebbRuncBinary},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testRuntimeLifecycle(t, ctrd.Config{FIFODir: filepath.Join(t.TempDir(), "fifo"), RuncBinary: tt.runcBinary(t)})
		})
	}
}

func testRuntimeLifecycle(t *testing.T, cfg ctrd.Config) {
	client := connect(t)
	ref := pushHello(t, client, "ebb-test/hello:runtime")
	ctx := context.Background()
	rt, err := ctrd.New(client, cfg)
	require.NoError(t, err)
	t.Cleanup(rt.Close)

	img, err := rt.Image(ctx, ref)
	require.NoError(t, err)
	assert.Equal(t, []string{"/app/hello"}, img.Entrypoint)
	assert.Contains(t, img.Env, ociimage.DefaultPath)
	require.NoError(t, rt.CheckExecutable(ctx, ref, "/app/hello", img.Env))
	require.ErrorIs(t, rt.CheckExecutable(ctx, ref, "/app/nope", img.Env), nodeagent.ErrBadImage)
	_, err = rt.Image(ctx, "ebb-test/absent:1")
	require.ErrorIs(t, err, nodeagent.ErrNotFound)

	node := fmt.Sprintf("rt-%d", time.Now().UnixNano())
	id := node + "-replica"
	port := testenv.FreePort(t)
	secrets := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(secrets, "token"), []byte("s3cret"), 0o444))
	spec := nodeagent.ContainerSpec{
		ID: id, Image: ref,
		Labels:      map[string]string{nodeagent.LabelNode: node, nodeagent.LabelReplica: id},
		Args:        []string{"/app/hello"},
		Env:         append(img.Env, fmt.Sprintf("PORT=%d", port), "EBB_REVISION=rt-00001"),
		CPU:         0.5,
		MemoryBytes: 64 << 20,
		PidsLimit:   32,
		TmpBytes:    8 << 20,
		SecretsDir:  secrets,
	}
	require.NoError(t, rt.Create(ctx, spec))
	t.Cleanup(func() { _ = rt.Delete(context.Background(), id) })

	t.Run("the OCI spec carries the isolation and limits", func(t *testing.T) {
		nctx := namespaces.WithNamespace(ctx, "ebb")
		c, err := client.LoadContainer(nctx, id)
		require.NoError(t, err)
		s, err := c.Spec(nctx)
		require.NoError(t, err)
		assertReplicaSpec(t, s, 64<<20, 32, 50000)
		assert.Contains(t, s.Process.Env, fmt.Sprintf("PORT=%d", port))
		var secretsMount *specs.Mount
		for i, m := range s.Mounts {
			if m.Destination == "/run/secrets" {
				secretsMount = &s.Mounts[i]
			}
		}
		require.NotNil(t, secretsMount)
		assert.Equal(t, secrets, secretsMount.Source)
		assert.Contains(t, secretsMount.Options, "ro")
	})

	t.Run("the shim runs the configured runc", func(t *testing.T) {
		nctx := namespaces.WithNamespace(ctx, "ebb")
		c, err := client.LoadContainer(nctx, id)
		require.NoError(t, err)
		info, err := c.Info(nctx)
		require.NoError(t, err)
		if cfg.RuncBinary == "" {
			assert.Nil(t, info.Runtime.Options)
			return
		}
		opts, err := typeurl.UnmarshalAny(info.Runtime.Options)
		require.NoError(t, err)
		require.IsType(t, &runcoptions.Options{}, opts)
		assert.Equal(t, cfg.RuncBinary, opts.(*runcoptions.Options).BinaryName)
	})

	out := &testenv.Buffer{}
	task, err := rt.NewTask(ctx, id, nodeagent.Output{Stdout: out, Stderr: out})
	require.NoError(t, err)
	st, err := task.State(ctx)
	require.NoError(t, err)
	assert.Equal(t, nodeagent.TaskCreated, st)

	list, err := rt.List(ctx, node)
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.Equal(t, id, list[0].ID)
	assert.Equal(t, id, list[0].Labels[nodeagent.LabelReplica])

	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	released := cfg.RuncBinary != ""
	if released {
		require.NoError(t, task.Release(ctx))
		assert.Contains(t, testenv.WaitHTTP(t, url+"/", 10*time.Second), "revision=rt-00001", "the program runs after Release")
		st, err = task.State(ctx)
		require.NoError(t, err)
		assert.Equal(t, nodeagent.TaskCreated, st, "containerd has not been told yet")
	} else {
		require.ErrorIs(t, task.Release(ctx), nodeagent.ErrNoRelease, "runc cannot be released")
	}
	require.NoError(t, task.Start(ctx))
	assert.Contains(t, testenv.WaitHTTP(t, url+"/", 10*time.Second), "revision=rt-00001")
	st, err = task.State(ctx)
	require.NoError(t, err)
	assert.Equal(t, nodeagent.TaskRunning, st, "containerd knows the task runs")
	require.Error(t, task.Start(ctx), "a running task does not start twice")
	// hello's output comes through containerd's fifos, which the kernel
	// delivers on its own time after the port answers.
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "hello listening on") }, 5*time.Second, time.Millisecond)

	t.Run("SIGKILL is exit 137 and a new task restarts it", func(t *testing.T) {
		require.NoError(t, task.Signal(ctx, syscall.SIGKILL))
		assert.Equal(t, 137, waitDone(t, task).Code)
		task, err = rt.NewTask(ctx, id, nodeagent.Output{Stdout: out, Stderr: out})
		require.NoError(t, err)
		if !released {
			require.NoError(t, task.Start(ctx))
			testenv.WaitHTTP(t, url+"/", 10*time.Second)
			return
		}
		// Released, and its agent gone before the Start: the next
		// runtime's Attach finishes the start.
		require.NoError(t, task.Release(ctx))
		testenv.WaitHTTP(t, url+"/", 10*time.Second)
		rt2, err := ctrd.New(client, cfg)
		require.NoError(t, err)
		defer rt2.Close()
		task2, err := rt2.Attach(ctx, id, nodeagent.Output{})
		require.NoError(t, err)
		st, err := task2.State(ctx)
		require.NoError(t, err)
		assert.Equal(t, nodeagent.TaskRunning, st)
		assert.Equal(t, task.Pid(), task2.Pid())
	})

	t.Run("a new runtime reattaches to the running task and its output", func(t *testing.T) {
		rt2, err := ctrd.New(client, ctrd.Config{FIFODir: filepath.Join(t.TempDir(), "unused")})
		require.NoError(t, err)
		defer rt2.Close()
		out2 := &testenv.Buffer{}
		task2, err := rt2.Attach(ctx, id, nodeagent.Output{Stdout: out2, Stderr: out2})
		require.NoError(t, err)
		st, err := task2.State(ctx)
		require.NoError(t, err)
		assert.Equal(t, nodeagent.TaskRunning, st)
		assert.Equal(t, task.Pid(), task2.Pid())
		require.NoError(t, task2.Signal(ctx, syscall.SIGTERM))
		assert.Equal(t, 0, waitDone(t, task2).Code, "hello exits cleanly on SIGTERM")
		// Both runtimes of this process read the fifos now, so the line
		// reaches one of them, when the kernel delivers it after the exit;
		// TestAgentAcceptance checks a real restart.
		require.Eventually(t, func() bool {
			return strings.Contains(out.String()+out2.String(), "hello: drained, bye")
		}, 5*time.Second, time.Millisecond)
		require.NoError(t, rt2.Delete(ctx, id))
	})

	list, err = rt.List(ctx, node)
	require.NoError(t, err)
	assert.Empty(t, list)
	_, err = client.SnapshotService("overlayfs").Stat(namespaces.WithNamespace(ctx, "ebb"), id)
	assert.True(t, errdefs.IsNotFound(err), "snapshot removed: %v", err)
	require.NoError(t, rt.Delete(ctx, id), "deleting twice is fine")
	_, err = rt.Attach(ctx, id, nodeagent.Output{})
	assert.True(t, errors.Is(err, nodeagent.ErrNotFound))
}

// assertReplicaSpec checks what every replica's OCI spec must say.
func assertReplicaSpec(t *testing.T, s *specs.Spec, memory, pids, quota int64) {
	t.Helper()
	assert.True(t, s.Root.Readonly, "read-only rootfs")
	assert.True(t, s.Process.NoNewPrivileges, "no new privileges")
	require.NotNil(t, s.Linux.Seccomp, "seccomp profile")
	assert.Equal(t, specs.ActErrno, s.Linux.Seccomp.DefaultAction, "containerd's default profile denies by default")
	assert.NotEmpty(t, s.Linux.Seccomp.Syscalls)
	require.NotNil(t, s.Linux.Resources)
	require.NotNil(t, s.Linux.Resources.Memory)
	assert.Equal(t, memory, *s.Linux.Resources.Memory.Limit)
	require.NotNil(t, s.Linux.Resources.Pids)
	assert.Equal(t, pids, s.Linux.Resources.Pids.Limit)
	require.NotNil(t, s.Linux.Resources.CPU)
	assert.Equal(t, quota, *s.Linux.Resources.CPU.Quota)
	assert.Equal(t, uint64(100000), *s.Linux.Resources.CPU.Period)
	for _, ns := range s.Linux.Namespaces {
		assert.NotEqual(t, specs.NetworkNamespace, ns.Type, "host networking")
	}
	var tmp *specs.Mount
	for i, m := range s.Mounts {
		if m.Destination == "/tmp" {
			tmp = &s.Mounts[i]
		}
	}
	require.NotNil(t, tmp, "/tmp mount")
	assert.Equal(t, "tmpfs", tmp.Type)
	// What a plain HTTP server needs and nothing more (no NET_RAW, MKNOD,
	// DAC_OVERRIDE, SYS_CHROOT, SETFCAP, SETPCAP, AUDIT_WRITE), held only
	// by root.
	caps := []string{"CAP_CHOWN", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_NET_BIND_SERVICE"}
	assert.Equal(t, caps, s.Process.Capabilities.Bounding)
	var held []string
	if s.Process.User.UID == 0 {
		held = caps
	}
	assert.Equal(t, held, s.Process.Capabilities.Effective)
	assert.Equal(t, held, s.Process.Capabilities.Permitted)
	assert.Empty(t, s.Process.Capabilities.Ambient)
	assert.Empty(t, s.Process.Capabilities.Inheritable)
	// runc's default masked and read-only paths.
	assert.Subset(t, s.Linux.MaskedPaths, []string{"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
		"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"})
	assert.Subset(t, s.Linux.ReadonlyPaths, []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"})
	for _, ns := range s.Linux.Namespaces {
		assert.NotEqual(t, specs.UserNamespace, ns.Type, "no user namespace unless asked")
	}
}

// TestRuncBinaries finds which containers' shims run which runc binary,
// so that ebbd can warn about one that has gone.
func TestRuncBinaries(t *testing.T) {
	client := connect(t)
	ref := pushHello(t, client, "ebb-test/hello:binaries")
	ctx := context.Background()
	node := fmt.Sprintf("bin-%d", time.Now().UnixNano())
	ebbRunc := ebbRuncBinary(t)
	ids := map[string]string{} // runc binary → container
	for _, runcBinary := range []string{"", ebbRunc} {
		rt, err := ctrd.New(client, ctrd.Config{FIFODir: filepath.Join(t.TempDir(), "fifo"), RuncBinary: runcBinary})
		require.NoError(t, err)
		id := fmt.Sprintf("%s-%d", node, len(ids))
		require.NoError(t, rt.Create(ctx, nodeagent.ContainerSpec{ID: id, Image: ref, Args: []string{"/app/hello"},
			Labels: map[string]string{nodeagent.LabelNode: node, nodeagent.LabelReplica: id}}))
		t.Cleanup(func() { _ = rt.Delete(context.Background(), id) })
		ids[runcBinary] = id
	}

	rt, err := ctrd.New(client, ctrd.Config{FIFODir: filepath.Join(t.TempDir(), "fifo")})
	require.NoError(t, err)
	binaries, err := rt.RuncBinaries(ctx)
	require.NoError(t, err)

	assert.Contains(t, binaries[ebbRunc], ids[ebbRunc])
	for _, cs := range binaries {
		assert.NotContains(t, cs, ids[""], "a container on plain runc names no binary")
	}
}
