package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	containerd "github.com/containerd/containerd"
	"github.com/containerd/containerd/namespaces"

	"github.com/ebbrun/ebb/internal/containerdproc"
	"github.com/ebbrun/ebb/internal/procstat"
	"github.com/ebbrun/ebb/internal/proctree"

	"github.com/ebbrun/ebb/internal/mountinfo"
)

// SystemContainerd is the socket of a containerd the machine already runs.
const SystemContainerd = containerdproc.DefaultAddress

// privatePrefix names the temp dirs of private containerds. The pid in the
// name lets a later run recognise and remove the dirs of a test binary that
// died without cleaning up.
const privatePrefix = "ebbctd-"

// shared is the containerd the tests of this test binary use.
var shared struct {
	mu       sync.Mutex
	probed   bool   // the system socket was tried
	system   string // its address if a containerd answered there
	inMain   bool   // Main owns the private daemon's lifetime
	refs     int    // tests using the private daemon when Main does not
	sup      *containerdproc.Supervisor
	dir      string
	addr     string
	startErr error
}

// Containerd returns the address of a real containerd for the test. It needs
// root, containerd and runc (or skips, see Skip). If a containerd answers at
// /run/containerd/containerd.sock it is used. Otherwise one private
// containerd, under a short temp dir, is shared by the tests of this binary:
//
//   - with func TestMain(m *testing.M) { testenv.Main(m) } in the package it
//     starts once and stops after the last test;
//   - without it, it stops when the last test that is using it ends (so
//     sequential tests each get a fresh one, about 0.1 s each).
//
// Either way the daemon is started with a parent-death signal, so even a
// test binary that panics or times out leaves no containerd behind, and the
// next run removes the dirs and shims such a binary left.
//
// Tests must still delete what they create; when a private daemon stops,
// any task and container left in it is killed and deleted first.
func Containerd(t testing.TB) string {
	t.Helper()
	RequireRoot(t)
	RequireBinary(t, "containerd")
	RequireBinary(t, "runc")

	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.probed {
		shared.probed = true
		if _, err := containerdproc.Probe(context.Background(), SystemContainerd, 2*time.Second); err == nil {
			shared.system = SystemContainerd
		}
	}
	if shared.system != "" {
		return shared.system
	}
	if shared.sup == nil {
		if shared.inMain && shared.startErr != nil {
			t.Fatalf("private containerd failed to start earlier in this binary: %v", shared.startErr)
		}
		began := time.Now()
		if err := startPrivateLocked(); err != nil {
			shared.startErr = err
			t.Fatalf("start private containerd: %v", err)
		}
		t.Logf("started private containerd at %s in %s", shared.addr, time.Since(began).Round(time.Millisecond))
	}
	if !shared.inMain {
		shared.refs++
		t.Cleanup(func() {
			shared.mu.Lock()
			defer shared.mu.Unlock()
			shared.refs--
			if shared.refs == 0 {
				stopPrivateLocked()
			}
		})
	}
	return shared.addr
}

// Main runs the package's tests and exits. Use it as the package's TestMain
// so that all tests share one private containerd, stopped at the end.
func Main(m *testing.M) { os.Exit(RunMain(m)) }

// RunMain is Main for packages whose TestMain does more: it runs the tests,
// stops the shared private containerd, and returns the exit code.
func RunMain(m *testing.M) int {
	shared.mu.Lock()
	shared.inMain = true
	shared.mu.Unlock()
	code := m.Run()
	shared.mu.Lock()
	stopPrivateLocked()
	shared.mu.Unlock()
	return code
}

func startPrivateLocked() error {
	sweepStalePrivate()
	// /tmp, not t.TempDir: the socket path must stay under 108 bytes.
	dir, err := os.MkdirTemp("/tmp", fmt.Sprintf("%s%d-", privatePrefix, os.Getpid()))
	if err != nil {
		return err
	}
	// Searchable by all, as containerdproc makes its data dir: runc, as
	// the mapped root of a container in a user namespace, must reach the
	// bundle's rootfs under it.
	if err := os.Chmod(dir, 0o711); err != nil {
		removePrivateDir(dir)
		return err
	}
	sup, err := containerdproc.New(containerdproc.Config{
		Address:   "-",
		DataDir:   dir,
		StopGrace: 5 * time.Second,
	}, nil)
	if err == nil {
		var addr string
		// Background: the daemon outlives the test that started it; Stop ends it.
		addr, err = sup.Start(context.Background())
		shared.addr = addr
	}
	if err != nil {
		removePrivateDir(dir)
		return err
	}
	shared.sup, shared.dir = sup, dir
	return nil
}

func stopPrivateLocked() {
	if shared.sup == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	deleteContainers(ctx, shared.addr)
	shared.sup.Stop()
	removePrivateDir(shared.dir)
	shared.sup, shared.dir, shared.addr = nil, "", ""
}

// deleteContainers kills and deletes every task and container in every
// namespace of the private daemon, so no shim or container outlives it.
func deleteContainers(ctx context.Context, addr string) {
	c, err := containerd.New(addr, containerd.WithTimeout(5*time.Second))
	if err != nil {
		return
	}
	defer c.Close()
	nss, err := c.NamespaceService().List(ctx)
	if err != nil {
		return
	}
	for _, ns := range nss {
		nctx := namespaces.WithNamespace(ctx, ns)
		ctrs, err := c.Containers(nctx)
		if err != nil {
			continue
		}
		for _, ctr := range ctrs {
			if task, err := ctr.Task(nctx, nil); err == nil {
				_, _ = task.Delete(nctx, containerd.WithProcessKill)
			}
			_ = ctr.Delete(nctx, containerd.WithSnapshotCleanup)
		}
	}
}

// removePrivateDir unmounts whatever is still mounted under dir (container
// rootfs overlays) and removes it.
func removePrivateDir(dir string) {
	mountinfo.UnmountUnder(dir)
	_ = os.RemoveAll(dir)
}

// sweepStalePrivate cleans up after test binaries that died without
// stopping their private containerd (the kernel killed the daemon, see
// containerdproc's parent-death signal): it kills their shims and the
// shims' children, unmounts and removes their dirs.
func sweepStalePrivate() {
	dirs, _ := filepath.Glob(filepath.Join("/tmp", privatePrefix+"*"))
	for _, dir := range dirs {
		rest := strings.TrimPrefix(filepath.Base(dir), privatePrefix)
		pidStr, _, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if !ok || err != nil || pid == os.Getpid() || processAlive(pid) {
			continue
		}
		KillShimsUnder(dir)
		removePrivateDir(dir)
	}
}

// KillShimsUnder SIGKILLs the processes whose command line mentions dir,
// such as the shims of a containerd whose state lies under dir, and their
// descendants, the containers' processes.
func KillShimsUnder(dir string) { proctree.KillMentioning(dir) }

func processAlive(pid int) bool {
	st, err := procstat.Read(pid)
	return err == nil && !st.Exited()
}
