package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/ociimage"
	"github.com/ebbrun/ebb/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// result is one run of the CLI as a process would show it.
type result struct {
	stdout, stderr string
	code           int
}

// cli runs the real command tree in process with a fake environment.
type cli struct {
	env map[string]string
	// stdin is what the command reads from standard input.
	stdin string
	// ctx, when set, is the run's parent context: cancelling it is Ctrl-C.
	ctx context.Context
	// tune, when set, adjusts the app after the test defaults, e.g. its
	// sleep between a watch's reads.
	tune func(*app)
}

func (c cli) run(t *testing.T, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	a := newApp(strings.NewReader(c.stdin), &stdout, &stderr, func(k string) string { return c.env[k] })
	a.now = func() time.Time { return testNow }
	a.pollInterval = time.Millisecond
	if c.tune != nil {
		c.tune(a)
	}
	parent := c.ctx
	if parent == nil {
		parent = context.Background()
	}
	ctx, cancel := context.WithTimeout(parent, 30*time.Second)
	defer cancel()
	err := a.execute(ctx, args)
	if err != nil {
		// What main does.
		stderr.WriteString(errorLine(err) + "\n")
	}
	return result{stdout: stdout.String(), stderr: stderr.String(), code: exitCode(err)}
}

// newCLI points a CLI at a fresh fake API through the environment, with a
// HOME that holds no config file.
func newCLI(t *testing.T) (cli, *fakeAPI) {
	f, srv := newFakeAPI(t)
	return cli{env: map[string]string{"EBB_API": srv.URL, "EBB_TOKEN": f.token, "HOME": t.TempDir()}}, f
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test ./cmd/ebb -update to create it")
	assert.Equal(t, string(want), got, "golden %s differs; rerun with -update if the change is intended", path)
}

// oneErrorLine asserts stderr ends with exactly one "ebb: " line containing want.
func oneErrorLine(t *testing.T, r result, want string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	last := lines[len(lines)-1]
	assert.True(t, strings.HasPrefix(last, "ebb: "), "stderr %q", r.stderr)
	assert.Contains(t, last, want)
	assert.Equal(t, 1, strings.Count(r.stderr, "ebb: "), "one error line: %q", r.stderr)
}

