package containerd_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/leases"
	"github.com/containerd/containerd/mount"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/snapshots"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/ebbrun/ebb/internal/ociimage"
	"github.com/ebbrun/ebb/internal/testenv"
	"github.com/ebbrun/ebb/nodeagent"
	ctrd "github.com/ebbrun/ebb/nodeagent/containerd"
)

var (
	probeOnce sync.Once
	probeBin  []byte
	probeErr  error
)

// probeBinary is testdata/probe, built once per test binary: a replica
// that reports what it can see and do, and exits.
func probeBinary(t testing.TB) []byte {
	t.Helper()
	testenv.RequireBinary(t, "go")
	probeOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ebb-probe-build-")
		if err != nil {
			probeErr = err
			return
		}
		defer os.RemoveAll(dir)
		out := filepath.Join(dir, "probe")
		if probeErr = testenv.GoBuild(out, "./testdata/probe", "CGO_ENABLED=0"); probeErr != nil {
			return
		}
		probeBin, probeErr = os.ReadFile(out)
	})
	require.NoError(t, probeErr)
	return probeBin
}

// probeReport is testdata/probe's Report.
type probeReport struct {
	UID, GID   int
	UIDMap     string
	GIDMap     string
	Netns      string
	Status     map[string]string
	RootWrite  string
	TmpWrite   string
	Kcore      string
	Mounts     map[string]string
	ProcSysW   string
	Sys        []string
	SysErr     string
	Secret     string
	Mount      string
	PacketSock string
}

// testNetns makes a network namespace as the node agent does, outside the
// container's user namespace, and removes it when the test ends.
func testNetns(t *testing.T) string {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireBinary(t, "ip")
	var raw [4]byte
	_, err := rand.Read(raw[:])
	require.NoError(t, err)
	name := "ebbtst-" + hex.EncodeToString(raw[:])
	out, err := exec.Command("ip", "netns", "add", name).CombinedOutput()
	require.NoError(t, err, "%s", out)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	return filepath.Join("/run/netns", name)
}

// capMask is the hexadecimal mask /proc/self/status shows for caps.
func capMask(caps ...int) string {
	var m uint64
	for _, c := range caps {
		m |= 1 << c
	}
	return fmt.Sprintf("%016x", m)
}

// The capabilities a replica's bounding set holds: CHOWN, FOWNER, FSETID,
// KILL, SETGID, SETUID and NET_BIND_SERVICE.
var replicaCapMask = capMask(unix.CAP_CHOWN, unix.CAP_FOWNER, unix.CAP_FSETID, unix.CAP_KILL,
	unix.CAP_SETGID, unix.CAP_SETUID, unix.CAP_NET_BIND_SERVICE)

