package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/internal/mountinfo"
	"github.com/ebbrun/ebb/internal/testenv"
	"github.com/ebbrun/ebb/nodeagent/replicanet"
)

var httpClient = &http.Client{Timeout: time.Minute}

// binaries are built once per test run, by TestMain.
var binaries struct {
	dir                       string
	ebbd, ebb, hello, crasher string
	// escaper tries to get out of its replica (isolation_test.go).
	escaper string
	// helloworld answers as Knative's helloworld-go sample (declarative_test.go).
	helloworld string
	// foreignCrasher is crasher built for a machine this node is not.
	foreignCrasher string
	// jobber runs to completion with a chosen exit code (jobs_test.go).
	jobber string
	// grpcecho is examples/grpcecho, a gRPC function (grpc_test.go).
	grpcecho string
	buildErr error
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ebb-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binaries.dir = dir
	binaries.ebbd = filepath.Join(dir, "ebbd")
	binaries.ebb = filepath.Join(dir, "ebb")
	binaries.hello = filepath.Join(dir, "hello")
	binaries.crasher = filepath.Join(dir, "crasher")
	binaries.escaper = filepath.Join(dir, "escaper")
	binaries.helloworld = filepath.Join(dir, "helloworld")
	binaries.foreignCrasher = filepath.Join(dir, "crasher-foreign")
	binaries.jobber = filepath.Join(dir, "jobber")
	binaries.grpcecho = filepath.Join(dir, "grpcecho")
	binaries.buildErr = build()
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func build() error {
	for _, b := range []struct {
		out, pkg string
		static   bool
		goarch   string // "" for this machine's
	}{
		{binaries.ebbd, "../cmd/ebbd", false, ""},
		{binaries.ebb, "../cmd/ebb", false, ""},
		{binaries.hello, "../examples/hello", true, ""},
		{binaries.crasher, "./testdata/crasher", true, ""},
		{binaries.escaper, "./testdata/escaper", true, ""},
		{binaries.helloworld, "./testdata/helloworld", true, ""},
		{binaries.foreignCrasher, "./testdata/crasher", true, foreignArch()},
		{binaries.jobber, "./testdata/jobber", true, ""},
		{binaries.grpcecho, "../examples/grpcecho", true, ""},
		// Beside ebbd, where ebbd's --runc auto finds it.
		{filepath.Join(binaries.dir, "ebb-runc"), "../cmd/ebb-runc", true, ""},
		// Beside ebbd, where ebbd finds it for replicas with secret variables.
		{filepath.Join(binaries.dir, "ebb-launch"), "../cmd/ebb-launch", true, ""},
	} {
		var env []string
		if b.static {
			env = append(env, "CGO_ENABLED=0")
		}
		if b.goarch != "" {
			env = append(env, "GOARCH="+b.goarch)
		}
		if err := testenv.GoBuild(b.out, b.pkg, env...); err != nil {
			return err
		}
	}
	return nil
}

// foreignArch is an architecture this machine does not run.
func foreignArch() string {
	if runtime.GOARCH == "arm64" {
		return "amd64"
	}
	return "arm64"
}

// ebbd is a running daemon started by a test.
type ebbd struct {
	t        *testing.T
	slot     netSlot
	dataDir  string
	apiAddr  string
	httpAddr string
	// metricsAddr serves /metrics of roles without the API.
	metricsAddr string
	args        []string
	// launcher, when set, is a command line that runs ebbd (prlimit, say),
	// with ebbd's path and arguments appended. It must exec ebbd, so that
	// signals reach it.
	launcher []string
	cmd      *exec.Cmd
	log      *syncBuffer
	exited   chan error
}

// requireE2E skips (or fails in CI) unless the real parts are here.
func requireE2E(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end tests do not run with -short")
	}
	testenv.RequireRoot(t)
	testenv.RequireBinary(t, "containerd")
	testenv.RequireBinary(t, "runc")
	require.NoError(t, binaries.buildErr)
}

// startEbbd starts ebbd on free loopback ports with its own data dir.
func startEbbd(t *testing.T, extraArgs ...string) *ebbd {
	t.Helper()
	return startEbbdVia(t, nil, extraArgs...)
}