// TestWorkflow walks the acceptance flow through the command tree: deploy,
// list, get, change an env var (revision 00002), split traffic 50/50 with a
// tag, read status, and checks every human view against a golden file.
func TestWorkflow(t *testing.T) {
	c, f := newCLI(t)
	f.nodes = []api.Node{
		{Name: "node-b", CPU: 2, MemoryBytes: 8 << 30, Heartbeat: testNow.Add(-time.Minute), HeartbeatInterval: api.D(5 * time.Second), EBPF: "userspace: no CAP_BPF"},
		{Name: "node-a", CPU: 2, MemoryBytes: 8 << 30, AllocatedCPU: 1.5, AllocatedMemory: 768 << 20, Running: 2,
			PoolSize: 2, PoolCapacity: 4, PoolMemoryBytes: 20 << 20, PoolMemoryBudget: 256 << 20, EBPF: "attached",
			Heartbeat: testNow.Add(-2 * time.Second), HeartbeatInterval: api.D(5 * time.Second)},
	}
	archive := writeImageArchive(t, "hello:v1")

	r := c.run(t, "deploy", "hello", "--image-archive", archive, "--max", "5", "--env", "GREETING=hello")
	require.Equal(t, 0, r.code, r.stderr)
	golden(t, "deploy_new.stdout", r.stdout)
	// The archive's own size depends on ociimage's output, not on the CLI.
	golden(t, "deploy_new.stderr", regexp.MustCompile(`Pushing \S+ \([^)]*\)`).ReplaceAllString(r.stderr, "Pushing ARCHIVE (SIZE)"))

	r = c.run(t, "deploy", "hello", "--env", "GREETING=hi", "--env", "DEBUG=1")
	require.Equal(t, 0, r.code, r.stderr)
	golden(t, "deploy_update.stdout", r.stdout)
	spec := f.functionSpec("hello")
	assert.Equal(t, map[string]string{"GREETING": "hi", "DEBUG": "1"}, spec.Env)
	assert.Equal(t, 5, spec.Scale.Max, "flags not given keep their value")
	assert.Equal(t, "docker.io/library/hello:v1", spec.Image, "the image is kept")
	assert.Equal(t, []string{"hello-00001", "hello-00002"}, f.revisionNames("hello"))

	// Re-applying the same flags is a no-op: no revision, no wait for a start.
	r = c.run(t, "deploy", "hello", "--env", "DEBUG=1")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stderr, "Function hello is unchanged: revision hello-00002")
	assert.Len(t, f.revisionNames("hello"), 2)

	r = c.run(t, "traffic", "hello", "1=50", "hello-00002=50", "--tag", "2=canary")
	require.Equal(t, 0, r.code, r.stderr)
	golden(t, "traffic.stdout", r.stdout)

	r = c.run(t, "deploy", "world", "--image", "docker.io/library/hello:v1", "--no-wait", "--min", "1")
	require.Equal(t, 0, r.code, r.stderr)

	// A revision that crash-loops: deploy fails with exit 6 and its last
	// words, and get shows them.
	exit2 := 2
	f.progress = scripted("broken", api.RevisionStatus{State: api.RevisionCrashLoop, Desired: 1, Restarts: 4,
		Message: "back-off 8s restarting failed replica", LastExitCode: &exit2,
		LastLogLines: []string{"reading config", "fatal: $DATABASE_URL is not set"}})
	r = c.run(t, "deploy", "broken", "--image", "docker.io/library/hello:v1")
	require.Equal(t, exitDeployWait, r.code)
	golden(t, "deploy_crashloop.stderr", r.stderr)

	for _, g := range []struct {
		name string
		args []string
	}{
		{"get_crashloop", []string{"get", "broken"}},
		{"list", []string{"list"}},
		{"get", []string{"get", "hello"}},
		{"revisions", []string{"revisions", "hello"}},
		{"images_list", []string{"images", "list"}},
		{"status", []string{"status"}},
	} {
		t.Run(g.name, func(t *testing.T) {
			r := c.run(t, g.args...)
			require.Equal(t, 0, r.code, r.stderr)
			assert.Empty(t, r.stderr)
			golden(t, g.name, r.stdout)
		})
	}

	r = c.run(t, "delete", "world")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "deleted function world\n", r.stdout)
	r = c.run(t, "get", "world")
	assert.Equal(t, exitNotFound, r.code)
	oneErrorLine(t, r, `get world: not_found: function "world" does not exist`)
}

func TestJSONOutput(t *testing.T) {
	c, f := newCLI(t)
	r := c.run(t, "deploy", "hello", "--image", "docker.io/library/hello:v1", "-o", "json")
	require.Equal(t, 0, r.code, r.stderr)
	var fn api.Function
	require.NoError(t, api.DecodeStrict(strings.NewReader(r.stdout), &fn))
	assert.Equal(t, "hello-00001", fn.LatestRevision)
	assert.Equal(t, api.RevisionReady, fn.Revisions[0].State)

	r = c.run(t, "list", "-o", "json")
	require.Equal(t, 0, r.code, r.stderr)
	var list api.FunctionList
	require.NoError(t, api.DecodeStrict(strings.NewReader(r.stdout), &list))
	require.Len(t, list.Functions, 1)

	r = c.run(t, "revisions", "hello", "--output=json")
	require.Equal(t, 0, r.code, r.stderr)
	var revs api.RevisionList
	require.NoError(t, api.DecodeStrict(strings.NewReader(r.stdout), &revs))
	require.Len(t, revs.Revisions, 1)
	assert.Equal(t, "docker.io/library/hello:v1", revs.Revisions[0].Spec.Image)

	r = c.run(t, "status", "-o", "json")
	require.Equal(t, 0, r.code, r.stderr)
	assert.JSONEq(t, `{"nodes":[]}`, r.stdout)

	f.images = []api.Image{{Name: "a", Digest: "sha256:00", Size: 1}}
	r = c.run(t, "images", "list", "-o", "json")
	require.Equal(t, 0, r.code, r.stderr)
	assert.JSONEq(t, `{"images":[{"name":"a","digest":"sha256:00","size":1}]}`, r.stdout)

	r = c.run(t, "delete", "hello", "-o", "json")
	require.Equal(t, 0, r.code, r.stderr)
	assert.JSONEq(t, `{"name":"hello","deleted":true}`, r.stdout)
}