// TestRuntimeUserNamespace runs the probe as a replica, in a user namespace
// of its own and a network namespace made outside it, and in the host's
// namespaces (--isolation off), and checks what it reports: its ids and
// their mapping, its capabilities, its read-only root and masked paths, and
// its secrets.
func TestRuntimeUserNamespace(t *testing.T) {
	client := connect(t)
	bin := probeBinary(t)
	images := map[string]string{} // USER → image
	for i, user := range []string{"", "1000:1001", "0"} {
		images[user] = pushImage(t, client, ociimage.BuildOptions{
			Name: fmt.Sprintf("ebb-test/probe:user%d", i), Binary: bin, BinaryPath: "/app/probe", User: user,
		})
	}
	rt, err := ctrd.New(client, ctrd.Config{FIFODir: filepath.Join(t.TempDir(), "fifo"), RuncBinary: ebbRuncBinary(t)})
	require.NoError(t, err)
	t.Cleanup(rt.Close)
	node := fmt.Sprintf("uns-%d", time.Now().UnixNano())
	userNS := &nodeagent.IDMap{HostID: 1<<31 + 7*65536, Size: 65536}

	tests := []struct {
		name      string
		imageUser string
		userNS    *nodeagent.IDMap
		netns     bool
		uid, gid  int
	}{
		{name: "userns, no USER: the default user", userNS: userNS, netns: true, uid: 65532, gid: 65532},
		{name: "userns, USER 1000:1001", imageUser: "1000:1001", userNS: userNS, netns: true, uid: 1000, gid: 1001},
		{name: "userns, USER 0", imageUser: "0", userNS: userNS, netns: true, uid: 0, gid: 0},
		{name: "host namespaces, no USER: the default user", uid: 65532, gid: 65532},
		{name: "host namespaces, USER 0", imageUser: "0", uid: 0, gid: 0},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			secret := "probe-secret-" + tt.name
			files := secretsDir(t, secret)
			spec := nodeagent.ContainerSpec{
				ID: fmt.Sprintf("%s-%d", node, i), Image: images[tt.imageUser],
				Labels:      map[string]string{nodeagent.LabelNode: node},
				Args:        []string{"/app/probe"},
				Env:         []string{"PATH=/usr/bin:/app"},
				CPU:         0.5,
				MemoryBytes: 64 << 20,
				PidsLimit:   32,
				TmpBytes:    8 << 20,
				SecretsDir:  files,
				UserNS:      tt.userNS,
				DefaultUser: "65532:65532",
			}
			if tt.netns {
				spec.NetnsPath = testNetns(t)
			}
			r := runProbe(t, rt, spec)

			netns := "/proc/self/ns/net"
			if tt.netns {
				netns = spec.NetnsPath
			}
			var st unix.Stat_t
			require.NoError(t, unix.Stat(netns, &st))
			assert.Equal(t, fmt.Sprintf("net:[%d]", st.Ino), r.Netns, "the replica's network namespace")

			assert.Equal(t, tt.uid, r.UID)
			assert.Equal(t, tt.gid, r.GID)
			if tt.userNS != nil {
				want := fmt.Sprintf("0 %d %d", tt.userNS.HostID, tt.userNS.Size)
				assert.Equal(t, want, strings.Join(strings.Fields(r.UIDMap), " "), "uid_map")
				assert.Equal(t, want, strings.Join(strings.Fields(r.GIDMap), " "), "gid_map")
			} else {
				assert.Equal(t, "0 0 4294967295", strings.Join(strings.Fields(r.UIDMap), " "), "the host's uid_map")
			}
			held := capMask()
			if tt.uid == 0 {
				held = replicaCapMask
			}
			assert.Equal(t, replicaCapMask, r.Status["CapBnd"], "bounding set")
			assert.Equal(t, held, r.Status["CapEff"], "effective set")
			assert.Equal(t, held, r.Status["CapPrm"], "permitted set")
			assert.Equal(t, capMask(), r.Status["CapAmb"], "ambient set")
			assert.Equal(t, capMask(), r.Status["CapInh"], "inheritable set")
			assert.Equal(t, "1", r.Status["NoNewPrivs"])
			assert.Equal(t, "2", r.Status["Seccomp"], "seccomp filter")

			assert.Contains(t, r.RootWrite, "read-only file system", "the rootfs is read-only")
			assert.Empty(t, r.TmpWrite, "/tmp is writable")
			maskedPaths := []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug"}
			if tt.userNS == nil {
				maskedPaths = append(maskedPaths, "/sys/firmware")
			} else {
				assert.Empty(t, r.Sys, "an empty /sys in place of a sysfs")
				assert.Empty(t, r.SysErr)
				assert.Contains(t, r.Mounts["/sys"], "ro", "/sys is read-only")
			}
			masked := 0
			for _, p := range maskedPaths {
				if _, err := os.Stat(p); err != nil {
					continue // runc masks what the kernel has (this one may have no /proc/kcore)
				}
				assert.Contains(t, r.Mounts, p, "%s is masked", p)
				masked++
			}
			assert.NotZero(t, masked, "masked paths checked")
			assert.Contains(t, r.Mounts["/proc/sys"], "ro", "/proc/sys is read-only")
			assert.NotEmpty(t, r.ProcSysW, "writing /proc/sys")
			assert.NotEmpty(t, r.Mount, "mounting")
			assert.NotEmpty(t, r.PacketSock, "an AF_PACKET socket")
			assert.Equal(t, secret, r.Secret, "the container's user reads its secrets")
		})
	}
}