// startEbbdVia is startEbbd with ebbd run through launcher (see
// ebbd.launcher).
func startEbbdVia(t *testing.T, launcher []string, extraArgs ...string) *ebbd {
	t.Helper()
	requireE2E(t)
	// The slot first: its cleanups (tearing down the daemon's replica
	// network, then unlocking it) run after those of the data dir, which
	// stop the replicas.
	slot := lockNetSlot(t)
	d := &ebbd{
		t:           t,
		launcher:    launcher,
		slot:        slot,
		dataDir:     shortTempDir(t),
		apiAddr:     fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
		httpAddr:    fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
		metricsAddr: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
	}
	d.args = append([]string{
		"--data-dir", d.dataDir, "--api-addr", d.apiAddr, "--http-addr", d.httpAddr,
		"--metrics-addr", d.metricsAddr,
		// Each test gets its own private containerd, so tests never see
		// each other's containers, and its own slot: a window of replica
		// ports (below the ephemeral range), a bridge and a replica range,
		// so daemons running side by side share none of them.
		"--containerd-address", filepath.Join(d.dataDir, "no-such.sock"),
		"--replica-ports", slot.ports(),
		"--bridge", slot.bridge(),
		"--replica-cidr", slot.cidr(),
	}, extraArgs...)
	if !slices.Contains(extraArgs, "--vip-prefix") {
		// eBPF programs attach at the cgroup root, so a daemon's VIPs are
		// every process's: a range of its own keeps them away from other
		// daemons and from the bpf package's tests of 127.77.0.0/16, which
		// run at the same time.
		d.args = append(d.args, "--vip-prefix", fmt.Sprintf("127.79.%d.0/24", 1+rand.IntN(250)))
	}
	d.start()
	t.Cleanup(func() { d.stop(syscall.SIGTERM) })
	return d
}

func (d *ebbd) start() {
	d.t.Helper()
	d.log = &syncBuffer{}
	cmdline := append(append(append([]string{}, d.launcher...), binaries.ebbd), d.args...)
	d.cmd = exec.Command(cmdline[0], cmdline[1:]...)
	d.cmd.Stdout = d.log
	d.cmd.Stderr = d.log
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(d.t, d.cmd.Start())
	d.exited = make(chan error, 1)
	go func() { d.exited <- d.cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-d.exited:
			d.t.Fatalf("ebbd exited during start: %v\n%s", err, d.log)
		default:
		}
		resp, err := httpClient.Get("http://" + d.readyAddr() + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond) // polling a child process's start
	}
	d.t.Fatalf("ebbd did not become ready:\n%s", d.log)
}

// readyAddr is where ebbd answers /readyz: its API, or the health server
// of the roles without one (router, nodeagent).
func (d *ebbd) readyAddr() string {
	if i := slices.Index(d.args, "--role"); i >= 0 && i+1 < len(d.args) {
		if role := d.args[i+1]; role == "router" || role == "nodeagent" {
			return d.metricsAddr
		}
	}
	return d.apiAddr
}

// stop sends sig and waits for ebbd to exit; SIGTERM must exit cleanly.
func (d *ebbd) stop(sig syscall.Signal) {
	d.t.Helper()
	if d.cmd == nil {
		return
	}
	_ = d.cmd.Process.Signal(sig)
	select {
	case err := <-d.exited:
		if sig == syscall.SIGTERM && err != nil {
			d.t.Errorf("ebbd did not exit cleanly on SIGTERM: %v\n%s", err, d.log)
		}
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-d.exited
		d.t.Errorf("ebbd did not stop within 30s of %v\n%s", sig, d.log)
	}
	d.cmd = nil
}

func (d *ebbd) restart() {
	d.t.Helper()
	d.stop(syscall.SIGTERM)
	d.start()
}

func (d *ebbd) token() string {
	b, err := os.ReadFile(filepath.Join(d.dataDir, "token"))
	require.NoError(d.t, err)
	return strings.TrimSpace(string(b))
}

// ebb runs the CLI against d and returns stdout; it fails the test on a
// non-zero exit unless the caller expects one with ebbExit.
func (d *ebbd) ebb(args ...string) string {
	d.t.Helper()
	out, errOut, code := d.ebbExit(args...)
	require.Equal(d.t, 0, code, "ebb %s failed: %s\n%s", strings.Join(args, " "), errOut, out)
	return out
}

