package containerd_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	containerd "github.com/containerd/containerd"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/internal/imagestore"
	"github.com/ebbrun/ebb/internal/ociimage"
	"github.com/ebbrun/ebb/internal/testenv"
)

// TestMain shares one private containerd across the package's tests, and
// doubles as the node agent process that TestAgentSurvivesSIGKILL kills.
func TestMain(m *testing.M) {
	if cfg := os.Getenv(childEnv); cfg != "" {
		os.Exit(runChildAgent(cfg))
	}
	code := testenv.RunMain(m)
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

var (
	buildOnce sync.Once
	buildDir  string
	helloBin  string
	ebbRunc   string
	ebbLaunch string
	buildErr  error
)

// build builds, once per test binary, examples/hello as a static binary,
// cmd/ebb-runc and cmd/ebb-launch.
func build(t testing.TB) {
	t.Helper()
	testenv.RequireBinary(t, "go")
	buildOnce.Do(func() {
		if buildDir, buildErr = os.MkdirTemp("", "ebb-nodeagent-build-"); buildErr != nil {
			return
		}
		helloBin = filepath.Join(buildDir, "hello")
		ebbRunc = filepath.Join(buildDir, "ebb-runc")
		ebbLaunch = filepath.Join(buildDir, "ebb-launch")
		for _, b := range []struct{ out, pkg string }{
			{helloBin, "../../examples/hello"},
			{ebbRunc, "../../cmd/ebb-runc"},
			{ebbLaunch, "../../cmd/ebb-launch"},
		} {
			if buildErr = testenv.GoBuild(b.out, b.pkg, "CGO_ENABLED=0"); buildErr != nil {
				return
			}
		}
	})
	require.NoError(t, buildErr)
}

// helloBinary is examples/hello, built as a static binary.
func helloBinary(t testing.TB) string {
	build(t)
	return helloBin
}

// ebbRuncBinary is cmd/ebb-runc, the runc the node agent has the shim run.
func ebbRuncBinary(t testing.TB) string {
	build(t)
	return ebbRunc
}

// ebbLaunchBinary is cmd/ebb-launch, which sets secret variables at start.
func ebbLaunchBinary(t testing.TB) string {
	build(t)
	return ebbLaunch
}

// connect returns a containerd client for the test's containerd.
func connect(t testing.TB) *containerd.Client {
	t.Helper()
	addr := testenv.Containerd(t)
	c, err := containerd.New(addr, containerd.WithTimeout(10*time.Second))
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// pushImage builds an OCI image and imports it into namespace "ebb" the
// way the control plane does, returning its normalized name.
func pushImage(t testing.TB, client *containerd.Client, opts ociimage.BuildOptions) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "image.tar")
	f, err := os.Create(p)
	require.NoError(t, err)
	_, err = ociimage.Build(f, opts)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	imp, err := imagestore.New(client, imagestore.Config{})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	img, err := imp.Import(ctx, p)
	require.NoError(t, err)
	return img.Name
}

// pushHello pushes examples/hello under name.
func pushHello(t testing.TB, client *containerd.Client, name string) string {
	t.Helper()
	bin, err := os.ReadFile(helloBinary(t))
	require.NoError(t, err)
	return pushImage(t, client, ociimage.BuildOptions{Name: name, Binary: bin, BinaryPath: "/app/hello"})
}