// secretsDir writes a secret file as the node agent does: on a tmpfs, 0400
// in a 0500 directory, root's.
func secretsDir(t *testing.T, value string) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, unix.Mount("tmpfs", dir, "tmpfs", 0, "mode=0700"))
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	files := filepath.Join(dir, "files")
	require.NoError(t, os.Mkdir(files, 0o500))
	require.NoError(t, os.WriteFile(filepath.Join(files, "token"), []byte(value), 0o400))
	return files
}

// runProbe creates spec's container, runs it to its exit as a pool hit
// does (released by ebb-runc's way, then started) and returns its report.
func runProbe(t *testing.T, rt *ctrd.Runtime, spec nodeagent.ContainerSpec) probeReport {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, rt.Create(ctx, spec))
	t.Cleanup(func() { _ = rt.Delete(context.Background(), spec.ID) })
	out, errOut := &testenv.Buffer{}, &testenv.Buffer{}
	start := time.Now()
	task, err := rt.NewTask(ctx, spec.ID, nodeagent.Output{Stdout: out, Stderr: errOut})
	require.NoError(t, err)
	t.Logf("new task in %v", time.Since(start))
	require.NoError(t, task.Release(ctx))
	require.NoError(t, task.Start(ctx))
	var r probeReport
	require.Eventually(t, func() bool { return json.Unmarshal([]byte(out.String()), &r) == nil }, 10*time.Second, time.Millisecond,
		"probe: %s", errOut)
	t.Logf("probe report: %s", out.String())
	st, err := task.State(ctx)
	require.NoError(t, err)
	assert.Equal(t, nodeagent.TaskRunning, st)
	require.NoError(t, task.Signal(ctx, syscall.SIGTERM))
	require.Equal(t, 0, waitDone(t, task).Code, "probe: %s", errOut.String())
	return r
}

