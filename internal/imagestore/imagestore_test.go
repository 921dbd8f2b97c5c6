package imagestore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	containerd "github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/content"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/oci"
	"github.com/containerd/containerd/snapshots"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ebbrun/ebb/api"
	"github.com/ebbrun/ebb/internal/imagestore"
	"github.com/ebbrun/ebb/internal/mountinfo"
	"github.com/ebbrun/ebb/internal/ociimage"
	"github.com/ebbrun/ebb/internal/testenv"
)

func TestMain(m *testing.M) {
	code := testenv.RunMain(m)
	if archives.dir != "" {
		_ = os.RemoveAll(archives.dir)
	}
	os.Exit(code)
}

var nsCounter atomic.Int64

type env struct {
	imp    *imagestore.Importer
	client *containerd.Client
	ctx    context.Context // in the test's namespace
}

// setup gives each test its own containerd namespace, so "nothing left
// behind" can be checked exactly.
func setup(t *testing.T) env {
	t.Helper()
	addr := testenv.Containerd(t)
	client, err := containerd.New(addr, containerd.WithTimeout(5*time.Second))
	require.NoError(t, err)
	t.Cleanup(func() { client.Close() })
	ns := fmt.Sprintf("ebbtest-%d-%d", os.Getpid(), nsCounter.Add(1))
	imp, err := imagestore.New(client, imagestore.Config{Namespace: ns})
	require.NoError(t, err)
	ctx := namespaces.WithNamespace(context.Background(), ns)
	t.Cleanup(func() {
		imgs, _ := imp.List(context.Background())
		for _, im := range imgs {
			_ = imp.Delete(context.Background(), im.Name)
		}
		_ = client.NamespaceService().Delete(ctx, ns)
		removeNamespaceLeftovers(ns)
	})
	return env{imp: imp, client: client, ctx: ctx}
}

// removeNamespaceLeftovers removes what runc made for namespace ns's
// containers besides each container's own, once they are gone: the parent
// cgroup (/ns/<id>) in every hierarchy, and the shim's runc state directory
// for ns. Each goes only if empty.
func removeNamespaceLeftovers(ns string) {
	_ = os.Remove(filepath.Join("/run/containerd/runc", ns)) // the runc shim's default root
	mountinfo.RemoveEmptyCgroup(ns)
}

var helloBin struct {
	once sync.Once
	data []byte
	err  error
}

// helloBinary compiles testdata/hello as a static binary, once per test run.
func helloBinary(t *testing.T) []byte {
	t.Helper()
	helloBin.once.Do(func() {
		out := filepath.Join(os.TempDir(), fmt.Sprintf("ebb-imagestore-hello-%d", os.Getpid()))
		defer os.Remove(out)
		goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
		cmd := exec.Command(goBin, "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./testdata/hello")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if msg, err := cmd.CombinedOutput(); err != nil {
			helloBin.err = fmt.Errorf("build testdata/hello: %v: %s", err, msg)
			return
		}
		helloBin.data, helloBin.err = os.ReadFile(out)
	})
	require.NoError(t, helloBin.err)
	return helloBin.data
}

// archives caches built and spooled archives for the whole test binary:
// building compresses the binary, which is slow under -race.
var archives struct {
	mu    sync.Mutex
	dir   string
	built map[string][]byte
	paths map[string]string
	imgs  map[string]ociimage.Image
}

// built returns the archive ociimage.Build makes from opts, built once per key.
func built(t *testing.T, key string, opts ociimage.BuildOptions) []byte {
	t.Helper()
	archives.mu.Lock()
	defer archives.mu.Unlock()
	if b, ok := archives.built[key]; ok {
		return b
	}
	var buf bytes.Buffer
	_, err := ociimage.Build(&buf, opts)
	require.NoError(t, err)
	if archives.built == nil {
		archives.built = map[string][]byte{}
	}
	archives.built[key] = buf.Bytes()
	return buf.Bytes()
}