func (d *ebbd) ebbExit(args ...string) (stdout, stderr string, code int) {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binaries.ebb, args...)
	cmd.Env = append(os.Environ(), "EBB_API=http://"+d.apiAddr, "EBB_TOKEN="+d.token(), "XDG_CONFIG_HOME="+d.dataDir)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if exit, ok := err.(*exec.ExitError); ok {
		return o.String(), e.String(), exit.ExitCode()
	}
	require.NoError(d.t, err)
	return o.String(), e.String(), 0
}

// ebbJSON runs the CLI with -o json and decodes its output.
func (d *ebbd) ebbJSON(out any, args ...string) {
	d.t.Helper()
	raw := d.ebb(append(args, "-o", "json")...)
	require.NoError(d.t, json.Unmarshal([]byte(raw), out), "decode %s", raw)
}

// apiCall is curl against the API: a raw HTTP request with the token.
func (d *ebbd) apiCall(method, path string, body io.Reader, out any) int {
	d.t.Helper()
	req, err := http.NewRequest(method, "http://"+d.apiAddr+path, body)
	require.NoError(d.t, err)
	req.Header.Set("Authorization", "Bearer "+d.token())
	resp, err := httpClient.Do(req)
	require.NoError(d.t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(d.t, err)
	if out != nil && len(raw) > 0 {
		require.NoError(d.t, json.Unmarshal(raw, out), "decode %s", raw)
	}
	return resp.StatusCode
}

// pushHello packages examples/hello as an OCI image and pushes it.
func (d *ebbd) pushHello() { d.pushBinary(binaries.hello, "hello:latest") }

// pushBinary packages a static binary as an OCI image named name and
// pushes it.
func (d *ebbd) pushBinary(bin, name string) {
	d.t.Helper()
	archive := filepath.Join(d.t.TempDir(), filepath.Base(bin)+".oci.tar")
	d.ebb("images", "build", bin, "--name", name, "-o", archive)
	d.ebb("images", "push", archive)
}

// shortTempDir is a temp dir with a short path: containerd's socket lives
// under it and unix socket paths are limited to 108 bytes.
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ebbe2e-")
	require.NoError(t, err)
	t.Cleanup(func() { removeRuntimeLeftovers(t, dir) })
	return dir
}

// runcRoot is where containerd's runc shim keeps runc's state, one
// directory per namespace.
const runcRoot = "/run/containerd/runc"

// runcContainer is a container the runc shim made for a test's containerd.
type runcContainer struct{ root, namespace, id string }

func (c runcContainer) dir() string { return filepath.Join(c.root, c.namespace, c.id) }

// runcContainersUnder lists the containers, created or half-created, whose
// bundles lie under dir, a test's containerd data dir.
func runcContainersUnder(dir string) []runcContainer {
	var out []runcContainer
	states, _ := filepath.Glob(filepath.Join(runcRoot, "*", "*"))
	for _, p := range states {
		c := runcContainer{root: runcRoot, namespace: filepath.Base(filepath.Dir(p)), id: filepath.Base(p)}
		bundle := filepath.Join(dir, "containerd", "state", "io.containerd.runtime.v2.task", c.namespace, c.id)
		if _, err := os.Stat(bundle); err == nil {
			out = append(out, c)
		}
	}
	return out
}

// deleteRuncContainers has runc delete each container (ebbd leaves its
// replicas running when it stops, for the next ebbd to adopt): killing
// their processes alone would leave runc's state and the containers'
// cgroups behind on the host. A container whose create was cut short has no
// state for runc to read; removeRuncRemains clears it once its processes
// are gone.
func deleteRuncContainers(t *testing.T, cs []runcContainer) {
	for _, c := range cs {
		if _, err := os.Stat(filepath.Join(c.dir(), "state.json")); err != nil {
			continue
		}
		if out, err := exec.Command("runc", "--root", filepath.Join(c.root, c.namespace), "delete", "--force", c.id).CombinedOutput(); err != nil {
			t.Logf("runc delete %s: %v: %s", c.id, err, out)
		}
	}
}