func TestDeployWait(t *testing.T) {
	exit1 := 1
	crash := api.RevisionStatus{State: api.RevisionCrashLoop, Desired: 1, Message: "exited 3 times",
		Restarts: 3, LastExitCode: &exit1, LastLogLines: []string{"listening on :8080", "panic: nil map"}}
	scaling := api.RevisionStatus{State: api.RevisionScaling, Desired: 1}
	tests := []struct {
		name       string
		states     []api.RevisionStatus
		args       []string
		wantCode   int
		wantErr    string
		wantStderr []string
	}{
		{
			name:       "crash loop fails fast with the last log lines",
			states:     []api.RevisionStatus{scaling, crash},
			wantCode:   exitDeployWait,
			wantErr:    "revision broken-00001 is CrashLoop: exited 3 times (last exit code 1, 3 restarts)",
			wantStderr: []string{"broken-00001: Scaling, 0/1 ready\n", "  | listening on :8080\n  | panic: nil map\n"},
		},
		{
			name:     "failed",
			states:   []api.RevisionStatus{{State: api.RevisionFailed, Message: "image has no entrypoint"}},
			wantCode: exitDeployWait,
			wantErr:  "revision broken-00001 is Failed: image has no entrypoint",
		},
		{
			name:     "timeout",
			states:   []api.RevisionStatus{scaling},
			args:     []string{"--wait-timeout", "50ms"},
			wantCode: exitDeployWait,
			wantErr:  "revision broken-00001 was not ready within 50ms; last status: broken-00001: Scaling, 0/1 ready",
		},
		{
			name:       "waits for every desired replica",
			states:     []api.RevisionStatus{{State: api.RevisionScaling, Desired: 3, Ready: 1}, {State: api.RevisionScaling, Desired: 3, Ready: 2}, {State: api.RevisionReady, Desired: 3, Ready: 3}},
			wantStderr: []string{"1/3 ready\n", "2/3 ready\n", "broken-00001: Ready, 3/3 ready\n"},
		},
		{
			name:       "came up and scaled away between polls",
			states:     []api.RevisionStatus{{State: api.RevisionScaling, Desired: 1}, {State: api.RevisionIdle}},
			wantStderr: []string{"broken-00001: Idle, 0/0 ready\n"},
		},
		{
			name:   "no wait",
			states: []api.RevisionStatus{crash},
			args:   []string{"--no-wait"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, f := newCLI(t)
			f.progress = scripted("broken", tt.states...)
			args := []string{"deploy", "broken", "--image", "docker.io/library/broken:v1"}
			r := c.run(t, append(args, tt.args...)...)
			assert.Equal(t, tt.wantCode, r.code, r.stderr)
			if tt.wantErr != "" {
				oneErrorLine(t, r, tt.wantErr)
				assert.Empty(t, r.stdout)
			} else {
				assert.Contains(t, r.stdout, "Revision:  broken-00001 (new)")
			}
			for _, s := range tt.wantStderr {
				assert.Contains(t, r.stderr, s)
			}
		})
	}
}

// A revision with initial scale 0 is never started by a deploy, so waiting
// for a ready replica would hang; the wait ends once it reports Idle.
func TestDeployInitialZeroDoesNotWaitForAStart(t *testing.T) {
	c, f := newCLI(t)
	f.progress = scripted("lazy", api.RevisionStatus{State: api.RevisionIdle})
	// The CLI has no --initial flag: the spec comes from an earlier API call.
	client, err := api.NewClient(f.url, f.token)
	require.NoError(t, err)
	zero := 0
	_, _, err = client.PutFunction(context.Background(), "lazy", api.FunctionSpec{Image: "a:b", Scale: api.Scale{Initial: &zero}})
	require.NoError(t, err)
	r := c.run(t, "deploy", "lazy", "--env", "A=1", "--wait-timeout", "5s")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stderr, "Updated function lazy: new revision lazy-00002")
	assert.Contains(t, r.stdout, "Idle, 0/0 ready")
}