// spooled builds an image archive and passes it through ociimage.Spool,
// as the control plane does, returning the validated path (cached by key;
// Import only reads it).
func spooled(t *testing.T, key string, opts ociimage.BuildOptions) (string, ociimage.Image) {
	t.Helper()
	b := built(t, key, opts)
	archives.mu.Lock()
	defer archives.mu.Unlock()
	if p, ok := archives.paths[key]; ok {
		return p, archives.imgs[key]
	}
	if archives.dir == "" {
		d, err := os.MkdirTemp("", "ebb-imagestore-test-")
		require.NoError(t, err)
		archives.dir = d
		archives.paths, archives.imgs = map[string]string{}, map[string]ociimage.Image{}
	}
	a, err := ociimage.Spool(bytes.NewReader(b), archives.dir, ociimage.Limits{})
	require.NoError(t, err)
	archives.paths[key], archives.imgs[key] = a.Path, a.Images[0]
	return a.Path, a.Images[0]
}

func writeTemp(t *testing.T, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "archive.tar")
	require.NoError(t, os.WriteFile(p, b, 0o600))
	return p
}

// footprint is everything an import can leave in a namespace.
type footprint struct {
	Images, Blobs, Ingests, Snapshots, Leases int
}

func footprintOf(t *testing.T, e env) footprint {
	t.Helper()
	var fp footprint
	imgs, err := e.client.ImageService().List(e.ctx)
	require.NoError(t, err)
	fp.Images = len(imgs)
	require.NoError(t, e.client.ContentStore().Walk(e.ctx, func(content.Info) error { fp.Blobs++; return nil }))
	st, err := e.client.ContentStore().ListStatuses(e.ctx)
	require.NoError(t, err)
	fp.Ingests = len(st)
	require.NoError(t, e.client.SnapshotService(imagestore.DefaultSnapshotter).Walk(e.ctx, func(context.Context, snapshots.Info) error { fp.Snapshots++; return nil }))
	ls, err := e.client.LeasesService().List(e.ctx)
	require.NoError(t, err)
	fp.Leases = len(ls)
	return fp
}

// runImage runs the image's entrypoint to completion and returns its output.
func runImage(t *testing.T, e env, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	defer cancel()
	img, err := e.client.GetImage(ctx, name)
	require.NoError(t, err)
	id := fmt.Sprintf("run-%d", nsCounter.Add(1))
	c, err := e.client.NewContainer(ctx, id, containerd.WithImage(img), containerd.WithNewSnapshot(id, img),
		containerd.WithNewSpec(oci.WithImageConfig(img), oci.WithProcessArgs(append([]string{"/app/hello"}, "ran")...)))
	require.NoError(t, err)
	defer func() { _ = c.Delete(context.WithoutCancel(ctx), containerd.WithSnapshotCleanup) }()
	var out testenv.Buffer
	task, err := c.NewTask(ctx, cio.NewCreator(cio.WithStreams(nil, &out, &out)))
	require.NoError(t, err)
	defer func() { _, _ = task.Delete(context.WithoutCancel(ctx), containerd.WithProcessKill) }()
	exitC, err := task.Wait(ctx)
	require.NoError(t, err)
	require.NoError(t, task.Start(ctx))
	select {
	case st := <-exitC:
		require.Equal(t, uint32(0), st.ExitCode(), "output: %s", out.String())
	case <-ctx.Done():
		t.Fatalf("container did not exit: %s", out.String())
	}
	// The exit status can arrive before cio has copied the last bytes.
	require.Eventually(t, func() bool { return bytes.Contains([]byte(out.String()), []byte("\n")) }, 5*time.Second, 5*time.Millisecond)
	return out.String()
}