// TestRuntimeRemappedSnapshot checks that a container in a user namespace
// gets a root filesystem owned by the mapped ids, that the shifted copy of
// the image is made once per image and range and shared, also by creates
// that need it at the same time, and reports what the first create costs
// against a later one.
func TestRuntimeRemappedSnapshot(t *testing.T) {
	client := connect(t)
	bin := probeBinary(t)
	var files []ociimage.File
	for i := range 500 {
		files = append(files, ociimage.File{Path: fmt.Sprintf("/app/static/%03d.txt", i), Mode: 0o644, Data: []byte(strings.Repeat("x", 4096))})
	}
	ref := pushImage(t, client, ociimage.BuildOptions{Name: "ebb-test/probe:remap", Binary: bin, BinaryPath: "/app/probe", Files: files})
	rt, err := ctrd.New(client, ctrd.Config{FIFODir: filepath.Join(t.TempDir(), "fifo")})
	require.NoError(t, err)
	t.Cleanup(rt.Close)
	ctx := context.Background()
	node := fmt.Sprintf("remap-%d", time.Now().UnixNano())
	userNS := &nodeagent.IDMap{HostID: 1<<31 + 9*65536, Size: 65536}
	spec := func(i int) nodeagent.ContainerSpec {
		return nodeagent.ContainerSpec{
			ID: fmt.Sprintf("%s-%d", node, i), Image: ref, Args: []string{"/app/probe"},
			Labels: map[string]string{nodeagent.LabelNode: node},
			UserNS: userNS, DefaultUser: "65532:65532",
		}
	}
	create := func(i int) time.Duration {
		s := spec(i)
		start := time.Now()
		require.NoError(t, rt.Create(ctx, s))
		took := time.Since(start)
		t.Cleanup(func() { _ = rt.Delete(context.Background(), s.ID) })
		return took
	}
	_, err = rt.Image(ctx, ref) // unpacked and read, as the pool finds it
	require.NoError(t, err)
	first := create(0)
	later := create(1)
	plain := spec(2)
	plain.UserNS = nil
	start := time.Now()
	require.NoError(t, rt.Create(ctx, plain))
	hostNS := time.Since(start)
	t.Cleanup(func() { _ = rt.Delete(context.Background(), plain.ID) })
	t.Logf("create in a user namespace: first (remaps the image) %v, later %v; in the host's %v", first, later, hostNS)

	nctx := namespaces.WithNamespace(ctx, "ebb")
	sn := client.SnapshotService("overlayfs")
	info0, err := sn.Stat(nctx, spec(0).ID)
	require.NoError(t, err)
	info1, err := sn.Stat(nctx, spec(1).ID)
	require.NoError(t, err)
	assert.Equal(t, info0.Parent, info1.Parent, "one shifted copy of the image for both")
	assert.Contains(t, info0.Parent, fmt.Sprintf("-userns-%d-%d", userNS.HostID, userNS.Size))

	mounts, err := sn.Mounts(nctx, spec(0).ID)
	require.NoError(t, err)
	require.NoError(t, mount.WithReadonlyTempMount(nctx, mounts, func(root string) error {
		for _, p := range []string{"/", "/app", "/app/probe", "/etc/passwd", "/app/static/499.txt"} {
			var st unix.Stat_t
			require.NoError(t, unix.Lstat(filepath.Join(root, p), &st))
			assert.Equal(t, userNS.HostID, st.Uid, "%s's owner", p)
			assert.Equal(t, userNS.HostID, st.Gid, "%s's group", p)
		}
		return nil
	}))

	t.Run("a shifted copy no container uses is collected, and made again", func(t *testing.T) {
		userNS := &nodeagent.IDMap{HostID: 1<<31 + 12*65536, Size: 65536}
		s := spec(20)
		s.UserNS = userNS
		require.NoError(t, rt.Create(ctx, s))
		require.NoError(t, rt.Delete(ctx, s.ID))
		// Deleting a lease synchronously runs containerd's collector now.
		l, err := client.LeasesService().Create(nctx, leases.WithRandomID())
		require.NoError(t, err)
		require.NoError(t, client.LeasesService().Delete(nctx, l, leases.SynchronousDelete))
		all, err := listSnapshots(nctx, sn)
		require.NoError(t, err)
		for _, k := range all {
			assert.NotContains(t, k, fmt.Sprintf("-userns-%d-", userNS.HostID), "collected")
		}
		s = spec(21)
		s.UserNS = userNS
		require.NoError(t, rt.Create(ctx, s))
		t.Cleanup(func() { _ = rt.Delete(context.Background(), s.ID) })
	})

	t.Run("creates at once share one shifted copy", func(t *testing.T) {
		userNS := &nodeagent.IDMap{HostID: 1<<31 + 10*65536, Size: 65536}
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range errs {
			s := spec(10 + i)
			s.UserNS = userNS
			wg.Go(func() { errs[i] = rt.Create(ctx, s) })
			t.Cleanup(func() { _ = rt.Delete(context.Background(), s.ID) })
		}
		wg.Wait()
		for _, err := range errs {
			require.NoError(t, err)
		}
		all, err := listSnapshots(nctx, sn)
		require.NoError(t, err)
		var copies []string
		for _, k := range all {
			if strings.Contains(k, fmt.Sprintf("-userns-%d-", userNS.HostID)) {
				copies = append(copies, k)
			}
		}
		assert.Len(t, copies, 1, "one shifted copy, no half-made one left: %v", copies)
	})
}

// listSnapshots lists the keys of sn's snapshots.
func listSnapshots(ctx context.Context, sn snapshots.Snapshotter) ([]string, error) {
	var keys []string
	err := sn.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		keys = append(keys, info.Name)
		return nil
	})
	return keys, err
}