func TestDeployBinary(t *testing.T) {
	bin := buildStaticBinary(t)
	c, f := newCLI(t)
	r := c.run(t, "deploy", "hello", "--binary", bin, "--port", "9000")
	require.Equal(t, 0, r.code, r.stderr)
	spec := f.functionSpec("hello")
	assert.True(t, strings.HasPrefix(spec.Image, "docker.io/library/hello:bin-"), spec.Image)
	assert.Equal(t, 9000, spec.Port)
	imgs := f.imageList()
	require.Len(t, imgs, 1, "the fake API spooled and accepted the archive")
	assert.Equal(t, spec.Image, imgs[0].Name)
	assert.Contains(t, r.stderr, "Packaging "+bin)

	// The same binary again is the same image: nothing changes.
	r = c.run(t, "deploy", "hello", "--binary", bin)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stderr, "Function hello is unchanged")
	assert.Len(t, f.revisionNames("hello"), 1)
}

// buildStaticBinary compiles a tiny static Go program, the kind of binary
// `ebb deploy --binary` is for.
func buildStaticBinary(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("needs the go tool to build a static binary")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	require.NoError(t, os.WriteFile(src, []byte("package main\n\nfunc main() {}\n"), 0o644))
	out := filepath.Join(dir, "tiny")
	require.NoError(t, testenv.GoBuild(out, src, "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false", "GO111MODULE=off"))
	return out
}

// writeImageArchive writes an OCI layout tar the way a user would have one.
func writeImageArchive(t *testing.T, name string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "image.tar")
	f, err := os.Create(path)
	require.NoError(t, err)
	defer f.Close()
	_, err = ociimage.Build(f, ociimage.BuildOptions{Name: name, Binary: []byte("#!not really\n")})
	require.NoError(t, err)
	return path
}

func TestImagesPush(t *testing.T) {
	c, f := newCLI(t)
	archive := writeImageArchive(t, "greeter:v3")
	r := c.run(t, "images", "push", archive)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "docker.io/library/greeter:v3")
	require.Len(t, f.imageList(), 1)

	bad := filepath.Join(t.TempDir(), "bad.tar")
	require.NoError(t, os.WriteFile(bad, []byte("this is not a tar archive at all, not even close"), 0o644))
	r = c.run(t, "images", "push", bad)
	assert.Equal(t, exitRejected, r.code)
	oneErrorLine(t, r, "invalid_archive")

	r = c.run(t, "images", "push", filepath.Join(t.TempDir(), "missing.tar"))
	assert.Equal(t, exitUsage, r.code)
	oneErrorLine(t, r, "no such file")
}

func TestLogs(t *testing.T) {
	c, f := newCLI(t)
	require.Equal(t, 0, c.run(t, "deploy", "hello", "--image", "x:y", "--no-wait").code)
	f.logs = "hello-00001-a stdout: started\nhello-00001-a stderr: oops\n"
	r := c.run(t, "logs", "hello", "--tail", "5", "--revision", "hello-00001")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, f.logs, r.stdout)
	assert.Equal(t, "revision=hello-00001&tail=5", f.logQuery)

	r = c.run(t, "logs", "hello", "-f")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "follow=true", f.logQuery)

	f.logs = `{"time":"2026-12-06T20:00:00.000000Z","function":"hello","status":200}` + "\n"
	r = c.run(t, "logs", "--access", "-f", "hello")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, f.logs, r.stdout, "access lines as the API sends them")
	assert.Equal(t, "access=true&follow=true", f.logQuery)

	r = c.run(t, "logs", "nope")
	assert.Equal(t, exitNotFound, r.code)
}

func TestAPIFailures(t *testing.T) {
	c, f := newCLI(t)

	f.failNext = 503
	r := c.run(t, "list")
	assert.Equal(t, exitUnavailable, r.code)
	oneErrorLine(t, r, "list functions: internal: store unavailable")

	r = cli{env: map[string]string{"EBB_API": c.env["EBB_API"], "EBB_TOKEN": "wrong", "HOME": c.env["HOME"]}}.run(t, "list")
	assert.Equal(t, exitRejected, r.code)
	oneErrorLine(t, r, "unauthorized: missing or wrong bearer token (token from EBB_TOKEN)")

	r = cli{env: map[string]string{"EBB_API": c.env["EBB_API"], "HOME": "/nonexistent"}}.run(t, "list")
	assert.Equal(t, exitRejected, r.code)
	oneErrorLine(t, r, "(no token configured: set --token, EBB_TOKEN or token: in /nonexistent/.config/ebb/config.yaml)")

	r = c.run(t, "traffic", "nope", "1=100")
	assert.Equal(t, exitNotFound, r.code)

	require.Equal(t, 0, c.run(t, "deploy", "hello", "--image", "x:y", "--no-wait").code)
	r = c.run(t, "traffic", "hello", "7=100")
	assert.Equal(t, exitRejected, r.code)
	oneErrorLine(t, r, `invalid: traffic[0].revision: revision "hello-00007" does not exist`)

	r = c.run(t, "deploy", "hello", "--min", "3", "--max", "2")
	assert.Equal(t, exitUsage, r.code)
	oneErrorLine(t, r, "invalid spec: scale.min: 3 is above scale.max 2")
}