func TestImportUnpacksARunnableImage(t *testing.T) {
	e := setup(t)
	path, spooledImg := spooled(t, "hello-nobody", ociimage.BuildOptions{Name: "hello:v1", Binary: helloBinary(t), BinaryPath: "/app/hello", User: "65534:65534"})

	before := footprintOf(t, e)
	began := time.Now()
	img, err := e.imp.Import(context.Background(), path)
	require.NoError(t, err)
	t.Logf("import of a %d-byte image took %s", img.Size, time.Since(began))
	assert.Equal(t, "docker.io/library/hello:v1", img.Name)
	assert.Equal(t, spooledImg.Digest.String(), img.Digest)
	assert.Positive(t, img.Size)

	cimg, err := e.client.GetImage(e.ctx, img.Name)
	require.NoError(t, err)
	unpacked, err := cimg.IsUnpacked(e.ctx, imagestore.DefaultSnapshotter)
	require.NoError(t, err)
	assert.True(t, unpacked, "image is unpacked for overlayfs")

	after := footprintOf(t, e)
	assert.Equal(t, before.Images+1, after.Images)
	assert.Zero(t, after.Leases, "the import lease is released")
	assert.Zero(t, after.Ingests)

	for _, name := range []string{"hello:v1", "docker.io/library/hello:v1"} {
		ok, err := e.imp.Exists(context.Background(), name)
		require.NoError(t, err)
		assert.True(t, ok, name)
	}
	ok, err := e.imp.Exists(context.Background(), "hello:v2")
	require.NoError(t, err)
	assert.False(t, ok)
	got, err := e.imp.Get(context.Background(), "hello:v1")
	require.NoError(t, err)
	assert.Equal(t, img, got)
	list, err := e.imp.List(context.Background())
	require.NoError(t, err)
	assert.Equal(t, []api.Image{img}, list)

	out := runImage(t, e, img.Name)
	assert.Contains(t, out, "hello from ebb uid=65534 tmp-writable=true args=[ran]")
}

func TestImportAgainIsIdempotentAndANewBinaryRetargets(t *testing.T) {
	e := setup(t)
	bin := helloBinary(t)
	opts := ociimage.BuildOptions{Name: "hello", Binary: bin, BinaryPath: "/app/hello"}
	path, _ := spooled(t, "hello-latest", opts)
	first, err := e.imp.Import(context.Background(), path)
	require.NoError(t, err)
	fp := footprintOf(t, e)

	// A fresh build and spool of the same inputs, not the cached file.
	var rebuilt bytes.Buffer
	_, err = ociimage.Build(&rebuilt, opts)
	require.NoError(t, err)
	a, err := ociimage.Spool(&rebuilt, t.TempDir(), ociimage.Limits{})
	require.NoError(t, err)
	path = a.Path
	again, err := e.imp.Import(context.Background(), path)
	require.NoError(t, err)
	assert.Equal(t, first, again, "same binary, same image")
	assert.Equal(t, fp, footprintOf(t, e), "re-import adds nothing")

	opts.Env = []string{"VERSION=2"}
	path, _ = spooled(t, "hello-latest-v2", opts)
	second, err := e.imp.Import(context.Background(), path)
	require.NoError(t, err)
	assert.Equal(t, "docker.io/library/hello:latest", second.Name)
	assert.NotEqual(t, first.Digest, second.Digest)
	got, err := e.imp.Get(context.Background(), "hello")
	require.NoError(t, err)
	assert.Equal(t, second.Digest, got.Digest)
}

func TestImportDockerSaveArchive(t *testing.T) {
	e := setup(t)
	b := built(t, "hello-v1", ociimage.BuildOptions{Name: "hello:v1", Binary: helloBinary(t), BinaryPath: "/app/hello"})
	a, err := ociimage.Spool(bytes.NewReader(toDockerSave(t, b, "ebb/saved:v3")), t.TempDir(), ociimage.Limits{})
	require.NoError(t, err)
	assert.Equal(t, ociimage.FormatDocker, a.Format)
	path := a.Path

	img, err := e.imp.Import(context.Background(), path)
	require.NoError(t, err)
	assert.Equal(t, "docker.io/ebb/saved:v3", img.Name)
	cimg, err := e.client.GetImage(e.ctx, img.Name)
	require.NoError(t, err)
	unpacked, err := cimg.IsUnpacked(e.ctx, imagestore.DefaultSnapshotter)
	require.NoError(t, err)
	assert.True(t, unpacked)
	assert.Contains(t, runImage(t, e, img.Name), "hello from ebb uid=0")
}

