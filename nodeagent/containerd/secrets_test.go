package containerd_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/namespaces"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/ebbrun/ebb/internal/containerdproc"
	"github.com/ebbrun/ebb/internal/ociimage"
	"github.com/ebbrun/ebb/internal/runcstart"
	"github.com/ebbrun/ebb/internal/testenv"
	"github.com/ebbrun/ebb/nodeagent"
	ctrd "github.com/ebbrun/ebb/nodeagent/containerd"
)

// TestRuntimeSecrets runs a replica, as a user other than root, with a
// secret variable and a secret file, and checks that the program gets both
// while no value enters containerd's spec, metadata, bundle or runc state;
// in the host's user namespace and in one of its own.
func TestRuntimeSecrets(t *testing.T) {
	tests := []struct {
		name   string
		userNS *nodeagent.IDMap
	}{
		{name: "host user namespace"},
		{name: "user namespace", userNS: &nodeagent.IDMap{HostID: 1<<31 + 11*65536, Size: 65536}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { testRuntimeSecrets(t, tt.userNS) })
	}
}

func testRuntimeSecrets(t *testing.T, userNS *nodeagent.IDMap) {
	client := connect(t)
	bin, err := os.ReadFile(helloBinary(t))
	require.NoError(t, err)
	ref := pushImage(t, client, ociimage.BuildOptions{Name: "ebb-test/hello:secrets", Binary: bin, BinaryPath: "/app/hello", User: "1000:1001"})
	ctx := context.Background()

	var raw [12]byte
	_, err = rand.Read(raw[:])
	require.NoError(t, err)
	value := "ebbsecret" + hex.EncodeToString(raw[:])

	// What the node agent writes on its tmpfs (nodeagent.writeSecrets).
	dir := t.TempDir()
	require.NoError(t, unix.Mount("tmpfs", dir, "tmpfs", 0, "mode=0700"))
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	files := filepath.Join(dir, "files")
	require.NoError(t, os.Mkdir(files, 0o500))
	require.NoError(t, os.WriteFile(filepath.Join(files, "token"), []byte(value), 0o400))
	envFile := filepath.Join(dir, "env")
	require.NoError(t, os.WriteFile(envFile, []byte("DB_PASSWORD="+value+"\x00GREETING=secret\x00"), 0o400))

	node := fmt.Sprintf("sec-%d", time.Now().UnixNano())
	id := node + "-replica"
	port := testenv.FreePort(t)
	spec := nodeagent.ContainerSpec{
		ID: id, Image: ref,
		Labels:      map[string]string{nodeagent.LabelNode: node, nodeagent.LabelReplica: id},
		Args:        []string{"hello"}, // found in PATH by ebb-launch, as runc would
		Env:         []string{"PATH=/usr/bin:/app", "GREETING=plain", fmt.Sprintf("PORT=%d", port), "EBB_REVISION=sec-00001"},
		CPU:         0.5,
		MemoryBytes: 64 << 20,
		PidsLimit:   32,
		TmpBytes:    8 << 20,
		SecretsDir:  files, SecretEnvFile: envFile,
		UserNS: userNS,
	}

	t.Run("no launcher, no replica with secret variables", func(t *testing.T) {
		rt, err := ctrd.New(client, ctrd.Config{FIFODir: filepath.Join(t.TempDir(), "fifo")})
		require.NoError(t, err)
		defer rt.Close()
		require.ErrorContains(t, rt.Create(ctx, spec), "no ebb-launch")
	})

	rt, err := ctrd.New(client, ctrd.Config{FIFODir: filepath.Join(t.TempDir(), "fifo"),
		RuncBinary: ebbRuncBinary(t), Launcher: ebbLaunchBinary(t)})
	require.NoError(t, err)
	defer rt.Close()
	require.NoError(t, rt.Create(ctx, spec))
	t.Cleanup(func() { _ = rt.Delete(context.Background(), id) })

	out := &testenv.Buffer{}
	task, err := rt.NewTask(ctx, id, nodeagent.Output{Stdout: out, Stderr: out})
	require.NoError(t, err)
	require.NoError(t, task.Start(ctx))
	env := testenv.WaitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/env", port), 10*time.Second)
	assert.Contains(t, env, "DB_PASSWORD="+value+"\n", "the program has the secret variable")
	assert.Contains(t, env, "GREETING=secret\n", "a secret variable overrides the spec's")
	assert.NotContains(t, env, "GREETING=plain")

	// The secret file, seen through the container's root: the program's
	// user owns it, nobody else may read it.
	fi, err := os.Stat(fmt.Sprintf("/proc/%d/root/run/secrets/token", task.Pid()))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o400), fi.Mode().Perm())
	hostUID := uint32(1000)
	if userNS != nil {
		hostUID += userNS.HostID // the container's 1000, on the host
	}
	assert.Equal(t, hostUID, fi.Sys().(*syscall.Stat_t).Uid)
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/root/run/secrets/token", task.Pid()))
	require.NoError(t, err)
	assert.Equal(t, value, string(b))

	nctx := namespaces.WithNamespace(ctx, "ebb")
	c, err := client.LoadContainer(nctx, id)
	require.NoError(t, err)
	s, err := c.Spec(nctx)
	require.NoError(t, err)
	assert.Equal(t, []string{"/run/ebb/launch", "/run/ebb/secret-env", "hello"}, s.Process.Args)
	assert.NotContains(t, strings.Join(s.Process.Env, "\n"), value)

	dirs := containerdDirs(t)
	require.NotEmpty(t, testenv.FilesContaining(t, []byte("GREETING=plain"), dirs...),
		"the grep finds what the spec carries, so it would find a value there")
	assert.Empty(t, testenv.FilesContaining(t, []byte(value), dirs...), "a secret value in containerd's files")

	require.NoError(t, task.Signal(ctx, syscall.SIGTERM))
	waitDone(t, task)
	require.NoError(t, rt.Delete(ctx, id))
	assert.Empty(t, testenv.FilesContaining(t, []byte(value), dirs...), "a secret value in containerd's files after delete")
}

// containerdDirs are where the test's containerd and its shims keep their
// files: the private daemon's data dir (root, state), or the system
// daemon's, and runc's state under the shim.
func containerdDirs(t testing.TB) []string {
	addr := testenv.Containerd(t)
	dirs := []string{runcstart.ShimRoot}
	if addr == containerdproc.DefaultAddress {
		return append(dirs, "/var/lib/containerd", "/run/containerd")
	}
	return append(dirs, filepath.Dir(addr))
}