func TestUnreachableAPI(t *testing.T) {
	c, _ := newCLI(t)
	c.env["EBB_API"] = "http://127.0.0.1:1"
	r := c.run(t, "get", "hello")
	assert.Equal(t, exitUnavailable, r.code)
	oneErrorLine(t, r, "cannot reach the API at http://127.0.0.1:1 (is ebbd running?)")
}

func TestConfigFileDrivesTheCLI(t *testing.T) {
	_, f := newCLI(t)
	c, _ := newCLI(t) // a second API, which the flags point at
	xdg := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(xdg, "ebb"), 0o700))
	cfg := "api: " + f.url + "\ntoken: " + f.token + "\n"
	require.NoError(t, os.WriteFile(filepath.Join(xdg, "ebb", "config.yaml"), []byte(cfg), 0o600))
	f.nodes = []api.Node{{Name: "from-file"}}

	env := map[string]string{"XDG_CONFIG_HOME": xdg, "HOME": t.TempDir()}
	r := cli{env: env}.run(t, "status")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "from-file")

	// --api and --token beat the file.
	r = cli{env: env}.run(t, "status", "--api", c.env["EBB_API"], "--token", c.env["EBB_TOKEN"])
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "no nodes have reported yet\n", r.stdout)

	// A broken explicit config is a usage error.
	r = cli{env: env}.run(t, "status", "--config", filepath.Join(t.TempDir(), "nope.yaml"))
	assert.Equal(t, exitUsage, r.code)
	oneErrorLine(t, r, "read config")
}

// TestImagesBuild packages a static binary the way `make run` does, checks
// the file passes the server's archive gate, and pushes it.
func TestImagesBuild(t *testing.T) {
	bin := buildStaticBinary(t)
	c, f := newCLI(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "hello.oci.tar")
	r := c.run(t, "images", "build", bin, "--name", "hello:latest", "-o", out, "--port", "8080")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Empty(t, r.stdout)
	assert.Contains(t, r.stderr, "Wrote "+out+": image hello:latest, sha256:")

	a1, err := os.ReadFile(out)
	require.NoError(t, err)
	fh, err := os.Open(out)
	require.NoError(t, err)
	defer fh.Close()
	arch, err := ociimage.Spool(fh, t.TempDir(), ociimage.Limits{})
	require.NoError(t, err)
	defer arch.Remove()
	require.Len(t, arch.Images, 1)
	assert.Equal(t, "docker.io/library/hello:latest", arch.Images[0].Name)

	// Deterministic: the same binary and name give the same bytes, on stdout too.
	r = c.run(t, "images", "build", bin, "--name", "hello:latest", "-o", "-", "--port", "8080")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, string(a1), r.stdout)

	r = c.run(t, "images", "push", out)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "docker.io/library/hello:latest", f.imageList()[0].Name)
	r = c.run(t, "deploy", "hello", "--image", "hello:latest")
	require.Equal(t, 0, r.code, r.stderr)

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"images", "build", bin, "-o", out}, "--name is required"},
		{[]string{"images", "build", bin, "--name", "Bad Name", "-o", out}, "--name: invalid image name"},
		{[]string{"images", "build", bin, "--name", "a:b"}, "-o FILE is required"},
		{[]string{"images", "build", "/bin/sh", "--name", "a:b", "-o", out}, "dynamically linked"},
		{[]string{"images", "build", bin, "--name", "a:b", "-o", out, "--port", "-1"}, "--port -1"},
	} {
		r := c.run(t, tt.args...)
		assert.Equal(t, exitUsage, r.code, "%v: %s", tt.args, r.stderr)
		oneErrorLine(t, r, tt.want)
	}
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.Equal(t, a1, b, "failed builds leave the earlier file alone")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "no temporary files left behind")
}