// removeRuncRemains removes what runc delete could not: the state directory
// and cgroups of a create that was cut short.
func removeRuncRemains(cs []runcContainer) {
	for _, c := range cs {
		_ = os.RemoveAll(c.dir())
		mountinfo.RemoveEmptyCgroup(filepath.Join(c.namespace, c.id))
	}
}

// removeRuntimeLeftovers kills processes still running from dir (shims of a
// daemon that was SIGKILLed on purpose), unmounts what is mounted under it,
// and removes it, so no test leaves the machine dirtier than it found it.
func removeRuntimeLeftovers(t *testing.T, dir string) {
	containers := runcContainersUnder(dir)
	deleteRuncContainers(t, containers)
	// The shims of this test's containerd name dir in their command line;
	// the replicas are their children.
	testenv.KillShimsUnder(dir)
	removeRuncRemains(containers)
	mountinfo.UnmountUnder(dir)
	if err := os.RemoveAll(dir); err != nil {
		t.Logf("remove %s: %v", dir, err)
	}
}

func decodeJSON(resp *http.Response, out any) error {
	return json.NewDecoder(resp.Body).Decode(out)
}

// netSlots is how many slots daemons of tests share the machine in: the
// 100-port windows in 30000-32699.
const netSlots = 27

// A netSlot is one test daemon's share of the machine's networking: a
// window of replica ports, a bridge and the replica range on it. A slot is
// locked (flock) for the test's life, so daemons of tests running side by
// side, in this process or another, never share one.
type netSlot struct{ index int }

// portRange is the slot's window of replica ports.
func (s netSlot) portRange() (lo, hi int) {
	lo = 30000 + 100*s.index
	return lo, lo + 99
}

func (s netSlot) ports() string {
	lo, hi := s.portRange()
	return fmt.Sprintf("%d-%d", lo, hi)
}

func (s netSlot) bridge() string { return fmt.Sprintf("ebbt%d", s.index) }

// cidr holds the window's 100 replicas beside the network, gateway and
// broadcast addresses.
func (s netSlot) cidr() string { return fmt.Sprintf("10.214.%d.0/24", s.index) }

// netSlotLocks is where the slots' lock files live.
const netSlotLocks = "/run/ebb-e2e"

// lockNetSlot locks a free slot, in random order, and when the test ends
// removes what is left of the daemon's replica network, failing the test
// if anything was (see checkNetworkGone), then unlocks the slot.
func lockNetSlot(t *testing.T) netSlot {
	t.Helper()
	require.NoError(t, os.MkdirAll(netSlotLocks, 0o755))
	for _, i := range rand.Perm(netSlots) {
		f, err := os.OpenFile(filepath.Join(netSlotLocks, fmt.Sprintf("slot-%d.lock", i)), os.O_CREATE|os.O_RDWR, 0o600)
		require.NoError(t, err)
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			continue
		}
		slot := netSlot{index: i}
		t.Cleanup(func() { f.Close() })
		t.Cleanup(func() { checkNetworkGone(t, slot) })
		return slot
	}
	t.Fatalf("all %d network slots are locked by other tests", netSlots)
	return netSlot{}
}

// checkNetworkGone removes what a daemon's replica network left once its
// replicas are stopped, the way `make stop` does (ebbd teardown-network),
// and fails the test if anything is still there afterwards: no namespace,
// link, bridge or nftables table may outlive a test.
func checkNetworkGone(t *testing.T, s netSlot) {
	out, err := exec.Command(binaries.ebbd, "teardown-network",
		"--bridge", s.bridge(), "--replica-cidr", s.cidr(), "--replica-ports", s.ports()).CombinedOutput()
	if err != nil {
		t.Errorf("ebbd teardown-network: %v\n%s", err, out)
	}
	left, err := replicanet.Leftovers(s.bridge(), filepath.Join(netnsRoot, s.bridge()))
	if err != nil {
		t.Errorf("look for leftovers of %s: %v", s.bridge(), err)
	}
	if len(left) > 0 {
		t.Errorf("the replica network of %s left behind: %v", s.bridge(), left)
	}
}

// netnsRoot is where ebbd keeps replica namespace files, per bridge.
const netnsRoot = "/run/ebb/netns"

// syncBuffer is a bytes.Buffer for a child's output (ebbd's log) that
// tests read while the child writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