func TestFailedImportLeavesNothing(t *testing.T) {
	bin := helloBinary(t)
	good := built(t, "hello-v1", ociimage.BuildOptions{Name: "hello:v1", Binary: bin, BinaryPath: "/app/hello"})
	foreign := built(t, "hello-v1-foreign", ociimage.BuildOptions{Name: "hello:v1", Binary: bin, BinaryPath: "/app/hello", Architecture: otherArch()})

	tests := []struct {
		name string
		data []byte
		want string
		// uploaders is whether the error is the uploader's to fix, an
		// *ociimage.ArchiveError that the API answers with a 400.
		uploaders bool
	}{
		{"garbage", bytes.Repeat([]byte("not an archive "), 100), "read archive", false},
		{"truncated archive", good[:len(good)/2], "read archive", false},
		{"layer does not match its diff ID", withWrongDiffID(t, good), "unpack", false},
		{"image for another platform", foreign, "this node runs", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := setup(t)
			// An existing image of the same name must survive untouched.
			path, _ := spooled(t, "hello-v1-old", ociimage.BuildOptions{Name: "hello:v1", Binary: bin, BinaryPath: "/app/hello", Env: []string{"OLD=1"}})
			old, err := e.imp.Import(context.Background(), path)
			require.NoError(t, err)
			before := footprintOf(t, e)

			_, err = e.imp.Import(context.Background(), writeTemp(t, tt.data))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			var ae *ociimage.ArchiveError
			assert.Equal(t, tt.uploaders, errors.As(err, &ae), "the uploader's to fix: %v", err)
			assert.Equal(t, before, footprintOf(t, e), "a failed import leaves no image, blob, ingest, snapshot or lease")
			got, err := e.imp.Get(context.Background(), "hello:v1")
			require.NoError(t, err)
			assert.Equal(t, old, got)
		})
	}
}

func TestFailedImportIntoEmptyNamespaceLeavesItEmpty(t *testing.T) {
	e := setup(t)
	_, err := e.imp.Import(context.Background(), writeTemp(t, []byte("garbage")))
	require.Error(t, err)
	assert.Equal(t, footprint{}, footprintOf(t, e))
}

func TestDeleteCollectsContent(t *testing.T) {
	e := setup(t)
	path, _ := spooled(t, "gone", ociimage.BuildOptions{Name: "gone:v1", Binary: helloBinary(t)})
	_, err := e.imp.Import(context.Background(), path)
	require.NoError(t, err)

	require.NoError(t, e.imp.Delete(context.Background(), "gone:v1"))
	ok, err := e.imp.Exists(context.Background(), "gone:v1")
	require.NoError(t, err)
	assert.False(t, ok)
	assert.Equal(t, footprint{}, footprintOf(t, e), "blobs and snapshots are collected with the image")

	err = e.imp.Delete(context.Background(), "gone:v1")
	assert.True(t, errors.Is(err, imagestore.ErrNotFound), "got %v", err)
	_, err = e.imp.Get(context.Background(), "gone:v1")
	assert.True(t, errors.Is(err, imagestore.ErrNotFound), "got %v", err)
}

func TestConfigValidate(t *testing.T) {
	assert.NoError(t, imagestore.Config{}.WithDefaults().Validate())
	assert.Error(t, imagestore.Config{LeaseExpiration: -time.Second}.Validate())
	c := imagestore.Config{}.WithDefaults()
	assert.Equal(t, "ebb", c.Namespace)
	assert.Equal(t, "overlayfs", c.Snapshotter)
}

func otherArch() string {
	if runtime.GOARCH == "arm64" {
		return "amd64"
	}
	return "arm64"
}
